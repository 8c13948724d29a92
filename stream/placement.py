"""Place every detected person in ONE shared metric frame, from the image and their world landmarks.

MediaPipe's world landmarks are metric but centred on each person's hips, so the distance
between the dancers is lost. Each person's root translation is recovered with a pinhole camera:

1. **Camera.** Intrinsics from a horizontal field of view (default 60°, principal point at the
   image centre, square pixels) or from a calibration file (fx, fy, cx, cy at a stated
   resolution, rescaled to the frames' size), plus the camera's height above the floor and its
   tilt (pitch, positive = looking down) when known.
2. **Translation** (``method="lsq"``, the default). The world landmarks ``X_i`` (camera-aligned
   axes: x right, y up, the camera looking along −z) are a rigid, already-rotated copy of the
   body, so only ``t`` is unknown: ``P_i = X_i + t`` must project onto the detected pixels
   ``(u_i, v_i)``. With ``a_i = (u_i − cx)/fx``, ``b_i = (cy − v_i)/fy`` the pinhole equations are
   linear in ``t``::

       t_x + a_i t_z = −a_i Z_i − X_i          t_y + b_i t_z = −b_i Z_i − Y_i

   two rows per landmark, weighted by visibility (landmarks outside the image or with
   visibility < 0.3 are left out), solved by least squares with a few Huber reweighting
   steps. The depth comes from the *spread* of the landmarks in the image against their
   metric spread — the bone-length ratio of every bone at once, foreshortening included.
   ``method="bones"`` is the simpler alternative kept for comparison: depth =
   weighted median over bones of ``f · |ΔX_xy| / |Δuv|`` (metric length of the bone's
   image-plane component over its pixel length), and the root on the ray through the hips' pixel.
3. **Floor.** Camera-frame points are turned into the shared *stage* frame: origin on the floor
   directly below the camera, y up, −z the camera's horizontal viewing direction, x right
   (``p_stage = R_x(−tilt) · p_cam + (0, h, 0)``). The camera height ``h`` is given, or
   estimated from the lowest foot points (heel / toe landmarks minus their usual height above
   the floor) as the median over the last frames of each frame's lowest person-wise foot
   point — a dancer in the air does not lift the floor while the other stands.

Limits (measured in ``docs/capture.md``): MediaPipe's world landmarks have an average-adult
scale, so a person ``s`` % smaller than that is placed ``s`` % too far; the tilt is not
estimated (a wrong tilt slants the floor).
"""

from __future__ import annotations

import json
import logging
import math
import tomllib
from collections import deque
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from stream.errors import IStringsError
from stream.skeleton import CANONICAL, MEDIAPIPE33_NAMES, Layout, layout_map

log = logging.getLogger(__name__)

Method = Literal["lsq", "bones"]
DEFAULT_HFOV_DEG = 60.0
DEFAULT_CAMERA_HEIGHT_M = 1.5
"""Used until feet have been seen when the camera height is neither given nor estimated yet."""
MIN_VISIBILITY = 0.3
_HUBER_M = 0.05  # metres at the person's depth: residuals beyond are down-weighted
_IRLS_STEPS = 3
_MIN_DEPTH_M = 0.3


class PlacementError(IStringsError, ValueError):
    """A camera description is invalid or a calibration file cannot be read."""


# ----------------------------------------------------------------------------- camera


