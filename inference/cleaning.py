"""Cleaning of pose streams: the online cleaner of the live process, and the paper's offline pipeline.

**Online** (:class:`OnlineCleaner`, one :class:`stream.protocol.PoseFrame` in, one
:class:`CleanedFrame` out, causal):

1. map every detected person onto the canonical skeleton (``world (P, L, 3)`` metres →
   ``(P, J, 3)``; a canonical joint's visibility is that of its least visible source joint);
   non-finite values count as unseen joints;
2. identity tracking (:mod:`inference.tracking`): keep the two most confident people, match
   them to the dancers by the Hungarian method on constant-velocity predictions with a gate,
   hold missing joints and dancers for ``hold_s``, then report a dancer absent;
3. causal smoothing (:mod:`inference.filters`): a One Euro filter (default) or the sliding DCT
   low-pass, restarted for a dancer that is (re)acquired, frozen while a dancer is absent;
4. optionally a learned causal refiner (:class:`Refiner`, e.g. the MKFF-ST-GCN in ONNX)
   applied to a window of ``refiner_window`` tracked frames *instead of* the smoothing filter:
   sampled at the refiner's frame rate (``refiner_fps``) back from the newest frame, linearly
   interpolated between tracked frames, so a model trained at 30 fps sees the time span it was
   trained on whatever the camera's rate; without a rate, the last ``refiner_window`` frames.

Output per frame: joints ``(D, J, 3)`` float32 metres (the last estimate while a dancer is
held or absent, zeros before a dancer was ever seen — never NaN), presence ``(D,)`` bool,
confidence ``(D, J)`` float32 in [0, 1] and running counters.

**Offline** (:func:`clean_offline`), the first paper's rules over a whole recording: a frame
with nobody → duplicate the previous frame; more than two people → the two highest scores;
a single detection → add the previous-frame person farther from it; swap correction against
the previous frame; then a DCT low-pass over the whole sequence keeping the lowest 25 % of
frequencies, per joint and coordinate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from inference.filters import CausalDCTFilter, OneEuroFilter, dct_lowpass
from inference.tracking import Tracker, TrackerConfig, mean_joint_distance, select_people
from inference.window import FrameBuffer
from stream.errors import IStringsError
from stream.protocol import PoseFrame
from stream.skeleton import J, Layout, layout_map

log = logging.getLogger(__name__)

D = 2
Smoothing = Literal["one_euro", "dct", "none"]
SMOOTHING_CHOICES: tuple[str, ...] = ("one_euro", "dct", "none")


class CleaningError(IStringsError, ValueError):
    """A cleaning setting is out of range, or a sequence cannot be cleaned."""


class Refiner(Protocol):
    """A learned causal refiner: ``T`` frames of both dancers, the newest last → the current frame
    (sampled at its rate, :attr:`CleanerConfig.refiner_fps`, when the cleaner is given one).

    Shapes:
        ``refine(window (T, D, J, 3) float32 metres, oldest first) -> (D, J, 3)`` metres.
    """

    def refine(self, window: NDArray[np.float32]) -> NDArray[np.floating]: ...


@dataclass(frozen=True)
class CleanerConfig:
    """Online cleaning parameters (units in the names; see ``docs/cleaning.md``).

    Attributes:
        tracking: identity tracking, hold and gating (:class:`TrackerConfig`).
        smoothing: ``"one_euro"`` (default), ``"dct"`` (the seed's low-pass, causal) or ``"none"``.
        min_cutoff_hz: One Euro cutoff at rest (Hz).
        beta: One Euro cutoff increase per unit speed (Hz per m/s).
        d_cutoff_hz: One Euro cutoff of the speed estimate (Hz).
        dct_window: frames in the sliding DCT window.
        dct_keep: fraction of the window's DCT frequencies kept.
        refiner_window: frames handed to a refiner (``T``).
        refiner_fps: the refiner's frame rate (Hz): its window is sampled at that rate from the
            tracked frames' times; ``None``: the last ``refiner_window`` frames as they came.
        fallback_dt_s: seconds assumed between frames whose timestamps do not advance.
    """

    tracking: TrackerConfig = field(default_factory=TrackerConfig)
    smoothing: Smoothing = "one_euro"
    min_cutoff_hz: float = 1.0
    beta: float = 4.0
    d_cutoff_hz: float = 1.0
    dct_window: int = 16
    dct_keep: float = 0.25
    refiner_window: int = 16
    refiner_fps: float | None = None
    fallback_dt_s: float = 1.0 / 30.0

    def __post_init__(self) -> None:
        if self.smoothing not in SMOOTHING_CHOICES:
            raise CleaningError(f"smoothing must be one of {', '.join(SMOOTHING_CHOICES)}, got {self.smoothing!r}")
        if self.tracking.num_tracks != D:
            raise CleaningError(f"the cleaner tracks a duet: tracking.num_tracks must be {D}")
        if self.refiner_window < 1 or not self.fallback_dt_s > 0:
            raise CleaningError("refiner_window must be >= 1 and fallback_dt_s > 0")
        if self.refiner_fps is not None and not (np.isfinite(self.refiner_fps) and self.refiner_fps > 0):
            raise CleaningError(f"refiner_fps must be a positive rate in Hz (None: frames as they come), "
                                f"got {self.refiner_fps}")


@dataclass(frozen=True, eq=False)
class CleanedFrame:
    """One cleaned frame.

    Attributes:
        seq: the PoseFrame's sequence number (-1 for arrays).
        t_s: seconds on the cleaner's clock (from the capture timestamps, made monotonic).
        joints: ``(D, J, 3)`` float32 metres.
        present: ``(D,)`` bool.
        confidence: ``(D, J)`` float32 in [0, 1].
        counters: running totals (see :meth:`OnlineCleaner.counters`).
    """

    seq: int
    t_s: float
    joints: NDArray[np.float32]
    present: NDArray[np.bool_]
    confidence: NDArray[np.float32]
    counters: dict[str, int]


@dataclass(frozen=True)
class _FastMap:
    """A :class:`stream.skeleton.LayoutMap` prepared for one frame at a time (same results)."""

    weights: NDArray[np.float64]  # (J, L)
    vis_index: NDArray[np.int64]  # (J, K) source joints of each canonical joint, padded by repetition


@lru_cache(maxsize=16)
def _fast_map(layout: Layout) -> _FastMap:
    W = layout_map(layout).weights  # (J, L)
    used = [np.flatnonzero(row > 0) for row in W]
    K = max(len(u) for u in used)
    index = np.stack([np.resize(u, K) for u in used])  # (J, K)
    return _FastMap(weights=W, vis_index=index)


def canonical_people(frame: PoseFrame) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """A frame's people on the canonical skeleton: ``joints (P, J, 3)`` m, ``visibility (P, J)``,
    ``scores (P,)``. Non-finite joints get visibility 0 and value 0; scores and visibilities
    are clipped to [0, 1] (NaN → 0)."""
    fm = _fast_map(Layout(frame.layout))
    world = np.asarray(frame.world, dtype=np.float64)  # (P, L, 3) m
    if np.isfinite(world).all():
        joints = np.matmul(fm.weights, world)  # (J, L) @ (P, L, 3) -> (P, J, 3)
    else:  # only frames built in-process can get here (decode() refuses them)
        with np.errstate(invalid="ignore", over="ignore"):
            joints = np.matmul(fm.weights, world)
    vis = np.asarray(frame.image, dtype=np.float64)[..., 3][:, fm.vis_index].min(-1)  # (P, J, K) -> (P, J)
    return sanitize(joints, vis, frame.scores)


def sanitize(
    joints: NDArray[np.floating], visibility: NDArray[np.floating], scores: NDArray[np.floating]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Detections made safe to track: a non-finite joint becomes an unseen joint at 0;
    visibilities and scores are clipped to [0, 1] with NaN → 0.

    Shapes: ``joints (P, J, 3)``, ``visibility (P, J)``, ``scores (P,)`` → the same, float64.
    """
    x = np.asarray(joints, dtype=np.float64)
    vis = np.asarray(visibility, dtype=np.float64)
    vis = np.where(vis > 0, np.minimum(vis, 1.0), 0.0)  # NaN -> 0
    if not np.isfinite(x).all():
        bad = np.asarray(~np.isfinite(x).all(-1))  # (P, J)
        x = np.where(bad[..., None], 0.0, x)
        vis = np.where(bad, 0.0, vis)
    sc = np.asarray(scores, dtype=np.float64)
    sc = np.where(sc > 0, np.minimum(sc, 1.0), 0.0)  # (P,), NaN -> 0
    return x, vis, sc


class OnlineCleaner:
    """The causal cleaner of the live process (see the module docstring).

    Args:
        config: parameters (defaults: :class:`CleanerConfig`).
        refiner: an optional learned refiner, used instead of the smoothing filter.
    """

    def __init__(self, config: CleanerConfig | None = None, refiner: Refiner | None = None) -> None:
        self.config = config or CleanerConfig()
        self.refiner = refiner
        cfg = self.config
        self.tracker = Tracker(cfg.tracking, num_joints=J)
        self._filter: OneEuroFilter | CausalDCTFilter | None = None
        if refiner is None and cfg.smoothing == "one_euro":
            self._filter = OneEuroFilter(
                (D, J, 3), cfg.min_cutoff_hz, cfg.beta, cfg.d_cutoff_hz, fallback_dt=cfg.fallback_dt_s
            )
        elif refiner is None and cfg.smoothing == "dct":
            self._filter = CausalDCTFilter((D, J, 3), cfg.dct_window, cfg.dct_keep)
        self._window = np.zeros((cfg.refiner_window, D, J, 3), dtype=np.float32)  # (T, D, J, 3)
        self._window_count = 0
        # tracked frames with their times, for a window sampled at the refiner's rate: enough for
        # the window's span at up to 1,000 frames/s (older sample times repeat the oldest frame)
        span_s = (cfg.refiner_window - 1) / cfg.refiner_fps if cfg.refiner_fps else 0.0
        self._history = FrameBuffer(max(2, min(4096, int(np.ceil(span_s * 1000.0)) + 2)))
        self._out = np.zeros((D, J, 3), dtype=np.float32)  # (D, J, 3) last output
        self._t0_ns: int | None = None
        self._offset_s = 0.0
        self._last_t = -np.inf
        self.refiner_rejected = 0
        self.clock_corrections = 0

    def counters(self) -> dict[str, int]:
        """Running totals: the tracker's (frames, people_dropped, swaps_corrected, reacquired,
        gated, frames_held, joints_held) plus refiner_rejected and clock_corrections."""
        return {
            **self.tracker.counters.as_dict(),
            "refiner_rejected": self.refiner_rejected,
            "clock_corrections": self.clock_corrections,
        }

    def _clock(self, t_raw: float) -> float:
        """Monotonic seconds: a timestamp that does not advance moves on by ``fallback_dt_s``."""
        t = t_raw + self._offset_s
        if not np.isfinite(t):
            t = self._last_t + self.config.fallback_dt_s if np.isfinite(self._last_t) else 0.0
            self.clock_corrections += 1
        elif t <= self._last_t:
            self._offset_s += self._last_t + self.config.fallback_dt_s - t
            t = self._last_t + self.config.fallback_dt_s
            self.clock_corrections += 1
        self._last_t = t
        return t

    def step(self, frame: PoseFrame) -> CleanedFrame:
        """Clean one PoseFrame (any layout with a canonical map)."""
        if self._t0_ns is None:
            self._t0_ns = int(frame.t_capture_ns)
        joints, vis, scores = canonical_people(frame)
        return self._step((int(frame.t_capture_ns) - self._t0_ns) * 1e-9, joints, vis, scores, frame.seq)

    def step_arrays(
        self,
        t_s: float,
        joints: NDArray[np.floating],
        visibility: NDArray[np.floating],
        scores: NDArray[np.floating],
        seq: int = -1,
    ) -> CleanedFrame:
        """Clean one frame of canonical detections: ``joints (P, J, 3)`` m, ``visibility (P, J)``,
        ``scores (P,)``, taken at ``t_s`` seconds (any float; see :meth:`_clock`).

        Raises:
            CleaningError: the arrays do not have those shapes.
        """
        shapes = (np.shape(joints), np.shape(visibility), np.shape(scores))
        P = shapes[2][0] if len(shapes[2]) == 1 else -1
        if shapes != ((P, J, 3), (P, J), (P,)):
            raise CleaningError(
                f"detections must be joints (P, {J}, 3), visibility (P, {J}), scores (P,); got {shapes}"
            )
        return self._step(float(t_s), *sanitize(joints, visibility, scores), seq)

    def _step(
        self,
        t_s: float,
        joints: NDArray[np.float64],
        visibility: NDArray[np.float64],
        scores: NDArray[np.float64],
        seq: int,
    ) -> CleanedFrame:
        t = self._clock(t_s)
        trk = self.tracker.update(t, joints, visibility, scores)
        tracked = trk.joints  # (D, J, 3) m, unsmoothed
        out: NDArray[np.floating]
        if self.refiner is not None:
            out = self._refine(self.refiner, t, tracked.astype(np.float32), trk.reset)
        elif self._filter is not None:
            if trk.reset.any():
                self._filter.reset(trk.reset)
            out = self._filter.step(tracked, t, update=trk.present)
        else:
            out = tracked
        # absent dancers keep their last output (the filter/refiner is not advanced for them)
        if trk.present.all():
            self._out = np.asarray(out, dtype=np.float32)
        else:
            self._out = np.where(trk.present[:, None, None], out, self._out).astype(np.float32)
        return CleanedFrame(
            seq=int(seq), t_s=t, joints=self._out.copy(), present=trk.present.copy(),
            confidence=trk.confidence.astype(np.float32), counters=self.counters(),
        )

    def _refine(
        self, refiner: Refiner, t: float, tracked: NDArray[np.float32], reset: NDArray[np.bool_]
    ) -> NDArray[np.float32]:
        """Push ``tracked (D, J, 3)`` taken at ``t`` s into the window and run the refiner on it."""
        fps = self.config.refiner_fps
        if fps is not None:
            self._history.push(t, tracked)
            if reset.any():  # a (re)acquired dancer has no past: its current pose throughout
                self._history.hold(reset, tracked)
            # before the oldest frame (start-up) the window repeats it
            win = self._history.resampled(self.config.refiner_window, fps)  # (T, D, J, 3)
        else:
            win = self._window  # (T, D, J, 3): the last T frames as they came
            win[:-1] = win[1:]
            win[-1] = tracked
            if reset.any():  # a (re)acquired dancer has no past: repeat its current pose
                win[:, reset] = tracked[reset]
            self._window_count = min(self._window_count + 1, len(win))
            if self._window_count < len(win):  # start-up: repeat the oldest frame
                win[: len(win) - self._window_count] = win[len(win) - self._window_count]
            win = win.copy()
        try:
            refined = np.asarray(refiner.refine(win), dtype=np.float32)
        except Exception:
            # The refiner is third-party (an ONNX session): a failure must not stop the live
            # process; it is counted, logged with its traceback once, and the frame passes unrefined.
            if self.refiner_rejected == 0:
                log.exception("the refiner failed; passing frames unrefined")
            self.refiner_rejected += 1
            return tracked
        if refined.shape != (D, J, 3) or not np.isfinite(refined).all():
            if self.refiner_rejected == 0:
                log.warning("the refiner returned %s (finite: %s), expected finite (%d, %d, 3); passing "
                            "frames unrefined", refined.shape, bool(np.isfinite(refined).all()), D, J)
            self.refiner_rejected += 1
            return tracked
        return refined


# --------------------------------------------------------------------------- offline (the paper)


@dataclass(frozen=True, eq=False)
class OfflineResult:
    """The paper's offline pipeline over a sequence.

    Attributes:
        joints: ``(T, D, J, 3)`` float32 metres after the DCT low-pass.
        raw: ``(T, D, J, 3)`` float32 metres before it (after filling, selection and swaps).
        valid: ``(T, D)`` bool, False where a dancer was copied from the previous frame.
        counters: frames, people_dropped, swaps_corrected, frames_duplicated (frames with
            nobody), singles_filled (frames with one person), frames_held (dancer-frames copied).
    """

    joints: NDArray[np.float32]
    raw: NDArray[np.float32]
    valid: NDArray[np.bool_]
    counters: dict[str, int]


def clean_offline(
    detections: Sequence[tuple[NDArray[np.floating], NDArray[np.floating]]], keep: float = 0.25
) -> OfflineResult:
    """Apply the paper's rules to a sequence of canonical detections.

    Args:
        detections: per frame ``(joints (P, J, 3) metres, scores (P,))``, ``P >= 0``.
        keep: fraction of the whole sequence's DCT frequencies kept (the paper: 0.25).

    Frames before the first frame with two people have no previous frame to copy from: they
    are filled from that first complete frame (and marked invalid likewise).

    Raises:
        CleaningError: the sequence is empty or never shows two people at once.
    """
    T = len(detections)
    first = next((i for i, (_, s) in enumerate(detections) if np.asarray(s).reshape(-1).size >= D), None)
    if T == 0 or first is None:
        raise CleaningError(
            f"the offline pipeline needs a frame with two people to start from; these {T} frames have none "
            "(use --method online, which tracks one dancer at a time)"
        )
    out = np.zeros((T, D, J, 3))  # (T, D, J, 3) m
    valid = np.zeros((T, D), dtype=bool)
    c = {"frames": T, "people_dropped": 0, "swaps_corrected": 0, "frames_duplicated": 0, "singles_filled": 0}
    prev: NDArray[np.float64] | None = None
    for i in range(first, T):
        x = np.asarray(detections[i][0], dtype=np.float64).reshape(-1, J, 3)  # (P, J, 3)
        s = np.asarray(detections[i][1], dtype=np.float64).reshape(-1)  # (P,)
        if s.size > D:  # more than two people: the two highest scores
            c["people_dropped"] += s.size - D
            sel = select_people(s, D)
            x, s = x[sel], s[sel]
        if prev is None or s.size == D:
            cur = x.copy()
            valid[i] = True
            if prev is not None:  # swap correction against the previous frame
                dist = mean_joint_distance(prev, cur)  # (D, D) m: prev dancer × detection
                if dist[0, 1] + dist[1, 0] < dist[0, 0] + dist[1, 1]:
                    cur = cur[::-1].copy()
                    c["swaps_corrected"] += 1
        elif s.size == 1:  # one person: add the previous-frame person farther from it
            dist = mean_joint_distance(prev, x)[:, 0]  # (D,) m
            far = int(np.argmax(dist))
            cur = prev.copy()
            cur[1 - far] = x[0]
            valid[i, 1 - far] = True
            c["singles_filled"] += 1
        else:  # nobody: duplicate the previous frame
            cur = prev.copy()
            c["frames_duplicated"] += 1
        out[i] = prev = cur
    out[:first] = out[first]
    c["frames_duplicated"] += first
    c["frames_held"] = int((~valid).sum())
    smooth = dct_lowpass(out, keep=keep, axis=0)
    return OfflineResult(
        joints=smooth.astype(np.float32), raw=out.astype(np.float32), valid=valid, counters=c
    )


# --------------------------------------------------------------------------- metrics and benchmark


def jitter(joints: NDArray[np.floating], timestamps: NDArray[np.floating], valid: NDArray[np.bool_]) -> float:
    """Mean joint acceleration magnitude (m/s²) over the frames where a dancer is valid in three
    consecutive frames — the smoothness figure both pipelines are compared by.

    Shapes: ``joints (T, D, J, 3)`` m, ``timestamps (T,)`` s, ``valid (T, D)``. NaN when no
    triple is valid.
    """
    x = np.asarray(joints, dtype=np.float64)
    t = np.asarray(timestamps, dtype=np.float64)
    v = np.asarray(valid, dtype=bool)
    if x.shape[0] < 3:
        return float("nan")
    dt = np.diff(t)  # (T-1,)
    dt = np.where(dt > 0, dt, np.median(dt[dt > 0]) if (dt > 0).any() else 1.0)
    vel = np.diff(x, axis=0) / dt[:, None, None, None]  # (T-1, D, J, 3) m/s
    acc = np.diff(vel, axis=0) / (0.5 * (dt[1:] + dt[:-1]))[:, None, None, None]  # (T-2, D, J, 3) m/s²
    ok = v[:-2] & v[1:-1] & v[2:]  # (T-2, D)
    if not ok.any():
        return float("nan")
    return float(np.linalg.norm(acc, axis=-1)[ok].mean())


def _bench_frames(num_people: int, frames: int, fps: float, seed: int) -> list[PoseFrame]:
    """Moving MediaPipe-33 people with noisy joints and random visibilities, in random order."""
    rng = np.random.default_rng(seed)
    L = 33
    base = rng.normal(0.0, 0.3, (num_people, L, 3)) + np.array([[[-1.0, 1.0, -3.0]]]) * np.arange(
        num_people
    ).reshape(-1, 1, 1)
    out = []
    for i in range(frames):
        t = i / fps
        world = base + np.array([np.sin(t), 0.0, 0.0]) * 0.5 + rng.normal(0.0, 0.01, base.shape)  # (P, L, 3) m
        vis = rng.uniform(0.2, 1.0, (num_people, L, 1))
        image = np.concatenate([rng.uniform(0, 1, (num_people, L, 3)), vis], -1)  # (P, L, 4)
        order = rng.permutation(num_people)
        out.append(PoseFrame(
            seq=i, t_capture_ns=int(t * 1e9), layout=Layout.MEDIAPIPE33,
            scores=rng.uniform(0.5, 1.0, num_people).astype(np.float32)[order],
            image=image.astype(np.float32)[order], world=world.astype(np.float32)[order],
        ))
    return out


def bench_cleaner(
    num_people: int = 3, frames: int = 3000, smoothing: Smoothing = "one_euro", fps: float = 30.0, seed: int = 0
) -> dict[str, Any]:
    """Time :meth:`OnlineCleaner.step` per frame on MediaPipe-33 frames of ``num_people`` people.

    Returns a JSON-ready dict: wall-clock ``per_frame_ms`` (mean), ``p50_ms``, ``p99_ms``,
    ``max_ms``; ``cpu_per_frame_ms`` (process CPU time per frame, which a busy machine inflates
    less than wall time); the settings and the final counters. On a shared machine ``p50_ms``
    is the figure to read: the mean and the tail include time the process was descheduled.
    The first 100 frames (warm-up) are not timed.
    """
    data = _bench_frames(num_people, frames + 100, fps, seed)
    cleaner = OnlineCleaner(CleanerConfig(smoothing=smoothing))
    for f in data[:100]:
        cleaner.step(f)
    times = np.empty(frames)
    clock = time.perf_counter_ns
    cpu0 = time.process_time_ns()
    for i, f in enumerate(data[100:]):
        t0 = clock()
        cleaner.step(f)
        times[i] = clock() - t0
    cpu_ms = (time.process_time_ns() - cpu0) / 1e6 / frames  # CPU time: robust to a busy machine
    ms = times / 1e6
    return {
        "benchmark": "cleaner",
        "num_people": num_people,
        "frames": frames,
        "smoothing": smoothing,
        "layout": "mediapipe33",
        "per_frame_ms": round(float(ms.mean()), 4),
        "cpu_per_frame_ms": round(cpu_ms, 4),
        "p50_ms": round(float(np.median(ms)), 4),
        "p99_ms": round(float(np.quantile(ms, 0.99)), 4),
        "max_ms": round(float(ms.max()), 4),
        "counters": cleaner.counters(),
    }
