"""Forecasting windows: horizon frames, baselines on hand-built motion, take boundaries, augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stream.clip import Clip
from stream.skeleton import CANONICAL, J
from tests.shared_paths import CMU_DATA
from training.forecast_data import (
    BaselineScales,
    ForecastDataError,
    ForecastWindows,
    N,
    augment,
    constant_velocity,
    duet_centre,
    horizon_errors_mm,
    horizon_frames,
    load_forecast_clips,
    node_mirror,
    node_swap,
    rotate_about_centre,
    window_starts,
    zero_velocity,
)

SHARED = CMU_DATA
FPS = 60.0


def linear_clip(T: int = 120, speed: float = 1.5, fps: float = FPS, seed: int = 0, offset: float = 0.0) -> Clip:
    """Every joint of both dancers moves on a straight line at ``speed`` m/s (own direction per joint)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0.0, 0.4, size=(1, 2, J, 3)) + offset
    direction = rng.normal(size=(1, 2, J, 3))
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    t = (np.arange(T) / fps)[:, None, None, None]  # (T, 1, 1, 1) s
    return Clip(joints=(base + speed * t * direction).astype(np.float32), fps=fps)


def test_horizon_frames_at_60_fps_round_to_nearest() -> None:
    assert horizon_frames((80, 160, 320, 500, 1000), 60.0) == (5, 10, 19, 30, 60)
    assert horizon_frames((80, 160, 320, 1000), 30.0) == (2, 5, 10, 30)  # 2.4 → 2, 4.8 → 5, 9.6 → 10
    assert horizon_frames((25.0,), 60.0) == (2,)  # 1.5 frames: halves round up
    with pytest.raises(ForecastDataError, match="at least one frame and strictly increasing"):
        horizon_frames((5.0, 80.0), 60.0)  # 0.3 frames
    with pytest.raises(ForecastDataError, match="strictly increasing"):
        horizon_frames((80.0, 81.0), 60.0)  # both 5 frames


def test_constant_velocity_is_exact_and_zero_velocity_errs_by_speed_times_horizon() -> None:
    speed = 1.5  # m/s
    clip = linear_clip(speed=speed)
    frames = horizon_frames((80, 160, 320, 1000), FPS)
    ds = ForecastWindows([("line", clip)], past=8, frames=frames, stride=3)
    past, fut = ds.arrays()
    assert past.shape == (len(ds), 8, N, 3) and fut.shape == (len(ds), 4, N, 3)
    cv = horizon_errors_mm(constant_velocity(past, frames), fut)
    zv = horizon_errors_mm(zero_velocity(past, frames), fut)
    np.testing.assert_allclose(cv["mpjpe_mm"], 0.0, atol=0.01)  # float32 metres: < 10 µm
    np.testing.assert_allclose(cv["mae_mm"], 0.0, atol=0.01)
    expected = [speed * f / FPS * 1000 for f in frames]  # mm: 125, 250, 475, 1500
    np.testing.assert_allclose(zv["mpjpe_mm"], expected, rtol=1e-4)
    assert all(z < m for z, m in zip(zv["mae_mm"], zv["mpjpe_mm"], strict=True))  # |Δx|+… over 3 < ‖Δ‖


def test_windows_never_cross_takes_or_invalid_frames() -> None:
    a = linear_clip(T=50, seed=1, offset=0.0)
    b = linear_clip(T=40, seed=2, offset=100.0)  # 100 m away: any mixing would show
    valid = np.ones((40, 2), dtype=bool)
    valid[25, 1] = False  # one absent dancer-1 frame
    b = Clip(joints=b.joints, fps=FPS, valid=valid)
    past, frames = 6, (2, 5)
    ds = ForecastWindows([("a", a), ("b", b)], past=past, frames=frames)
    span = past + max(frames)  # 11 frames per window
    n_a = 50 - span + 1
    starts_b = [s for s in range(40 - span + 1) if not s <= 25 < s + span]
    assert len(ds) == n_a + len(starts_b)
    assert ds.names == ("a", "b") and (ds.take == 0).sum() == n_a
    np.testing.assert_array_equal(ds.start[ds.take == 1], starts_b)
    for i in range(len(ds)):
        p, f = ds[i]
        far = bool((p.abs() > 50).any())
        assert bool(((p.abs() > 50).all() == far) and ((f.abs() > 50).all() == far))  # one take only
        assert far == (ds.take[i] == 1)
    # the future of a window is the take's own frames at last + f
    s = int(ds.start[3])
    np.testing.assert_array_equal(ds[3][1].numpy(), a.joints[[s + past - 1 + 2, s + past - 1 + 5]].reshape(2, N, 3))
    assert window_starts(np.ones((5, 2), bool), past=4, ahead=2).size == 0  # too short: no window


