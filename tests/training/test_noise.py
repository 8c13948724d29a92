"""The estimator noise model: every corruption's statistics match its parameters, seeded, shaped."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stream.skeleton import CANONICAL, J
from training.noise import (
    EXTREMITY_JOINTS,
    LIMB_JOINTS,
    TORSO_JOINTS,
    NoiseConfig,
    NoiseError,
    apply_noise,
    ar1,
)

OFF = NoiseConfig(jitter_torso_m=0.0, jitter_limb_m=0.0, jitter_extremity_m=0.0, drift_m=0.0, bone_wobble=0.0,
                  drop_rate=0.0, swap_rate_hz=0.0, frame_drop_rate=0.0)
"""Every corruption off; each test turns one on."""


def still_duet(T: int) -> np.ndarray:
    """A T-pose-ish duet standing still for ``T`` frames: ``(T, 2, J, 3)`` metres, dancers 2 m apart."""
    rng = np.random.default_rng(0)
    pose = rng.normal(0.0, 0.3, size=(J, 3)) + np.array([0.0, 1.0, 0.0])
    pose[CANONICAL.index("neck")] = pose[CANONICAL.index("pelvis")] + np.array([0.0, 0.5, 0.0])
    duet = np.stack([pose, pose + np.array([2.0, 0.0, 0.0])])
    return np.broadcast_to(duet, (T, 2, J, 3)).astype(np.float32).copy()


def _idx(names: tuple[str, ...]) -> list[int]:
    return [CANONICAL.index(n) for n in names]


def test_jitter_sigma_per_joint_group_and_depth() -> None:
    cfg = NoiseConfig(**{**OFF.__dict__, "jitter_torso_m": 0.015, "jitter_limb_m": 0.025,
                         "jitter_extremity_m": 0.04, "depth_factor": 2.0})
    clean = still_duet(3000)
    err = apply_noise(clean, np.random.default_rng(1), cfg).noisy - clean  # (T, D, J, 3)
    for names, sigma in ((TORSO_JOINTS, 0.015), (LIMB_JOINTS, 0.025), (EXTREMITY_JOINTS, 0.04)):
        e = err[:, :, _idx(names)]
        np.testing.assert_allclose(e[..., :2].std(), sigma, rtol=0.05)  # x, y
        np.testing.assert_allclose(e[..., 2].std(), 2.0 * sigma, rtol=0.05)  # camera depth
    assert err[:, :, _idx(EXTREMITY_JOINTS)].std() > 2 * err[:, :, _idx(TORSO_JOINTS)].std()


def test_drift_is_slow_with_the_stated_sigma() -> None:
    cfg = NoiseConfig(**{**OFF.__dict__, "drift_m": 0.01, "drift_hz": 0.3})
    clean = still_duet(6000)
    err = (apply_noise(clean, np.random.default_rng(2), cfg).noisy - clean).astype(np.float64)
    np.testing.assert_allclose(err[..., :2].std(), 0.01, rtol=0.15)
    np.testing.assert_allclose(err[..., 2].std(), 0.02, rtol=0.15)
    a = math.exp(-2 * math.pi * 0.3 / 30.0)  # lag-1 autocorrelation of the AR(1)
    lag1 = (err[1:] * err[:-1]).mean() / (err * err).mean()
    assert lag1 == pytest.approx(a, abs=0.01)


def test_ar1_is_stationary_from_the_first_frame() -> None:
    x = ar1(np.random.default_rng(3), (50, 20000), 0.5, 1.0, 30.0)
    np.testing.assert_allclose(x[0].std(), 0.5, rtol=0.03)
    np.testing.assert_allclose(x[-1].std(), 0.5, rtol=0.03)


def test_bone_length_wobble() -> None:
    cfg = NoiseConfig(**{**OFF.__dict__, "bone_wobble": 0.04})
    clean = still_duet(4000)
    noisy = apply_noise(clean, np.random.default_rng(4), cfg).noisy
    ratio = CANONICAL.bone_lengths(noisy) / CANONICAL.bone_lengths(clean)  # (T, D, 17)
    np.testing.assert_allclose(ratio.mean(), 1.0, atol=0.005)
    np.testing.assert_allclose(ratio.std(), 0.04, rtol=0.1)
    pelvis = CANONICAL.index("pelvis")
    np.testing.assert_allclose(noisy[:, :, pelvis], clean[:, :, pelvis])  # the root does not move


def test_dropped_joints_rate_hold_and_garbage() -> None:
    p, L = 0.01, 4.0
    cfg = NoiseConfig(**{**OFF.__dict__, "drop_rate": p, "drop_mean_frames": L, "garbage_fraction": 0.3})
    T = 20000
    clean = still_duet(T) + np.linspace(0, 1, T, dtype=np.float32)[:, None, None, None]  # moving, so held ≠ clean
    ns = apply_noise(clean, np.random.default_rng(5), cfg)
    # a cell is covered unless no burst that started k frames earlier still lasts: Π_k (1 - p (1 - 1/L)^k)
    expected = 1.0 - np.prod([1.0 - p * (1.0 - 1.0 / L) ** k for k in range(400)])
    assert ns.dropped.mean() == pytest.approx(expected, rel=0.08)
    assert (ns.garbage.sum() / ns.dropped.sum()) == pytest.approx(0.3, abs=0.03)
    assert (ns.visibility[ns.dropped] == 0).all() and (ns.visibility[~ns.dropped] > 0).all()
    held = ns.dropped & ~ns.garbage
    held[0] = False
    t, d, j = np.nonzero(held)
    np.testing.assert_array_equal(ns.noisy[t, d, j], ns.noisy[t - 1, d, j])  # the tracker's last value
    ok = ~ns.dropped
    np.testing.assert_allclose(ns.noisy[ok], clean[ok])  # nothing else is touched
    g_err = np.linalg.norm(ns.noisy[ns.garbage] - clean[ns.garbage], axis=-1)
    assert np.median(g_err) > 0.15  # garbage is far off (σ 0.15 m per axis)


def test_dropped_frames_repeat_the_previous_frame() -> None:
    cfg = NoiseConfig(**{**OFF.__dict__, "frame_drop_rate": 0.05})
    T = 20000
    clean = still_duet(T) + np.linspace(0, 1, T, dtype=np.float32)[:, None, None, None]
    ns = apply_noise(clean, np.random.default_rng(6), cfg)
    sigma = math.sqrt(0.05 * 0.95 / T)  # binomial standard error of the rate
    assert ns.frame_dropped.mean() == pytest.approx(0.05, abs=4 * sigma) and not ns.frame_dropped[0]
    t = np.flatnonzero(ns.frame_dropped)
    np.testing.assert_array_equal(ns.noisy[t], ns.noisy[t - 1])
    assert (ns.visibility[t] == 0).all()


def test_identity_swaps_are_present_and_brief() -> None:
    cfg = NoiseConfig(**{**OFF.__dict__, "swap_rate_hz": 0.5, "swap_frames": (2, 6)})
    T = 3000
    clean = still_duet(T)
    ns = apply_noise(clean, np.random.default_rng(7), cfg)
    assert ns.swapped.any()
    np.testing.assert_allclose(ns.noisy[ns.swapped, 0], clean[ns.swapped, 1])  # dancer 0 shows dancer 1
    np.testing.assert_allclose(ns.noisy[~ns.swapped], clean[~ns.swapped])
    runs = np.diff(np.flatnonzero(np.diff(np.concatenate([[0], ns.swapped.astype(int), [0]]))))[::2]
    assert runs.min() >= 2 and np.median(runs) <= 6  # a few frames each (overlapping swaps may merge)
    expected_swaps = 0.5 * T / 30.0
    assert len(runs) == pytest.approx(expected_swaps, rel=0.35)


def test_seeded_shapes_and_weights() -> None:
    clean = still_duet(200)
    valid = np.ones((200, 2), dtype=bool)
    valid[50:60, 1] = False
    a = apply_noise(clean, np.random.default_rng(8), valid=valid)
    b = apply_noise(clean, np.random.default_rng(8), valid=valid)
    np.testing.assert_array_equal(a.noisy, b.noisy)
    assert a.noisy.shape == (200, 2, J, 3) and a.noisy.dtype == np.float32
    assert a.visibility.shape == a.weights.shape == (200, 2, J)
    assert (a.weights[50:60, 1] == 0).all() and (a.weights[:50] == 1).all()
    c = apply_noise(clean, np.random.default_rng(9), valid=valid)
    assert not np.array_equal(a.noisy, c.noisy)


def test_default_noise_is_about_mediapipe_sized() -> None:
    clean = still_duet(3000)
    err = np.linalg.norm(apply_noise(clean, np.random.default_rng(10)).noisy - clean, axis=-1)
    assert 0.045 < np.median(err) < 0.075  # Dill et al. 2024: median RMSE 56 mm for monocular MediaPipe 3D


def test_bad_parameters_and_shapes_are_named() -> None:
    with pytest.raises(NoiseError, match="depth_factor > 0"):
        NoiseConfig(depth_factor=0.0)
    with pytest.raises(NoiseError, match="swap_frames"):
        NoiseConfig(swap_frames=(5, 2))
    with pytest.raises(NoiseError, match=r"shape \(T, 2, 18, 3\)"):
        apply_noise(np.zeros((10, 3, J, 3)), np.random.default_rng(0))
