"""Causal smoothing filters: One Euro and the DCT low-pass (offline and sliding)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft

from inference.filters import CausalDCTFilter, FilterError, OneEuroFilter, dct_lowpass, dct_lowpass_weights

FPS = 30.0


def run(f: OneEuroFilter | CausalDCTFilter, x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Feed ``x (T, G, ...)`` sampled at ``t (T,)``; returns the outputs ``(T, G, ...)``."""
    return np.stack([f.step(x[i], float(t[i])) for i in range(len(t))])


def one_euro(beta: float = 2.0) -> OneEuroFilter:
    return OneEuroFilter((1, 4, 3), min_cutoff=1.0, beta=beta, d_cutoff=1.0)


def test_one_euro_reduces_jitter_on_a_noisy_constant() -> None:
    rng = np.random.default_rng(0)
    T = 300
    t = np.arange(T) / FPS
    x = 1.5 + rng.normal(0.0, 0.01, (T, 1, 4, 3))  # 1 cm noise around 1.5 m
    y = run(one_euro(), x, t)
    ratio = y[30:].std() / x[30:].std()
    assert ratio < 0.45, ratio  # measured 0.34
    assert abs(y[30:].mean() - 1.5) < 0.003  # no bias


def test_one_euro_lags_little_on_a_fast_ramp() -> None:
    rng = np.random.default_rng(1)
    T = 150
    t = np.arange(T) / FPS
    speed = 2.0  # m/s along x
    x = np.zeros((T, 1, 4, 3))
    x[..., 0] = speed * t[:, None, None]
    x += rng.normal(0.0, 0.01, x.shape)
    lag_s = float((speed * t[30:, None] - run(one_euro(), x, t)[30:, 0, :, 0]).mean()) / speed
    fixed_lag_s = float((speed * t[30:, None] - run(one_euro(beta=0.0), x, t)[30:, 0, :, 0]).mean()) / speed
    assert 0 < lag_s < 0.03, lag_s  # measured 0.021 s, less than a frame
    assert fixed_lag_s > 0.12  # the plain 1 Hz low-pass lags 1/(2π) s ≈ 0.16 s
    assert lag_s < 0.25 * fixed_lag_s


def test_one_euro_uses_the_timestamps_and_survives_irregular_ones() -> None:
    rng = np.random.default_rng(2)
    dt = rng.uniform(0.01, 0.06, 200)
    dt[::17] = 0.0  # repeated timestamps
    t = np.cumsum(dt)
    t[50] = t[49] - 0.5  # one out of order
    x = np.zeros((200, 1, 4, 3))
    x[..., 1] = 1.0 * t[:, None, None]  # 1 m/s ramp in y, sampled irregularly
    y = run(one_euro(), x, t)
    assert np.isfinite(y).all()
    lag = (x[100:, ..., 1] - y[100:, ..., 1]).mean()
    assert 0 < lag < 0.05, lag  # follows the ramp in time, not in samples
    # the same samples at a fixed 30 fps: the output differs, so the timestamps are used
    y_fixed = run(one_euro(), x, np.arange(200) / FPS)
    assert np.abs(y_fixed - y).max() > 0.01


def scalar_one_euro(xs: list[float], ts: list[float], mc: float, beta: float, dc: float) -> list[float]:
    """The original scalar One Euro filter (Casiez et al. 2012), written out plainly."""

    def alpha(cutoff: float, dt: float) -> float:
        return 1.0 / (1.0 + 1.0 / (2 * np.pi * cutoff * dt))

    out, x_hat, dx_hat, t_prev = [], xs[0], 0.0, ts[0]
    out.append(x_hat)
    for x, t in zip(xs[1:], ts[1:], strict=True):
        dt = t - t_prev
        dx_hat = dx_hat + alpha(dc, dt) * ((x - x_hat) / dt - dx_hat)
        x_hat = x_hat + alpha(mc + beta * abs(dx_hat), dt) * (x - x_hat)
        out.append(x_hat)
        t_prev = t
    return out


def test_one_euro_matches_the_scalar_filter_per_group() -> None:
    rng = np.random.default_rng(6)
    T = 120
    t = np.cumsum(rng.uniform(0.02, 0.05, T))
    x = np.cumsum(rng.normal(0, 0.05, (T, 2, 3)), axis=0)  # (T, G=2, 3) random walks
    upd = np.ones((T, 2), bool)
    upd[5::3, 1] = False  # group 1 skips every third sample (mixes the vectorised paths)
    f = OneEuroFilter((2, 3), min_cutoff=0.8, beta=1.5, d_cutoff=1.2, speed_axis=None)
    out = np.stack([f.step(x[i], float(t[i]), update=upd[i]) for i in range(T)])  # (T, 2, 3)
    for g in range(2):
        rows = np.flatnonzero(upd[:, g])
        for c in range(3):
            ref = scalar_one_euro(list(x[rows, g, c]), list(t[rows]), 0.8, 1.5, 1.2)
            assert np.allclose(out[rows, g, c], ref, atol=1e-12)


