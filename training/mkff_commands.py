"""``istrings train mkff``, ``istrings eval mkff``, ``istrings bench mkff``: the learned keypoint refiner.

Heavy imports (torch, numpy, training.*, onnxruntime) happen inside the command bodies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from stream.cli import Groups


def register(app: typer.Typer, groups: Groups) -> None:
    """Add the MKFF-ST-GCN training, evaluation and latency benchmark commands."""

    @groups.train.command("mkff")
    def _train_mkff(
        out: Annotated[Path, typer.Option("--out", "-o", help="Run directory (metrics, plots, best.pt, last.pt).")],
        mode: Annotated[str, typer.Option(
            "--mode", help="causal (live: refines the newest frame) or centred (offline: the window's centre).")
        ] = "causal",
        data: Annotated[str, typer.Option(
            "--data", help="'corpus' (real takes, VAL_TAKES held out) or a clip .npz / directory of clips.")
        ] = "corpus",
        val: Annotated[Path | None, typer.Option("--val", help="Validation clips (needed with a clip --data).")] = None,
        epochs: Annotated[int | None, typer.Option("--epochs", help="Epochs (7).")] = None,
        batch_size: Annotated[int | None, typer.Option("--batch-size", help="Windows per step (128).")] = None,
        lr: Annotated[float | None, typer.Option("--lr", help="Adam learning rate (1e-3).")] = None,
        lr_step: Annotated[int | None, typer.Option("--lr-step", help="StepLR period in epochs (3).")] = None,
        seed: Annotated[int | None, typer.Option("--seed", help="Seed of the loop (42).")] = None,
        device: Annotated[str | None, typer.Option("--device", help="cpu, cuda or auto.")] = None,
        threads: Annotated[int | None, typer.Option("--threads", help="torch threads (1).")] = None,
        window: Annotated[int | None, typer.Option(
            "--window", help="Frames per window (12 causal, 13 centred).")] = None,
        hidden: Annotated[int | None, typer.Option("--hidden", help="Channels C (16).")] = None,
        realizations: Annotated[int | None, typer.Option(
            "--realizations", help="Noisy augmented copies of every training sequence (6).")] = None,
        stride: Annotated[int | None, typer.Option("--stride", help="Frames between training windows (2).")] = None,
        all_frames_weight: Annotated[float | None, typer.Option(
            "--all-frames-weight", help="Weight of the every-frame loss (0.5).")] = None,
    ) -> None:
        """Train MKFF-ST-GCN on clean clips corrupted by the noise model; prints a JSON summary."""
        from training.mkff.task import train_mkff

        summary = train_mkff(
            out=out, mode=mode, data=data, val=val,
            train={"epochs": epochs, "batch_size": batch_size, "lr": lr, "lr_step": lr_step, "seed": seed,
                   "device": device, "num_threads": threads},
            model={"window": window, "hidden": hidden},
            task={"realizations": realizations, "stride": stride, "all_frames_weight": all_frames_weight},
        )
        typer.echo(json.dumps(summary))

    @groups.eval.command("mkff")
    def _eval_mkff(
        checkpoint: Annotated[list[Path], typer.Option(
            "--checkpoint", help="An mkff checkpoint (repeat for causal and centred).")],
        data: Annotated[str, typer.Option(
            "--data", help="'heldout' (the corpus's VAL_TAKES) or a clip .npz / directory of clips.")] = "heldout",
        seed: Annotated[int, typer.Option("--seed", help="Noise seed (same noisy input for every method).")] = 2024,
        threads: Annotated[int | None, typer.Option("--threads", help="torch threads.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    ) -> None:
        """PCK@0.2/0.1/0.05 (of the clean torso length) and MPJPE: raw, One Euro, offline DCT, MKFF."""
        from training.mkff.task import evaluate_mkff

        result = evaluate_mkff(checkpoint, data=data, seed=seed, threads=threads)
        if as_json:
            typer.echo(json.dumps(result))
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"keypoint refinement on {data} ({result['frames']} frames, seed {seed})")
        for col in ("method", "PCK@0.2", "PCK@0.1", "PCK@0.05", "MPJPE mm"):
            table.add_column(col)
        for name, m in result["methods"].items():
            table.add_row(name, *(f"{100 * m[k]:.1f}" for k in ("pck@0.2", "pck@0.1", "pck@0.05")),
                          f"{m['mpjpe_mm']:.1f}")
        Console().print(table)

    @groups.bench.command("mkff")
    def _bench_mkff(
        checkpoint: Annotated[Path, typer.Option("--checkpoint", help="An mkff checkpoint to export and time.")],
        runs: Annotated[int, typer.Option("--runs", min=1, help="Timed runs.")] = 2000,
        warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed runs first.")] = 200,
        threads: Annotated[int, typer.Option("--threads", min=1, help="ONNX Runtime intra-op threads.")] = 1,
    ) -> None:
        """Export the checkpoint to ONNX (validated) and time ONNX Runtime at batch 1 on the CPU (JSON)."""
        import tempfile
        import time

        import numpy as np
        import onnxruntime as ort

        from exporters.export import export_checkpoint
        from exporters.spec_mkff import MKFF

        with tempfile.TemporaryDirectory() as tmp:
            result = export_checkpoint(checkpoint, MKFF, tmp)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            session = ort.InferenceSession(str(result.onnx_path), opts, providers=["CPUExecutionProvider"])
            T = int(result.metadata.window_frames)
            onnx_bytes = result.onnx_path.stat().st_size
            x = np.random.default_rng(0).standard_normal((1, T, 36, 3)).astype(np.float32)
            for _ in range(warmup):
                session.run(None, {"window": x})
            times = np.empty(runs)
            for i in range(runs):
                t0 = time.perf_counter()
                session.run(None, {"window": x})
                times[i] = time.perf_counter() - t0
        ms = times * 1000.0
        typer.echo(json.dumps({
            "checkpoint": str(checkpoint), "mode": result.metadata.config.get("mode"), "window": T, "batch": 1,
            "threads": threads, "runs": runs, "median_ms": round(float(np.median(ms)), 4),
            "p10_ms": round(float(np.percentile(ms, 10)), 4), "p90_ms": round(float(np.percentile(ms, 90)), 4),
            "mean_ms": round(float(ms.mean()), 4), "onnx_bytes": onnx_bytes,
            "max_abs_diff_m": max(c.max_abs_diff for c in result.report.checks),
        }))
