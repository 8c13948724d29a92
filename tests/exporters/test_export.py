"""torch → ONNX export: parity at shapes other than the export example, names/shapes/values checks,
metadata, every failure of a broken export reported, and the real duet NRI encoder end to end."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from torch import Tensor, nn
from typer.testing import CliRunner, Result

import stream
from exporters.export import ExportResult, export_checkpoint, export_module
from exporters.registry import NRI, available_kinds, get_spec
from exporters.spec import ExportError, ExportSpec, TensorSpec
from exporters.validate import ExportValidationError, format_sizes, validate_export
from inference.metadata import read_metadata, write_metadata
from inference.runtime import EdgeModel
from stream.cli import build_app
from stream.skeleton import CANONICAL
from training.checkpoint import config_to_dict, register_model, save_checkpoint

ENV = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
ATOL = 1e-5  # float32 ONNX Runtime vs torch CPU on graphs of a few hundred multiply-adds


# --------------------------------------------------------------------------------------------- a tiny real model


@dataclass(frozen=True)
class TinyConfig:
    """Hyperparameters of the test model."""

    nodes: int = 4
    channels: int = 3
    hidden: int = 8
    edge_types: int = 3


class TinyEdgeNet(nn.Module):
    """``x (B, T, N, C)`` → ``logits (B, E, K)`` over every ordered node pair and ``state (B, N, H)``.

    Mean over time (so ``T`` can be dynamic), a node MLP, sender/receiver gathers: the shape of
    an NRI encoder in a few lines.
    """

    send: Tensor
    recv: Tensor

    def __init__(self, config: TinyConfig) -> None:
        super().__init__()
        N = config.nodes
        pairs = [(i, j) for i in range(N) for j in range(N) if i != j]
        self.register_buffer("send", torch.tensor([i for i, _ in pairs]))
        self.register_buffer("recv", torch.tensor([j for _, j in pairs]))
        self.node = nn.Linear(config.channels, config.hidden)
        self.edge = nn.Linear(2 * config.hidden, config.edge_types)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = torch.tanh(self.node(x.mean(dim=1)))  # (B, N, H)
        e = torch.cat([h.index_select(1, self.send), h.index_select(1, self.recv)], dim=-1)  # (B, E, 2H)
        return self.edge(e), h  # (B, E, K), (B, N, H)


register_model("test_tiny_edges", TinyConfig, TinyEdgeNet)


def tiny_dims(config: Mapping[str, Any]) -> dict[str, int]:
    N = config["nodes"]
    return {"N": N, "C": config["channels"], "E": N * (N - 1), "K": config["edge_types"], "H": config["hidden"]}


TINY = ExportSpec(
    name="tiny",
    model_name="test_tiny_edges",
    description="test model",
    inputs=(TensorSpec("window", ("B", "T", "N", "C")),),
    outputs=(TensorSpec("edge_logits", ("B", "E", "K")), TensorSpec("node_state", ("B", "N", "H"))),
    dynamic={"B": (1, 64), "T": (2, 512)},
    export_sizes={"B": 2, "T": 5},
    validation_sizes=({"B": 1, "T": 3}, {"B": 3, "T": 8}, {"B": 6, "T": 2}),
    static_dims=tiny_dims,
    atol=ATOL,
    rtol=1e-4,
)
CONFIG = TinyConfig()
CONFIG_D = config_to_dict(CONFIG)


def tiny_model(seed: int = 0) -> TinyEdgeNet:
    torch.manual_seed(seed)
    return TinyEdgeNet(CONFIG).eval()


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> ExportResult:
    """A checkpoint of the tiny model exported with :func:`export_checkpoint` (once per module)."""
    tmp = tmp_path_factory.mktemp("tiny")
    ckpt = save_checkpoint(tmp / "tiny.pt", model_name="test_tiny_edges", model_config=CONFIG,
                           state_dict=tiny_model().state_dict(), data_id="tiny-data", metrics={"val/loss": 0.25},
                           extra={"fps": 50.0, "normalizer": {"pos_scale": 0.5, "vel_scale": 2.0},
                                  "big": torch.zeros(1000)})
    return export_checkpoint(ckpt, TINY, tmp / "models")


@pytest.fixture(scope="module")
def tiny_onnx(tiny_export: ExportResult) -> Path:
    return tiny_export.onnx_path


# --------------------------------------------------------------------------------------------- the machinery


def test_parity_at_three_shapes_other_than_the_export_example(tiny_onnx: Path) -> None:
    report = validate_export(tiny_onnx, tiny_model(), TINY, CONFIG_D)
    assert report.ok and len(TINY.validation_sizes) >= 3
    assert all(dict(s) != dict(TINY.export_sizes) for s in TINY.validation_sizes)
    random = [c for c in report.checks if c.case == "random"]
    assert len(random) == 3 * 2  # every output at every size
    assert [c.case for c in report.checks[6:]] == ["still", "still", "zeros", "zeros"]  # then the degenerate inputs
    for c in report.checks:
        assert c.ok and 0.0 <= c.max_abs_diff <= ATOL, (c.output, format_sizes(c.sizes), c.max_abs_diff)
    shapes = {(c.output, c.sizes["B"]): c.shape for c in random}
    assert shapes[("edge_logits", 6)] == (6, 12, 3) and shapes[("node_state", 3)] == (3, 4, 8)
    # the dynamic axes are symbolic in the graph, the static ones fixed
    model = onnx.load(str(tiny_onnx))
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["B", "T", 4, 3]


def test_metadata_is_written_and_read_back(tiny_onnx: Path) -> None:
    meta = read_metadata(tiny_onnx)
    assert meta.kind == "tiny" and meta.model_name == "test_tiny_edges"
    assert meta.config == CONFIG_D and meta.data_id == "tiny-data" and meta.metrics == {"val/loss": 0.25}
    assert meta.skeleton_layout == "canonical18" and meta.joint_names == CANONICAL.joint_names
    assert meta.fps == 50.0 and meta.window_frames == 0 and meta.horizons_s == ()
    assert meta.project_version == stream.__version__ and meta.schema_version == 1
    # small extra data travels, a 1000-element tensor stays in the checkpoint
    assert meta.extra == {"fps": 50.0, "normalizer": {"pos_scale": 0.5, "vel_scale": 2.0}}


def _rename_output(src: Path, dst: Path, old: str, new: str) -> Path:
    model = onnx.load(str(src))
    for node in model.graph.node:
        node.output[:] = [new if o == old else o for o in node.output]
        node.input[:] = [new if i == old else i for i in node.input]
    for out in model.graph.output:
        if out.name == old:
            out.name = new
    onnx.save_model(model, str(dst))
    return dst


def test_a_broken_export_raises_with_every_failure(tiny_onnx: Path, tmp_path: Path) -> None:
    """An output renamed *and* a graph whose numbers differ: names first, then every size's values."""
    renamed = _rename_output(tiny_onnx, tmp_path / "renamed.onnx", "node_state", "hidden")
    other = tiny_model(seed=1)  # other weights: the ONNX no longer computes this module
    with pytest.raises(ExportValidationError) as info:
        validate_export(renamed, other, TINY, CONFIG_D)
    failures = info.value.report.failures
    assert failures[0] == "output names are ['edge_logits', 'hidden'], the spec says ['edge_logits', 'node_state']"
    value_fails = failures[1:]
    first = format_sizes(TINY.validation_sizes[0])
    assert [f.split(":")[0] for f in value_fails] == [
        f"output 'edge_logits' at {format_sizes(s)}" for s in TINY.validation_sizes
    ] + [f"output 'edge_logits' at {first} (still input)", f"output 'edge_logits' at {first} (zeros input)"]
    assert all("exceeds atol 1e-05" in f for f in value_fails)
    assert str(info.value).startswith(
        "renamed.onnx does not match the torch model 'tiny': 6 failure(s): (1) output names")
    assert isinstance(info.value, ExportError)
    # the largest difference is still reported per output and size
    diffs = [c.max_abs_diff for c in info.value.report.checks if c.output == "edge_logits"]
    assert len(diffs) == 5 and min(diffs) > 1e-3