@dataclass(frozen=True)
class Camera:
    """A pinhole camera and its pose above the floor.

    Attributes:
        fx, fy: focal lengths, pixels.
        cx, cy: principal point, pixels.
        width, height: the image size these intrinsics are for, pixels.
        height_m: camera height above the floor, metres (None: estimate from the feet).
        tilt_deg: pitch, degrees, positive when looking down.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    height_m: float | None = None
    tilt_deg: float = 0.0

    def __post_init__(self) -> None:
        if not (self.fx > 0 and self.fy > 0 and self.width > 0 and self.height > 0):
            raise PlacementError(f"camera needs positive focal lengths and image size, got {self}")
        if self.height_m is not None and not 0 < self.height_m < 50:
            raise PlacementError(f"camera height must be in (0, 50) m, got {self.height_m}")
        if not -89 < self.tilt_deg < 89:
            raise PlacementError(f"camera tilt must be in (-89, 89) degrees, got {self.tilt_deg}")

    @classmethod
    def from_fov(
        cls, width: int, height: int, hfov_deg: float = DEFAULT_HFOV_DEG, *,
        height_m: float | None = None, tilt_deg: float = 0.0,
    ) -> Camera:
        """Square pixels, principal point at the centre, ``fx = (W/2) / tan(hfov/2)``."""
        if not 1 < hfov_deg < 179:
            raise PlacementError(f"horizontal field of view must be in (1, 179) degrees, got {hfov_deg}")
        f = 0.5 * width / math.tan(math.radians(hfov_deg) / 2)
        return cls(f, f, width / 2, height / 2, width, height, height_m, tilt_deg)

    @classmethod
    def load(cls, path: Path) -> Camera:
        """Read a calibration file (TOML or JSON): ``fx, fy, cx, cy, width, height`` and optionally
        ``camera_height_m`` and ``tilt_deg``.

        Raises:
            PlacementError: the file is missing, unreadable, or lacks a key.
        """
        try:
            text = Path(path).read_text(encoding="utf-8")
            raw: dict[str, Any] = json.loads(text) if Path(path).suffix == ".json" else tomllib.loads(text)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
            raise PlacementError(f"cannot read camera calibration {path}: {exc}") from exc
        missing = [k for k in ("fx", "fy", "cx", "cy", "width", "height") if k not in raw]
        if missing:
            raise PlacementError(f"camera calibration {path} lacks {', '.join(missing)} (see docs/capture.md)")
        try:
            return cls(
                float(raw["fx"]), float(raw["fy"]), float(raw["cx"]), float(raw["cy"]),
                int(raw["width"]), int(raw["height"]),
                None if raw.get("camera_height_m") is None else float(raw["camera_height_m"]),
                float(raw.get("tilt_deg", 0.0)),
            )
        except (TypeError, ValueError) as exc:
            raise PlacementError(f"camera calibration {path}: {exc}") from exc

    def scaled_to(self, width: int, height: int) -> Camera:
        """The same camera for frames of another size (intrinsics scaled per axis)."""
        if (width, height) == (self.width, self.height):
            return self
        sx, sy = width / self.width, height / self.height
        return replace(self, fx=self.fx * sx, fy=self.fy * sy, cx=self.cx * sx, cy=self.cy * sy,
                       width=width, height=height)

    def project(self, points: NDArray[np.floating]) -> NDArray[np.float64]:
        """Camera-frame points ``(..., 3)`` (in front: z < 0) → pixels ``(..., 2)``."""
        p = np.asarray(points, np.float64)
        d = -p[..., 2]
        return np.stack([self.cx + self.fx * p[..., 0] / d, self.cy - self.fy * p[..., 1] / d], axis=-1)

    @cached_property
    def rotation(self) -> NDArray[np.float64]:
        """``R_x(−tilt)``: camera axes → stage axes ``(3, 3)``."""
        a = -math.radians(self.tilt_deg)
        c, s = math.cos(a), math.sin(a)
        return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def camera_to_stage(points: NDArray[np.floating], camera: Camera, height_m: float) -> NDArray[np.float64]:
    """Camera-frame points ``(..., 3)`` → stage frame (floor at y = 0, origin below the camera)."""
    p = np.asarray(points, np.float64) @ camera.rotation.T
    p[..., 1] += height_m
    return p


def stage_to_camera(points: NDArray[np.floating], camera: Camera, height_m: float) -> NDArray[np.float64]:
    """Inverse of :func:`camera_to_stage`."""
    p = np.asarray(points, np.float64).copy()
    p[..., 1] -= height_m
    return p @ camera.rotation


# ----------------------------------------------------------------------------- layouts


@dataclass(frozen=True)
class BodyLayout:
    """What placement needs to know of a landmark layout.

    Attributes:
        root: ``(L,)`` weights of the root (pelvis) as a mean of landmarks.
        bones: landmark index pairs used by ``method="bones"``.
        feet: landmark indices that touch the floor.
        foot_heights: ``(len(feet),)`` usual height of each above the floor, metres.
    """

    root: NDArray[np.float64]
    bones: tuple[tuple[int, int], ...]
    feet: tuple[int, ...]
    foot_heights: tuple[float, ...]


def body_layout(layout: Layout) -> BodyLayout:
    """The :class:`BodyLayout` of MEDIAPIPE33 or CANONICAL18.

    Raises:
        PlacementError: another layout (placement only ever sees these two).
    """
    root = layout_map(layout).weights[CANONICAL.index("pelvis")]
    if layout == Layout.MEDIAPIPE33:
        n = MEDIAPIPE33_NAMES.index
        pairs = [("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
                 ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
                 ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
                 ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
                 ("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"),
                 ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip")]
        feet = ("left_heel", "right_heel", "left_foot_index", "right_foot_index")
        return BodyLayout(root, tuple((n(a), n(b)) for a, b in pairs), tuple(n(f) for f in feet),
                          (0.03, 0.03, 0.02, 0.02))
    if layout == Layout.CANONICAL18:
        c = CANONICAL.index
        feet = ("l_ankle", "r_ankle", "l_foot", "r_foot")
        return BodyLayout(root, CANONICAL.bones, tuple(c(f) for f in feet), (0.075, 0.075, 0.015, 0.015))
    raise PlacementError(f"placement supports MEDIAPIPE33 and CANONICAL18, not {layout.name}")


# ----------------------------------------------------------------------------- translation


def _weights(uv: NDArray[np.float64], vis: NDArray[np.float64], camera: Camera) -> NDArray[np.float64]:
    """Visibility weights ``(..., L)`` from pixels ``(..., L, 2)``: 0 below :data:`MIN_VISIBILITY` or
    outside the image."""
    inside = (uv[..., 0] >= 0) & (uv[..., 0] <= camera.width) & (uv[..., 1] >= 0) & (uv[..., 1] <= camera.height)
    return np.where(inside & (vis >= MIN_VISIBILITY), vis, 0.0)


def solve_translations(
    uv: NDArray[np.floating], weight: NDArray[np.floating], rel: NDArray[np.floating], camera: Camera
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Camera-frame translations ``t`` so that ``rel + t`` projects onto ``uv``, for ``P`` people at once.

    Weighted least squares on the linear pinhole equations (module docstring), by their 3 × 3
    normal equations solved in closed form, with :data:`_IRLS_STEPS` Huber reweighting steps.

    Args:
        uv: ``(P, L, 2)`` pixels.
        weight: ``(P, L)`` non-negative weights (0 = unused).
        rel: ``(P, L, 3)`` metres, camera-aligned axes, centred on the root.
        camera: the camera.

    Returns:
        ``(P, 3)`` translations and ``(P,)`` True where the solve is valid (≥ 3 landmarks used, the
        root at least :data:`_MIN_DEPTH_M` in front of the camera).
    """
    p = np.asarray(uv, np.float64)
    X = np.asarray(rel, np.float64)
    w0 = np.asarray(weight, np.float64)  # (P, L)
    a = (p[..., 0] - camera.cx) / camera.fx  # (P, L) normalised image coordinates
    b = (camera.cy - p[..., 1]) / camera.fy
    y1 = -a * X[..., 2] - X[..., 0]  # rows (1, 0, a) · t = y1
    y2 = -b * X[..., 2] - X[..., 1]  # rows (0, 1, b) · t = y2
    F1 = np.stack([np.ones_like(a), a, a * a, y1, a * y1], -1)  # (P, L, 5) terms of the normal equations
    F2 = np.stack([np.ones_like(b), b, b * b, y2, b * y2], -1)
    w1, w2 = w0, w0
    with np.errstate(divide="ignore", invalid="ignore"):
        for _ in range(_IRLS_STEPS):
            s1 = np.einsum("pl,plk->kp", w1, F1)  # (5, P): Σw, Σwa, Σwa², Σwy, Σway
            s2 = np.einsum("pl,plk->kp", w2, F2)
            # Normal equations [[S1, 0, A], [0, S2, B], [A, B, C]] t = [R1, R2, R3], solved in closed form.
            tz = (s1[4] + s2[4] - s1[1] * s1[3] / s1[0] - s2[1] * s2[3] / s2[0]) / (
                s1[2] + s2[2] - s1[1] ** 2 / s1[0] - s2[1] ** 2 / s2[0])
            tx = (s1[3] - s1[1] * tz) / s1[0]
            ty = (s2[3] - s2[1] * tz) / s2[0]
            w1 = w0 * np.minimum(1.0, _HUBER_M / np.abs(tx[:, None] + a * tz[:, None] - y1))  # residuals in
            w2 = w0 * np.minimum(1.0, _HUBER_M / np.abs(ty[:, None] + b * tz[:, None] - y2))  # metres at depth
    t = np.stack([tx, ty, tz], -1) if p.shape[0] else np.zeros((0, 3))  # (P, 3)
    ok = ((w0 > 0).sum(-1) >= 3) & np.isfinite(t).all(-1) & (-t[:, 2] >= _MIN_DEPTH_M)
    return t, ok


