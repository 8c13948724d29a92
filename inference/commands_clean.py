"""``istrings clean``: clean a raw capture recording offline, the paper's way and the live way.

A recording (:mod:`stream.recording`) holds the PoseFrames exactly as capture sent them. The
command turns them into canonical clips (:class:`stream.clip.Clip`):

* ``--method offline``: the first paper's pipeline (:func:`inference.cleaning.clean_offline`);
* ``--method online``: the live cleaner (:class:`inference.cleaning.OnlineCleaner`) run over the
  frames in order, exactly as the inference process would see them without skipping;
* ``--method both`` (default): both, written to ``OUT.offline.npz`` and ``OUT.online.npz``.

Both run on one timeline: the recording's PoseFrames of its first source, in order, with an
empty frame inserted for every sequence number that is missing (a message lost between
capture and recorder), so a lost frame is "nobody detected" to both pipelines. A comparison
line reports per pipeline the jitter (mean joint acceleration magnitude, m/s²), swaps
corrected and dancer-frames held.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stream.cli import Groups
from stream.errors import IStringsError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from inference.cleaning import CleanerConfig
    from stream.clip import Clip
    from stream.protocol import PoseFrame

log = logging.getLogger(__name__)

METHODS = ("online", "offline", "both")
MAX_FILL_FRAMES = 300
"""Longest run of missing sequence numbers filled with empty frames; a longer gap (a source
restart, a long pause) starts a new stretch without filling."""


class CleanCommandError(IStringsError, ValueError):
    """The input of ``istrings clean`` cannot be used (the message says why and what to do)."""


@dataclass(frozen=True)
class Timeline:
    """The frames both pipelines see, and what was done to get them.

    Attributes:
        frames: PoseFrames in order; ``None`` for a filled gap.
        t_ns: ``(T,)`` capture time of every frame, ns (interpolated for gaps).
        undecodable: records that are not PoseFrames.
        other_source: frames of a second source (ignored).
        duplicates: repeated sequence numbers (ignored).
        filled: empty frames inserted for missing sequence numbers.
    """

    frames: list[PoseFrame | None]
    t_ns: list[int]
    source_id: str
    undecodable: int
    other_source: int
    duplicates: int
    filled: int


def build_timeline(payloads: list[bytes]) -> Timeline:
    """Decode recorded messages into the frame timeline (see the module docstring).

    Raises:
        CleanCommandError: no record decodes as a PoseFrame.
    """
    from stream.protocol import ProtocolError, decode

    frames: list[PoseFrame | None] = []
    t_ns: list[int] = []
    undecodable = other = duplicates = filled = 0
    source: str | None = None
    last_seq = -1
    for payload in payloads:
        try:
            f = decode(payload)
        except ProtocolError as exc:
            if undecodable == 0:
                log.warning("skipping records that are not PoseFrames (first: %s)", exc)
            undecodable += 1
            continue
        if source is None:
            source = f.source_id
        if f.source_id != source:
            other += 1
            continue
        if frames and f.seq == last_seq:
            duplicates += 1
            continue
        gap = f.seq - last_seq - 1
        if frames and 0 < gap <= MAX_FILL_FRAMES:
            t_prev = t_ns[-1]
            for k in range(1, gap + 1):  # lost messages: nobody detected, time interpolated
                frames.append(None)
                t_ns.append(t_prev + (f.t_capture_ns - t_prev) * k // (gap + 1))
            filled += gap
        frames.append(f)
        t_ns.append(int(f.t_capture_ns))
        last_seq = f.seq
    if source is None:
        raise CleanCommandError(
            f"none of the {len(payloads)} records is a PoseFrame: is this a capture recording (istrings record)?"
        )
    return Timeline(frames, t_ns, source, undecodable, other, duplicates, filled)


def _monotonic_seconds(t_ns: list[int], fallback_dt: float) -> NDArray[np.float64]:
    """``(T,)`` seconds from the first frame, strictly increasing (a stamp that does not
    advance moves on by ``fallback_dt``; later stamps keep their spacing)."""
    import numpy as np

    t = (np.asarray(t_ns, dtype=np.int64) - t_ns[0]) * 1e-9
    out = np.empty_like(t)
    offset, last = 0.0, -np.inf
    for i, ti in enumerate(t):
        v = ti + offset
        if v <= last:
            offset += last + fallback_dt - v
            v = last + fallback_dt
        out[i] = last = v
    return out


def clean_timeline(
    timeline: Timeline, method: str, config: CleanerConfig, keep: float, fps: float | None, source: str
) -> tuple[dict[str, Clip], dict[str, dict[str, Any]]]:
    """Run the chosen pipelines; returns ``({method: clip}, {method: summary})``."""
    import numpy as np

    from inference.cleaning import OnlineCleaner, canonical_people, clean_offline, jitter
    from stream.clip import Clip
    from stream.skeleton import J

    T = len(timeline.frames)
    t_ns = timeline.t_ns
    dts = np.diff(np.asarray(t_ns, dtype=np.int64)) * 1e-9
    dts = dts[dts > 0]
    nominal = fps if fps is not None else (round(1.0 / float(np.median(dts)), 3) if dts.size else 30.0)
    t_s = _monotonic_seconds(t_ns, 1.0 / nominal)
    base = {"source": source, "source_id": timeline.source_id, "frames": T, "filled": timeline.filled,
            "undecodable": timeline.undecodable, "other_source": timeline.other_source,
            "duplicates": timeline.duplicates}
    clips: dict[str, Clip] = {}
    summary: dict[str, dict[str, Any]] = {}
    if method in ("offline", "both"):
        dets: list[tuple[NDArray[np.float64], NDArray[np.float64]]] = []  # per frame (joints (P, J, 3), scores (P,))
        for f in timeline.frames:
            if f is None:
                dets.append((np.zeros((0, J, 3)), np.zeros(0)))
            else:
                jo, _, sc = canonical_people(f)
                dets.append((jo, sc))
        res = clean_offline(dets, keep=keep)
        stats = {"jitter_mps2": jitter(res.joints, t_s, res.valid),
                 "jitter_raw_mps2": jitter(res.raw, t_s, res.valid), **res.counters}
        clips["offline"] = Clip(
            joints=res.joints, fps=nominal, timestamps=t_s, valid=res.valid,
            provenance={**base, "cleaning": "offline (paper)", "dct_keep": keep, "counters": res.counters},
        )
        summary["offline"] = stats
    if method in ("online", "both"):
        cleaner = OnlineCleaner(config)
        joints = np.zeros((T, 2, J, 3), dtype=np.float32)  # (T, D, J, 3) m
        present = np.zeros((T, 2), dtype=bool)
        for i, (f, ts) in enumerate(zip(timeline.frames, t_s, strict=True)):
            if f is None:
                out = cleaner.step_arrays(ts, np.zeros((0, J, 3)), np.zeros((0, J)), np.zeros(0))
            else:
                jo, vis, sc = canonical_people(f)
                out = cleaner.step_arrays(ts, jo, vis, sc, seq=f.seq)
            joints[i], present[i] = out.joints, out.present
        counters = cleaner.counters()
        summary["online"] = {"jitter_mps2": jitter(joints, t_s, present), **counters}
        clips["online"] = Clip(
            joints=joints, fps=nominal, timestamps=t_s, valid=present,
            provenance={**base, "cleaning": "online", "config": _config_dict(config), "counters": counters},
        )
    return clips, summary


def clean_recording(
    recording: Path, method: str, config: CleanerConfig, keep: float = 0.25, fps: float | None = None
) -> tuple[dict[str, Clip], dict[str, dict[str, Any]]]:
    """Read a raw capture recording (as far as it is readable) and clean it into clips.

    A damaged file gives one warning line on stderr and its readable records are used.

    Raises:
        CleanCommandError: the recording holds no readable record.
    """
    from stream.recording import read_recording

    rec = read_recording(recording, strict=False)
    if rec.damage is not None:
        typer.echo(f"warning: {recording}: {rec.damage.describe()}; using its {len(rec)} readable records", err=True)
    if not rec.records:
        raise CleanCommandError(f"{recording} holds no readable records")
    timeline = build_timeline([r.payload for r in rec.records])
    return clean_timeline(timeline, method, config, keep, fps, str(recording))


def _config_dict(config: CleanerConfig) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(config)


def output_paths(out: Path, method: str) -> dict[str, Path]:
    """Where each method's clip goes: ``OUT`` for one method, ``OUT.<method>.npz`` for both."""
    stem = out.with_suffix("") if out.suffix == ".npz" else out
    if method == "both":
        return {m: stem.with_name(f"{stem.name}.{m}.npz") for m in ("offline", "online")}
    return {method: stem.with_name(stem.name + ".npz")}