def test_numbers_alone_differing_is_a_failure(tiny_onnx: Path) -> None:
    other = tiny_model(seed=0)
    with torch.no_grad():
        other.edge.bias.add_(1e-3)  # a small shift, far above the tolerance
    expected = r"5 failure\(s\).*'edge_logits' at B=1 T=3: max \|onnx - torch\| = 0\.001"
    with pytest.raises(ExportValidationError, match=expected):
        validate_export(tiny_onnx, other, TINY, CONFIG_D)


def _save_with_metadata(program: Any, like: Path, path: Path) -> Path:
    """Save an ONNX program made here with the metadata of the export ``like`` (what validation reads)."""
    assert program is not None
    model = program.model_proto
    write_metadata(model, read_metadata(like))
    onnx.save_model(model, str(path))
    return path


class GuardedUnit(nn.Module):
    """Each node's mean direction of motion: ``Δx / sqrt(|Δx|² + 1e-12)`` averaged over the window.

    In torch a still window gives 0 (the guard keeps 0/0 away); ``x (B, T, N, C)`` → ``(B, N, C)``.
    """

    def forward(self, x: Tensor) -> Tensor:
        d = x[:, 1:] - x[:, :-1]  # (B, T-1, N, C)
        return (d / torch.sqrt((d * d).sum(dim=-1, keepdim=True) + 1e-12)).mean(dim=1)


