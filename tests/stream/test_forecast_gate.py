"""The online forecast gate: truth by interpolation, the choice of baseline, the blend weight."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stream.forecast_gate import ForecastGate, GateConfig, GateError

FPS = 30.0


def run(gate: ForecastGate, truth, model, frames: int = 120, complete=lambda t: True) -> list[np.ndarray]:
    """Feed frames ``truth(t) (4, 3)`` and forecasts ``model(t, lead) (4, 3)`` at FPS; the gated outputs."""
    outs = []
    for k in range(frames):
        t = k / FPS
        gate.observe(t, truth(t), complete(t))
        m = np.stack([model(t, h) for h in gate.horizons_s])  # (H, 4, 3)
        v = (truth(t) - truth(t - 1 / FPS)) * FPS
        outs.append(gate.forecast(t, m, truth(t), v))
    return outs


def line(t: float) -> np.ndarray:
    """Four points moving 1 m/s along x."""
    return np.arange(12, dtype=np.float64).reshape(4, 3) * 0.1 + np.array([t, 0.0, 0.0])


def test_a_forecast_is_scored_against_the_interpolated_frame() -> None:
    g = ForecastGate((0.1,))
    x = lambda t: np.full((2, 3), t)  # noqa: E731  moves 1 m/s along every axis
    g.observe(0.0, x(0.0))
    g.forecast(0.0, x(0.1)[None] + 0.02, x(0.0), np.ones((2, 3)))  # 2 cm off per axis
    g.observe(0.05, x(0.05))
    g.observe(0.15, x(0.15))  # the target 0.1 lies between: truth = x(0.1)
    e = g.errors()
    assert e["resolved"] == [1.0] and e["model"][0] == pytest.approx(0.02 * math.sqrt(3), rel=1e-9)
    assert e["constant_velocity"][0] == pytest.approx(0.0, abs=1e-12)  # 1 m/s for 0.1 s: exact
    assert e["zero_velocity"][0] == pytest.approx(0.1 * math.sqrt(3), rel=1e-9)
    assert e["gated"][0] == e["model"][0]  # before any evidence the model goes out alone


def wiggle(t: float) -> np.ndarray:
    """The line with a 5 cm sway: constant velocity is no longer exact."""
    return line(t) + 0.05 * np.sin(7.0 * t)


def test_an_exact_model_keeps_full_weight() -> None:
    g = ForecastGate((2 / FPS, 6 / FPS))
    outs = run(g, wiggle, lambda t, h: wiggle(t + h))
    assert g.weights() == pytest.approx([1.0, 1.0], abs=1e-9)
    np.testing.assert_allclose(outs[-1], np.stack([wiggle(119 / FPS + h) for h in g.horizons_s]), atol=1e-9)


def test_a_biased_model_falls_back_to_constant_velocity() -> None:
    g = ForecastGate((2 / FPS, 6 / FPS), GateConfig(tau_s=1.0))
    outs = run(g, line, lambda t, h: line(t + h) + 0.05)  # 5 cm off on every axis
    assert g.baselines() == ["constant_velocity", "constant_velocity"]
    assert max(g.weights()) < 1e-9
    np.testing.assert_allclose(outs[-1], np.stack([line(119 / FPS + h) for h in g.horizons_s]), atol=1e-9)
    e = g.errors()
    assert e["gated"][0] < 0.05 * e["model"][0]  # only the first forecasts, before evidence, were the model's


def test_still_bodies_pick_zero_velocity_when_velocity_is_noise() -> None:
    rng = np.random.default_rng(0)
    jitter = {k: rng.normal(0, 0.01, (4, 3)) for k in range(-1, 200)}
    still = lambda t: jitter[round(t * FPS)]  # noqa: E731  a still body seen with 1 cm of noise
    g = ForecastGate((5 / FPS,))
    run(g, still, lambda t, h: np.zeros((4, 3)) + 0.2, frames=150)
    assert g.baselines() == ["zero_velocity"] and g.weights()[0] < 0.01


def test_two_independent_errors_blend_better_than_either() -> None:
    rng = np.random.default_rng(1)
    noise = {k: rng.normal(0, 0.03, (4, 3)) for k in range(400)}
    g = ForecastGate((3 / FPS,), GateConfig(tau_s=2.0))
    # the model knows the sway, noisily; constant velocity misses it
    run(g, wiggle, lambda t, h: wiggle(t + h) + noise[round(t * FPS)], frames=400)
    e = g.errors()
    assert 0.1 < g.weights()[0] < 0.9
    assert e["gated"][0] < min(e["model"][0], e["constant_velocity"][0], e["zero_velocity"][0])


def test_a_model_that_gives_nan_is_replaced_by_the_baseline_and_the_gate_stays_sound() -> None:
    g = ForecastGate((2 / FPS,))
    outs = run(g, wiggle, lambda t, h: np.full((4, 3), np.nan) if 1.0 < t < 1.5 else wiggle(t + h))
    assert g.nonfinite == 14 and all(np.isfinite(o).all() for o in outs)
    assert g.weights()[0] > 0.9 and np.isfinite(list(g.errors().values())).all()
    g.observe(10.0, np.full((4, 3), np.inf))  # a broken frame is not scored
    assert np.isfinite(list(g.errors().values())).all()


def test_incomplete_frames_are_not_scored_and_shapes_are_checked() -> None:
    g = ForecastGate((1 / FPS,))
    run(g, line, lambda t, h: line(t + h), frames=20, complete=lambda t: False)
    assert g.errors()["resolved"] == [0.0] and math.isnan(g.errors()["gated"][0])
    with pytest.raises(GateError, match="do not fit 1 horizons"):
        g.forecast(1.0, np.zeros((2, 4, 3)), np.zeros((4, 3)), np.zeros((4, 3)))
    with pytest.raises(GateError, match="positive seconds"):
        ForecastGate((0.1, -1.0))
    with pytest.raises(GateError, match="tau_s"):
        GateConfig(tau_s=0.0)
    g.reset(statistics=True)
    assert g.errors()["resolved"] == [0.0]