def comparison_line(summary: dict[str, dict[str, Any]]) -> str:
    """``online: jitter 1.23 m/s², swaps corrected 4, frames held 12 | offline: …``."""
    parts = []
    for m in ("online", "offline"):
        if m in summary:
            s = summary[m]
            parts.append(f"{m}: jitter {s['jitter_mps2']:.3f} m/s², swaps corrected {s['swaps_corrected']}, "
                         f"frames held {s['frames_held']}")
    if "offline" in summary:
        raw = summary["offline"]["jitter_raw_mps2"]
        parts.append(f"unsmoothed (the paper's rules before its DCT): jitter {raw:.3f} m/s²")
    return " | ".join(parts)


def register(app: typer.Typer, groups: Groups) -> None:
    """Add ``istrings clean``."""

    @app.command("clean")
    def clean(
        recording: Annotated[Path, typer.Argument(help="A raw capture recording (.isrec, from `istrings record`).")],
        output: Annotated[Path, typer.Option("--output", "-o", help="Output clip (.npz); with --method both, "
                                             "OUT.offline.npz and OUT.online.npz.")],
        method: Annotated[str, typer.Option(help="online (the live cleaner), offline (the paper's pipeline) "
                                            "or both.")] = "both",
        fps: Annotated[float | None, typer.Option(help="Nominal frame rate of the output clips (Hz); "
                                                  "default: from the median capture interval.")] = None,
        smoothing: Annotated[str, typer.Option(help="Online smoothing: one_euro, dct or none.")] = "one_euro",
        hold_s: Annotated[float, typer.Option(help="Online: seconds a missing dancer or joint is held before "
                                              "it is dropped.")] = 0.5,
        min_cutoff_hz: Annotated[float, typer.Option(help="Online One Euro cutoff at rest (Hz).")] = 1.0,
        beta: Annotated[float, typer.Option(help="Online One Euro cutoff increase per m/s of speed (Hz·s/m).")] = 4.0,
        keep: Annotated[float, typer.Option(help="Offline: fraction of the lowest DCT frequencies kept "
                                            "(the paper: 0.25).")] = 0.25,
        as_json: Annotated[bool, typer.Option("--json", help="Also print the full summary as JSON.")] = False,
    ) -> None:
        """Clean a capture recording into canonical clips and compare the paper's offline
        pipeline with the live cleaner (jitter, swaps corrected, frames held)."""
        from inference.cleaning import CleanerConfig
        from inference.tracking import TrackerConfig

        if method not in METHODS:
            raise CleanCommandError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
        if fps is not None and not fps > 0:
            raise CleanCommandError(f"--fps must be positive, got {fps}")
        if not 0 < keep <= 1:
            raise CleanCommandError(f"--keep must be in (0, 1], got {keep}")
        config = CleanerConfig(
            tracking=TrackerConfig(hold_s=hold_s), smoothing=smoothing,  # type: ignore[arg-type]
            min_cutoff_hz=min_cutoff_hz, beta=beta, fallback_dt_s=1.0 / fps if fps else 1.0 / 30.0,
        )
        clips, summary = clean_recording(recording, method, config, keep, fps)
        for m, path in output_paths(output, method).items():
            clips[m].save(path)
            typer.echo(f"{m}: {clips[m].num_frames} frames → {path}")
        typer.echo(comparison_line(summary))
        if as_json:
            typer.echo(json.dumps(summary, sort_keys=True))
