"""The bundled models (``inference/models``) on inputs a stage gives them and random ones never are.

Dancers holding a pose make a still window; before anyone is tracked the window is all zeros.
The NRI encoder once returned NaN for every still window (the exporter had dropped the guard of a
square root, see ``training.safe_ops``), which the strength EMA then kept for good. ONNX Runtime
only: no torch.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from inference.models_live import DEFAULT_MODELS_DIR, MODEL_FILES
from inference.runtime import OnnxModel

KINDS = sorted(MODEL_FILES)


def _window(model: OnnxModel, still: bool) -> np.ndarray:
    """Batch 1 of the model's one input: one random pose repeated over the window, or zeros."""
    (info,) = model.inputs
    shape = [1 if not isinstance(d, int) else d for d in info.shape]
    if not still:
        return np.zeros(shape, np.float32)
    pose = np.random.default_rng(3).normal(0.0, 0.3, (1, 1, *shape[2:])).astype(np.float32)
    if shape[-1] == 6:  # position + velocity channels: a still pose has no velocity
        pose[..., 3:] = 0.0
    return np.repeat(pose, shape[1], axis=1)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("still", [True, False], ids=["still", "zeros"])
def test_a_bundled_model_gives_finite_outputs_on_a_still_or_empty_window(kind: str, still: bool) -> None:
    path = DEFAULT_MODELS_DIR / MODEL_FILES[kind]
    if not path.is_file():
        pytest.skip(f"no bundled {path.name}")
    model = OnnxModel(path, device="cpu", warmup=0)
    window = _window(model, still)
    outputs = model.run({model.inputs[0].name: window})
    for name, value in outputs.items():
        assert value.shape[0] == 1 and np.isfinite(value).all(), (kind, name, int(np.isnan(value).sum()))


def test_bench_service_times_every_stage_with_the_bundled_models() -> None:
    """`istrings bench service` runs the real service in-process and reports what each frame cost."""
    r = subprocess.run([sys.executable, "-m", "stream.cli", "bench", "service", "--frames", "200", "--device", "cpu",
                        "--json"], capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads(r.stdout)
    assert d["models"] == {"nri": "loaded", "stga": "loaded", "mkff": "loaded"}
    per = d["per_frame_ms"]
    assert set(per) == {"decode", "process", "encode", "total"}
    assert per["decode"]["p50"] > 0 and per["encode"]["p50"] > 0 and per["process"]["p50"] < per["total"]["p50"]
    assert {"clean", "window", "nri", "stga"} <= set(d["process_stages_ms"])
    assert d["fps_in_process"] == pytest.approx(1000.0 / per["total"]["mean"], rel=0.01)


def test_bench_cache_reports_every_size_and_gap() -> None:
    """`istrings bench cache` times a read per size and busy gap; the first gap is the reference."""
    r = subprocess.run([sys.executable, "-m", "stream.cli", "bench", "cache", "--size-kb", "64", "--size-kb", "512",
                        "--gap-ms", "0", "--gap-ms", "2", "--repeats", "5", "--json"],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads(r.stdout)
    assert d["sizes_kb"] == [64, 512] and d["gaps_ms"] == [0.0, 2.0]
    for kb in ("64", "512"):
        assert set(d["read_us_p50"][kb]) == {"0", "2"} and min(d["read_us_p50"][kb].values()) > 0
        assert d["slowdown"][kb]["0"] == 1.0
        assert d["slowdown"][kb]["2"] == pytest.approx(d["read_us_p50"][kb]["2"] / d["read_us_p50"][kb]["0"], rel=0.02)
    # a larger array takes longer to read with nothing in between
    assert d["read_us_p50"]["512"]["0"] > d["read_us_p50"]["64"]["0"]


def test_bench_cache_refuses_a_negative_gap() -> None:
    from inference.bench import BenchError, bench_cache

    with pytest.raises(BenchError, match="gaps"):
        bench_cache(gaps_ms=(-1.0,))