def test_one_euro_reset_and_frozen_groups() -> None:
    f = OneEuroFilter((2, 1, 3), min_cutoff=1.0, beta=0.0)
    f.step(np.zeros((2, 1, 3)), 0.0)
    y = f.step(np.ones((2, 1, 3)), 1 / FPS)
    assert 0 < y.max() < 0.5  # smoothed towards 1
    f.reset(np.array([True, False]))
    z = f.step(np.full((2, 1, 3), 5.0), 2 / FPS)
    assert np.allclose(z[0], 5.0)  # re-appearance: passes through, no glide from the old place
    assert z[1].max() < 5.0 and z[1].max() > y[1].max()
    w = f.step(np.full((2, 1, 3), 9.0), 3 / FPS, update=np.array([False, True]))
    assert np.array_equal(w[0], z[0])  # frozen group keeps its output
    with pytest.raises(FilterError, match="shape"):
        f.step(np.zeros((3, 1, 3)), 1.0)
    with pytest.raises(FilterError, match="min_cutoff"):
        OneEuroFilter((1, 3), min_cutoff=0.0)


def test_dct_weights_are_the_last_row_of_the_low_pass_projection() -> None:
    rng = np.random.default_rng(3)
    for n in (1, 5, 16):
        x = rng.normal(size=n)
        c = scipy.fft.dct(x, type=2, norm="ortho")
        c[max(1, round(0.25 * n)) :] = 0
        expected = scipy.fft.idct(c, type=2, norm="ortho")[-1]
        assert dct_lowpass_weights(n, 0.25) @ x == pytest.approx(expected, abs=1e-12)
        assert dct_lowpass_weights(n, 0.25).sum() == pytest.approx(1.0, abs=1e-12)  # a constant passes
    assert np.allclose(dct_lowpass_weights(1, 0.25), [1.0], atol=1e-12)


def test_offline_dct_keeps_a_slow_sine_and_cuts_white_noise_power_4x() -> None:
    T = 300
    t = np.arange(T) / FPS
    sine = np.sin(2 * np.pi * 0.5 * t)  # 0.5 Hz: DCT index ≈ 10 of 300, far inside the kept 75
    out = dct_lowpass(sine, keep=0.25)
    assert np.abs(out - sine)[10:-10].max() < 0.05  # < 5 % amplitude loss
    assert out[10:-10].max() > 0.95
    noise = np.random.default_rng(4).normal(size=(T, 400))  # 400 channels for a stable estimate
    ratio = noise.var() / dct_lowpass(noise, keep=0.25, axis=0).var()
    assert 3.6 < ratio < 4.4, ratio  # keeps 75 of 300 orthonormal coefficients: 4×
    assert np.allclose(dct_lowpass(noise, keep=1.0, axis=0), noise)


def test_sliding_dct_keeps_a_slow_sine_and_cuts_noise() -> None:
    T = 300
    t = np.arange(T) / FPS
    sine = np.sin(2 * np.pi * 0.5 * t)
    f = CausalDCTFilter((1,), window=16, keep=0.25)
    out = run(f, sine[:, None], t)[16:, 0]
    basis = np.stack([np.sin(2 * np.pi * 0.5 * t[16:]), np.cos(2 * np.pi * 0.5 * t[16:])], 1)  # (T', 2)
    (a, b), *_ = np.linalg.lstsq(basis, out, rcond=None)
    assert np.hypot(a, b) > 0.95  # < 5 % amplitude loss
    assert np.abs(out - basis @ [a, b]).max() < 0.01  # and nothing but that sine
    lag_s = np.arctan2(-b, a) / (2 * np.pi * 0.5)
    assert 0 <= lag_s < 1 / FPS  # less than a frame of delay
    noise = np.random.default_rng(5).normal(size=(4000, 1))
    f = CausalDCTFilter((1,), window=16, keep=0.25)
    ratio = noise[16:].var() / run(f, noise, np.arange(4000) / FPS)[16:].var()
    gain = float((dct_lowpass_weights(16, 0.25) ** 2).sum())  # noise power gain of the FIR
    assert ratio == pytest.approx(1 / gain, rel=0.1)
    assert ratio > 2.0, ratio  # measured 2.4: the last sample of a window is filtered least


def test_sliding_dct_equals_the_last_sample_of_each_window() -> None:
    rng = np.random.default_rng(7)
    T, W = 40, 8
    x = rng.normal(size=(T, 2, 3))
    upd = np.ones((T, 2), bool)
    upd[10:14, 0] = False  # group 0 pauses (mixes the vectorised paths)
    f = CausalDCTFilter((2, 3), window=W, keep=0.25)
    out = np.stack([f.step(x[i], i / FPS, update=upd[i]) for i in range(T)])
    for g in range(2):
        rows = np.flatnonzero(upd[:, g])
        for k, i in enumerate(rows):
            window = x[rows[max(0, k - W + 1) : k + 1], g]  # (n, 3) the samples this group kept
            expected = dct_lowpass(window, keep=0.25, axis=0)[-1]
            assert np.allclose(out[i, g], expected, atol=1e-12)


def test_sliding_dct_reset_restarts_the_window() -> None:
    f = CausalDCTFilter((2, 3), window=8, keep=0.25)
    for i in range(10):
        f.step(np.zeros((2, 3)), i / FPS)
    f.reset(np.array([False, True]))
    y = f.step(np.ones((2, 3)), 10 / FPS)
    assert np.allclose(y[1], 1.0)  # first sample after a reset passes through
    assert y[0].max() < 0.5
    z = f.step(np.full((2, 3), 7.0), 11 / FPS, update=np.array([False, True]))
    assert np.array_equal(z[0], y[0])
