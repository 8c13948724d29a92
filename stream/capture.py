"""The capture loop: source → pose estimation → placement → PoseFrame → publish.

One iteration per frame, in this order (each stage timed, monotonic ns):

1. ``source.read`` gives the newest image (a camera) or the next due one (files), stamped with
   its capture time ``t_capture_ns``; or a finished PoseFrame (replay, synthetic).
2. :class:`stream.pose.PoseEstimator`: up to ``num_poses`` people, best score first, duplicates
   removed (``pose_ns``).
3. :class:`stream.placement.Placer`: every person's landmarks in the shared stage frame; people
   that cannot be placed are dropped and counted (``place_ns``).
4. Encode and send, stamped ``t_publish_ns`` at the send (``publish_ns``); the latency
   ``t_publish_ns − t_capture_ns`` covers everything from the grab to the socket.
5. The preview (when asked) draws after publishing, so it never delays a frame.

The loop never stops on bad input: a frame that cannot be encoded is counted, logged once per
kind, and dropped. It ends when the source ends, after ``max_frames``, or when ``stop`` is set
(SIGINT/SIGTERM in the command).

Track ids: the inference side owns identity tracking; until then the id drawn and published is
the detection index (best score first), which can swap between frames.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from stream.placement import Placer
from stream.pose import Detections, PoseEstimator
from stream.protocol import FLAG_WORLD_PLACED, PoseFrame, ProtocolError, encode
from stream.skeleton import Layout
from stream.sources import ImageFrame, Source
from stream.stats import RollingTimings

log = logging.getLogger(__name__)

_KEEP = 65_536  # frames whose timings the summary covers (the last ones; ~18 min at 60 fps)
_SERIES = ("pose", "place", "publish", "latency", "added_cpu")


def _ms(values: NDArray[np.float64]) -> dict[str, float]:
    """``{p50, p99, max}`` in ms (rounded to µs) of samples in ms; zeros without samples."""
    if not values.size:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0}
    return {"p50": round(float(np.quantile(values, 0.5)), 3), "p99": round(float(np.quantile(values, 0.99)), 3),
            "max": round(float(values.max()), 3)}


@dataclass
class CaptureStats:
    """What a capture run did; timings in ns, one sample per published frame (the last 65,536, in
    a ring of constant memory: a capture that runs for hours does not grow).

    Attributes:
        frames: items taken from the source.
        published: frames handed to the socket.
        refused: frames the socket refused at once.
        bad_frames: frames that could not be encoded (dropped).
        people: people published, summed over frames.
        frames_with_two: frames with at least two people.
        timings: per-frame stage times ``pose``, ``place``, ``publish``, the capture→publish
            ``latency`` and ``added_cpu`` — the CPU time of this thread from the end of pose
            estimation to the send (placement, frame building, encoding, sending): the work
            publishing adds, unaffected by other processes competing for the CPU (wall times
            are, on a loaded machine).
        elapsed_s: wall time of the run.
    """

    frames: int = 0
    published: int = 0
    refused: int = 0
    bad_frames: int = 0
    people: int = 0
    frames_with_two: int = 0
    timings: RollingTimings = field(default_factory=lambda: RollingTimings(_SERIES, size=_KEEP))
    elapsed_s: float = 0.0

    def add(self, pose: int, place: int, publish: int, latency: int, added_cpu: int) -> None:
        for name, v in zip(_SERIES, (pose, place, publish, latency, added_cpu), strict=True):
            self.timings.add(name, v)

    def summary(self, source: Source | None = None, unplaced: int = 0) -> dict[str, Any]:
        """A JSON-ready summary: counts, and p50/p99 of every timing in ms."""
        ms = {name: self.timings.samples_ms(name) for name in _SERIES}  # same slots: frame k in every series
        out: dict[str, Any] = {
            "frames": self.frames, "published": self.published, "refused": self.refused,
            "bad_frames": self.bad_frames, "people": self.people, "frames_with_two": self.frames_with_two,
            "unplaced_people": unplaced, "elapsed_s": round(self.elapsed_s, 3),
            "fps": round(self.published / self.elapsed_s, 2) if self.elapsed_s > 0 else 0.0,
        }
        if source is not None:
            out.update(source=source.source_id, source_dropped=source.stats.dropped, source_bad=source.stats.bad)
        for name, series in (("pose_ms", ms["pose"]), ("place_ms", ms["place"]), ("publish_ms", ms["publish"]),
                             ("latency_ms", ms["latency"]), ("overhead_ms", ms["latency"] - ms["pose"]),
                             ("overhead_cpu_ms", ms["added_cpu"])):
            out[name] = _ms(series)
        return out


def frame_from_detections(
    seq: int, t_capture_ns: int, det: Detections, world: NDArray[np.floating], keep: NDArray[np.bool_],
    source_id: str,
) -> PoseFrame:
    """A MEDIAPIPE33 PoseFrame of the placed people (pure).

    Args:
        seq: frame number.
        t_capture_ns: capture time (monotonic ns).
        det: the detections (``P`` people).
        world: ``(P, L, 3)`` placed stage-frame landmarks, metres.
        keep: ``(P,)`` people to publish (the placed ones).
        source_id: short source name.
    """
    idx = np.nonzero(keep)[0]
    return PoseFrame(
        seq=seq, t_capture_ns=t_capture_ns, layout=Layout.MEDIAPIPE33,
        scores=np.clip(det.scores[idx], 0.0, 1.0).astype(np.float32),
        image=det.image[idx].astype(np.float32), world=np.asarray(world, np.float32)[idx],
        source_id=source_id, image_size=det.image_size, flags=FLAG_WORLD_PLACED,
    )


class _OncePerKind:
    """Log a warning the first time each kind of problem occurs."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, kind: str, message: str) -> None:
        if kind not in self.seen:
            self.seen.add(kind)
            log.warning("%s (further ones are only counted)", message)


