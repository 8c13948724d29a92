"""``istrings bench train``: training throughput of the duet NRI (prints one JSON object).

``istrings train nri`` / ``istrings eval nri`` live in :mod:`training.commands` and send clip
data to :func:`training.duet_nri.train_duet` / :func:`training.duet_nri.evaluate_duet`.
Heavy imports happen inside the command body.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from stream.cli import Groups


def register(app: typer.Typer, groups: Groups) -> None:
    @groups.bench.command("train")
    def _bench_train(
        steps: Annotated[int, typer.Option("--steps", min=1, help="Timed training steps per configuration.")] = 20,
        warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed warm-up steps first.")] = 3,
        batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Windows per training step.")] = 128,
        threads: Annotated[int, typer.Option("--threads", min=1, help="torch intra-op threads.")] = 2,
        sample_seed: Annotated[int, typer.Option(
            "--sample-seed", help="Seed of the seed configuration's 3 random joints per dancer.")] = 0,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (the default output).")] = True,
    ) -> None:
        """Windows/s of duet-NRI training: the seed's configuration (6 joints) and all 648 joint pairs."""
        from training.bench import BenchConfig, bench_train

        result = bench_train(BenchConfig(steps=steps, warmup=warmup, batch_size=batch_size, threads=threads,
                                         sample_seed=sample_seed))
        typer.echo(json.dumps(result) if as_json else json.dumps(result, indent=1))
