"""Pose estimation with MediaPipe Tasks ``PoseLandmarker``: several people, image and world landmarks.

The bundled model (:data:`DEFAULT_MODEL`, ``stream/models/pose_landmarker_full.task``) is built
offline from the models inside the mediapipe 0.10.21 wheel by ``tools/build_pose_bundle.py``, so
capture works without the internet; ``--pose-model PATH`` takes a user's own lite/full/heavy
bundle.

Settings that matter for a duet (measured on the test photographs, see ``docs/capture.md``):

* ``num_poses = 3``: one more candidate than dancers, so the cleaning downstream can choose the
  best two (a third person walking by, or a duplicate detection of one dancer).
* ``min_pose_detection_confidence = 0.2``: with MediaPipe's default 0.5 the second person in a
  two-person photo (basketball1.png) is missed; 0.2 finds both.

Score of a person. MediaPipe Tasks returns no per-person score, only per-landmark
``visibility`` (in the image and not occluded) and ``presence`` (inside the frame). A person's
score is their mean product over the 33 landmarks::

    score = mean_l(visibility_l · presence_l)  ∈ [0, 1]

so a person cut by the frame edge or mostly occluded scores low (measured: 0.65 for the cut-off
player in basketball1.png, 0.95 for a full body).

Duplicates. Asking for more poses than there are people sometimes returns the same person twice
(measured: basketball2.png with ``num_poses = 3`` in IMAGE mode). :func:`suppress_duplicates` drops
the lower-scored of two poses whose landmarks lie on top of each other. (A different artefact: at a
scene cut in VIDEO mode, the tracker may carry the previous frame's person for one frame; it scores
like a real person and is left to the cleaning downstream.)

World landmarks: MediaPipe gives metres centred on the midpoint of the hips, x to the image's
right, y down, z away from the camera. They are returned here in the project's frame (x right,
y up, the camera looking along −z): ``(x, −y, −z)``. They are still centred on each person's
hips; :mod:`stream.placement` puts everybody into one shared frame.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from stream.errors import IStringsError

log = logging.getLogger(__name__)

L = 33
"""MediaPipe Pose landmarks per person (:data:`stream.skeleton.MEDIAPIPE33_NAMES`)."""
DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "pose_landmarker_full.task"
RunningMode = Literal["video", "live_stream"]
_LIVE_STREAM_TIMEOUT_S = 5.0


class PoseModelError(IStringsError, RuntimeError):
    """The pose model is missing, unreadable or not a PoseLandmarker bundle."""


@dataclass(frozen=True)
class PoseConfig:
    """Settings of the pose estimator.

    Attributes:
        model: a PoseLandmarker ``.task`` bundle (default: the bundled full model).
        num_poses: most people detected per frame (keep one or two more than the dancers).
        min_detection_confidence: person detector threshold in [0, 1] (0.2 finds both people
            where MediaPipe's 0.5 misses one).
        min_presence_confidence: landmark presence threshold in [0, 1].
        min_tracking_confidence: threshold to keep tracking instead of re-detecting, in [0, 1].
        running_mode: ``"video"`` (synchronous, timestamped) or ``"live_stream"`` (asynchronous
            graph, the result awaited per frame).
        duplicate_distance: two poses whose mean landmark distance is below this fraction of the
            larger pose's bounding-box diagonal are one person (0 disables).
    """

    model: Path = DEFAULT_MODEL
    num_poses: int = 3
    min_detection_confidence: float = 0.2
    min_presence_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    running_mode: RunningMode = "video"
    duplicate_distance: float = 0.1

    def __post_init__(self) -> None:
        if not 1 <= self.num_poses <= 16:
            raise PoseModelError(f"num_poses must be in 1..16, got {self.num_poses}")
        for name in ("min_detection_confidence", "min_presence_confidence", "min_tracking_confidence"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise PoseModelError(f"{name} must be in [0, 1], got {value}")
        if self.running_mode not in ("video", "live_stream"):
            raise PoseModelError(f"running mode must be 'video' or 'live_stream', got {self.running_mode!r}")


@dataclass(frozen=True, eq=False)
class Detections:
    """The people found in one image, best score first.

    Attributes:
        scores: ``(P,)`` float32 in [0, 1], see the module docstring.
        image: ``(P, L, 4)`` float32: x, y normalised to the image width/height, z (MediaPipe's
            relative depth, roughly the scale of x), visibility in [0, 1].
        presence: ``(P, L)`` float32 in [0, 1].
        world: ``(P, L, 3)`` float32 metres, hip-centred, x right, y up, the camera along −z.
        image_size: ``(width, height)`` pixels.
    """

    scores: NDArray[np.float32]
    image: NDArray[np.float32]
    presence: NDArray[np.float32]
    world: NDArray[np.float32]
    image_size: tuple[int, int]

    @property
    def num_people(self) -> int:
        return int(self.scores.shape[0])

    def select(self, keep: NDArray[np.intp]) -> Detections:
        """The people at indices ``keep``, in that order."""
        return Detections(self.scores[keep], self.image[keep], self.presence[keep], self.world[keep],
                          self.image_size)


def pose_score(visibility: NDArray[np.floating], presence: NDArray[np.floating]) -> NDArray[np.float32]:
    """Per-person score ``(P,)`` = mean over landmarks of visibility × presence, from ``(P, L)`` each."""
    vis = np.clip(np.asarray(visibility, np.float64), 0.0, 1.0)
    pres = np.clip(np.asarray(presence, np.float64), 0.0, 1.0)
    return np.asarray((vis * pres).mean(axis=-1), dtype=np.float32)


def suppress_duplicates(
    image_xy: NDArray[np.floating], scores: NDArray[np.floating], image_size: tuple[int, int], threshold: float
) -> NDArray[np.intp]:
    """Indices of the people to keep, best score first, without duplicates.

    Args:
        image_xy: ``(P, L, 2)`` normalised image positions.
        scores: ``(P,)``.
        image_size: ``(width, height)`` pixels (distances are compared in pixels).
        threshold: two poses are one person when their mean landmark distance is below
            ``threshold`` × the bounding-box diagonal of the larger one (0 keeps everybody).
    """
    order = np.argsort(-np.asarray(scores), kind="stable")
    if threshold <= 0 or len(order) < 2:
        return order.astype(np.intp)
    px = np.asarray(image_xy, np.float64) * np.asarray(image_size, np.float64)  # (P, L, 2) pixels
    diag = np.linalg.norm(px.max(axis=1) - px.min(axis=1), axis=-1)  # (P,)
    kept: list[int] = []
    for i in order:
        if all(
            np.linalg.norm(px[i] - px[k], axis=-1).mean() >= threshold * max(diag[i], diag[k])
            for k in kept
        ):
            kept.append(int(i))
    return np.asarray(kept, dtype=np.intp)


def mediapipe_world_to_frame(world: NDArray[np.floating]) -> NDArray[np.float32]:
    """MediaPipe world ``(..., 3)`` (x right, y down, z away) → project frame (x right, y up, −z ahead)."""
    w = np.asarray(world, np.float32)
    return np.stack([w[..., 0], -w[..., 1], -w[..., 2]], axis=-1)


def landmark_arrays(result: Any) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """``(P, L, 5)`` image (x, y, z, visibility, presence) and ``(P, L, 3)`` world from a Tasks result."""
    poses, worlds = result.pose_landmarks, result.pose_world_landmarks
    P = len(poses)
    img = np.zeros((P, L, 5), np.float32)
    wld = np.zeros((P, L, 3), np.float32)
    for p in range(P):
        img[p] = [(m.x, m.y, m.z, m.visibility or 0.0, m.presence or 0.0) for m in poses[p]]
        wld[p] = [(m.x, m.y, m.z) for m in worlds[p]]
    return img, wld


def detections_from_arrays(
    img: NDArray[np.floating], wld: NDArray[np.floating], image_size: tuple[int, int], duplicate_distance: float
) -> Detections:
    """Build :class:`Detections` from raw MediaPipe arrays (pure).

    Args:
        img: ``(P, L, 5)`` normalised x, y, z, visibility, presence.
        wld: ``(P, L, 3)`` MediaPipe world metres (y down, z away from the camera).
        image_size: ``(width, height)`` pixels.
        duplicate_distance: see :func:`suppress_duplicates`.
    """
    img = np.nan_to_num(np.asarray(img, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    wld = np.nan_to_num(np.asarray(wld, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    vis = np.clip(img[..., 3], 0.0, 1.0)  # (P, L)
    pres = np.clip(img[..., 4], 0.0, 1.0)
    scores = pose_score(vis, pres)
    image = np.concatenate([img[..., :3], vis[..., None]], axis=-1)  # (P, L, 4)
    det = Detections(scores, image, pres, mediapipe_world_to_frame(wld), image_size)
    return det.select(suppress_duplicates(image[..., :2], scores, image_size, duplicate_distance))


class PoseEstimator:
    """MediaPipe ``PoseLandmarker`` for a stream of frames (timestamps strictly increasing).

    Use as ``with PoseEstimator(config) as est: det = est(rgb, t_ns)``. ``mediapipe`` is
    imported on entry only.

    Raises (on entry):
        PoseModelError: the model file is missing or MediaPipe cannot load it.
    """

    def __init__(self, config: PoseConfig | None = None) -> None:
        self.config = config or PoseConfig()
        self._landmarker: Any = None
        self._mp: Any = None
        self._last_ms = -1
        self._live: dict[int, Any] = {}
        self._live_ready = threading.Condition()

    def __enter__(self) -> PoseEstimator:
        cfg = self.config
        path = Path(cfg.model)
        if not path.is_file():
            raise PoseModelError(
                f"pose model {path} does not exist; pass --pose-model PATH to a PoseLandmarker .task bundle "
                "(the bundled one is rebuilt with tools/build_pose_bundle.py)"
            )
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision

        self._mp = mp
        live = cfg.running_mode == "live_stream"
        try:
            # model_asset_buffer, not _path: MediaPipe mmaps a path and aborts on some bad files.
            options = vision.PoseLandmarkerOptions(
                base_options=BaseOptions(model_asset_buffer=path.read_bytes()),
                running_mode=vision.RunningMode.LIVE_STREAM if live else vision.RunningMode.VIDEO,
                num_poses=cfg.num_poses,
                min_pose_detection_confidence=cfg.min_detection_confidence,
                min_pose_presence_confidence=cfg.min_presence_confidence,
                min_tracking_confidence=cfg.min_tracking_confidence,
                result_callback=self._on_result if live else None,
            )
            self._landmarker = vision.PoseLandmarker.create_from_options(options)
        except (RuntimeError, ValueError, OSError) as exc:
            raise PoseModelError(
                f"MediaPipe cannot load {path} as a PoseLandmarker bundle ({exc}); pass --pose-model PATH "
                "to a pose_landmarker_{lite,full,heavy}.task file"
            ) from exc
        log.info("pose model %s: %d poses, detection confidence %.2f, %s mode", path.name, cfg.num_poses,
                 cfg.min_detection_confidence, cfg.running_mode)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def _on_result(self, result: Any, image: Any, timestamp_ms: int) -> None:
        with self._live_ready:
            self._live[timestamp_ms] = result
            self._live_ready.notify_all()

    def __call__(self, frame: NDArray[np.uint8], t_capture_ns: int, *, bgr: bool = True) -> Detections:
        """Detect people in one frame.

        Args:
            frame: ``(H, W, 3)`` uint8 image (BGR as OpenCV reads it, RGB with ``bgr=False``) or
                ``(H, W)`` grey.
            t_capture_ns: capture time (monotonic ns); MediaPipe gets it in ms, forced strictly
                increasing.
        """
        if self._landmarker is None:
            raise PoseModelError("the estimator is not open: use `with PoseEstimator(...) as est:`")
        rgb = _to_rgb(frame, bgr)
        H, W = rgb.shape[:2]
        ts = max(int(t_capture_ns // 1_000_000), self._last_ms + 1)
        self._last_ms = ts
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=rgb)
        if self.config.running_mode == "video":
            result = self._landmarker.detect_for_video(image, ts)
        else:
            result = self._await_live(image, ts)
        img, wld = landmark_arrays(result)
        return detections_from_arrays(img, wld, (W, H), self.config.duplicate_distance)

    def _await_live(self, image: Any, ts: int) -> Any:
        self._landmarker.detect_async(image, ts)
        with self._live_ready:
            if not self._live_ready.wait_for(lambda: ts in self._live, timeout=_LIVE_STREAM_TIMEOUT_S):
                raise PoseModelError(f"MediaPipe gave no live-stream result within {_LIVE_STREAM_TIMEOUT_S} s")
            result = self._live.pop(ts)
            self._live = {k: v for k, v in self._live.items() if k > ts}
        return result


def _to_rgb(frame: NDArray[np.uint8], bgr: bool) -> NDArray[np.uint8]:
    """A contiguous ``(H, W, 3)`` uint8 RGB copy of a BGR/RGB/grey frame."""
    a = np.asarray(frame)
    if a.dtype != np.uint8:
        raise PoseModelError(f"frames must be uint8 images, got {a.dtype}")
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    elif a.ndim == 3 and a.shape[-1] == 4:
        a = a[..., :3]
    if a.ndim != 3 or a.shape[-1] != 3:
        raise PoseModelError(f"frames must be (H, W, 3) or (H, W) images, got shape {a.shape}")
    return np.ascontiguousarray(a[..., ::-1] if bgr else a)
