"""STGA-Net → ONNX: parity with torch on ONNX Runtime at three batch sizes other than the export
example (spec dummies and real-looking duet windows), metadata, and the registry entry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from exporters.export import ExportResult, export_checkpoint, export_module
from exporters.registry import available_kinds, get_spec, spec_for_model
from exporters.spec import ExportError
from exporters.spec_stga import STGA
from exporters.validate import validate_export
from inference.metadata import read_metadata
from training.checkpoint import config_to_dict, load_checkpoint, save_checkpoint
from training.forecast_data import ForecastWindows, synthetic_clips
from training.stga.model import STGAConfig, STGANet
from training.stga.task import load_stga

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "training" / "checkpoints").glob("stga_*.pt"))
ATOL_M = 1e-4
"""Tolerance on forecasts, metres (0.1 mm): float32 torch vs ONNX Runtime through ~10 layers."""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped checkpoint when there is one, else a default-config model with a non-trivial head."""
    if SHIPPED:
        return SHIPPED[-1]
    torch.manual_seed(0)
    cfg = STGAConfig()
    model = STGANet(cfg)
    with torch.no_grad():
        nn.init.normal_(model.head.weight, std=0.2)  # the untrained head is zero: exercise the decoder
    path = tmp_path_factory.mktemp("stga") / "stga.pt"
    return save_checkpoint(path, model_name="stga", model_config=cfg, state_dict=model.state_dict(),
                           data_id="test", metrics={"val/loss": 1.0},
                           extra={"fps": cfg.fps, "horizons_s": [h / 1000 for h in cfg.horizons_ms]})


@pytest.fixture(scope="module")
def exported(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> ExportResult:
    return export_checkpoint(checkpoint, STGA, tmp_path_factory.mktemp("stga_onnx"))


def test_registry_offers_stga() -> None:
    assert "stga" in available_kinds()
    assert get_spec("stga") is STGA and spec_for_model("stga") is STGA
    assert len(STGA.validation_sizes) >= 3 and all(dict(s) != dict(STGA.export_sizes) for s in STGA.validation_sizes)
    cfg = config_to_dict(STGAConfig())
    assert STGA.dims(cfg, {"B": 1}) == {"T": 10, "N": 36, "C": 3, "H": 5, "B": 1}
    with pytest.raises(ExportError, match="not an STGA-Net config"):
        STGA.dims({"window": 8}, {"B": 1})


@pytest.mark.slow
def test_parity_at_three_batch_sizes_other_than_the_export_example(exported: ExportResult, checkpoint: Path) -> None:
    report = exported.report
    assert report.ok and {c.sizes["B"] for c in report.checks} == {1, 3, 7}
    ckpt = load_checkpoint(checkpoint)
    module = export_module(ckpt.build_model(), STGA)
    again = validate_export(exported.onnx_path, module, STGA, ckpt.model_config, seed=11)  # other values
    H = len(ckpt.model_config["horizons_ms"])
    for c in again.checks:
        assert c.ok and c.shape == (c.sizes["B"], H, 36, 3) and c.max_abs_diff <= STGA.atol, c


@pytest.mark.slow
def test_parity_on_real_looking_duet_windows(exported: ExportResult, checkpoint: Path) -> None:
    model = load_stga(checkpoint)
    cfg = model.cfg
    ds = ForecastWindows(synthetic_clips(1, seconds=4.0), cfg.past_frames, cfg.frames, stride=7)
    past, _ = ds.arrays()
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    session = ort.InferenceSession(str(exported.onnx_path), so, providers=["CPUExecutionProvider"])
    for B in (1, 4, 9):  # none is the export example's 2
        x = past[:B]
        (onnx_out,) = session.run(["forecast"], {"window": x})
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        assert onnx_out.shape == (B, len(cfg.horizons_ms), 36, 3)
        np.testing.assert_allclose(onnx_out, ref, atol=ATOL_M, rtol=0)
        assert np.abs(onnx_out - x[:, -1:]).max() < 5.0  # metres from the last frame: a forecast, not noise


@pytest.mark.slow
def test_metadata_says_window_rate_and_horizons(exported: ExportResult, checkpoint: Path) -> None:
    meta = read_metadata(exported.onnx_path)
    cfg = load_checkpoint(checkpoint).config()
    assert (meta.kind, meta.model_name, meta.window_frames, meta.fps) == ("stga", "stga", cfg.past_frames, 60.0)
    np.testing.assert_allclose(meta.horizons_s, [h / 1000 for h in cfg.horizons_ms])
    assert exported.card_path.is_file() and exported.onnx_path.stat().st_size < 2_000_000