def solve_translation(
    uv: NDArray[np.floating], weight: NDArray[np.floating], rel: NDArray[np.floating], camera: Camera
) -> NDArray[np.float64] | None:
    """:func:`solve_translations` for one person: ``(L, 2)``, ``(L,)``, ``(L, 3)`` → ``(3,)`` or None."""
    t, ok = solve_translations(np.asarray(uv)[None], np.asarray(weight)[None], np.asarray(rel)[None], camera)
    return t[0] if ok[0] else None


def translation_from_bones(
    uv: NDArray[np.floating], weight: NDArray[np.floating], rel: NDArray[np.floating], camera: Camera,
    layout: BodyLayout,
) -> NDArray[np.float64] | None:
    """Translation from bone-length ratios: depth = weighted median of ``f·|ΔX_xy| / |Δuv|``.

    Returns None when no bone is usable (both ends weighted, ≥ 4 px and ≥ 5 cm long).
    """
    p = np.asarray(uv, np.float64)
    X = np.asarray(rel, np.float64)
    w = np.asarray(weight, np.float64)
    f = 0.5 * (camera.fx + camera.fy)
    depths, ws = [], []
    for i, j in layout.bones:
        px = float(np.linalg.norm(p[i] - p[j]))
        metric = float(np.linalg.norm(X[i, :2] - X[j, :2]))
        if w[i] > 0 and w[j] > 0 and px >= 4 and metric >= 0.05:
            depths.append(f * metric / px)
            ws.append(min(w[i], w[j]))
    if not depths:
        return None
    order = np.argsort(depths)
    cum = np.cumsum(np.asarray(ws)[order])
    d = float(np.asarray(depths)[order][np.searchsorted(cum, 0.5 * cum[-1])])
    root_uv = layout.root @ p  # (2,) the root's pixel
    a, b = (root_uv[0] - camera.cx) / camera.fx, (camera.cy - root_uv[1]) / camera.fy
    root_rel = layout.root @ X  # ~0 for hip-centred landmarks
    return np.array([a * d, b * d, -d]) - root_rel


