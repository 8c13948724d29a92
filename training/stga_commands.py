"""``istrings train stga``, ``istrings eval stga``, ``istrings bench stga``: STGA-Net pose forecasting.

Heavy imports (torch, training.*, onnxruntime) happen inside the command bodies.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from stream.cli import Groups


def register(app: typer.Typer, groups: Groups) -> None:
    """Add the STGA-Net training, evaluation and latency commands."""

    @groups.train.command("stga")
    def _train_stga(
        out: Annotated[Path, typer.Option("--out", "-o", help="Run directory (metrics, plots, checkpoints).")],
        data: Annotated[str | None, typer.Option(
            "--data", help="corpus (default: the real takes minus the held-out ones), take names, "
                           "synthetic:S, a clip .npz or a directory of clips.")] = None,
        val: Annotated[str | None, typer.Option(
            "--val", help="Validation data (same forms); default the held-out takes with the corpus.")] = None,
        config: Annotated[Path | None, typer.Option(
            "--config", help="TOML with \\[model], \\[task] and \\[train] tables (options given here win).")] = None,
        epochs: Annotated[int | None, typer.Option("--epochs", help="Epochs (40).")] = None,
        batch_size: Annotated[int | None, typer.Option("--batch-size", help="Windows per step (64).")] = None,
        lr: Annotated[float | None, typer.Option("--lr", help="Adam learning rate (1e-3).")] = None,
        lr_step: Annotated[int | None, typer.Option("--lr-step", help="StepLR period in epochs (12).")] = None,
        weight_decay: Annotated[float | None, typer.Option("--weight-decay", help="Adam weight decay (1e-4).")] = None,
        seed: Annotated[int | None, typer.Option("--seed", help="Random seed (42).")] = None,
        device: Annotated[str | None, typer.Option("--device", help="cpu, cuda or auto.")] = None,
        threads: Annotated[int | None, typer.Option("--threads", help="torch threads (2).")] = None,
        past_frames: Annotated[int | None, typer.Option("--past-frames", help="Observed frames T (10).")] = None,
        hidden: Annotated[int | None, typer.Option("--hidden", help="Channels per node C (32).")] = None,
        dropout: Annotated[float | None, typer.Option("--dropout", help="Dropout before the decoder (0.1).")] = None,
        synthetic: Annotated[int | None, typer.Option(
            "--synthetic", help="Synthetic duets (20 s each) added to the training data (0).")] = None,
        stride: Annotated[int | None, typer.Option("--stride", help="Frames between training windows (1).")] = None,
        swap_p: Annotated[float | None, typer.Option(
            "--swap-p", help="Probability of swapping the dancers in a training window (0.5).")] = None,
        mirror_p: Annotated[float | None, typer.Option(
            "--mirror-p", help="Probability of a left/right mirrored training window (0.5).")] = None,
        horizon_weights: Annotated[str | None, typer.Option(
            "--horizon-weights", help="Comma-separated loss weight per horizon (all 1).")] = None,
        init: Annotated[Path | None, typer.Option(
            "--init", help="Start from this STGA-Net checkpoint (same model settings).")] = None,
    ) -> None:
        """Train STGA-Net to forecast both dancers (80 ms … 1 s ahead); prints a JSON summary."""
        from training.stga.task import train_stga

        weights = None
        if horizon_weights is not None:
            try:
                weights = tuple(float(w) for w in horizon_weights.split(","))
            except ValueError:
                raise typer.BadParameter(f"not comma-separated numbers: {horizon_weights!r}",
                                         param_hint="--horizon-weights") from None
        summary = train_stga(
            out=out, data=data, val=val, config=config, init=init,
            model={"past_frames": past_frames, "hidden": hidden, "dropout": dropout},
            train={"epochs": epochs, "batch_size": batch_size, "lr": lr, "lr_step": lr_step,
                   "weight_decay": weight_decay, "seed": seed, "device": device, "num_threads": threads},
            task={"synthetic": synthetic, "stride": stride, "swap_p": swap_p, "mirror_p": mirror_p,
                  "horizon_weights": weights},
        )
        if int(os.environ.get("RANK", "0")) == 0:
            typer.echo(json.dumps(summary))

    @groups.eval.command("stga")
    def _eval_stga(
        checkpoint: Annotated[Path, typer.Option("--checkpoint", help="Checkpoint from `istrings train stga`.")],
        data: Annotated[str, typer.Option(
            "--data", help="A clip .npz, a directory of clips, take names, or heldout (the held-out real takes).")
        ] = "heldout",
        stride: Annotated[int, typer.Option("--stride", min=1, help="Frames between evaluated windows.")] = 1,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
        threads: Annotated[int, typer.Option("--threads", min=1, help="torch threads.")] = 1,
        gate_tau: Annotated[float, typer.Option(
            "--gate-tau-s", min=0.001, help="Forgetting time of the online forecast gate, seconds (as `infer`).")]
        = 3.0,
    ) -> None:
        """MPJPE and MAE (mm) per horizon: STGA-Net, STGA-Net behind the online gate (what `infer`
        sends), zero- and constant-velocity, on the same windows."""
        import torch

        from stream.forecast_gate import GateConfig
        from training.stga.task import evaluate_stga

        torch.set_num_threads(threads)
        report = evaluate_stga(checkpoint, data, stride=stride, gate=GateConfig(tau_s=gate_tau))
        if as_json:
            typer.echo(json.dumps(report))
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"STGA-Net on {data}: {report['windows']} windows of {', '.join(report['takes'])}")
        table.add_column("horizon")
        names = ("model", "gated", "zero_velocity", "constant_velocity")
        for name in names:
            table.add_column(f"{name} MPJPE / MAE (mm)")
        for k, (h, f) in enumerate(zip(report["horizons_ms"], report["frames"], strict=True)):
            table.add_row(f"{h:g} ms ({f} fr)", *(f"{report[n]['mpjpe_mm'][k]:.1f} / {report[n]['mae_mm'][k]:.1f}"
                                                 for n in names))
        console = Console()
        console.print(table)
        if len(report["per_take"]) > 1:
            takes = Table(title="per take: MPJPE (mm), and against the better of zero and constant velocity")
            takes.add_column("take (windows)")
            takes.add_column("forecaster")
            for h in report["horizons_ms"]:
                takes.add_column(f"{h:g} ms")
            for take, r in report["per_take"].items():
                best = [min(z, c) for z, c in zip(r["zero_velocity"], r["constant_velocity"], strict=True)]
                for n in ("model", "gated"):
                    takes.add_row(f"{take} ({r['windows']})" if n == "model" else "", n,
                                  *(f"{e:.1f} ({100 * (e / b - 1):+.0f} %)" for e, b in zip(r[n], best, strict=True)))
            console.print(takes)

    @groups.bench.command("stga")
    def _bench_stga(
        checkpoint: Annotated[Path, typer.Option("--checkpoint", help="STGA-Net checkpoint to export and time.")],
        runs: Annotated[int, typer.Option("--runs", min=1, help="Timed runs.")] = 2000,
        warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed runs first.")] = 100,
        threads: Annotated[int, typer.Option("--threads", min=1, help="ONNX Runtime intra-op threads.")] = 1,
    ) -> None:
        """Latency of the exported STGA-Net at batch 1 on ONNX Runtime (CPU); prints one JSON object."""
        from training.stga.bench import bench_onnx

        typer.echo(json.dumps(bench_onnx(checkpoint, runs=runs, warmup=warmup, threads=threads)))
