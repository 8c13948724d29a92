"""``istrings simulate springs|charged``, ``istrings train nri``, ``istrings eval nri``.

Heavy imports (torch, numpy, training.*) happen inside the command bodies.
``train nri`` trains the original NRI on particle data (a ``.npz`` from ``istrings simulate`` or a
directory of NRI's ``.npy`` files); duet clips go to ``training.duet_nri.train_duet`` when that
module exists.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from stream.cli import Groups
from stream.errors import IStringsError

log = logging.getLogger(__name__)


def _is_particle_data(path: Path) -> bool:
    """True for a particle ``.npz`` (loc/vel/edges arrays) or a directory of NRI ``.npy`` files."""
    import numpy as np

    if path.is_dir():
        return (path / "loc_train.npy").is_file() or any(path.glob("loc_*.npy"))
    if path.suffix != ".npz" or not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as z:
            return {"loc", "vel", "edges"} <= set(z.files)
    except (OSError, ValueError):
        return False


def _simulate(kind: str, sims: int, balls: int, seed: int, out: Path, length: int, sample_freq: int,
              chunk: int) -> None:
    import time

    from rich.progress import Progress

    from training.simulate import save_particles, simulate

    t0 = time.perf_counter()
    with Progress(transient=True) as progress:
        bar = progress.add_task(f"{kind} {balls} balls", total=sims)
        data = simulate(kind, sims, balls, seed=seed, length=length, sample_freq=sample_freq,  # type: ignore[arg-type]
                        chunk=chunk, progress=lambda done: progress.update(bar, completed=done))
    save_particles(out, data, seed=seed, length=length, sample_freq=sample_freq)
    typer.echo(json.dumps({"path": str(out), "sim": kind, "sims": sims, "balls": balls,
                           "timesteps": data.num_timesteps, "seed": seed, "data_id": data.data_id(),
                           "wall_s": round(time.perf_counter() - t0, 2)}))


def _register_simulation(groups: Groups, kind: str, doc: str) -> None:
    """``istrings simulate KIND``: one command per particle system, the same options."""

    def command(
        out: Annotated[Path, typer.Option("--out", "-o", help="Output .npz (loc, vel, edges).")],
        sims: Annotated[int, typer.Option("--sims", help="Number of simulations S.")] = 1000,
        balls: Annotated[int, typer.Option("--balls", help="Number of balls N.")] = 5,
        seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
        length: Annotated[int, typer.Option("--length", help="Integration steps (dt = 0.001).")] = 5000,
        sample_freq: Annotated[int, typer.Option("--sample-freq", help="Steps between saved frames.")] = 100,
        chunk: Annotated[int, typer.Option("--chunk", help="Simulations integrated together.")] = 2000,
    ) -> None:
        _simulate(kind, sims, balls, seed, out, length, sample_freq, chunk)

    command.__doc__ = doc
    groups.simulate.command(kind)(command)


def register(app: typer.Typer, groups: Groups) -> None:
    """Add the particle simulation, NRI training and NRI evaluation commands."""

    for kind, doc in (
        ("springs", "Simulate NRI's springs (p = 0.5, k = 0.1); T = length / sample_freq - 1 frames (49)."),
        ("charged", "Simulate NRI's charged particles (q = ±1, p = 0.5); T = length / sample_freq - 1 frames (49)."),
    ):
        _register_simulation(groups, kind, doc)

    @groups.train.command("nri")
    def _train_nri(
        data: Annotated[Path, typer.Option(
            "--data", help="Particle .npz / NRI .npy directory, or duet clips (clip file, directory, synthetic:S).")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Run directory (metrics, plots, checkpoints).")],
        val: Annotated[Path | None, typer.Option("--val", help="Validation data (same kind as --data).")] = None,
        config: Annotated[Path | None, typer.Option(
            "--config", help="TOML with \\[train], \\[model] and \\[task] tables (options given here win).")] = None,
        epochs: Annotated[int | None, typer.Option("--epochs", help="Epochs (default 10).")] = None,
        batch_size: Annotated[int | None, typer.Option("--batch-size", help="Batch size per process (128).")] = None,
        lr: Annotated[float | None, typer.Option("--lr", help="Adam learning rate (5e-4).")] = None,
        lr_step: Annotated[int | None, typer.Option("--lr-step", help="StepLR period in epochs (200).")] = None,
        lr_gamma: Annotated[float | None, typer.Option("--lr-gamma", help="StepLR factor (0.5).")] = None,
        seed: Annotated[int | None, typer.Option("--seed", help="Random seed (42).")] = None,
        device: Annotated[str | None, typer.Option("--device", help="cpu, cuda or auto.")] = None,
        threads: Annotated[int | None, typer.Option("--threads", help="torch threads per process.")] = None,
        max_sims: Annotated[int | None, typer.Option("--max-sims", help="Use only the first S training sims.")] = None,
        encoder_hidden: Annotated[int | None, typer.Option("--encoder-hidden", help="Encoder width (256).")] = None,
        decoder_hidden: Annotated[int | None, typer.Option("--decoder-hidden", help="Decoder width (256).")] = None,
        edge_types: Annotated[int | None, typer.Option("--edge-types", help="Edge types K (2).")] = None,
        decoder: Annotated[str | None, typer.Option("--decoder", help="mlp or rnn.")] = None,
        skip_first: Annotated[bool | None, typer.Option(
            "--skip-first/--no-skip-first", help="Edge type 0 sends no message.")] = None,
        prior: Annotated[str | None, typer.Option(
            "--prior", help="uniform (NRI), seed (the seed's prior for K) or comma-separated probabilities.")] = None,
        tau: Annotated[float | None, typer.Option("--tau", help="Gumbel-softmax temperature (0.5).")] = None,
        hard: Annotated[bool | None, typer.Option("--hard/--soft", help="Straight-through hard samples.")] = None,
        prediction_steps: Annotated[int | None, typer.Option(
            "--prediction-steps", help="Teacher forcing period (10).")] = None,
        init: Annotated[Path | None, typer.Option(
            "--init", help="Start from this checkpoint's weights (same model config; particle data).")] = None,
    ) -> None:
        """Train NRI on particle simulations (or, when available, a duet variant on clips)."""
        if not _is_particle_data(data):
            _train_duet_dispatch(data, out, val, config, epochs)
            return
        from training.nri.task import train_particles

        summary = train_particles(
            data=data, out=out, val=val, config=config, max_sims=max_sims,
            train={"epochs": epochs, "batch_size": batch_size, "lr": lr, "lr_step": lr_step,
                   "lr_gamma": lr_gamma, "seed": seed, "device": device, "num_threads": threads},
            model={"encoder_hidden": encoder_hidden, "decoder_hidden": decoder_hidden,
                   "edge_types": edge_types, "decoder": decoder, "skip_first": skip_first},
            task={"tau": tau, "hard": hard, "prediction_steps": prediction_steps}, prior=prior, init=init,
        )
        if int(os.environ.get("RANK", "0")) == 0:
            typer.echo(json.dumps(summary))

    @groups.eval.command("nri")
    def _eval_nri(
        checkpoint: Annotated[Path, typer.Option("--checkpoint", help="Checkpoint from `istrings train nri`.")],
        data: Annotated[Path, typer.Option(
            "--data", help="Particle .npz, NRI .npy directory, or duet clips (see `train nri`).")],
        split: Annotated[str, typer.Option("--split", help="Split of an NRI .npy directory.")] = "test",
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
        batch_size: Annotated[int, typer.Option("--batch-size", help="Simulations per batch.")] = 256,
        prediction_steps: Annotated[int, typer.Option("--prediction-steps", help="Horizon of mse_<p>.")] = 10,
        device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
        threads: Annotated[int | None, typer.Option("--threads", help="torch threads.")] = None,
    ) -> None:
        """Edge accuracy, AUROC and 1/10-step reconstruction MSE of a trained NRI (particles or duet clips)."""
        import importlib
        import importlib.util

        import torch

        from training.checkpoint import CheckpointError, load_checkpoint
        from training.nri.mlp import NRI
        from training.nri.task import Normalizer, evaluate_particles
        from training.simulate import load_particles

        if threads:
            torch.set_num_threads(threads)
        if not _is_particle_data(data) and importlib.util.find_spec("training.duet_nri") is not None:
            duet: Any = importlib.import_module("training.duet_nri")
            typer.echo(duet.summary_json(duet.evaluate_duet(checkpoint, data, horizon=prediction_steps,
                                                            batch_size=batch_size)))
            return
        ckpt = load_checkpoint(checkpoint)
        if ckpt.model_name != "nri_mlp" or "normalizer" not in ckpt.extra:
            raise CheckpointError(f"{checkpoint} holds {ckpt.model_name!r}, not a particle NRI checkpoint")
        model = ckpt.build_model()
        if not isinstance(model, NRI):
            raise CheckpointError(f"{checkpoint} did not rebuild an NRI model")
        norm = Normalizer(**{k: float(v) for k, v in ckpt.extra["normalizer"].items()})
        result = evaluate_particles(model, norm, load_particles(data, split), prediction_steps=prediction_steps,
                                    batch_size=batch_size, device=device)
        result = {"checkpoint": str(checkpoint), "data": str(data), **result}
        if as_json:
            typer.echo(json.dumps(result))
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"NRI on {data}")
        table.add_column("metric")
        table.add_column("value")
        for k, v in result.items():
            table.add_row(k, f"{v:.6g}" if isinstance(v, float) else str(v))
        Console().print(table)


def _train_duet_dispatch(data: Path, out: Path, val: Path | None, config: Path | None, epochs: int | None) -> None:
    """Send non-particle data (duet clips) to ``training.duet_nri.train_duet`` if it exists."""
    import importlib
    import importlib.util

    if importlib.util.find_spec("training.duet_nri") is None:
        raise IStringsError(
            f"{data} is not particle data (a .npz with loc, vel, edges, or a directory of NRI .npy files); "
            "training on duet clips needs training.duet_nri, which is not installed in this version"
        )
    module: Any = importlib.import_module("training.duet_nri")
    summary = module.train_duet(data=data, out=out, val=val, config=config, epochs=epochs)
    if summary is not None and int(os.environ.get("RANK", "0")) == 0:
        typer.echo(json.dumps(summary, default=str))