def test_rotation_mirror_and_swap_preserve_distances() -> None:
    rng = np.random.default_rng(0)
    past = torch.from_numpy(rng.normal(0.0, 0.5, size=(4, 6, N, 3)).astype(np.float32))
    fut = torch.from_numpy(rng.normal(0.0, 0.5, size=(4, 3, N, 3)).astype(np.float32))
    centre = duet_centre(past)
    rot = rotate_about_centre(past, centre, np.array([0.3, 1.0, 2.0, 4.0]))

    def dists(x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1, 3)
        return torch.cdist(flat, flat, compute_mode="donot_use_mm_for_euclid_dist")

    torch.testing.assert_close(dists(rot), dists(past), atol=2e-5, rtol=0)
    np.testing.assert_allclose(rot[..., 1].numpy(), past[..., 1].numpy(), atol=1e-6)  # about the vertical
    torch.testing.assert_close(duet_centre(rot), centre, atol=1e-6, rtol=0)  # the centre stays put
    assert not torch.allclose(rot, past, atol=1e-2)
    p2, f2 = augment(past, fut, np.random.default_rng(1), mirror_p=1.0, swap_p=1.0)
    both, both2 = torch.cat([past, fut], 1), torch.cat([p2, f2], 1)
    perm = node_swap()[node_mirror()]
    torch.testing.assert_close(dists(both2.reshape(4, -1, N, 3)[:, :, perm]), dists(both), atol=3e-5, rtol=0)
    # a mirror maps the left wrist onto the right one, a swap dancer 0 onto dancer 1
    lw, rw = CANONICAL.index("l_wrist"), CANONICAL.index("r_wrist")
    assert int(node_mirror()[lw]) == rw and int(node_swap()[lw]) == J + lw


def test_baseline_scales_pick_the_better_baseline() -> None:
    ds = ForecastWindows([("line", linear_clip())], past=5, frames=(3, 6))
    assert BaselineScales.fit(ds).mpjpe_m == (1e-4, 1e-4)  # constant velocity is exact, floored at 0.1 mm
    with pytest.raises(ForecastDataError, match="no windows"):
        BaselineScales.fit(ForecastWindows([("short", linear_clip(T=5))], past=5, frames=(3,)))


def test_data_descriptions_and_errors(tmp_path: Path) -> None:
    path = linear_clip(T=30, fps=120.0).save(tmp_path / "line.npz")
    (name, clip), = load_forecast_clips(path, fps=60.0)
    assert name == "line" and clip.fps == 60.0 and clip.num_frames == 15  # resampled 120 → 60 fps
    assert [n for n, _ in load_forecast_clips(tmp_path)] == ["line"]
    with pytest.raises(ForecastDataError, match="neither a clip file"):
        load_forecast_clips(tmp_path / "missing.npz")
    with pytest.raises(ForecastDataError, match="synthetic:S"):
        load_forecast_clips("synthetic:many")
    with pytest.raises(ForecastDataError, match="several frame rates"):
        ForecastWindows([("a", linear_clip()), ("b", linear_clip(fps=30.0))], past=4, frames=(1,))


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared motion capture missing at {SHARED}")
def test_corpus_split_holds_out_whole_takes_at_60_fps() -> None:
    from training.corpus import VAL_TAKES

    train = load_forecast_clips(None)
    held = load_forecast_clips("heldout")
    assert tuple(n for n, _ in held) == VAL_TAKES
    assert not {n for n, _ in train} & set(VAL_TAKES)
    assert {c.fps for _, c in train + held} == {60.0}  # CMU 120 fps resampled
