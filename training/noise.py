"""A realistic noise model of a monocular pose estimator (MediaPipe-like) for clean duet clips.

Clean canonical joints ``(T, D, J, 3)`` (metres, y up, the camera looking along −z, so camera
depth is the z axis) become what a live capture would deliver, with the estimator's
per-joint confidence (``visibility``) and the loss weights of the refiner. Every corruption is
seeded (``numpy.random.Generator``) and its parameters live in :class:`NoiseConfig`.

Corruptions, applied in this order:

1. **bone-length wobble** — every bone vector is scaled by ``1 + ε_b(t)``, ``ε_b`` a slow
   AR(1) process of standard deviation ``bone_wobble`` (relative), re-assembled down the
   skeleton tree, so a wrist wobbles with its forearm *and* its upper arm;
2. **low-frequency drift** — per joint and axis an AR(1) process of standard deviation
   ``drift_m`` (x, y) and ``drift_m · depth_factor`` (z) with cutoff ``drift_hz``;
3. **jitter** — white noise per frame, joint and axis; ``σ`` by joint group (torso < limbs <
   extremities) and ``depth_factor`` times larger along z;
4. **dropped joints** — a joint drops out for a burst of frames (geometric length, mean
   ``drop_mean_frames``); its value is then either *held* (the last value the tracker saw, as
   :class:`inference.tracking.Tracker` does) or *garbage* (the true position plus
   ``garbage_m`` of Gaussian error — a landmark snapped onto the wrong limb or the background),
   decided once per dropout;
5. **identity swaps** — the two dancers trade places for ``swap_frames`` frames (the
   detector's person order is not stable across crossings);
6. **dropped frames** — the estimator returns nobody: both dancers repeat the previous output.

Where the numbers come from (read ``docs/results.md ("MKFF-ST-GCN refinement")`` for the discussion):

* Dill et al., *Sensors* 24(23):7772, 2024 — monocular MediaPipe Pose 3D against marker
  motion capture: median RMSE **56.3 mm** over joints (30.1 mm with stereo fusion). The
  defaults give a mean per-joint error of about 55–65 mm (``tests/training/test_noise.py``
  checks the parts; ``istrings eval mkff`` prints the raw MPJPE).
* Cerfoglio & Cimolin 2025 (Politecnico di Milano) — MediaPipe's 2D tracking is good but its
  3D uplifting distorts depth: hence ``depth_factor = 2`` (z noise twice x/y).
* Practitioner reports — landmarks flicker 5–10 px per frame on a still person (about 1–3 cm
  at 2–4 m with a 1080p camera), wrists/feet worse than the torso, left/right and person
  swaps during occlusions, visibility collapsing below 0.5 on occluded joints. The per-group
  σ, drop and swap rates are our assumptions within those reports, not measurements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from stream.errors import IStringsError
from stream.skeleton import CANONICAL, J

D = 2

TORSO_JOINTS: tuple[str, ...] = ("pelvis", "spine", "neck", "l_shoulder", "r_shoulder", "l_hip", "r_hip")
LIMB_JOINTS: tuple[str, ...] = ("l_elbow", "r_elbow", "l_knee", "r_knee")
EXTREMITY_JOINTS: tuple[str, ...] = ("head", "l_wrist", "r_wrist", "l_ankle", "r_ankle", "l_foot", "r_foot")
GROUPS: dict[str, tuple[str, ...]] = {"torso": TORSO_JOINTS, "limb": LIMB_JOINTS, "extremity": EXTREMITY_JOINTS}


class NoiseError(IStringsError, ValueError):
    """A noise parameter is out of range, or the clean joints have the wrong shape."""


@dataclass(frozen=True)
class NoiseConfig:
    """Parameters of the estimator noise (metres, seconds, Hz, probabilities per frame).

    Attributes:
        fps: frame rate of the clips the noise is applied to (Hz); sets the AR(1) time constants.
        jitter_torso_m: per-frame σ along x and y of pelvis, spine, neck, shoulders, hips.
        jitter_limb_m: σ of elbows and knees.
        jitter_extremity_m: σ of head, wrists, ankles and feet (the brief: 3–6 cm on wrists).
        depth_factor: σ along camera depth (z) ÷ σ along x, y (monocular depth is worse).
        drift_m: stationary σ of the slow drift along x, y (× ``depth_factor`` along z).
        drift_hz: cutoff of the drift (AR(1) with time constant ``1 / (2π drift_hz)``).
        bone_wobble: relative σ of every bone's length (0.04 = ±4 %).
        bone_wobble_hz: cutoff of the bone-length wobble.
        drop_rate: probability per joint-frame that a dropout starts.
        drop_mean_frames: mean length of a joint dropout (geometric), frames.
        garbage_fraction: fraction of dropouts whose value is garbage rather than held.
        garbage_m: σ per axis of a garbage value around the true position.
        swap_rate_hz: identity swaps per second.
        swap_frames: (min, max) length of a swap, frames.
        frame_drop_rate: probability per frame that the estimator returns nobody.
        visibility_torso: mean reported visibility of an observed torso joint (limbs and
            extremities lower, see :func:`apply_noise`); 0 for a dropped joint or frame.
    """

    fps: float = 30.0
    jitter_torso_m: float = 0.015
    jitter_limb_m: float = 0.025
    jitter_extremity_m: float = 0.04
    depth_factor: float = 2.0
    drift_m: float = 0.01
    drift_hz: float = 0.3
    bone_wobble: float = 0.04
    bone_wobble_hz: float = 1.0
    drop_rate: float = 0.01
    drop_mean_frames: float = 4.0
    garbage_fraction: float = 0.3
    garbage_m: float = 0.15
    swap_rate_hz: float = 0.1
    swap_frames: tuple[int, int] = (2, 6)
    frame_drop_rate: float = 0.01
    visibility_torso: float = 0.95

    def __post_init__(self) -> None:
        probs = (self.drop_rate, self.garbage_fraction, self.frame_drop_rate, self.visibility_torso)
        if not self.fps > 0 or any(not 0 <= p <= 1 for p in probs):
            raise NoiseError("fps must be > 0 and drop_rate, garbage_fraction, frame_drop_rate, "
                             "visibility_torso must lie in [0, 1]")
        sigmas = (self.jitter_torso_m, self.jitter_limb_m, self.jitter_extremity_m, self.drift_m,
                  self.bone_wobble, self.garbage_m, self.swap_rate_hz)
        if any(s < 0 for s in sigmas) or not self.depth_factor > 0:
            raise NoiseError("noise σ, rates and bone_wobble must be >= 0 and depth_factor > 0")
        if not (self.drift_hz > 0 and self.bone_wobble_hz > 0 and self.drop_mean_frames >= 1):
            raise NoiseError("drift_hz and bone_wobble_hz must be > 0 Hz and drop_mean_frames >= 1")
        lo, hi = self.swap_frames
        if not 1 <= lo <= hi:
            raise NoiseError(f"swap_frames must be (min, max) with 1 <= min <= max, got {self.swap_frames}")

    def jitter_sigma(self) -> NDArray[np.float64]:
        """Per-joint, per-axis jitter σ ``(J, 3)`` metres (z = x/y σ × ``depth_factor``)."""
        sig = np.zeros(J)
        for names, s in ((TORSO_JOINTS, self.jitter_torso_m), (LIMB_JOINTS, self.jitter_limb_m),
                         (EXTREMITY_JOINTS, self.jitter_extremity_m)):
            sig[[CANONICAL.index(n) for n in names]] = s
        return np.stack([sig, sig, sig * self.depth_factor], axis=-1)  # (J, 3)


@dataclass(frozen=True, eq=False)
class NoisySequence:
    """A clean sequence with the estimator's corruptions.

    Attributes:
        noisy: ``(T, D, J, 3)`` float32 metres, what the live path would see.
        visibility: ``(T, D, J)`` float32 in [0, 1], the estimator's confidence (0 = dropped).
        weights: ``(T, D, J)`` float32 loss weights: 1 where the *target* joint is observed (the
            clean clip's ``valid``), 0 where the clean clip itself has no dancer.
        dropped: ``(T, D, J)`` bool joints that dropped out (held or garbage).
        garbage: ``(T, D, J)`` bool dropped joints whose value is garbage.
        swapped: ``(T,)`` bool frames whose dancers are swapped.
        frame_dropped: ``(T,)`` bool frames repeated from the previous output.
    """

    noisy: NDArray[np.float32]
    visibility: NDArray[np.float32]
    weights: NDArray[np.float32]
    dropped: NDArray[np.bool_]
    garbage: NDArray[np.bool_]
    swapped: NDArray[np.bool_]
    frame_dropped: NDArray[np.bool_]


def ar1(rng: np.random.Generator, shape: tuple[int, ...], sigma: float | NDArray[np.float64], cutoff_hz: float,
        fps: float) -> NDArray[np.float64]:
    """A stationary AR(1) process along axis 0: ``x_t = a x_{t-1} + sqrt(1 - a²) σ ε_t``.

    ``a = exp(-2π cutoff_hz / fps)`` (a first-order low-pass of white noise); the first sample
    is drawn from the stationary distribution, so every frame has standard deviation ``σ``.

    Shapes:
        ``shape = (T, ...)``; ``sigma`` broadcasts over ``shape[1:]`` → ``(T, ...)``.
    """
    a = math.exp(-2.0 * math.pi * cutoff_hz / fps)
    eps = rng.standard_normal(shape)
    out = np.empty(shape)
    out[0] = eps[0]
    scale = math.sqrt(1.0 - a * a)
    for t in range(1, shape[0]):
        out[t] = a * out[t - 1] + scale * eps[t]
    return out * sigma


def _wobble_bones(joints: NDArray[np.float64], scale: NDArray[np.float64]) -> NDArray[np.float64]:
    """Re-assemble ``joints (T, D, J, 3)`` down the tree with every bone scaled by ``scale (T, D, J)``
    (entry ``j`` scales the bone parent(j) → j; the root's entry is unused)."""
    out = joints.copy()
    for j, p in enumerate(CANONICAL.parents):
        if p >= 0:
            out[..., j, :] = out[..., p, :] + (joints[..., j, :] - joints[..., p, :]) * scale[..., j, None]
    return out


def _bursts(rng: np.random.Generator, shape: tuple[int, ...], start_p: float, mean_len: float
            ) -> NDArray[np.bool_]:
    """Bursts along axis 0: each cell starts a burst with probability ``start_p``; lengths are
    geometric with mean ``mean_len`` frames. ``(T, ...)`` bool."""
    starts = rng.random(shape) < start_p
    lengths = rng.geometric(1.0 / mean_len, size=shape)
    out = np.zeros(shape, dtype=bool)
    T = shape[0]
    for idx in zip(*np.nonzero(starts), strict=True):
        t0 = int(idx[0])
        out[(slice(t0, min(T, t0 + int(lengths[idx]))), *idx[1:])] = True
    return out


def _hold_index(keep: NDArray[np.bool_]) -> NDArray[np.int64]:
    """For ``keep (T, ...)``, the index of the last kept frame at or before each frame (0 if none)."""
    T = keep.shape[0]
    t = np.arange(T).reshape(-1, *([1] * (keep.ndim - 1)))
    return np.asarray(np.maximum.accumulate(np.where(keep, t, 0), axis=0))


def apply_noise(joints: NDArray[np.floating], rng: np.random.Generator, config: NoiseConfig = NoiseConfig(),
                valid: NDArray[np.bool_] | None = None) -> NoisySequence:
    """Corrupt clean joints as a monocular estimator would (see the module docstring).

    Args:
        joints: ``(T, D, J, 3)`` clean joints, metres, at ``config.fps``.
        rng: the random generator (seed it for reproducible noise).
        config: the noise parameters.
        valid: ``(T, D)`` presence in the clean clip (default all True), becomes the loss weights.

    Raises:
        NoiseError: ``joints`` is not ``(T, 2, J, 3)`` with ``T >= 1``.
    """
    x = np.asarray(joints, dtype=np.float64)
    if x.ndim != 4 or x.shape[1:] != (D, J, 3) or x.shape[0] < 1:
        raise NoiseError(f"clean joints must have shape (T, {D}, {J}, 3) with T >= 1, got {x.shape}")
    T = x.shape[0]
    cfg = config
    # 1. bone-length wobble, re-assembled down the tree
    if cfg.bone_wobble > 0:
        x = _wobble_bones(x, 1.0 + ar1(rng, (T, D, J), cfg.bone_wobble, cfg.bone_wobble_hz, cfg.fps))
    # 2. slow drift and 3. white jitter, z (camera depth) worse than x/y
    axis_scale = np.array([1.0, 1.0, cfg.depth_factor])  # (3,)
    x = x + ar1(rng, (T, D, J, 3), cfg.drift_m * axis_scale, cfg.drift_hz, cfg.fps)
    x = x + rng.standard_normal((T, D, J, 3)) * cfg.jitter_sigma()  # (T, D, J, 3) m
    # 4. joint dropouts: held (the tracker's last value) or garbage
    dropped = _bursts(rng, (T, D, J), cfg.drop_rate, cfg.drop_mean_frames)  # (T, D, J)
    starts = dropped & ~np.concatenate([np.zeros((1, D, J), bool), dropped[:-1]])  # (T, D, J) first frames
    garbage_start = starts & (rng.random((T, D, J)) < cfg.garbage_fraction)  # one draw per dropout
    first = _hold_index(starts)  # (T, D, J) first frame of the dropout a cell belongs to
    d_idx, j_idx = np.meshgrid(np.arange(D), np.arange(J), indexing="ij")  # (D, J)
    is_garbage = dropped & garbage_start[first, d_idx[None], j_idx[None]]
    held = dropped & ~is_garbage
    hold = _hold_index(~held)  # (T, D, J) frame whose value a held joint keeps
    x = x[hold, d_idx[None], j_idx[None]]  # (T, D, J, 3): identity where not held
    x = np.where(is_garbage[..., None], x + rng.standard_normal((T, D, J, 3)) * cfg.garbage_m, x)
    # 5. identity swaps of the two dancers for a few frames
    swapped = np.zeros(T, dtype=bool)
    n_swaps = rng.poisson(cfg.swap_rate_hz * T / cfg.fps)
    lo, hi = cfg.swap_frames
    for t0 in rng.integers(0, T, size=n_swaps):
        swapped[t0 : t0 + int(rng.integers(lo, hi + 1))] = True
    x[swapped] = x[swapped][:, ::-1]
    # 6. dropped frames: nobody detected, the previous output repeats
    frame_dropped: NDArray[np.bool_] = np.asarray(rng.random(T) < cfg.frame_drop_rate)
    frame_dropped[0] = False
    x = x[_hold_index(~frame_dropped)]
    # visibility: lower on limbs and extremities, 0 where dropped
    group_vis = np.full(J, cfg.visibility_torso)
    group_vis[[CANONICAL.index(n) for n in LIMB_JOINTS]] = cfg.visibility_torso - 0.1
    group_vis[[CANONICAL.index(n) for n in EXTREMITY_JOINTS]] = cfg.visibility_torso - 0.2
    vis = np.clip(group_vis + 0.05 * rng.standard_normal((T, D, J)), 0.0, 1.0)
    vis = np.where(dropped | frame_dropped[:, None, None], 0.0, vis)
    v = np.ones((T, D), dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    if v.shape != (T, D):
        raise NoiseError(f"valid must have shape ({T}, {D}), got {v.shape}")
    weights = np.broadcast_to(v[:, :, None], (T, D, J)).astype(np.float32)
    return NoisySequence(
        noisy=x.astype(np.float32), visibility=vis.astype(np.float32), weights=weights, dropped=dropped,
        garbage=is_garbage, swapped=swapped, frame_dropped=frame_dropped,
    )