GUARD = ExportSpec(
    name="guard", model_name="test_tiny_edges", description="test model",
    inputs=(TensorSpec("window", ("B", "T", "N", "C")),), outputs=(TensorSpec("unit", ("B", "N", "C")),),
    dynamic={"B": (1, 64), "T": (2, 512)}, export_sizes={"B": 2, "T": 5},
    validation_sizes=({"B": 1, "T": 3}, {"B": 3, "T": 8}, {"B": 6, "T": 2}),
    static_dims=lambda config: {"N": 4, "C": 3}, atol=ATOL, rtol=1e-4,
)


def test_a_guard_the_exporter_dropped_is_caught_on_a_still_window(tiny_onnx: Path, tmp_path: Path) -> None:
    """onnxscript's optimizer turns ``+ 1e-12`` into nothing: random inputs agree, a still window is 0/0."""
    x = torch.from_numpy(GUARD.dummy_inputs({}, GUARD.export_sizes)["window"])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        program = torch.onnx.export(GuardedUnit().eval(), (x,), dynamo=True, input_names=["window"],
                                    output_names=["unit"], optimize=True, verbose=False,
                                    dynamic_shapes=({0: torch.export.Dim("B", min=1, max=64),
                                                     1: torch.export.Dim("T", min=2, max=512)},))
    path = _save_with_metadata(program, tiny_onnx, tmp_path / "guard.onnx")
    with pytest.raises(ExportValidationError) as info:
        validate_export(path, GuardedUnit(), GUARD, {})
    assert info.value.report.failures == (
        "output 'unit' at B=1 T=3 (still input): ONNX Runtime returned NaN or infinity",
        "output 'unit' at B=1 T=3 (zeros input): ONNX Runtime returned NaN or infinity",
    )
    assert all(c.ok for c in info.value.report.checks if c.case == "random")


@pytest.mark.slow
def test_a_silently_fixed_dimension_is_caught(tiny_onnx: Path, tmp_path: Path) -> None:
    """Exported without dynamic shapes (as an example size of 1 would do): the graph is fixed."""
    x = torch.from_numpy(TINY.dummy_inputs(CONFIG_D, TINY.export_sizes)["window"])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        program = torch.onnx.export(tiny_model(), (x,), dynamo=True, input_names=["window"],
                                    output_names=["edge_logits", "node_state"], verbose=False)
    path = _save_with_metadata(program, tiny_onnx, tmp_path / "fixed.onnx")
    with pytest.raises(ExportValidationError) as info:
        validate_export(path, tiny_model(), TINY, CONFIG_D)
    failures = info.value.report.failures
    assert "input 'window' axis 0 (B) is fixed to 2 in the ONNX graph but should be dynamic" in failures[0]
    assert "input 'window' axis 1 (T) is fixed to 5" in failures[1]
    assert sum(f.startswith("ONNX Runtime failed at") for f in failures) == 5  # every size and degenerate input


