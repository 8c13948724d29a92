"""``istrings convert``: recorded duets (BVH pairs, SMPL-29 arrays, raw recordings) → canonical clips;
``istrings bench convert``: conversion time and the geometric checks on every shared BVH pair."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from stream.cli import Groups


def register(app: typer.Typer, groups: Groups) -> None:
    """Add ``istrings convert`` and ``istrings bench convert`` to the app."""
    _register_bench(groups)

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


# Every two-person pair shipped in ../shared/data/cmu-mocap: (name, dancer-0 file, dancer-1 file).
SHARED_PAIRS: tuple[tuple[str, str, str], ...] = (
    *((f"salsa_0{k}", f"salsa/60_0{k}_scaled.bvh", f"salsa/61_0{k}_scaled.bvh") for k in range(1, 6)),
    ("cmu_walk", "20_05.bvh", "21_05.bvh"),
    ("cmu_march", "20_07.bvh", "21_07.bvh"),
    ("cmu_squats", "22_14.bvh", "23_14.bvh"),
)
LIMB_BONES = ("hip", "knee", "ankle", "foot", "shoulder", "elbow", "wrist")


def bench_convert(data_dir: Path) -> dict[str, Any]:
    """Convert every shared pair; per take: seconds, frames, bone-length std (mm) of limb and torso
    bones, median and min pelvis-to-pelvis distance (m), lowest joint height (m, median)."""
    import numpy as np

    from stream.convert import convert, pelvis_distance
    from stream.skeleton import CANONICAL

    limb = np.array([CANONICAL.joint_names[c].split("_", 1)[-1] in LIMB_BONES for _, c in CANONICAL.bones])
    takes: dict[str, Any] = {}
    for name, f0, f1 in SHARED_PAIRS:
        t0 = time.perf_counter()
        clip = convert([data_dir / f0, data_dir / f1])
        seconds = time.perf_counter() - t0
        std_mm = CANONICAL.bone_lengths(clip.joints).std(axis=0) * 1000.0  # (D, J-1) mm
        dist = pelvis_distance(clip.joints)  # (T,) m
        takes[name] = {
            "seconds": round(seconds, 3),
            "frames": clip.num_frames,
            "fps": round(clip.fps, 3),
            "limb_bone_std_mm_max": float(std_mm[:, limb].max()),
            "torso_bone_std_mm_max": round(float(std_mm[:, ~limb].max()), 3),
            "pelvis_distance_m": {"median": round(float(np.median(dist)), 3), "min": round(float(dist.min()), 3)},
            "lowest_joint_y_m_median": round(float(np.median(clip.joints[..., 1].min(axis=(1, 2)))), 3),
        }
    return {"benchmark": "convert", "data": str(data_dir), "takes": takes}


def _register_bench(groups: Groups) -> None:
    @groups.bench.command("convert")
    def bench_convert_command(
        data: Annotated[
            Path, typer.Option(help="The shared cmu-mocap folder.", file_okay=False)
        ] = Path("../shared/data/cmu-mocap"),
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON (the only format).")] = True,
    ) -> None:
        """Convert every shared BVH pair and print times and geometric checks as one JSON object."""
        from stream.convert import ConvertError

        if not data.is_dir():
            raise ConvertError(f"no data folder at {data}; pass --data PATH/TO/shared/data/cmu-mocap")
        typer.echo(json.dumps(bench_convert(data)))
