"""An online gate between a learned forecaster and the two simple baselines, per horizon.

A learned forecaster is only as good as the motion it has seen: STGA-Net trained on salsa is
far better than the baselines on salsa and worse than them on slow squats. The gate watches,
while the performance runs, how each horizon's forecasts turn out, and blends the model with
the better baseline accordingly, using nothing but frames that have already arrived (causal):

* baselines from the same window as the model: zero velocity ``z = x_last`` and constant
  velocity ``c = x_last + v_last · t_k`` (``v_last`` the last frame-to-frame velocity at the
  model's frame rate, ``t_k`` the horizon in seconds);
* when a frame arrives, every pending forecast whose target time has passed is resolved against
  the truth (linear interpolation between the two frames around the target) and updates, per
  horizon, exponentially forgotten sums (time constant ``tau_s``): the mean error of each
  baseline, which picks the better baseline ``b``, and the least-squares statistics of the blend
  ``f = b + w (m − b)``: ``A = Σ |m − b|²``, ``β = Σ (y − b)·(m − b)``;
* a new forecast is ``b + w (m − b)`` with ``w = clip(β / A, 0, 1)`` (``w = 1``, the model alone,
  before any evidence): the weight that would have been best over the recent past.

On motion the model knows, ``w`` stays near 1 and the output is the model's; on motion it does
not, ``w`` falls towards 0 within a few ``tau_s`` and the output is the better baseline. Only
frames where the caller says the truth is complete (both dancers present) are scored.

Numpy only: the live inference process uses it on every frame and the offline evaluation of
the forecaster replays it over each take in time order, so both report the same thing.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from stream.errors import IStringsError


class GateError(IStringsError, ValueError):
    """Bad gate settings or forecasts of the wrong shape."""


@dataclass(frozen=True)
class GateConfig:
    """Settings of :class:`ForecastGate`.

    Attributes:
        tau_s: forgetting time of the statistics, seconds of resolved forecasts (default 3 s).
        max_pending: forecasts waiting per horizon; the oldest are dropped beyond it.
    """

    tau_s: float = 3.0
    max_pending: int = 4096

    def __post_init__(self) -> None:
        if not (math.isfinite(self.tau_s) and self.tau_s > 0) or self.max_pending < 1:
            raise GateError(f"tau_s must be a positive number and max_pending >= 1, got {self.tau_s}, "
                            f"{self.max_pending}")


class _Horizon:
    """Pending forecasts and forgotten sums of one horizon."""

    def __init__(self, seconds: float, max_pending: int) -> None:
        self.seconds = seconds
        # (target time s, (4, ..., 3) m: the model's, the gated, the constant- and zero-velocity forecast)
        self.pending: deque[tuple[float, NDArray[np.float64]]] = deque(maxlen=max_pending)
        self.t_stats: float | None = None  # time of the last update, s
        self.err_cv = 0.0  # forgotten sums of per-joint errors, m
        self.err_zv = 0.0
        self.A = 0.0  # Σ |m − b|², m²
        self.beta = 0.0  # Σ (y − b)·(m − b), m²
        self.resolved = 0
        # plain running sums of mean per-joint error, m, for reporting: model, gated, cv, zv
        self.sums = np.zeros(4)

    @property
    def use_cv(self) -> bool:
        return self.err_cv <= self.err_zv

    @property
    def weight(self) -> float:
        return 1.0 if self.A <= 0.0 else min(max(self.beta / self.A, 0.0), 1.0)


class ForecastGate:
    """Per-horizon online blend of a forecaster with the better baseline (see the module docstring).

    Args:
        horizons_s: the forecaster's horizons, seconds (the time its targets lie ahead).
        config: settings.

    Shapes:
        joints ``(..., 3)`` metres, any leading shape, the same at every call (e.g. ``(D, J, 3)``
        live, ``(N, 3)`` offline); forecasts ``(H, ..., 3)``.
    """

    def __init__(self, horizons_s: Sequence[float], config: GateConfig | None = None) -> None:
        if not horizons_s or any(not (math.isfinite(h) and h > 0) for h in horizons_s):
            raise GateError(f"horizons must be positive seconds, got {tuple(horizons_s)}")
        self.config = config or GateConfig()
        self.horizons_s = tuple(float(h) for h in horizons_s)
        self._seconds = np.asarray(self.horizons_s)  # (H,)
        self._h = [_Horizon(h, self.config.max_pending) for h in self.horizons_s]
        self._prev: tuple[float, NDArray[np.float64], bool] | None = None
        self.nonfinite = 0
        """Forecasts in which the model gave a non-finite value (replaced by the baseline)."""

    def reset(self, statistics: bool = False) -> None:
        """Drop the pending forecasts and the last frame (the input restarted); with
        ``statistics`` also forget how the model and the baselines did."""
        if statistics:
            self._h = [_Horizon(h, self.config.max_pending) for h in self.horizons_s]
        else:
            for h in self._h:
                h.pending.clear()
        self._prev = None

    # ------------------------------------------------------------------------------ frames in

    def observe(self, t_s: float, joints: NDArray[np.floating], complete: bool = True) -> None:
        """A new frame at ``t_s`` (s, non-decreasing): resolve every forecast whose target lies
        between the previous frame and this one. ``complete``: the frame measures every joint
        (a frame with a non-finite value counts as incomplete)."""
        x = np.asarray(joints, dtype=np.float64)
        complete = complete and bool(np.isfinite(x).all())
        prev = self._prev
        self._prev = (t_s, x, complete)
        if prev is None:
            return
        t0, x0, ok0 = prev
        eps = 1e-9
        due: list[tuple[_Horizon, float, NDArray[np.float64]]] = []
        for h in self._h:
            q = h.pending
            while q and q[0][0] <= t_s + eps:
                target, four = q.popleft()
                if target >= t0 - eps and ok0 and complete:  # else its frames were not seen, or a dancer was absent
                    due.append((h, target, four))
        if due:
            self._update(due, t0, x0, t_s, x)

    def _update(self, due: list[tuple[_Horizon, float, NDArray[np.float64]]], t0: float,
                x0: NDArray[np.float64], t1: float, x1: NDArray[np.floating]) -> None:
        """Fold resolved forecasts (target time, ``(4, ..., 3)``) into the sums, all at once: the truth
        at each target is interpolated between the frames ``x0`` at ``t0`` and ``x1`` at ``t1``."""
        n = len(due)
        four = np.stack([f for _, _, f in due])  # (n, 4, ..., 3)
        w = np.clip([(t - t0) / (t1 - t0) if t1 > t0 else 1.0 for _, t, _ in due], 0.0, 1.0)
        y = x0 + w.reshape((n,) + (1,) * x0.ndim) * (x1 - x0)  # (n, ..., 3) truth
        errs = np.sqrt(((four - y[:, None]) ** 2).sum(-1)).reshape(n, 4, -1).mean(-1)  # (n, 4) m
        use_cv = np.array([h.use_cv for h, _, _ in due]).reshape((n,) + (1,) * x0.ndim)
        b = np.where(use_cv, four[:, 2], four[:, 3])  # (n, ..., 3) the baseline of each blend
        d = four[:, 0] - b
        dd = (d * d).reshape(n, -1).sum(-1).tolist()  # (n,) m²
        yd = ((y - b) * d).reshape(n, -1).sum(-1).tolist()
        e_cv, e_zv = errs[:, 2].tolist(), errs[:, 3].tolist()
        inv_tau = 1.0 / self.config.tau_s
        for i, (h, t, _) in enumerate(due):  # in time order per horizon: forgetting by elapsed time
            g = 1.0 if h.t_stats is None else math.exp(-max(t - h.t_stats, 0.0) * inv_tau)
            h.t_stats = t
            h.err_cv = g * h.err_cv + e_cv[i]
            h.err_zv = g * h.err_zv + e_zv[i]
            h.A = g * h.A + dd[i]
            h.beta = g * h.beta + yd[i]
            h.resolved += 1
            h.sums += errs[i]

    # ------------------------------------------------------------------------------ forecasts out

    def forecast(self, t_s: float, model: NDArray[np.floating], last: NDArray[np.floating],
                 velocity: NDArray[np.floating]) -> NDArray[np.float32]:
        """The gated forecasts ``(H, ..., 3)`` m of the model's ``(H, ..., 3)`` made at ``t_s``
        from a window whose newest frame is ``last (..., 3)`` m moving at ``velocity (..., 3)`` m/s.

        Raises:
            GateError: shapes that do not fit the horizons or each other.
        """
        x = np.asarray(last, dtype=np.float64)
        H = len(self._h)
        if np.shape(model) != (H, *x.shape) or np.shape(velocity) != x.shape or x.shape[-1:] != (3,):
            raise GateError(f"forecasts {np.shape(model)}, last frame {x.shape} and velocity {np.shape(velocity)} "
                            f"do not fit {H} horizons of (..., 3) points")
        shape = (H,) + (1,) * x.ndim
        four = np.empty((H, 4, *x.shape))  # model, gated, constant velocity, zero velocity
        four[:, 0] = model
        np.multiply(velocity, self._seconds.reshape(shape), out=four[:, 2])
        four[:, 2] += x
        four[:, 3] = x
        b = np.where(np.array([h.use_cv for h in self._h]).reshape(shape), four[:, 2], four[:, 3])
        bad = ~np.isfinite(four[:, 0])
        if bad.any():  # a model that gives NaN or inf: its place goes to the baseline, and is counted
            self.nonfinite += 1
            four[:, 0][bad] = b[bad]
        four[:, 1] = b + np.array(self.weights()).reshape(shape) * (four[:, 0] - b)
        for k, h in enumerate(self._h):
            h.pending.append((t_s + h.seconds, four[k]))
        return four[:, 1].astype(np.float32)

    # ------------------------------------------------------------------------------ figures

    def weights(self) -> list[float]:
        """The model's current weight per horizon, in [0, 1]."""
        return [h.weight for h in self._h]

    def baselines(self) -> list[str]:
        """The baseline each horizon blends with now: ``"constant_velocity"`` or ``"zero_velocity"``."""
        return ["constant_velocity" if h.use_cv else "zero_velocity" for h in self._h]

    def errors(self) -> dict[str, list[float]]:
        """Mean per-joint error (m) so far per horizon of ``model``, ``gated``,
        ``constant_velocity`` and ``zero_velocity`` (NaN before any), and ``resolved`` counts."""
        names = ("model", "gated", "constant_velocity", "zero_velocity")
        out: dict[str, list[float]] = {
            n: [float(h.sums[i] / h.resolved) if h.resolved else float("nan") for h in self._h]
            for i, n in enumerate(names)}
        out["resolved"] = [float(h.resolved) for h in self._h]
        return out
