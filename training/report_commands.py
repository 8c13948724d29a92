"""``istrings report INPUT --out DIR``: the rehearsal report (see :mod:`training.reports.build`).

Runs the models through ONNX Runtime; imports no torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from stream.cli import Groups

STAGES = ("capture", "strings", "forecasts", "figures", "video", "page")


def register(app: typer.Typer, groups: Groups) -> None:
    @app.command("report")
    def report(
        input_path: Annotated[Path, typer.Argument(
            metavar="INPUT", help="A canonical clip (.npz), a raw capture recording (.isrec) or a video file.")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Report folder (created; files in it are replaced).")],
        models: Annotated[Path | None, typer.Option(
            "--models", help="Directory of ONNX models (default: the bundled ones).")] = None,
        strings: Annotated[str, typer.Option(
            "--strings", help="echo (lagged correlation, the default), nri (the bundled NRI, as on stage) "
                              "or auto (nri.onnx when present, else echo).")] = "echo",
        device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or tensorrt.")] = "auto",
        azimuth: Annotated[float | None, typer.Option(
            "--azimuth", help="Video viewpoint: degrees about the vertical, 0 = from the front (looking along -z); "
            "default: from the side of the duet, following it as it turns.")] = None,
        elevation: Annotated[float, typer.Option(
            "--elevation", min=-90.0, max=90.0, help="Video viewpoint: degrees looking down.")] = 15.0,
        video_fps: Annotated[float | None, typer.Option(
            "--video-fps", help="Frame rate of the video (default: the session's, at most 30).")] = None,
        side_by_side: Annotated[bool, typer.Option(
            "--side-by-side/--no-side-by-side", help="Put the source video beside the skeletons (video input).",
        )] = True,
        hop_s: Annotated[float, typer.Option("--hop-s", help="Seconds between string estimates.")] = 0.25,
        echo_window_s: Annotated[float, typer.Option(
            "--echo-window-s", help="Window of the echo scores, seconds.")] = 5.0,
        threshold: Annotated[float, typer.Option("--threshold", help="Strong-string threshold (the seed: 0.8).")] = 0.8,
        top: Annotated[int, typer.Option("--top", help="Strings listed in the tables.")] = 10,
        as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
    ) -> None:
        """A rehearsal report: strings on the duet (video), over time, hubs, tension/release, forecast quality."""
        from rich.progress import Progress, TaskID

        from training.reports.build import ReportOptions, load_session, make_report

        options = ReportOptions(models=models, strings=strings, device=device, azimuth_deg=azimuth,
                                elevation_deg=elevation, video_fps=video_fps, side_by_side=side_by_side, hop_s=hop_s,
                                echo_window_s=echo_window_s, threshold=threshold, top=top)
        with Progress(transient=True) as progress:
            tasks: dict[str, TaskID] = {}

            def on_progress(stage: str, fraction: float) -> None:
                if stage not in tasks:
                    tasks[stage] = progress.add_task(stage, total=1.0)
                progress.update(tasks[stage], completed=fraction)

            session = load_session(input_path, on_progress)
            summary = make_report(session, out, options, on_progress)
        if as_json:
            typer.echo(json.dumps(summary))
        else:
            tops = ", ".join(f"{t['pair']} ({100 * t['time_share']:.0f} %)" for t in summary["top_strings"][:3])
            typer.echo(f"report written to {out / 'index.html'}: {summary['duration_s']:.1f} s, "
                       f"strings from {summary['strings']['source']}; top: {tops}", err=True)
