"""MKFF-ST-GCN → ONNX: parity with torch on ONNX Runtime at three batch sizes other than the export
example, on random and on realistic (noisy duet) input, causal and centred, and the spec in the registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from exporters.export import ExportResult, export_checkpoint, export_module
from exporters.registry import available_kinds, get_spec, spec_for_model
from exporters.spec_mkff import MKFF
from exporters.validate import validate_export
from inference.metadata import read_metadata
from training.checkpoint import config_to_dict, load_checkpoint, save_checkpoint
from training.mkff.model import MKFFSTGCN, MKFFConfig
from training.noise import apply_noise

ATOL = MKFF.atol  # 2e-5 m: float32 ONNX Runtime vs torch CPU through ~10 layers on ~1 m inputs
BUNDLED = Path(__file__).resolve().parents[2] / "training" / "checkpoints" / "mkff_causal.pt"


def _checkpoint(tmp: Path, mode: str, window: int) -> Path:
    """A checkpoint whose head is not zero (an untrained model would just copy its input frame)."""
    torch.manual_seed(3)
    cfg = MKFFConfig(mode=mode, window=window)
    model = MKFFSTGCN(cfg)
    torch.nn.init.normal_(model.head.weight, std=0.2)
    torch.nn.init.normal_(model.head.bias, std=0.01)
    return save_checkpoint(tmp / f"mkff_{mode}.pt", model_name="mkff", model_config=cfg, state_dict=model.state_dict(),
                           data_id="test", metrics={"val/mpjpe_mm": 40.0}, extra={"fps": 30.0})


@pytest.fixture(scope="module", params=["causal", "centred"])
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ExportResult]:
    tmp = tmp_path_factory.mktemp(f"mkff_{request.param}")
    ckpt = _checkpoint(tmp, request.param, 12 if request.param == "causal" else 13)
    return ckpt, export_checkpoint(ckpt, MKFF, tmp / "models")


def test_mkff_is_an_exportable_kind() -> None:
    assert "mkff" in available_kinds()
    assert get_spec("mkff") is MKFF and spec_for_model("mkff") is MKFF
    assert all(dict(s) != dict(MKFF.export_sizes) for s in MKFF.validation_sizes) and len(MKFF.validation_sizes) >= 3


def test_parity_at_three_batch_sizes_other_than_the_export_example(exported: tuple[Path, ExportResult]) -> None:
    ckpt_path, result = exported
    ckpt = load_checkpoint(ckpt_path)
    module = export_module(ckpt.build_model(), MKFF)
    report = validate_export(result.onnx_path, module, MKFF, ckpt.model_config, seed=11)
    assert report.ok and [c.sizes["B"] for c in report.checks if c.case == "random"] == [1, 3, 8]
    T = ckpt.model_config["window"]
    for c in report.checks:
        assert c.shape == (c.sizes["B"], 36, 3) and 0.0 <= c.max_abs_diff <= ATOL, (c.sizes, c.max_abs_diff)
    graph_input = onnx.load(str(result.onnx_path)).graph.input[0]
    dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    assert dims == ["B", T, 36, 3]
    meta = read_metadata(result.onnx_path)
    assert meta.kind == "mkff" and meta.window_frames == T and meta.fps == 30.0
    assert meta.config["mode"] == ckpt.model_config["mode"]


def test_onnx_refines_a_noisy_duet_like_torch(exported: tuple[Path, ExportResult]) -> None:
    """Realistic input (metres, two bodies 2 m apart, estimator noise) at B = 5, not only N(0, 1)."""
    ckpt_path, result = exported
    model = load_checkpoint(ckpt_path).build_model()
    assert isinstance(model, MKFFSTGCN)
    T = model.config.window
    rng = np.random.default_rng(0)
    clean = rng.normal(0, 0.25, size=(T + 4, 2, 18, 3)) + np.array([0.0, 1.0, -3.0])
    clean[:, 1] += np.array([2.0, 0.0, 0.0])
    noisy = apply_noise(clean, rng).noisy.reshape(T + 4, 36, 3)
    windows = np.stack([noisy[i : i + T] for i in range(5)]).astype(np.float32)  # (5, T, 36, 3)
    session = ort.InferenceSession(str(result.onnx_path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"window": windows})
    with torch.no_grad():
        want = model(torch.from_numpy(windows)).numpy()
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)
    assert np.abs(want - windows[:, model.config.output_frame]).max() > 1e-3  # it does refine


@pytest.mark.skipif(not BUNDLED.is_file(), reason="training/checkpoints/mkff_causal.pt not trained in this checkout")
def test_the_bundled_causal_checkpoint_exports(tmp_path: Path) -> None:
    result = export_checkpoint(BUNDLED, MKFF, tmp_path)
    assert result.report.ok and result.metadata.config["mode"] == "causal"
    assert config_to_dict(load_checkpoint(BUNDLED).config()) == result.metadata.config
