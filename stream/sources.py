"""Frame sources for the capture process: camera, video file, images, a recording, a synthetic duet.

A source is named by a string (``--source``)::

    camera:INDEX      a camera (OpenCV index, or a device path such as camera:/dev/video2)
    video:PATH        a video file
    images:GLOB       image files, in sorted order
    replay:RECORDING  a raw capture recording (.isrec, :mod:`stream.recording`)
    synthetic         an endless synthetic duet (:mod:`stream.synthetic`)

The first three give images (:class:`ImageFrame`, BGR) for the pose estimator; the last two
give finished :class:`~stream.protocol.PoseFrame` s. Every source is a context manager with
``read(stop)`` returning the next item, or None when it has ended (or ``stop`` is set).

Real time. A camera runs a grabbing thread separate from estimation: the thread keeps only
the newest frame, so estimation always takes the newest one; frames replaced before being
taken are *stale* and counted in ``stats.dropped``. The file sources behave like a camera by
default — frame ``i`` is due ``i / fps`` after the start, and a reader that falls behind
skips to the frame that is due now (counted as dropped) — and with ``fast`` deliver every
frame as fast as they are asked for. ``loop`` starts again at the end.

A camera that is absent at the start or disappears is retried forever with back-off
(0.5 s doubling to 5 s), and each change of state (waiting, open, lost) is logged once.
"""

from __future__ import annotations

import glob
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from stream.errors import IStringsError
from stream.protocol import FLAG_WORLD_PLACED, MAX_SOURCE_ID, PoseFrame, ProtocolError, decode
from stream.skeleton import Layout

log = logging.getLogger(__name__)

KINDS = ("camera", "video", "images", "replay", "synthetic")
SLEEP_SLICE_S = 0.05
"""Longest single sleep, so a stop request is seen within 50 ms."""
SYNTHETIC_IMAGE = (1280, 720)
SYNTHETIC_DISTANCE_M = 4.0
SYNTHETIC_CAMERA_HEIGHT_M = 1.5


class SourceError(IStringsError, ValueError):
    """A source name is malformed, or its file is missing or unreadable."""


@dataclass(frozen=True)
class SourceSpec:
    """A parsed ``--source``: ``kind`` (one of :data:`KINDS`) and its argument."""

    kind: str
    arg: str = ""


def parse_source(spec: str) -> SourceSpec:
    """Parse ``camera:INDEX``, ``video:PATH``, ``images:GLOB``, ``replay:RECORDING`` or ``synthetic``.

    Raises:
        SourceError: an unknown kind or a missing argument (the message lists the forms).
    """
    kind, sep, arg = spec.partition(":")
    forms = "camera:INDEX, video:PATH, images:GLOB, replay:RECORDING or synthetic"
    if kind not in KINDS:
        raise SourceError(f"unknown source {spec!r}: use {forms}")
    if kind == "synthetic":
        if arg:
            raise SourceError(f"the synthetic source takes no argument, got {spec!r}")
        return SourceSpec(kind)
    if not sep or not arg:
        raise SourceError(f"source {spec!r} lacks its argument: use {forms}")
    if kind == "camera" and not (arg.isdigit() or arg.startswith("/")):
        raise SourceError(f"camera source {spec!r}: give an index (camera:0) or a device path (camera:/dev/video0)")
    return SourceSpec(kind, arg)


@dataclass(frozen=True)
class SourceOptions:
    """How a source delivers frames.

    Attributes:
        fast: deliver every frame as fast as it is read (files only; no pacing, no drops).
        loop: start again at the end (files only).
        fps: frame rate: requested from a camera, pacing of images and the synthetic duet
            (default 30), overrides a video's own rate.
        width, height: resolution requested from a camera (pixels).
        seed: seed of the synthetic duet.
        hfov_deg: field of view of the synthetic duet's virtual camera.
    """

    fast: bool = False
    loop: bool = False
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    seed: int = 0
    hfov_deg: float = 60.0


@dataclass(frozen=True, eq=False)
class ImageFrame:
    """One image: ``index`` (per source), ``t_capture_ns`` (monotonic), ``image`` ``(H, W, 3)`` uint8 BGR."""

    index: int
    t_capture_ns: int
    image: NDArray[np.uint8]


