"""``istrings export``: checkpoints → validated ONNX models with metadata and model cards.

Only the model kinds whose training code exists are offered (see :mod:`exporters.registry`);
torch and the training stack are imported inside the command body, never at start-up.

The module has no ``from __future__ import annotations``: typer evaluates the command's
annotations, and the kind choices are an enum built when the command is registered.
"""

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from exporters.registry import available_kinds
from stream.cli import Groups

if TYPE_CHECKING:
    from exporters.validate import ValidationReport

ALL = "all"


def _table(reports: "list[tuple[str, ValidationReport]]") -> None:
    import math

    from rich.console import Console
    from rich.table import Table

    from exporters.validate import format_sizes

    table = Table(title="ONNX export validation (ONNX Runtime vs torch)")
    for col in ("model", "sizes", "output", "shape", "max |onnx - torch|", "tolerance", "result"):
        table.add_column(col, justify="right" if col.startswith("max") else "left")
    for kind, report in reports:
        for c in report.checks:
            diff = "n/a" if math.isnan(c.max_abs_diff) else f"{c.max_abs_diff:.2e}"
            sizes = format_sizes(c.sizes) + ("" if c.case == "random" else f" {c.case}")
            table.add_row(kind, sizes, c.output, str(c.shape), diff,
                          f"atol {report.atol:g} + rtol {report.rtol:g}", "ok" if c.ok else "FAIL")
    Console().print(table)
    for kind, report in reports:
        for f in report.failures:
            Console(stderr=True).print(f"[red]{kind}: {f}[/red]")


def _register_bench(groups: Groups) -> None:
    """Add ``istrings bench models``: every bundled ONNX model vs its checkpoint in torch eager."""

    @groups.bench.command("models")
    def bench_models(
        models: Annotated[Path | None, typer.Option(
            "--models", help="Folder of the .onnx models (default: the bundled inference/models).")] = None,
        checkpoints: Annotated[Path | None, typer.Option(
            "--checkpoints", help="Folder searched for each model's checkpoint (default: training/checkpoints).",
        )] = None,
        checkpoint: Annotated[list[str] | None, typer.Option(
            "--checkpoint", "-c", help="KIND=PATH: the checkpoint of one model, instead of searching (repeatable).",
        )] = None,
        runs: Annotated[int, typer.Option("--runs", min=1, help="Timed calls per model and runtime.")] = 2000,
        block: Annotated[int, typer.Option(
            "--block", min=1, help="Frames each runtime runs before the other takes its turn.")] = 100,
        warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed calls per model and runtime first.")] = 50,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the dummy input (the spec's generator).")] = 0,
        as_json: Annotated[bool, typer.Option("--json", help="One line of JSON (default: indented).")] = False,
    ) -> None:
        """Batch-1 latency of each bundled model: ONNX Runtime (CPU, 1 thread) vs torch eager, and the live total."""
        import json

        from exporters.bench import bench_models as run
        from exporters.bench import parse_overrides

        result = run(models, checkpoints_dir=checkpoints, overrides=parse_overrides(checkpoint or []),
                     runs=runs, warmup=warmup, seed=seed, block=block)
        typer.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))


def register(app: typer.Typer, groups: Groups) -> None:
    """Add ``istrings export`` when at least one model kind can be exported."""
    kinds = available_kinds()
    if not kinds:
        return
    _register_bench(groups)
    Kind = enum.Enum("Kind", {k: k for k in (*kinds, ALL)}, type=str)  # type: ignore[misc]

    @app.command("export")
    def export(
        kind: Annotated[Kind, typer.Argument(help=f"Model kind to export ({', '.join(kinds)}), or 'all'.")],
        checkpoint: Annotated[
            list[Path],
            typer.Option("--checkpoint", "-c", help="Checkpoint (.pt) to export; repeat once per kind with 'all'."),
        ],
        out: Annotated[Path, typer.Option("--out", "-o", help="Directory for NAME.onnx and its model card NAME.json.")],
        fps: Annotated[
            float | None,
            typer.Option("--fps", help="Frame rate (Hz) of the training clips, if the checkpoint does not store it."),
        ] = None,
    ) -> None:
        """Export checkpoints to ONNX, validate them against ONNX Runtime at several shapes, write metadata."""
        from exporters.export import export_checkpoint
        from exporters.registry import get_spec, spec_for_model
        from exporters.spec import ExportError
        from exporters.validate import ExportValidationError
        from training.checkpoint import load_checkpoint

        name = kind.value
        if name != ALL and len(checkpoint) != 1:
            raise ExportError(f"`istrings export {name}` takes one --checkpoint, got {len(checkpoint)}")
        jobs = []
        for ckpt in checkpoint:
            spec = get_spec(name) if name != ALL else spec_for_model(load_checkpoint(ckpt).model_name)
            jobs.append((spec, ckpt))
        if name == ALL:
            missing = sorted(set(kinds) - {s.name for s, _ in jobs})
            twice = sorted({s.name for s, _ in jobs if [j[0].name for j in jobs].count(s.name) > 1})
            problems = ([f"missing {', '.join(missing)}"] if missing else []) + (
                [f"more than one for {', '.join(twice)}"] if twice else [])
            if problems:
                raise ExportError("`istrings export all` needs one checkpoint per kind: " + "; ".join(problems))
        reports: list[tuple[str, ValidationReport]] = []
        try:
            for spec, ckpt in jobs:
                result = export_checkpoint(ckpt, spec, out, fps=fps)
                reports.append((spec.name, result.report))
                typer.echo(f"{spec.name}: wrote {result.onnx_path} ({result.onnx_path.stat().st_size / 1024:.0f} KiB) "
                           f"and {result.card_path}")
        except ExportValidationError as exc:
            _table([*reports, (exc.report.spec_name, exc.report)])
            raise
        _table(reports)