def place_in_camera(
    uv: NDArray[np.floating], vis: NDArray[np.floating], rel: NDArray[np.floating], camera: Camera,
    layout: BodyLayout, method: Method = "lsq",
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Camera-frame positions of every person.

    Args:
        uv: ``(P, L, 2)`` pixels.
        vis: ``(P, L)`` visibility in [0, 1].
        rel: ``(P, L, 3)`` root-centred metres, camera-aligned axes.
        camera: the camera (intrinsics for this image size).
        layout: the landmarks' :class:`BodyLayout`.
        method: ``"lsq"`` (falls back to ``"bones"`` when it fails) or ``"bones"``.

    Returns:
        ``(P, L, 3)`` camera-frame metres and ``(P,)`` True where a person could be placed.
    """
    p = np.asarray(uv, np.float64)
    return _place_weighted(p, _weights(p, np.asarray(vis, np.float64), camera), np.asarray(rel, np.float64),
                           camera, layout, method)


def _place_weighted(
    p: NDArray[np.float64], w: NDArray[np.float64], X: NDArray[np.float64], camera: Camera, layout: BodyLayout,
    method: Method,
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """:func:`place_in_camera` with the landmark weights ``(P, L)`` already computed."""
    if method == "lsq":
        t, ok = solve_translations(p, w, X, camera)
    else:
        t, ok = np.zeros((p.shape[0], 3)), np.zeros(p.shape[0], dtype=bool)
    for k in np.nonzero(~ok)[0]:  # the bone ratios where the least squares failed (or were not asked)
        tb = translation_from_bones(p[k], w[k], X[k], camera, layout)
        if tb is not None and -tb[2] >= _MIN_DEPTH_M:
            t[k], ok[k] = tb, True
    out = X + t[:, None, :]
    out[~ok] = 0.0
    return out, ok


# ----------------------------------------------------------------------------- floor and placer


class FloorEstimator:
    """Camera height above the floor from the lowest feet, the median over a window of frames.

    The median is recomputed every ``every`` new values (and while fewer than ``every`` were seen),
    which keeps the per-frame cost to a few microseconds.

    Args:
        window: frames kept.
        default_m: returned before any foot has been seen.
        every: recompute period of the median, in added values.
    """

    def __init__(self, window: int = 90, default_m: float = DEFAULT_CAMERA_HEIGHT_M, every: int = 10) -> None:
        self._floor: deque[float] = deque(maxlen=window)
        self._height = default_m
        self._every = every
        self._added = 0

    def update(self, level_points: NDArray[np.floating], weights: NDArray[np.floating], ok: NDArray[np.bool_],
               layout: BodyLayout) -> float:
        """Add one frame (``(P, L, 3)`` camera origin, stage axes) and return the camera height (m)."""
        idx = np.asarray(layout.feet)
        y = np.asarray(level_points, np.float64)[:, idx, 1] - np.asarray(layout.foot_heights)  # (P, F)
        good = (np.asarray(weights)[:, idx] > 0) & np.asarray(ok)[:, None]
        if good.any():
            self._floor.append(float(y[good].min()))
            self._added += 1
            if self._added == 1:
                log.info("floor found from the dancers' feet: camera %.2f m above it", -self._floor[-1])
            if self._added <= self._every or self._added % self._every == 0:
                self._height = -float(np.median(self._floor))
        return self._height


class Placer:
    """Place every person of a stream of frames in the stage frame (stateful: the floor estimate).

    Args:
        camera: a camera (rescaled to each frame's size); None: ``hfov_deg`` intrinsics.
        layout: the landmarks' layout (MEDIAPIPE33 or CANONICAL18).
        method: see :func:`place_in_camera`.
        hfov_deg: horizontal field of view when no camera is given.
        height_m, tilt_deg: camera height (None: estimate) and tilt when no camera is given.
    """

    def __init__(
        self, camera: Camera | None = None, *, layout: Layout = Layout.MEDIAPIPE33, method: Method = "lsq",
        hfov_deg: float = DEFAULT_HFOV_DEG, height_m: float | None = None, tilt_deg: float = 0.0,
    ) -> None:
        self._base = camera
        self._hfov = hfov_deg
        self._height_m, self._tilt = height_m, tilt_deg
        if camera is None:
            Camera.from_fov(640, 480, hfov_deg, height_m=height_m, tilt_deg=tilt_deg)  # validate early
        self.layout = body_layout(layout)
        self.method = method
        self.floor = FloorEstimator()
        self._cams: dict[tuple[int, int], Camera] = {}
        self.unplaced = 0
        """People dropped because no translation could be found (too few visible landmarks)."""

    def camera(self, width: int, height: int) -> Camera:
        """The camera for frames of this size."""
        cam = self._cams.get((width, height))
        if cam is None:
            cam = (self._base.scaled_to(width, height) if self._base is not None else
                   Camera.from_fov(width, height, self._hfov, height_m=self._height_m, tilt_deg=self._tilt))
            self._cams[(width, height)] = cam
        return cam

    def __call__(
        self, image: NDArray[np.floating], world: NDArray[np.floating], image_size: tuple[int, int]
    ) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
        """Stage-frame landmarks of every person.

        Args:
            image: ``(P, L, 4)`` normalised x, y, z, visibility.
            world: ``(P, L, 3)`` root-centred metres, camera-aligned axes (y up, −z ahead).
            image_size: ``(width, height)`` pixels.

        Returns:
            ``(P, L, 3)`` float32 stage metres (floor y = 0) and ``(P,)`` placed mask (unplaced
            people hold zeros and should be dropped).
        """
        W, H = image_size
        cam = self.camera(W, H)
        img = np.asarray(image, np.float64)
        uv = img[..., :2] * np.array([W, H], np.float64)  # (P, L, 2) pixels
        w = _weights(uv, img[..., 3], cam)  # (P, L)
        pts, ok = _place_weighted(uv, w, np.asarray(world, np.float64), cam, self.layout, self.method)
        self.unplaced += int((~ok).sum())
        level = pts @ cam.rotation.T if cam.tilt_deg else pts  # (P, L, 3) camera origin, stage axes
        h = cam.height_m if cam.height_m is not None else self.floor.update(level, w, ok, self.layout)
        level[..., 1] += h
        level[~ok] = 0.0
        return level.astype(np.float32), ok


# ----------------------------------------------------------------------------- measured error


@dataclass(frozen=True)
class Scenario:
    """One condition of :func:`measure_error`.

    Attributes:
        name: label in the report.
        noise_px: Gaussian pixel noise (σ, pixels) on every landmark.
        world_noise_m: Gaussian noise (σ, metres) on every world landmark.
        occlusion: fraction of landmarks hidden (visibility 0) at random.
        outliers: fraction of landmarks moved 20-60 px in a random direction (gross detector errors).
        world_scale: factor on the world landmarks (MediaPipe assumes an average body: 0.95 is a
            dancer 5 % larger than it believes).
        known_height: the camera height is given (else estimated from the feet).
        method: translation method.
    """

    name: str
    noise_px: float = 0.0
    world_noise_m: float = 0.0
    occlusion: float = 0.0
    outliers: float = 0.0
    world_scale: float = 1.0
    known_height: bool = True
    method: Method = "lsq"


DEFAULT_SCENARIOS = (
    Scenario("exact"),
    Scenario("2px", noise_px=2.0),
    Scenario("5px", noise_px=5.0),
    Scenario("2px+2cm world", noise_px=2.0, world_noise_m=0.02),
    Scenario("2px+2cm world+20% hidden", noise_px=2.0, world_noise_m=0.02, occlusion=0.2),
    Scenario("2px+2cm world+10% outliers", noise_px=2.0, world_noise_m=0.02, outliers=0.1),
    Scenario("2px+2cm world, floor estimated", noise_px=2.0, world_noise_m=0.02, known_height=False),
    Scenario("2px+2cm world, body 5% larger than MediaPipe assumes", noise_px=2.0, world_noise_m=0.02,
             world_scale=1 / 1.05),
    Scenario("bones: 2px+2cm world", noise_px=2.0, world_noise_m=0.02, method="bones"),
)


def measure_error(
    scenarios: tuple[Scenario, ...] = DEFAULT_SCENARIOS, *, clips: int = 40, frames: int = 10,
    image_size: tuple[int, int] = (1280, 720), hfov_deg: float = DEFAULT_HFOV_DEG,
    distances: tuple[float, float] = (2.0, 6.0), seed: int = 0,
) -> dict[str, Any]:
    """Root position error of :class:`Placer` on projected synthetic duets with known positions.

    Duets from :mod:`stream.synthetic` (canonical skeletons, ``(T, D, J, 3)``, 1.55–1.90 m tall)
    stand with their centre at a random distance in ``distances`` (m) and a random sideways
    offset inside the view; the camera is 1.2–2.0 m high, tilted 0–15° down (both known to the
    placer unless the scenario estimates the height). Each dancer's landmarks are projected
    (pinhole), noised, and their root-centred camera-axis positions serve as world landmarks.

    Returns:
        ``{"setup": ..., "scenarios": {name: {"bins": {"2-3 m": {"median_cm", "p95_cm", "n"}, ...},
        "all": {...}, "unplaced": int}}}`` — errors are 3D distances between the placed and the
        true pelvis, stage frame, cm; bins by the dancer's true distance.
    """
    from stream.synthetic import make_dataset

    W, H = image_size
    data = make_dataset(clips, frames, seed=seed).joints.astype(np.float64)  # (S, T, D, J, 3) stage
    rng = np.random.default_rng(seed + 1)
    root_w = body_layout(Layout.CANONICAL18).root  # (J,)
    report: dict[str, Any] = {
        "setup": {"image": [W, H], "hfov_deg": hfov_deg, "duets": clips, "frames_per_duet": frames,
                  "distance_m": list(distances), "camera_height_m": [1.2, 2.0], "tilt_deg": [0.0, 15.0]},
        "scenarios": {},
    }
    edges = np.arange(math.floor(distances[0]), math.ceil(distances[1]) + 1)
    for sc in scenarios:
        srng = np.random.default_rng(rng.integers(1 << 31))
        errors: list[tuple[float, float]] = []  # (true distance, error m)
        unplaced = 0
        for s in range(clips):
            cam = Camera.from_fov(W, H, hfov_deg, height_m=float(srng.uniform(1.2, 2.0)),
                                  tilt_deg=float(srng.uniform(0.0, 15.0)))
            assert cam.height_m is not None
            dist = srng.uniform(*distances)
            side = srng.uniform(-1, 1) * 0.35 * dist * W / (2 * cam.fx)
            placer = Placer(cam if sc.known_height else replace(cam, height_m=None),
                            layout=Layout.CANONICAL18, method=sc.method)
            for t in range(frames):
                stage = data[s, t] + np.array([side, 0.0, -dist])  # (D, J, 3)
                cam_pts = stage_to_camera(stage, cam, cam.height_m)  # (D, J, 3)
                uv = cam.project(cam_pts) + srng.normal(0, sc.noise_px, (*cam_pts.shape[:2], 2)) * (sc.noise_px > 0)
                if sc.outliers > 0:
                    hit = srng.uniform(size=uv.shape[:2]) < sc.outliers  # (D, J)
                    ang = srng.uniform(0, 2 * np.pi, uv.shape[:2])
                    jump = srng.uniform(20, 60, uv.shape[:2])[..., None] * np.stack([np.cos(ang), np.sin(ang)], -1)
                    uv = uv + hit[..., None] * jump
                roots = np.einsum("j,djc->dc", root_w, cam_pts)  # (D, 3)
                rel = (cam_pts - roots[:, None]) * sc.world_scale + srng.normal(0, 1, cam_pts.shape) * sc.world_noise_m
                vis = (srng.uniform(size=cam_pts.shape[:2]) >= sc.occlusion).astype(np.float64)
                image = np.concatenate([uv / np.array([W, H]), np.zeros((*uv.shape[:2], 1)), vis[..., None]], -1)
                placed, ok = placer(image, rel, (W, H))
                unplaced += int((~ok).sum())
                true_root = np.einsum("j,djc->dc", root_w, stage)
                est_root = np.einsum("j,djc->dc", root_w, placed.astype(np.float64))
                for d in np.nonzero(ok)[0]:
                    errors.append((float(-cam_pts[d, :, 2] @ root_w),
                                   float(np.linalg.norm(est_root[d] - true_root[d]))))
        arr = np.asarray(errors)

        def stats(e: NDArray[np.float64]) -> dict[str, float | int]:
            if e.size == 0:
                return {"median_cm": float("nan"), "p95_cm": float("nan"), "n": 0}
            return {"median_cm": round(float(np.median(e)) * 100, 1),
                    "p95_cm": round(float(np.quantile(e, 0.95)) * 100, 1), "n": int(e.size)}

        bins = {f"{lo}-{lo + 1} m": stats(arr[(arr[:, 0] >= lo) & (arr[:, 0] < lo + 1), 1])
                for lo in edges[:-1]}
        report["scenarios"][sc.name] = {"bins": {k: v for k, v in bins.items() if v["n"]},
                                        "all": stats(arr[:, 1]), "unplaced": unplaced}
    return report
