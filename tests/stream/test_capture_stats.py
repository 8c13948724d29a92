"""The capture process's run statistics: constant memory however long it runs, right quantiles."""

from __future__ import annotations

import numpy as np
import pytest

from stream.capture import _KEEP, CaptureStats


def test_capture_stats_keep_a_fixed_ring_and_summarise_the_last_frames() -> None:
    stats = CaptureStats()
    rings = {s: stats.timings._data[s] for s in stats.timings.stages}
    n = _KEEP + 1000
    for k in range(n):  # pose k ms, place 1 ms, publish 2 ms, latency pose + 3 ms, cpu 0.5 ms
        stats.add(k * 1_000_000, 1_000_000, 2_000_000, k * 1_000_000 + 3_000_000, 500_000)
    # the same arrays, never grown or replaced: memory is constant
    assert all(stats.timings._data[s] is rings[s] and rings[s].size == _KEEP for s in rings)
    out = stats.summary()
    kept = np.arange(n - _KEEP, n, dtype=np.float64)  # the last _KEEP frames' pose times, ms
    assert out["pose_ms"]["p50"] == pytest.approx(float(np.quantile(kept, 0.5)), abs=1e-3)
    assert out["pose_ms"]["max"] == pytest.approx(n - 1)
    assert out["overhead_ms"] == {"p50": 3.0, "p99": 3.0, "max": 3.0}  # latency − pose, frame by frame
    assert out["overhead_cpu_ms"]["p99"] == 0.5 and out["place_ms"]["p50"] == 1.0


def test_empty_capture_stats_summarise_to_zeros() -> None:
    out = CaptureStats().summary()
    assert out["latency_ms"] == {"p50": 0.0, "p99": 0.0, "max": 0.0} and out["published"] == 0
