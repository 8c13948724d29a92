"""Rolling figures of the live process: per-stage timings and frame rate.

* :class:`RollingTimings` (from :mod:`stream.stats`, shared with the capture process) keeps the
  last ``size`` samples of every stage (monotonic ns) in a fixed numpy ring, so a long run uses
  constant memory; quantiles are computed on demand (the service reports them once a second
  over OSC and logs them every ``--log-every-s``).
* :class:`RateMeter` counts events in a sliding time window (frames per second).

Forecast errors are kept by the forecast gate (:class:`stream.forecast_gate.ForecastGate`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from stream.stats import DEFAULT_SIZE, RollingTimings

__all__ = ["DEFAULT_SIZE", "RateMeter", "RollingTimings", "percentiles_ms"]


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


def percentiles_ms(
    values_ns: Sequence[int] | NDArray[np.integer] | NDArray[np.floating], qs: Sequence[float] = (0.5, 0.99),
) -> dict[str, float]:
    """``{"p50": …, "p99": …}`` in ms of nanosecond samples (empty dict for no samples)."""
    x = np.asarray(values_ns, dtype=np.float64) / 1e6
    if x.size == 0:
        return {}
    return {f"p{round(q * 100):d}": round(float(np.quantile(x, q)), 4) for q in qs}