def run_capture(
    source: Source,
    send: Callable[[bytes], bool],
    *,
    estimator: PoseEstimator | None = None,
    placer: Placer | None = None,
    on_frame: Callable[[ImageFrame | None, PoseFrame], None] | None = None,
    stop: threading.Event | None = None,
    max_frames: int | None = None,
    report_every_s: float = 5.0,
) -> CaptureStats:
    """Run the capture loop until the source ends, ``max_frames`` or ``stop``.

    Args:
        source: an entered source.
        send: sends one encoded message, False when refused (e.g. ``Publisher.send_raw``).
        estimator: an entered pose estimator (needed for image sources).
        placer: the placer (needed for image sources).
        on_frame: called after publishing with the image (None for pose sources) and the frame
            (the preview).
        stop: set to stop (checked between frames and inside every wait).
        max_frames: stop after this many published frames.
        report_every_s: log a progress line this often (INFO).
    """
    stop = stop or threading.Event()
    if source.produces_images and (estimator is None or placer is None):
        raise ValueError(f"{source.source_id} gives images: run_capture needs an estimator and a placer")
    warn = _OncePerKind()
    stats = CaptureStats()
    start = last_report = time.monotonic()
    seq = 0
    while not stop.is_set() and (max_frames is None or stats.published < max_frames):
        item = source.read(stop)
        if item is None:
            break
        stats.frames += 1
        if isinstance(item, ImageFrame):
            assert estimator is not None and placer is not None
            t0 = time.monotonic_ns()
            det = estimator(item.image, item.t_capture_ns)
            t1 = time.monotonic_ns()
            c1 = time.thread_time_ns()
            world, ok = placer(det.image, det.world, det.image_size)
            frame = frame_from_detections(seq, item.t_capture_ns, det, world, ok, source.source_id)
            t2 = time.monotonic_ns()
            image: ImageFrame | None = item
        else:
            t0 = t1 = t2 = time.monotonic_ns()
            c1 = time.thread_time_ns()
            frame, image = item, None
        try:
            t_pub = time.monotonic_ns()
            message = encode(frame, t_publish_ns=t_pub)
        except ProtocolError as exc:
            stats.bad_frames += 1
            warn(f"encode:{type(exc).__name__}", f"a frame could not be encoded and was dropped: {exc}")
            continue
        if send(message):
            stats.published += 1
        else:
            stats.refused += 1
            warn("refused", "the socket refused a frame (send queue full); dropping")
        t3 = time.monotonic_ns()
        c3 = time.thread_time_ns()
        seq += 1
        stats.people += frame.num_people
        stats.frames_with_two += frame.num_people >= 2
        stats.add(t1 - t0, t2 - t1, t3 - t2, t_pub - frame.t_capture_ns, c3 - c1)
        if on_frame is not None:
            on_frame(image, frame)
        now = time.monotonic()
        if now - last_report >= report_every_s:
            log.info("%s: %d frames, %.1f fps, %d dropped by the source, %.1f people/frame",
                     source.source_id, stats.published, stats.published / (now - start), source.stats.dropped,
                     stats.people / max(1, stats.published))
            last_report = now
    stats.elapsed_s = time.monotonic() - start
    return stats