def test_specs_refuse_example_size_one_and_validation_at_the_export_shape() -> None:
    with pytest.raises(ExportError, match="export size of dynamic axis B is 1; use >= 2"):
        replace(TINY, export_sizes={"B": 1, "T": 5})
    with pytest.raises(ExportError, match="equal the export example; pick other sizes"):
        replace(TINY, validation_sizes=({"B": 2, "T": 5},))
    with pytest.raises(ExportError, match=r"validation size T=600 is outside the range \(2, 512\)"):
        replace(TINY, validation_sizes=({"B": 2, "T": 600},))


def test_export_checkpoint_writes_onnx_and_card(tiny_export: ExportResult, tmp_path: Path) -> None:
    assert sorted(p.name for p in tiny_export.onnx_path.parent.iterdir()) == ["tiny.json", "tiny.onnx"]
    card = json.loads(tiny_export.card_path.read_text())
    assert card["sha256"] == hashlib.sha256(tiny_export.onnx_path.read_bytes()).hexdigest()
    assert card["inputs"] == [{"name": "window", "axes": ["B", "T", "N", "C"], "dtype": "float32",
                               "shape": ["B", "T", 4, 3]}]
    assert card["dynamic_axes"] == {"B": [1, 64], "T": [2, 512]}
    assert card["metadata"]["fps"] == "50.0" and card["metadata"]["data_id"] == "tiny-data"
    checks = card["validation"]["checks"]  # 2 outputs at 3 sizes, then at a still and an all-zero window
    assert card["validation"]["ok"] and [c["case"] for c in checks] == ["random"] * 6 + ["still"] * 2 + ["zeros"] * 2
    ckpt = tiny_export.onnx_path.parent.parent / "tiny.pt"
    with pytest.raises(ExportError, match="trained at 50 Hz but --fps says 30 Hz"):
        export_checkpoint(ckpt, TINY, tmp_path, fps=30.0)


def test_export_checkpoint_refuses_another_model_and_a_missing_frame_rate(tmp_path: Path) -> None:
    ckpt = save_checkpoint(tmp_path / "tiny.pt", model_name="test_tiny_edges", model_config=CONFIG,
                           state_dict=tiny_model().state_dict(), data_id="d", metrics={})
    with pytest.raises(ExportError, match="holds a 'test_tiny_edges' model; `istrings export nri` needs a 'nri_duet'"):
        export_checkpoint(ckpt, NRI, tmp_path)
    with pytest.raises(ExportError, match=r"stores no frame rate .*pass --fps"):
        export_checkpoint(ckpt, TINY, tmp_path)
    assert not list(tmp_path.glob("*.onnx"))


# --------------------------------------------------------------------------------------------- the duet NRI encoder


def test_registry_offers_exactly_the_models_that_exist() -> None:
    assert set(available_kinds()) == {"nri", "stga", "mkff"}  # one per model of the live path
    assert get_spec("nri").model_name == "nri_duet"
    with pytest.raises(ExportError, match="no exportable model 'gcn'; exportable: nri"):
        get_spec("gcn")


@pytest.fixture(scope="module")
def nri_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.nri.duet import DuetNRI, DuetNRIConfig

    torch.manual_seed(0)
    config = DuetNRIConfig(hidden=16, window=8, edge_types=3)
    model = DuetNRI(config).train()
    with torch.no_grad():  # non-trivial BatchNorm running statistics
        for _ in range(4):
            model.encoder(torch.randn(8, config.window, 36, config.in_channels) * 2 + 0.5)
    path = tmp_path_factory.mktemp("nri") / "duet.pt"
    return save_checkpoint(path, model_name="nri_duet", model_config=config, state_dict=model.state_dict(),
                           data_id="synthetic-test", metrics={"val/auroc": 0.5},
                           extra={"normalizer": {"pos_scale": 0.4, "vel_scale": 1.2}})


def istrings(*args: str) -> Result:
    """Run the ``istrings`` app in this process (torch is already imported here)."""
    return CliRunner().invoke(build_app(), list(args), env=ENV)


