"""ONNX Runtime layer: provider choice, thread settings, metadata refusal, input checks, no torch.

The models are tiny real ONNX graphs built with ``onnx.helper`` (no torch in this process's
path under test) and run on the real ONNX Runtime of this machine.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import stream
from inference.metadata import ModelMetadata, write_metadata
from inference.runtime import (
    CPU,
    CUDA,
    TENSORRT,
    EdgeModel,
    ModelError,
    OnnxModel,
    ProviderError,
    choose_providers,
    provider_problem,
)
from stream.skeleton import CANONICAL

N, C, K = 4, 3, 3  # nodes, channels, edge types of the tiny encoder
SEND = np.array([i for i in range(N) for j in range(N) if i != j], dtype=np.int64)  # (E,)
RECV = np.array([j for i in range(N) for j in range(N) if i != j], dtype=np.int64)  # (E,)
E = SEND.size
W = np.random.default_rng(0).standard_normal((C, K)).astype(np.float32)  # (C, K)
TOL = 1e-6  # float32 ONNX Runtime vs float64 numpy on sums of ≤ 10 terms

GOOD_META = ModelMetadata(
    kind="nri", model_name="tiny", config={"nodes": N}, skeleton_layout=CANONICAL.name,
    joint_names=CANONICAL.joint_names, window_frames=5, fps=30.0, horizons_s=(), data_id="test",
    metrics={"val/loss": 0.5}, project_version=stream.__version__, extra={"normalizer": {"pos_scale": 0.5}},
)


def tiny_encoder(path: Path, meta: ModelMetadata | None = GOOD_META, props: dict[str, str] | None = None) -> Path:
    """``window (B, T, N, C)`` → mean over T → sender − receiver → ``@ W`` → softmax → ``edge_probs (B, E, K)``."""
    nodes = [
        helper.make_node("ReduceMean", ["window", "axis_t"], ["h"], keepdims=0),  # (B, N, C)
        helper.make_node("Gather", ["h", "send"], ["hs"], axis=1),  # (B, E, C)
        helper.make_node("Gather", ["h", "recv"], ["hr"], axis=1),  # (B, E, C)
        helper.make_node("Sub", ["hs", "hr"], ["d"]),
        helper.make_node("MatMul", ["d", "w"], ["logits"]),  # (B, E, K)
        helper.make_node("Softmax", ["logits"], ["edge_probs"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "tiny_encoder",
        [helper.make_tensor_value_info("window", TensorProto.FLOAT, ["B", "T", N, C])],
        [helper.make_tensor_value_info("edge_probs", TensorProto.FLOAT, ["B", E, K])],
        initializer=[numpy_helper.from_array(np.array([1], dtype=np.int64), "axis_t"),
                     numpy_helper.from_array(SEND, "send"), numpy_helper.from_array(RECV, "recv"),
                     numpy_helper.from_array(W, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    if meta is not None:
        write_metadata(model, meta)
    for k, v in (props or {}).items():
        prop = next((p for p in model.metadata_props if p.key == k), None) or model.metadata_props.add()
        prop.key, prop.value = k, v
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
    return path


def reference(window: np.ndarray) -> np.ndarray:
    """The tiny encoder in numpy float64: ``(B, T, N, C)`` → ``(B, E, K)``."""
    h = window.astype(np.float64).mean(axis=1)  # (B, N, C)
    logits = (h[:, SEND] - h[:, RECV]) @ W.astype(np.float64)  # (B, E, K)
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return np.asarray(z / z.sum(axis=-1, keepdims=True))


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_encoder(tmp_path_factory.mktemp("models") / "tiny.onnx")


def gpu_usable() -> bool:
    return provider_problem(TENSORRT) is None or provider_problem(CUDA) is None


# --------------------------------------------------------------------------------------------- providers


def test_auto_gets_the_best_provider_and_says_why(model_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="inference.runtime"):
        model = EdgeModel(model_path, device="auto")
    assert caplog.records and caplog.records[-1].getMessage() == model.choice.message
    if gpu_usable():
        assert model.provider in (TENSORRT, CUDA)
        return
    # this CPU machine: auto never fails, lands on CPU and names each GPU provider's problem
    assert model.provider == CPU and model.session.get_providers() == [CPU]
    assert model.choice.message.startswith("device auto: using CPU (")
    assert len(model.choice.reasons) == 2 and not model.choice.fell_back
    assert all(("TensorRT" in r or "CUDA" in r or "TensorrtExecutionProvider" in r or "CUDAExecution" in r)
               for r in model.choice.reasons)
    assert all(r.count("\n") == 0 for r in model.choice.reasons)  # one line


def test_cuda_request_falls_back_with_a_warning_or_errors_when_told(
    model_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if provider_problem(CUDA) is None:
        assert EdgeModel(model_path, device="cuda").provider == CUDA
        return
    with caplog.at_level(logging.WARNING, logger="inference.runtime"):
        model = EdgeModel(model_path, device="cuda")
    assert model.provider == CPU and model.choice.fell_back
    assert model.choice.message.startswith("device cuda: CUDA requested but ")
    assert model.choice.message.endswith(": using CPU")
    assert any(r.levelno == logging.WARNING and "CUDA requested" in r.getMessage() for r in caplog.records)
    with pytest.raises(ProviderError, match=r"CUDA requested but .*use --device auto or cpu"):
        EdgeModel(model_path, device="cuda", fallback=False)


def test_choice_on_an_onnxruntime_build_without_gpu_providers() -> None:
    choice = choose_providers("cuda", available=[CPU])
    assert choice.providers == (CPU,)
    assert choice.message == (
        f"device cuda: CUDA requested but onnxruntime {ort.__version__} reports no CUDAExecutionProvider "
        "(a build without it; install onnxruntime-gpu for NVIDIA GPUs): using CPU"
    )
    auto = choose_providers("auto", available=[CPU])
    assert auto.providers == (CPU,) and len(auto.reasons) == 2 and not auto.fell_back
    assert choose_providers("cpu", available=[CPU, CUDA]).message == "device cpu: using CPU"


def test_unknown_device_is_a_clear_error(model_path: Path) -> None:
    with pytest.raises(ModelError, match="unknown device 'gpu'; use one of auto, cuda, tensorrt, cpu"):
        EdgeModel(model_path, device="gpu")


def test_small_model_thread_settings(model_path: Path) -> None:
    so = EdgeModel(model_path, device="cpu").session.get_session_options()
    assert (so.intra_op_num_threads, so.inter_op_num_threads) == (1, 1)
    assert so.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL


# --------------------------------------------------------------------------------------------- metadata


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"skeleton_layout": "mediapipe33"}, r"skeleton layout 'mediapipe33'"),
        ({"joint_names": CANONICAL.joint_names[::-1]}, r"skeleton layout 'canonical18' \(18 joints\)"),
        ({"project_version": "9.0.0"}, r"invisible-strings 9\.0\.0.*major 9"),
        ({"schema_version": 0}, r"metadata schema is 0, this code reads 1"),
        ({"kind": "stga"}, r"it is a 'stga' model, not 'nri'"),
    ],
)
def test_metadata_that_does_not_fit_is_refused(tmp_path: Path, change: dict[str, Any], match: str) -> None:
    path = tiny_encoder(tmp_path / "bad.onnx", replace(GOOD_META, **change))
    with pytest.raises(ModelError, match=r"refusing .*bad\.onnx: .*" + match):
        EdgeModel(path, device="cpu")


def test_newer_schema_missing_metadata_and_missing_file_are_refused(tmp_path: Path) -> None:
    newer = tiny_encoder(tmp_path / "newer.onnx", props={"istrings.schema_version": "2"})
    with pytest.raises(ModelError, match="metadata schema 2, newer than this code reads"):
        EdgeModel(newer, device="cpu")
    bare = tiny_encoder(tmp_path / "bare.onnx", meta=None)
    with pytest.raises(ModelError, match="carries no istrings metadata; export it with `istrings export`"):
        EdgeModel(bare, device="cpu")
    with pytest.raises(ModelError, match="does not exist"):
        EdgeModel(tmp_path / "none.onnx", device="cpu")


def test_metadata_is_read_back(model_path: Path) -> None:
    meta = EdgeModel(model_path, device="cpu").metadata
    assert meta == GOOD_META


# --------------------------------------------------------------------------------------------- running


def test_edge_model_takes_one_window_or_a_batch(model_path: Path) -> None:
    model = EdgeModel(model_path, device="cpu")
    rng = np.random.default_rng(1)
    one = rng.standard_normal((7, N, C)).astype(np.float32)  # (T, N, C)
    out = model(one)
    assert out.shape == (1, E, K) and out.dtype == np.float32
    np.testing.assert_allclose(out, reference(one[None]), atol=TOL, rtol=0)
    batch = rng.standard_normal((3, 2, N, C)).astype(np.float32)  # (B, T, N, C), other T
    out = model(batch)
    assert out.shape == (3, E, K)
    np.testing.assert_allclose(out, reference(batch), atol=TOL, rtol=0)
    np.testing.assert_allclose(out.sum(axis=-1), 1.0, atol=TOL)


def test_io_binding_gives_the_same_numbers(model_path: Path) -> None:
    plain = EdgeModel(model_path, device="cpu", io_binding=False)
    bound = EdgeModel(model_path, device="cpu", io_binding=True)
    x = np.random.default_rng(2).standard_normal((2, 4, N, C)).astype(np.float32)
    assert bound.io_binding and not plain.io_binding
    np.testing.assert_array_equal(bound(x), plain(x))


@pytest.mark.parametrize(
    ("window", "match"),
    [
        (np.zeros((1, 5, N, C)), r"input 'window' must be float32, got float64; convert with \.astype"),
        (np.zeros((1, 5, N + 1, C), np.float32),
         r"must have shape \(B, T, 4, 3\), got \(1, 5, 5, 3\) \(axis 2 must be 4\)"),
        (np.zeros((5, N), np.float32), r"window must be \(T, N, C\) or \(B, T, N, C\), got shape \(5, 4\)"),
        (np.zeros((1, 1, 5, N, C), np.float32), r"got shape \(1, 1, 5, 4, 3\)"),
        (np.zeros((0, 5, N, C), np.float32), r"has an empty axis B"),
    ],
)
def test_inputs_are_checked_against_the_declared_inputs(model_path: Path, window: np.ndarray, match: str) -> None:
    model = EdgeModel(model_path, device="cpu", warmup=0)
    with pytest.raises(ModelError, match=match):
        model(window)


def test_run_checks_input_names_and_ranks(model_path: Path) -> None:
    model = OnnxModel(model_path, device="cpu", warmup=1)
    with pytest.raises(ModelError, match=r"must have shape \(B, T, 4, 3\) \(rank 4\), got \(5, 4, 3\)"):
        model.run({"window": np.zeros((5, N, C), np.float32)})
    with pytest.raises(ModelError, match=r"takes inputs \['window'\], got \['x'\]"):
        model.run({"x": np.zeros((1, 2, N, C), np.float32)})
    assert set(model.run(model.example_inputs(batch=2))) == {"edge_probs"}


def test_inference_never_imports_torch(model_path: Path) -> None:
    """``import inference`` and a model run through the runtime load neither torch nor onnx."""
    code = (
        "import json, sys\n"
        "import numpy as np\n"
        "import inference\n"
        "from inference.runtime import EdgeModel\n"
        f"m = EdgeModel({str(model_path)!r}, device='auto')\n"
        f"out = m(np.ones((5, {N}, {C}), np.float32))\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'onnx', 'onnxscript', 'training'))\n"
        "print(json.dumps({'bad': bad, 'shape': list(out.shape), 'provider': m.provider}))\n"
    )
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["bad"] == [] and result["shape"] == [1, E, K]
