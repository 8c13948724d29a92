"""``istrings convert``: recorded duets (BVH pairs, SMPL-29 arrays) → canonical clips."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stream.cli import Groups


def register(app: typer.Typer, groups: Groups) -> None:
    """Add ``istrings convert`` to the app."""

    @app.command("convert")
    def convert_command(
        inputs: Annotated[
            list[Path],
            typer.Argument(
                help="Two BVH files of one take (dancer 0 first, e.g. 60_01_scaled.bvh 61_01_scaled.bvh), "
                "one SMPL-29 duet .npy of shape (2F, 29, 3), or one raw capture recording (.isrec).",
                show_default=False,
            ),
        ],
        output: Annotated[Path, typer.Option("--output", "-o", help="Clip file to write (.npz).")],
        fps: Annotated[
            float | None,
            typer.Option(help="Frame rate of the clip (default: salsa 60, CMU as the file says, SMPL-29 30)."),
        ] = None,
        scale: Annotated[
            float | None,
            typer.Option(help="Metres per input unit (default: CMU 0.05644, salsa 1.2575, SMPL-29 1)."),
        ] = None,
        start_s: Annotated[float, typer.Option("--start-s", help="Seconds to skip at the start.")] = 0.0,
        duration_s: Annotated[
            float | None, typer.Option("--duration-s", help="Seconds to keep (default: to the end).")
        ] = None,
        repair: Annotated[
            bool, typer.Option(help="Repair single-frame root glitches in BVH input (logged, in provenance).")
        ] = True,
    ) -> None:
        """Convert a recorded duet into a canonical clip (both dancers, metres, y up, one frame)."""
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        from stream.convert import ConvertOptions, convert, is_recording, pelvis_distance

        if len(inputs) == 1 and is_recording(inputs[0]):
            # Raw capture sessions go through the paper's offline cleaning (inference.cleaning).
            from inference.cleaning import CleanerConfig
            from inference.commands_clean import clean_recording

            clips, summary = clean_recording(inputs[0], "offline", CleanerConfig(), fps=fps)
            rec_clip = clips["offline"]
            rec_path = rec_clip.save(output)
            typer.echo(
                f"{rec_path}: {rec_clip.num_frames} frames at {rec_clip.fps:g} fps ({rec_clip.duration_s:.2f} s), "
                f"cleaned offline (swaps corrected: {summary['offline'].get('swaps_corrected', 0)})"
            )
            return
        options = ConvertOptions(fps=fps, scale=scale, start_s=start_s, duration_s=duration_s, repair=repair)
        console = Console(stderr=True)
        with Progress(
            TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
            console=console, transient=True, disable=not console.is_terminal,
        ) as progress:
            task = progress.add_task("converting", total=1.0)

            def on_step(description: str, done: float) -> None:
                progress.update(task, description=description, completed=done)

            clip = convert(inputs, options, on_step)
            progress.update(task, description=f"writing {output.name}", completed=0.97)
            path = clip.save(output)
        dist = pelvis_distance(clip.joints)
        repaired = clip.provenance.get("repaired_frames", [])
        note = "; ".join(f"dancer {d} frames {frames}" for d, frames in enumerate(repaired) if frames)
        typer.echo(
            f"{path}: {clip.num_frames} frames at {clip.fps:g} fps ({clip.duration_s:.2f} s), "
            f"mean inter-dancer pelvis distance {dist.mean():.2f} m"
            + (f", repaired root glitches at file frames: {note}" if note else "")
        )
