"""Rolling figures of the live process: per-stage timings, frame rate, forecast error.

* :class:`RollingTimings` (from :mod:`stream.stats`, shared with the capture process) keeps the
  last ``size`` samples of every stage (monotonic ns) in a fixed numpy ring, so a long run uses
  constant memory; quantiles are computed on demand (the service reports them once a second
  over OSC and logs them every ``--log-every-s``).
* :class:`RateMeter` counts events in a sliding time window (frames per second).
* :class:`ForecastScorer` compares every forecast with the frame that arrives at its horizon
  (linear interpolation between the two frames around the target time), per horizon, as the
  mean per-joint position error in metres over both dancers (only when both are present).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from stream.stats import DEFAULT_SIZE, RollingTimings

__all__ = ["DEFAULT_SIZE", "ForecastScorer", "RateMeter", "RollingTimings", "percentiles_ms"]


class RateMeter:
    """Events per second over the last ``window_s`` seconds (shorter right after the start)."""

    def __init__(self, window_s: float = 2.0) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()
        self._start: float | None = None

    def tick(self, t_s: float) -> None:
        if self._start is None:
            self._start = t_s
        self._times.append(t_s)
        self._trim(t_s)

    def _trim(self, now_s: float) -> None:
        while self._times and self._times[0] < now_s - self.window_s:
            self._times.popleft()

    def rate(self, now_s: float) -> float:
        self._trim(now_s)
        if self._start is None:
            return 0.0
        span = min(self.window_s, now_s - self._start)
        return len(self._times) / span if span > 0 else 0.0


class ForecastScorer:
    """Mean per-joint error of every horizon's forecasts against the frames that arrive later.

    Args:
        horizons_ms: the forecaster's horizons.
        max_pending: forecasts waiting per horizon (the oldest are dropped beyond it).
    """

    def __init__(self, horizons_ms: Sequence[int], max_pending: int = 4096) -> None:
        self.horizons_ms = tuple(int(h) for h in horizons_ms)
        self._pending: list[deque[tuple[float, NDArray[np.float32]]]] = [
            deque(maxlen=max_pending) for _ in self.horizons_ms]
        self._sum = np.zeros(len(self.horizons_ms))
        self._n = np.zeros(len(self.horizons_ms), dtype=np.int64)
        self._prev: tuple[float, NDArray[np.float32], bool] | None = None

    def add(self, t_s: float, forecasts: NDArray[np.floating]) -> None:
        """Forecasts ``(H, D, J, 3)`` metres made at ``t_s`` (the newest input frame's time)."""
        for k, h in enumerate(self.horizons_ms):
            self._pending[k].append((t_s + h / 1000.0, np.asarray(forecasts[k], dtype=np.float32)))

    def observe(self, t_s: float, joints: NDArray[np.floating], both_present: bool) -> None:
        """A new frame: score every forecast whose target time lies between the previous frame and this one."""
        x = np.asarray(joints, dtype=np.float32)
        prev = self._prev
        self._prev = (t_s, x, both_present)
        if prev is None:
            return
        t0, x0, ok0 = prev
        for k, queue in enumerate(self._pending):
            while queue and queue[0][0] <= t_s:
                target, pred = queue.popleft()
                if target < t0 or not (ok0 and both_present):
                    continue  # its frames were not seen, or a dancer was absent: not scored
                w = (target - t0) / (t_s - t0) if t_s > t0 else 1.0
                truth = (1 - w) * x0 + w * x  # (D, J, 3)
                self._sum[k] += float(np.linalg.norm(pred - truth, axis=-1).mean())
                self._n[k] += 1

    def errors(self) -> list[tuple[int, float, int]]:
        """``(horizon ms, mean error m, forecasts scored)`` per horizon (NaN error before any)."""
        return [(h, float(self._sum[k] / self._n[k]) if self._n[k] else float("nan"), int(self._n[k]))
                for k, h in enumerate(self.horizons_ms)]


def percentiles_ms(
    values_ns: Sequence[int] | NDArray[np.integer] | NDArray[np.floating], qs: Sequence[float] = (0.5, 0.99),
) -> dict[str, float]:
    """``{"p50": …, "p99": …}`` in ms of nanosecond samples (empty dict for no samples)."""
    x = np.asarray(values_ns, dtype=np.float64) / 1e6
    if x.size == 0:
        return {}
    return {f"p{round(q * 100):d}": round(float(np.quantile(x, q)), 4) for q in qs}