@dataclass
class SourceStats:
    """Counts of a source: ``delivered`` items, ``dropped`` (stale or skipped) and ``bad`` (unreadable)."""

    delivered: int = 0
    dropped: int = 0
    bad: int = 0


def _short_id(text: str) -> str:
    """``text`` cut to :data:`MAX_SOURCE_ID` UTF-8 bytes (keeping the end, which names the file)."""
    raw = text.encode("utf-8")
    if len(raw) <= MAX_SOURCE_ID:
        return text
    return "…" + raw[-(MAX_SOURCE_ID - 3):].decode("utf-8", errors="ignore")  # "…" is 3 bytes


def _sleep_until(t_ns: int, stop: threading.Event) -> bool:
    """Sleep until monotonic ``t_ns``; False when ``stop`` was set first."""
    while (left := t_ns - time.monotonic_ns()) > 0:
        if stop.wait(min(left / 1e9, SLEEP_SLICE_S)):
            return False
    return not stop.is_set()


class Source:
    """Base of every source: a context manager with :meth:`read`."""

    source_id = ""
    produces_images = True
    nominal_fps = 30.0

    def __init__(self) -> None:
        self.stats = SourceStats()

    def __enter__(self) -> Source:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the device or file (idempotent)."""

    def read(self, stop: threading.Event) -> ImageFrame | PoseFrame | None:
        """The next item, or None when the source has ended or ``stop`` is set."""
        raise NotImplementedError


# ----------------------------------------------------------------------------- camera


class CameraSource(Source):
    """A camera read by its own grabbing thread; :meth:`read` returns the newest frame.

    Args:
        device: OpenCV index or device path.
        options: requested width, height and fps.
        backoff_s: first and largest wait between attempts to (re)open the camera, seconds.
    """

    def __init__(self, device: int | str, options: SourceOptions = SourceOptions(),
                 backoff_s: tuple[float, float] = (0.5, 5.0)) -> None:
        super().__init__()
        self.device = device
        self.source_id = _short_id(f"camera:{device}")
        self.options = options
        self.nominal_fps = options.fps or 30.0
        self._backoff = backoff_s
        self._closed = threading.Event()
        self._cond = threading.Condition()
        self._slot: ImageFrame | None = None
        self._grabbed = 0
        self._thread: threading.Thread | None = None
        self.state = "starting"
        """"waiting" (not available), "open" or "lost"; changes are logged once each."""

    def __enter__(self) -> CameraSource:
        self._thread = threading.Thread(target=self._grab_loop, name=f"grab-{self.source_id}", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._closed.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def _set_state(self, state: str, message: str, level: int = logging.WARNING) -> None:
        if state != self.state:
            self.state = state
            log.log(level, "%s: %s", self.source_id, message)

    def _open(self) -> Any:
        import cv2

        cap = cv2.VideoCapture(self.device)
        if not cap.isOpened():
            cap.release()
            return None
        o = self.options
        if o.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, o.width)
        if o.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, o.height)
        if o.fps:
            cap.set(cv2.CAP_PROP_FPS, o.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the driver keeps the newest frame, not a backlog
        return cap

    def _grab_loop(self) -> None:
        import cv2

        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # we log state changes ourselves
        wait = self._backoff[0]
        cap = None
        while not self._closed.is_set():
            if cap is None:
                cap = self._open()
                if cap is None:
                    what = "lost" if self.state in ("open", "lost") else "waiting"
                    self._set_state(what, "camera not available; retrying every "
                                    f"{self._backoff[0]:g}-{self._backoff[1]:g} s until it appears (Ctrl-C stops)")
                    self._closed.wait(wait)
                    wait = min(wait * 2, self._backoff[1])
                    continue
                w, h = cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)
                self._set_state("open", f"camera open, {w:.0f}x{h:.0f} at {cap.get(cv2.CAP_PROP_FPS):.0f} fps",
                                logging.INFO)
                wait = self._backoff[0]
            ok, image = cap.read()
            t = time.monotonic_ns()
            if not ok or image is None:
                cap.release()
                cap = None
                self._set_state("lost", "camera stopped delivering frames; reconnecting")
                continue
            with self._cond:
                if self._slot is not None:
                    self.stats.dropped += 1  # never taken: estimation was busy, a newer frame wins
                self._slot = ImageFrame(self._grabbed, t, image)
                self._grabbed += 1
                self._cond.notify_all()
        if cap is not None:
            cap.release()

    def read(self, stop: threading.Event) -> ImageFrame | None:
        with self._cond:
            while self._slot is None:
                if stop.is_set() or self._closed.is_set():
                    return None
                self._cond.wait(SLEEP_SLICE_S)
            frame, self._slot = self._slot, None
        self.stats.delivered += 1
        return frame


# ----------------------------------------------------------------------------- pacing


class _Pacer:
    """Real-time schedule of a file source: item ``k`` is due at ``t0 + offset(k)``.

    ``t0`` is the time of the first question asked (the first read), not of opening: loading the
    pose model after opening the source must not make the first frames late.
    """

    def __init__(self, fast: bool) -> None:
        self.fast = fast
        self.t0: int | None = None

    def _start(self) -> int:
        if self.t0 is None:
            self.t0 = time.monotonic_ns()
        return self.t0

    def wait(self, due_ns: int, stop: threading.Event) -> bool:
        """Sleep until the item due ``due_ns`` after the start (no-op with ``fast``)."""
        return True if self.fast else _sleep_until(self._start() + due_ns, stop)

    def late(self, due_ns: int) -> bool:
        """True when the item due ``due_ns`` after the start is already past (never with ``fast``)."""
        return not self.fast and time.monotonic_ns() > self._start() + due_ns


# ----------------------------------------------------------------------------- video and images


class VideoSource(Source):
    """A video file, paced like a camera unless ``fast``.

    Raises (on entry):
        SourceError: the file does not exist, or OpenCV cannot decode a frame of it.
    """

    def __init__(self, path: str, options: SourceOptions = SourceOptions()) -> None:
        super().__init__()
        self.path = Path(path)
        self.options = options
        self.source_id = _short_id(f"video:{self.path.name}")
        self._cap: Any = None
        self._pacer = _Pacer(options.fast)
        self._k = 0  # index of the next frame over all loops

    def __enter__(self) -> VideoSource:
        # FFmpeg's own log lines ("moov atom not found") would precede our one error line; the user
        # can still turn them on by setting the variable.
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        import cv2

        if not self.path.is_file():
            raise SourceError(f"video file {self.path} does not exist")
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened() or not cap.grab():
            cap.release()
            raise SourceError(f"cannot decode video {self.path}: not a video file OpenCV can read")
        cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.nominal_fps = self.options.fps or (fps if fps and math.isfinite(fps) and fps > 0 else 30.0)
        self._cap = cap
        return self

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _rewind(self) -> bool:
        import cv2

        if not self.options.loop:
            return False
        if not self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
            self._cap.release()
            self._cap = cv2.VideoCapture(str(self.path))
        return True

    def read(self, stop: threading.Event) -> ImageFrame | None:
        if self._cap is None:
            raise SourceError("the video source is not open: use it as a context manager")
        period = int(1e9 / self.nominal_fps)
        while not stop.is_set():
            if self._pacer.late((self._k + 1) * period):  # the next frame is due already: skip this one
                if not self._cap.grab():
                    if not self._rewind():
                        return None
                    continue
                self._k += 1
                self.stats.dropped += 1
                continue
            if not self._pacer.wait(self._k * period, stop):
                return None
            ok, image = self._cap.read()
            if not ok or image is None:
                if not self._rewind():
                    return None
                continue
            frame = ImageFrame(self._k, time.monotonic_ns(), image)
            self._k += 1
            self.stats.delivered += 1
            return frame
        return None


class ImagesSource(Source):
    """Image files matching a glob, in sorted order, paced at ``fps`` (default 30) unless ``fast``.

    Raises (on entry):
        SourceError: nothing matches, or a file is not an image OpenCV can read.
    """

    def __init__(self, pattern: str, options: SourceOptions = SourceOptions()) -> None:
        super().__init__()
        self.pattern = pattern
        self.options = options
        self.source_id = _short_id(f"images:{pattern}")
        self.nominal_fps = options.fps or 30.0
        self.files: list[str] = []
        self._pacer = _Pacer(options.fast)
        self._k = 0
        self._warned = False

    def __enter__(self) -> ImagesSource:
        import cv2

        self.files = sorted(f for f in glob.glob(self.pattern, recursive=True) if Path(f).is_file())
        if not self.files:
            raise SourceError(f"no image files match {self.pattern!r}")
        bad = [f for f in self.files if not cv2.haveImageReader(f)]
        if bad:
            raise SourceError(f"{bad[0]} is not an image OpenCV can read ({len(bad)} of {len(self.files)} files)")
        return self

    def read(self, stop: threading.Event) -> ImageFrame | None:
        import cv2

        period = int(1e9 / self.nominal_fps)
        n = len(self.files)
        while not stop.is_set():
            if self._k >= n and not self.options.loop:
                return None
            if self._pacer.late((self._k + 1) * period):
                self._k += 1
                self.stats.dropped += 1
                continue
            if not self._pacer.wait(self._k * period, stop):
                return None
            path = self.files[self._k % n]
            image = cv2.imread(path, cv2.IMREAD_COLOR)
            self._k += 1
            if image is None:
                self.stats.bad += 1
                if not self._warned:
                    log.warning("cannot decode %s; unreadable images are skipped and counted", path)
                    self._warned = True
                continue
            self.stats.delivered += 1
            return ImageFrame(self._k - 1, time.monotonic_ns(), np.asarray(image, np.uint8))
        return None


# ----------------------------------------------------------------------------- pose sources


class ReplaySource(Source):
    """The frames of a raw recording, re-stamped as if captured now, at their recorded timing.

    Unlike ``istrings replay`` (which sends the recorded bytes unchanged), every frame gets a new
    ``seq`` and ``t_capture_ns``, so downstream latencies are real. Undecodable records are
    skipped and counted in ``stats.bad``.

    Raises (on entry):
        SourceError: the file holds no decodable PoseFrame.
        RecordingError: not a recording (from :func:`stream.recording.read_recording`).
    """

    produces_images = False

    def __init__(self, path: str, options: SourceOptions = SourceOptions()) -> None:
        super().__init__()
        self.path = Path(path)
        self.options = options
        self.source_id = _short_id(f"replay:{self.path.name}")
        self._frames: list[PoseFrame] = []
        self._offsets: list[int] = []
        self._period = 0
        self._pacer = _Pacer(options.fast)
        self._k = 0

    def __enter__(self) -> ReplaySource:
        from stream.recording import loop_period_ns, read_recording

        if not self.path.is_file():
            raise SourceError(f"recording {self.path} does not exist")
        rec = read_recording(self.path, strict=False)
        if rec.damage is not None:
            log.warning("%s: %s; replaying the readable records", self.path, rec.damage.describe())
        t0 = rec.records[0].receive_ns if rec.records else 0
        for r in rec.records:
            try:
                self._frames.append(decode(r.payload))
            except ProtocolError:
                self.stats.bad += 1
                continue
            self._offsets.append(r.receive_ns - t0)
        if not self._frames:
            raise SourceError(f"recording {self.path} holds no decodable PoseFrame ({len(rec)} records)")
        self._period = loop_period_ns(rec.receive_ns) or int(1e9 / 30)
        if len(self._frames) > 1:
            self.nominal_fps = 1e9 * (len(self._frames) - 1) / max(1, self._offsets[-1])
        return self

    def read(self, stop: threading.Event) -> PoseFrame | None:
        n = len(self._frames)
        while not stop.is_set():
            if self._k >= n and not self.options.loop:
                return None
            due = (self._k // n) * self._period + self._offsets[self._k % n]
            nxt = self._k + 1
            if (nxt < n or self.options.loop) and self._pacer.late(
                (nxt // n) * self._period + self._offsets[nxt % n]
            ):
                self._k += 1
                self.stats.dropped += 1
                continue
            if not self._pacer.wait(due, stop):
                return None
            f = self._frames[self._k % n]
            frame = PoseFrame(
                seq=self._k, t_capture_ns=time.monotonic_ns(), layout=f.layout, scores=f.scores, image=f.image,
                world=f.world, source_id=self.source_id, image_size=f.image_size, flags=f.flags,
            )
            self._k += 1
            self.stats.delivered += 1
            return frame
        return None


class SyntheticSource(Source):
    """An endless synthetic duet (:class:`stream.synthetic.SyntheticStream`) as CANONICAL18 frames.

    The duet stands :data:`SYNTHETIC_DISTANCE_M` in front of a virtual camera
    (:data:`SYNTHETIC_IMAGE`, ``hfov_deg``) :data:`SYNTHETIC_CAMERA_HEIGHT_M` above the floor;
    ``world`` holds the exact stage-frame joints (placed, :data:`~stream.protocol.FLAG_WORLD_PLACED`)
    and ``image`` their pinhole projection (x, y normalised; z the depth relative to the pelvis
    in units of the image width; visibility 1 inside the image, 0 outside). Scores are 1.
    """

    produces_images = False

    def __init__(self, options: SourceOptions = SourceOptions()) -> None:
        super().__init__()
        self.options = options
        self.source_id = "synthetic"
        self.nominal_fps = options.fps or 30.0
        self._pacer = _Pacer(options.fast)
        self._stream: Any = None
        self._camera: Any = None

    def __enter__(self) -> SyntheticSource:
        from stream.placement import Camera
        from stream.synthetic import SyntheticConfig, SyntheticStream

        self._stream = SyntheticStream(SyntheticConfig(fps=self.nominal_fps, seed=self.options.seed))
        self._camera = Camera.from_fov(*SYNTHETIC_IMAGE, self.options.hfov_deg,
                                       height_m=SYNTHETIC_CAMERA_HEIGHT_M)
        return self

    def read(self, stop: threading.Event) -> PoseFrame | None:
        k = self._stream.frame_index
        while self._pacer.late(int((k + 1) * 1e9 / self.nominal_fps)):
            next(self._stream)  # behind real time: skip, as a camera would
            self.stats.dropped += 1
            k += 1
        if not self._pacer.wait(int(k * 1e9 / self.nominal_fps), stop):
            return None
        joints = next(self._stream).astype(np.float64) + np.array([0.0, 0.0, -SYNTHETIC_DISTANCE_M])  # (D, J, 3)
        frame = synthetic_frame(k, time.monotonic_ns(), joints, self._camera)
        self.stats.delivered += 1
        return frame


def synthetic_frame(seq: int, t_capture_ns: int, stage: NDArray[np.floating], camera: Any) -> PoseFrame:
    """A CANONICAL18 PoseFrame of stage-frame joints ``(D, J, 3)`` seen by ``camera`` (pure).

    ``camera`` is a :class:`stream.placement.Camera` with a known ``height_m``.
    """
    from stream.placement import stage_to_camera

    pts = stage_to_camera(stage, camera, camera.height_m)  # (D, J, 3) camera frame
    W, H = camera.width, camera.height
    uv = camera.project(pts)  # (D, J, 2) pixels
    depth = -pts[..., 2]
    root_depth = depth[:, :1]  # pelvis
    z = camera.fx * (depth - root_depth) / root_depth / W  # MediaPipe-like relative depth
    inside = (uv[..., 0] >= 0) & (uv[..., 0] <= W) & (uv[..., 1] >= 0) & (uv[..., 1] <= H) & (depth > 0)
    image = np.concatenate([uv / np.array([W, H]), z[..., None], inside[..., None]], axis=-1)  # (D, J, 4)
    D = stage.shape[0]
    return PoseFrame(
        seq=seq, t_capture_ns=t_capture_ns, layout=Layout.CANONICAL18, scores=np.ones(D, np.float32),
        image=image.astype(np.float32), world=np.asarray(stage, np.float32), source_id="synthetic",
        image_size=(W, H), flags=FLAG_WORLD_PLACED,
    )


def open_source(spec: str | SourceSpec, options: SourceOptions = SourceOptions()) -> Source:
    """The (not yet entered) source named by ``spec``.

    Raises:
        SourceError: a malformed name (see :func:`parse_source`).
    """
    s = parse_source(spec) if isinstance(spec, str) else spec
    if s.kind == "camera":
        return CameraSource(int(s.arg) if s.arg.isdigit() else s.arg, options)
    if s.kind == "video":
        return VideoSource(s.arg, options)
    if s.kind == "images":
        return ImagesSource(s.arg, options)
    if s.kind == "replay":
        return ReplaySource(s.arg, options)
    if s.kind == "synthetic":
        return SyntheticSource(options)
    raise SourceError(f"unknown source kind {s.kind!r}")

