"""Latency of the exported STGA-Net on ONNX Runtime at batch 1 (``istrings bench stga``)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def bench_onnx(checkpoint: str | Path, *, runs: int = 2000, warmup: int = 100, threads: int = 1) -> dict[str, Any]:
    """Export ``checkpoint`` (validated) to a temporary folder and time ``session.run`` at batch 1.

    The input is a real-looking window: a still duet 1 m apart with small noise (the timing does
    not depend on the values).

    Returns:
        ``{"median_ms", "p90_ms", "p99_ms", "mean_ms", "runs", "threads", "provider", "onnx_bytes", "input_shape"}``.
    """
    import onnxruntime as ort

    from exporters.export import export_checkpoint
    from exporters.spec_stga import STGA

    with tempfile.TemporaryDirectory() as tmp:
        result = export_checkpoint(checkpoint, STGA, tmp)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        session = ort.InferenceSession(str(result.onnx_path), so, providers=["CPUExecutionProvider"])
        shape = [int(d) if isinstance(d, int) else 1 for d in session.get_inputs()[0].shape]
        rng = np.random.default_rng(0)
        window = (rng.normal(0.0, 0.01, size=shape) + np.linspace(0, 1, shape[2])[None, None, :, None]
                  ).astype(np.float32)  # (1, T, N, 3) metres
        feed = {session.get_inputs()[0].name: window}
        for _ in range(warmup):
            session.run(None, feed)
        times = np.empty(runs)
        for i in range(runs):
            t0 = time.perf_counter()
            session.run(None, feed)
            times[i] = time.perf_counter() - t0
        size = result.onnx_path.stat().st_size
    ms = times * 1000.0
    return {
        "median_ms": round(float(np.median(ms)), 4), "p90_ms": round(float(np.percentile(ms, 90)), 4),
        "p99_ms": round(float(np.percentile(ms, 99)), 4), "mean_ms": round(float(ms.mean()), 4),
        "runs": runs, "threads": threads, "provider": session.get_providers()[0], "onnx_bytes": size,
        "input_shape": shape,
    }
