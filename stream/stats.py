"""Rolling per-stage timings in constant memory, for the capture and the inference processes.

:class:`RollingTimings` keeps the last ``size`` samples of every stage (monotonic ns) in a
fixed numpy ring allocated and written once at the start, so a process that runs for hours
neither grows nor pages in new memory as it records; quantiles are computed on demand.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numpy.typing import NDArray

DEFAULT_SIZE = 2048
"""Samples kept per stage (~1 minute at 30 fps, 2 s at 1,000 fps)."""


class RollingTimings:
    """The last ``size`` durations of each stage, in nanoseconds.

    Args:
        stages: stage names (:data:`inference.osc.STAGES`).
        size: samples kept per stage.
    """

    def __init__(self, stages: Iterable[str], size: int = DEFAULT_SIZE) -> None:
        self.stages = tuple(stages)
        self.size = size
        # np.full writes every page now: the ring's memory is resident from the start, not as it fills
        self._data = {s: np.full(size, 0, dtype=np.int64) for s in self.stages}
        self._n = dict.fromkeys(self.stages, 0)

    def add(self, stage: str, ns: int) -> None:
        """One sample of ``stage`` (ns)."""
        n = self._n[stage]
        self._data[stage][n % self.size] = ns
        self._n[stage] = n + 1

    def count(self, stage: str) -> int:
        """Samples ever added to ``stage``."""
        return self._n[stage]

    def samples_ms(self, stage: str) -> NDArray[np.float64]:
        """The kept samples of ``stage`` in ms (unordered)."""
        n = min(self._n[stage], self.size)
        return self._data[stage][:n].astype(np.float64) / 1e6

    def quantiles_ms(self) -> dict[str, tuple[float, float]]:
        """``stage → (p50, p99)`` in ms over the kept samples (0 for a stage without samples)."""
        out = {}
        for s in self.stages:
            x = self.samples_ms(s)
            out[s] = (float(np.quantile(x, 0.5)), float(np.quantile(x, 0.99))) if x.size else (0.0, 0.0)
        return out

    def summary(self) -> dict[str, dict[str, float]]:
        """``stage → {p50, p99, mean, max, n}`` in ms, JSON-ready (stages without samples left out)."""
        out: dict[str, dict[str, float]] = {}
        for s in self.stages:
            x = self.samples_ms(s)
            if x.size:
                out[s] = {"p50": round(float(np.quantile(x, 0.5)), 4), "p99": round(float(np.quantile(x, 0.99)), 4),
                          "mean": round(float(x.mean()), 4), "max": round(float(x.max()), 4), "n": int(self._n[s])}
        return out

    def line(self) -> str:
        """One log line: ``receive 0.02/0.05 clean 0.30/0.61 … ms (p50/p99)``."""
        q = self.quantiles_ms()
        return " ".join(f"{s} {p50:.2f}/{p99:.2f}" for s, (p50, p99) in q.items() if self._n[s]) + " ms (p50/p99)"
