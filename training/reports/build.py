"""``istrings report``: a rehearsal session → a self-contained report folder.

Input: a canonical clip (``.npz``), a raw capture recording (``.isrec``, cleaned by the first
paper's offline pipeline) or a video file (captured with the bundled MediaPipe model, placed,
then cleaned the same way). Models: the bundled ONNX models (or ``--models DIR``) through ONNX
Runtime (:mod:`inference.models_live`): ``nri.onnx`` for the strings when present, else the
echo scores (:mod:`training.reports.echo`); ``stga.onnx`` for forecast quality when present.

Output folder::

    index.html      opens offline; every picture and table below
    summary.json    the summary table (duration, frames, dancers present, swaps corrected, top strings, …)
    strings.mp4     both skeletons with the strings (mp4v), side by side with the source video if any
    stills.png      four frames of that video (browsers do not play mp4v)
    heatmap.png, timeline.png, hubs.png, tension.png, forecast.png
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from stream.clip import Clip
from stream.errors import IStringsError
from stream.skeleton import CANONICAL

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".m4v", ".webm")
Progress = Callable[[str, float], None]
"""``(stage, fraction of that stage done)``."""


class ReportError(IStringsError, ValueError):
    """The input cannot be turned into a report (the message says why and what to do)."""


@dataclass(frozen=True)
class Session:
    """A session ready for analysis.

    Attributes:
        joints: ``(T, D, J, 3)`` metres; ``times (T,)`` seconds from the start; ``valid (T, D)``.
        fps: nominal frame rate.
        source: what the input was (``clip``, ``recording`` or ``video``) and its path.
        counters: cleaning counters (``swaps_corrected`` …) when the input was cleaned here.
        video: the source video, for the side-by-side view.
        planted: ``(J, J)`` planted strings of a synthetic clip, else None.
    """

    joints: NDArray[np.float32]
    times: NDArray[np.float64]
    valid: NDArray[np.bool_]
    fps: float
    source: dict[str, str]
    counters: dict[str, int] = field(default_factory=dict)
    video: Path | None = None
    planted: NDArray[np.float32] | None = None


def _from_clip(clip: Clip, source: dict[str, str], counters: dict[str, int] | None = None,
               video: Path | None = None) -> Session:
    prov_counters = clip.provenance.get("counters", {}) if isinstance(clip.provenance, dict) else {}
    return Session(joints=clip.joints, times=clip.timestamps - clip.timestamps[0], valid=clip.valid, fps=clip.fps,
                   source=source, counters=dict(counters or prov_counters or {}), video=video, planted=clip.edges)


def _clean_payloads(payloads: list[bytes], origin: str, media_fps: float | None = None
                    ) -> tuple[Clip, dict[str, int]]:
    """Offline cleaning of captured PoseFrames.

    ``media_fps``: the frames came from a video file read as fast as possible, whose capture
    stamps are the pose estimator's pace, not the video's: each frame is re-timed to its place in
    the file (``seq / media_fps`` s), so the report's time axis is the video's.
    """
    from inference.cleaning import CleanerConfig, CleaningError
    from inference.commands_clean import CleanCommandError, build_timeline, clean_timeline

    try:
        timeline = build_timeline(payloads)
        if media_fps is not None:
            seqs = np.array([np.nan if f is None else f.seq for f in timeline.frames])  # (T,), NaN = filled
            known = np.flatnonzero(np.isfinite(seqs))
            seqs = np.interp(np.arange(len(seqs)), known, seqs[known])  # filled gaps between their neighbours
            timeline = dataclasses.replace(timeline, t_ns=[round(float(k) * 1e9 / media_fps) for k in seqs])
        clips, summary = clean_timeline(timeline, "offline", CleanerConfig(), 0.25, None, origin)
    except (CleanCommandError, CleaningError) as exc:
        raise ReportError(f"{origin}: {exc}") from exc
    counters = {k: int(v) for k, v in summary["offline"].items() if isinstance(v, int)}
    return clips["offline"], counters


def load_session(path: Path, on_progress: Progress | None = None) -> Session:
    """Read a clip, a recording or a video (see the module docstring).

    Raises:
        ReportError: a missing or unreadable input, or one with no duet in it.
    """
    from stream.clip import ClipError
    from stream.convert import is_recording

    if not path.is_file():
        raise ReportError(f"no such file: {path}")
    if is_recording(path):
        from stream.recording import RecordingError, read_recording

        try:
            rec = read_recording(path, strict=False)
        except RecordingError as exc:
            raise ReportError(f"{path}: {exc}") from exc
        if rec.damage is not None:
            log.warning("%s: %s; using its %d readable records", path, rec.damage.describe(), len(rec))
        if not rec.records:
            raise ReportError(f"{path} holds no readable records")
        clip, counters = _clean_payloads([r.payload for r in rec.records], str(path))
        return _from_clip(clip, {"kind": "recording", "path": str(path)}, counters)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return _capture_video(path, on_progress)
    try:
        clip = Clip.load(path)
    except (ClipError, OSError, ValueError) as exc:
        raise ReportError(f"{path} is not a clip (.npz), a capture recording (.isrec) or a video "
                          f"({', '.join(VIDEO_SUFFIXES)}): {exc}") from exc
    return _from_clip(clip, {"kind": "clip", "path": str(path)})


def _capture_video(path: Path, on_progress: Progress | None) -> Session:
    """Every frame of the video through pose estimation and placement, then the offline cleaning."""
    import cv2

    from stream.capture import run_capture
    from stream.placement import Placer
    from stream.pose import PoseConfig, PoseEstimator
    from stream.sources import SourceError, SourceOptions, VideoSource

    cap = cv2.VideoCapture(str(path))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    cap.release()
    media_fps = 30.0
    payloads: list[bytes] = []

    def keep(msg: bytes) -> bool:
        payloads.append(msg)
        if on_progress is not None and total > 0:
            on_progress("capture", min(1.0, len(payloads) / total))
        return True

    try:
        with VideoSource(str(path), SourceOptions(fast=True)) as src, PoseEstimator(PoseConfig()) as est:
            media_fps = src.nominal_fps
            run_capture(src, keep, estimator=est, placer=Placer(), report_every_s=1e9)
    except SourceError as exc:
        raise ReportError(f"{path}: {exc}") from exc
    if not payloads:
        raise ReportError(f"{path}: no frame could be read from the video")
    clip, counters = _clean_payloads(payloads, str(path), media_fps=media_fps)
    return _from_clip(clip, {"kind": "video", "path": str(path)}, counters, video=path)


@dataclass(frozen=True)
class ReportOptions:
    """Settings of a report.

    Attributes:
        models: directory of ONNX models (default: the bundled ones).
        strings: ``echo`` (default), ``nri``, or ``auto`` (NRI when ``nri.onnx`` exists, else echo).
        device: ONNX Runtime device (``auto``, ``cpu``, ``cuda``, ``tensorrt``).
        azimuth_deg, elevation_deg: the video's viewpoint (azimuth None: follow the duet from its side).
        video_fps: frame rate of the video (default: the session's, at most 30).
        side_by_side: draw the source video beside the skeletons when there is one.
        hop_s: time between string estimates, seconds.
        echo_window_s: window of the echo scores, seconds.
        threshold: strong-string threshold.
        top: how many strings the tables list.
    """

    models: Path | None = None
    strings: str = "echo"
    device: str = "auto"
    azimuth_deg: float | None = None
    elevation_deg: float = 15.0
    video_fps: float | None = None
    side_by_side: bool = True
    hop_s: float = 0.25
    echo_window_s: float = 5.0
    threshold: float = 0.8
    top: int = 10

    def __post_init__(self) -> None:
        if self.strings not in ("auto", "nri", "echo"):
            raise ReportError(f"--strings must be auto, nri or echo, got {self.strings!r}")
        if not (self.hop_s > 0 and self.echo_window_s > 0 and 0 < self.threshold <= 1 and self.top >= 1):
            raise ReportError("--hop-s and --echo-window-s must be positive, --threshold in (0, 1], --top >= 1")
        if self.video_fps is not None and not self.video_fps > 0:
            raise ReportError(f"--video-fps must be positive, got {self.video_fps}")


def make_report(session: Session, out: Path, options: ReportOptions = ReportOptions(),
                on_progress: Progress | None = None) -> dict[str, Any]:
    """Analyse the session and write the report folder; returns the summary (also ``summary.json``).

    Raises:
        ReportError: ``--strings nri`` without a usable ``nri.onnx``, or a session too short.
    """
    from inference.models_live import DEFAULT_MODELS_DIR, MODEL_FILES, load_models
    from training.reports import analysis as A
    from training.reports import figures
    from training.reports.html import write_index
    from training.reports.video import ViewError, render_video

    def step(stage: str) -> Callable[[float], None]:
        return lambda f: on_progress(stage, f) if on_progress is not None else None

    nri_path = (options.models or DEFAULT_MODELS_DIR) / MODEL_FILES["nri"]
    if options.strings == "nri" and not nri_path.is_file():
        raise ReportError(f"--strings nri needs an NRI model: there is no {nri_path}; export one with "
                          f"`istrings export nri --checkpoint CKPT -o {nri_path.parent}` or use --strings echo")
    use_nri = options.strings == "nri" or (options.strings == "auto" and nri_path.is_file())
    models = load_models(options.models, device=options.device, kinds=("nri", "stga") if use_nri else ("stga",))
    if options.strings == "nri" and models.strings is None:
        raise ReportError(f"--strings nri needs an NRI model: {models.problems.get('nri', 'not loaded')}")
    out.mkdir(parents=True, exist_ok=True)
    X, t = session.joints, session.times
    try:
        if models.strings is not None:
            tl = A.nri_strings(t, X, models.strings, hop_s=options.hop_s, threshold=options.threshold,
                               progress=step("strings"))
        else:
            tl = A.echo_timeline(t, X, session.fps, window_s=options.echo_window_s, hop_s=options.hop_s,
                                 threshold=options.threshold)
            step("strings")(1.0)
    except ValueError as exc:
        raise ReportError(f"{session.source['path']}: {exc}") from exc
    top = A.top_strings(tl, options.top)
    hub = A.hub_scores(tl)
    episodes = A.tension_episodes(tl, t, X, [(s.i, s.j) for s in top if s.time_share > 0])
    pelvis = CANONICAL.index("pelvis")
    distance = np.interp(tl.times, t, np.linalg.norm(X[:, 0, pelvis] - X[:, 1, pelvis], axis=-1))
    fq = None
    if models.forecast is not None:
        try:
            fq = A.forecast_quality(t, X, models.forecast, progress=step("forecasts"))
        except ValueError as exc:
            log.warning("no forecast section: %s", exc)
    figures.heatmap(tl, out / "heatmap.png")
    figures.timeline(tl, distance, out / "timeline.png")
    figures.hubs(hub, X, out / "hubs.png")
    figures.tension(tl, episodes, top, t, X, out / "tension.png")
    if fq is not None:
        figures.forecast(fq, out / "forecast.png")
    step("figures")(1.0)
    video_fps = options.video_fps or min(session.fps, 30.0)
    try:
        stills = render_video(out / "strings.mp4", X, t, tl, fps=video_fps, azimuth_deg=options.azimuth_deg,
                              elevation_deg=options.elevation_deg,
                              source_video=session.video if options.side_by_side else None,
                              progress=step("video"), stills=(0.2, 0.4, 0.6, 0.8))
    except ViewError as exc:
        raise ReportError(str(exc)) from exc
    if stills:
        import cv2

        grid = np.vstack([np.hstack(stills[:2]), np.hstack(stills[2:4])]) if len(stills) == 4 else np.hstack(stills)
        scale = min(1.0, 1600 / grid.shape[1])
        cv2.imwrite(str(out / "stills.png"), cv2.resize(grid, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
    summary = _summary(session, tl, top, hub, episodes, fq, models, options)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_index(out / "index.html", summary, tl, episodes, fq)
    step("page")(1.0)
    return summary


def _summary(session: Session, tl: Any, top: list[Any], hub: NDArray[np.float64], episodes: list[Any], fq: Any,
             models: Any, options: ReportOptions) -> dict[str, Any]:
    from training.reports.analysis import joint_name

    valid = session.valid
    hubs = sorted(((float(hub[d, j]), joint_name(d, j)) for d in range(2) for j in range(hub.shape[1])), reverse=True)
    out: dict[str, Any] = {
        "input": session.source,
        "duration_s": round(float(session.times[-1] - session.times[0]), 3) if len(session.times) else 0.0,
        "frames": len(session.times),
        "fps": round(float(session.fps), 3),
        "dancers_present": {"both": round(float(valid.all(axis=1).mean()), 4),
                            "A": round(float(valid[:, 0].mean()), 4), "B": round(float(valid[:, 1].mean()), 4)},
        "swaps_corrected": session.counters.get("swaps_corrected"),
        "cleaning": {k: v for k, v in session.counters.items() if k != "swaps_corrected"} or None,
        "strings": {"source": tl.source, "note": tl.note, "threshold": tl.threshold, "estimates": len(tl.times),
                    "masked_windows": tl.masked,
                    "types": {str(k): v for k, v in tl.type_names.items()}},
        "top_strings": [s.as_dict() for s in top],
        "hubs": [{"joint": name, "share": round(v, 4)} for v, name in hubs[:8]],
        "tension_release": [e.as_dict() for e in episodes[:10]],
        "forecast": None if fq is None else {"note": fq.note, "mean_error_mm": fq.means()},
        "models": {"providers": models.providers, "missing": models.problems},
        "view": {"azimuth_deg": "side (follows the duet)" if options.azimuth_deg is None else options.azimuth_deg,
                 "elevation_deg": options.elevation_deg},
    }
    if session.planted is not None:
        planted = [(int(i), int(j)) for i, j in zip(*np.nonzero(session.planted), strict=True)]
        out["planted_strings"] = [f"{joint_name(0, i)}–{joint_name(1, j)}" for i, j in planted]
    return out


def report(input_path: Path, out: Path, options: ReportOptions = ReportOptions(),
           on_progress: Progress | None = None) -> dict[str, Any]:
    """:func:`load_session` then :func:`make_report`."""
    return make_report(load_session(input_path, on_progress), out, options, on_progress)