@pytest.fixture(scope="module")
def nri_export(nri_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``istrings export nri`` on the checkpoint."""
    out = tmp_path_factory.mktemp("nri_out")
    r = istrings("export", "nri", "-c", str(nri_checkpoint), "-o", str(out), "--fps", "30")
    assert r.exit_code == 0, r.output + repr(r.exception)
    return out / "nri.onnx", r.output


@pytest.mark.slow
def test_istrings_export_nri_validates_and_prints_the_table(nri_export: tuple[Path, str]) -> None:
    path, stdout = nri_export
    assert path.is_file() and path.with_suffix(".json").is_file()
    rows = [ln for ln in stdout.splitlines() if "edge_probs" in ln]
    assert len(rows) == 5 and all(" ok " in ln or ln.rstrip(" │|").endswith("ok") for ln in rows)
    for sizes in ("B=1", "B=3", "B=7", "B=1 still", "B=1 zeros"):
        assert any(sizes in ln for ln in rows)
    meta = read_metadata(path)
    assert (meta.kind, meta.model_name, meta.window_frames, meta.fps) == ("nri", "nri_duet", 8, 30.0)
    assert meta.extra == {"normalizer": {"pos_scale": 0.4, "vel_scale": 1.2}}


@pytest.mark.slow
def test_nri_encoder_parity_at_three_batch_sizes(nri_export: tuple[Path, str], nri_checkpoint: Path) -> None:
    from training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(nri_checkpoint)
    module = export_module(ckpt.build_model(), NRI)
    report = validate_export(nri_export[0], module, NRI, ckpt.model_config, seed=7)
    assert [c.sizes["B"] for c in report.checks if c.case == "random"] == [1, 3, 7]
    assert {c.case for c in report.checks} == {"random", "still", "zeros"} and report.ok
    assert all(c.shape == (c.sizes["B"], 648, 3) and c.max_abs_diff <= NRI.atol for c in report.checks)


@pytest.mark.slow
def test_edge_model_runs_the_exported_nri_like_torch(nri_export: tuple[Path, str], nri_checkpoint: Path) -> None:
    from training.checkpoint import load_checkpoint

    model = EdgeModel(nri_export[0], device="auto")
    assert model.window_shape == ("B", 8, 36, 6)
    torch_model: Any = load_checkpoint(nri_checkpoint).build_model()
    window = np.random.default_rng(5).standard_normal((8, 36, 6)).astype(np.float32)  # (T, N, C)
    probs = model(window)
    with torch.no_grad():
        expected = torch.softmax(torch_model.encoder(torch.from_numpy(window[None])), dim=-1).numpy()
    assert probs.shape == (1, 648, 3)
    np.testing.assert_allclose(probs, expected, atol=NRI.atol, rtol=0)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-6)


def test_istrings_export_refuses_the_wrong_checkpoint_with_a_named_error(
    nri_checkpoint: Path, tmp_path: Path
) -> None:
    tiny = save_checkpoint(tmp_path / "tiny.pt", model_name="test_tiny_edges", model_config=CONFIG,
                           state_dict=tiny_model().state_dict(), data_id="d", metrics={})
    r = istrings("export", "nri", "-c", str(tiny), "-o", str(tmp_path))
    assert isinstance(r.exception, ExportError)  # stream.cli.main prints it as one line, exit 2
    assert "holds a 'test_tiny_edges' model" in str(r.exception)
    r = istrings("export", "all", "-c", str(nri_checkpoint), "-c", str(nri_checkpoint), "-o", str(tmp_path))
    assert isinstance(r.exception, ExportError)
    assert str(r.exception) == (
        "`istrings export all` needs one checkpoint per kind: missing mkff, stga; more than one for nri"
    )
    r = istrings("export", "stga", "-c", str(nri_checkpoint), "-o", str(tmp_path))
    assert isinstance(r.exception, ExportError)
    assert "holds a 'nri_duet' model; `istrings export stga` needs a 'stga' checkpoint" in str(r.exception)
    r = istrings("export", "gcn", "-c", str(nri_checkpoint), "-o", str(tmp_path))
    assert r.exit_code == 2 and "'gcn' is not one of" in r.output.replace("\n", " ")
