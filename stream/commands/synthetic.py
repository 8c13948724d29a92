"""``istrings simulate duet`` (a synthetic duet clip with planted strings) and ``istrings bench synthetic``.

Out-of-range values are refused by :class:`stream.synthetic.SyntheticConfig` with a
:class:`stream.synthetic.SyntheticError`: one error line, exit code 2.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from stream.cli import Groups


def parse_string(text: str) -> tuple[int, int]:
    """``"DRIVER:DRIVEN"`` (canonical joint names or indices, e.g. ``l_wrist:r_wrist`` or ``6:9``) → ``(i, j)``.

    Raises:
        SyntheticError: not two joints separated by a colon.
    """
    from stream.skeleton import CANONICAL, SkeletonError
    from stream.synthetic import SyntheticError

    parts = text.split(":")
    if len(parts) != 2:
        raise SyntheticError(f"--string {text!r}: write DRIVER:DRIVEN, e.g. l_wrist:r_wrist or 6:9")
    out: list[int] = []
    for part in parts:
        part = part.strip()
        if part.isdigit() and int(part) < CANONICAL.num_joints:
            out.append(int(part))
            continue
        try:
            out.append(CANONICAL.index(part))
        except SkeletonError as exc:
            raise SyntheticError(f"--string {text!r}: {exc}") from exc
    return out[0], out[1]


def register(app: typer.Typer, groups: Groups) -> None:
    """Add ``simulate duet`` and ``bench synthetic``."""

    @groups.simulate.command("duet")
    def duet(
        output: Annotated[Path, typer.Option("--output", "-o", help="Clip file to write (.npz).")],
        duration_s: Annotated[float, typer.Option("--duration-s", help="Clip length, seconds.")] = 30.0,
        fps: Annotated[float, typer.Option("--fps", help="Frames per second.")] = 30.0,
        strings: Annotated[
            int, typer.Option("--strings", help="Number of random strings (dancer-0 joint drives dancer-1 joint).")
        ] = 4,
        string: Annotated[
            list[str] | None,
            typer.Option(
                "--string",
                help="An explicit string DRIVER:DRIVEN (joint names or indices, e.g. l_wrist:r_wrist); "
                "repeat for several; replaces --strings.",
            ),
        ] = None,
        lag_s: Annotated[float, typer.Option("--lag-s", help="Delay of the strings, seconds (whole frames).")] = 0.2,
        strength: Annotated[float, typer.Option("--strength", help="Blend weight of every string, in (0, 1].")] = 0.9,
        seed: Annotated[int, typer.Option("--seed", help="Random seed (bodies, motion, strings).")] = 0,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing file.")] = False,
    ) -> None:
        """Write a synthetic duet clip with planted strings (the ground truth is saved in the clip)."""
        import numpy as np

        from stream.skeleton import CANONICAL
        from stream.synthetic import SyntheticConfig, SyntheticError, generate_clip

        explicit = tuple(parse_string(s) for s in string) if string else None
        cfg = SyntheticConfig(
            duration_s=duration_s, fps=fps, num_strings=strings, strings=explicit, lag_s=lag_s,
            strength=strength, seed=seed,
        )
        target = output if output.suffix == ".npz" else output.with_name(output.name + ".npz")
        if target.exists() and not overwrite:
            raise SyntheticError(f"{target} exists; pass --overwrite to replace it")
        clip = generate_clip(cfg)
        path = clip.save(target)
        edges = clip.edges if clip.edges is not None else np.zeros((CANONICAL.num_joints,) * 2)
        pairs = [(int(i), int(j)) for i, j in zip(*edges.nonzero(), strict=True)]
        names = ", ".join(f"{CANONICAL.joint_names[i]}->{CANONICAL.joint_names[j]}" for i, j in pairs) or "none"
        typer.echo(
            f"wrote {path}: {clip.num_frames} frames at {clip.fps:g} fps ({clip.duration_s:.2f} s), "
            f"{len(pairs)} strings ({names}), lag {clip.edge_lag} frames ({clip.edge_lag / clip.fps:.3f} s), "
            f"strength {cfg.strength:g}, seed {cfg.seed}, data id {clip.data_id}"
        )

    @groups.bench.command("synthetic")
    def bench_synthetic(
        clip_s: Annotated[float, typer.Option("--clip-s", help="Length of the single clip timed, seconds.")] = 300.0,
        clips: Annotated[int, typer.Option("--clips", help="Clips in the training batch timed.")] = 2000,
        frames: Annotated[int, typer.Option("--frames", help="Frames per training clip.")] = 50,
        stream_frames: Annotated[
            int, typer.Option("--stream-frames", help="Frames pulled one by one from the live stream.")
        ] = 3000,
        fps: Annotated[float, typer.Option("--fps", help="Frames per second.")] = 30.0,
    ) -> None:
        """Time synthetic generation (one long clip, a training batch, the live stream); prints JSON."""
        from stream.synthetic import SyntheticConfig, SyntheticError, SyntheticStream, generate_clip, make_dataset

        if clips < 1 or frames < 1 or stream_frames < 1:
            raise SyntheticError("--clips, --frames and --stream-frames must be at least 1")
        cfg = SyntheticConfig(duration_s=clip_s, fps=fps)
        t0 = time.perf_counter()
        clip = generate_clip(cfg)
        t_clip = time.perf_counter() - t0
        t0 = time.perf_counter()
        make_dataset(clips, frames, fps=fps)
        t_data = time.perf_counter() - t0
        stream = SyntheticStream(cfg)
        t0 = time.perf_counter()
        for _ in range(stream_frames):
            next(stream)
        t_stream = time.perf_counter() - t0
        typer.echo(json.dumps({
            "clip_frames": clip.num_frames,
            "clip_frames_per_s": round(clip.num_frames / t_clip, 1),
            "dataset_clips": clips,
            "dataset_frames_per_clip": frames,
            "dataset_frames_per_s": round(clips * frames / t_data, 1),
            "stream_frames": stream_frames,
            "stream_frames_per_s": round(stream_frames / t_stream, 1),
            "fps": fps,
            "note": "a frame is both dancers' 18 joints",
        }))
