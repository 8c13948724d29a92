"""torch → ONNX: one checkpoint, one spec, one validated ``.onnx`` with metadata and a model card.

The path of an export (:func:`export_checkpoint`)::

    checkpoint (.pt, weights_only) → model rebuilt from (model_name, config)
      → the spec's part of it (``submodule``) with its head (``softmax`` …)       torch module
      → torch.onnx.export(dynamo=True) at the spec's export sizes, dynamic axes
        given as torch.export.Dim                                                 ONNX graph
      → exact rewrites that ONNX Runtime runs faster (exporters.graph_opt)
      → istrings metadata (inference.metadata) → onnx.checker → NAME.tmp.onnx
      → validation against ONNX Runtime at the spec's other sizes (exporters.validate)
      → NAME.onnx + NAME.json (model card)

A failed validation leaves no ``.onnx`` behind: the temporary file is removed and the error
lists every failure.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import stream
from exporters.graph_opt import optimize_for_runtime
from exporters.spec import ExportError, ExportSpec
from exporters.validate import ValidationReport, validate_export
from inference.metadata import ModelMetadata, write_metadata
from stream.skeleton import CANONICAL

log = logging.getLogger(__name__)

# The exporter warns once per torchvision op it cannot register (torchvision is not used here),
# and its optimiser logs every pass at INFO: keep `istrings -v export` readable.
logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
for _name in ("onnx_ir", "onnxscript"):
    logging.getLogger(_name).setLevel(logging.WARNING)


class _WithHead(nn.Module):
    """The exported part of a model followed by the spec's head on its single output."""

    def __init__(self, part: nn.Module, head: str) -> None:
        super().__init__()
        self.part = part
        self.head = head

    def forward(self, *inputs: Tensor) -> Tensor:
        out = self.part(*inputs)
        if not isinstance(out, Tensor):
            raise ExportError(f"head {self.head!r} needs one tensor output, the model returned {type(out).__name__}")
        if self.head == "softmax":
            return torch.softmax(out, dim=-1)  # (..., K) logits → probabilities over the last axis
        return out


def export_module(model: nn.Module, spec: ExportSpec) -> nn.Module:
    """The part of ``model`` that ``spec`` exports (its ``submodule`` plus ``head``), in eval mode.

    Raises:
        ExportError: the model has no such submodule.
    """
    part: Any = model
    for attr in filter(None, spec.submodule.split(".")):
        if not isinstance(getattr(part, attr, None), nn.Module):
            raise ExportError(
                f"{type(model).__name__} has no submodule {spec.submodule!r} to export for {spec.name!r}"
            )
        part = getattr(part, attr)
    module = part if spec.head == "identity" else _WithHead(part, spec.head)
    return module.eval()


def _dynamic_shapes(module: nn.Module, spec: ExportSpec) -> tuple[Any, ...]:
    """One ``{axis index: torch.export.Dim}`` per input, a Dim shared by name across inputs,
    structured like ``module.forward``'s parameters (``*inputs`` takes them as one tuple)."""
    dims = {name: torch.export.Dim(name, min=lo, max=hi) for name, (lo, hi) in spec.dynamic.items()}
    per_input = tuple({i: dims[a] for i, a in enumerate(t.axes) if a in dims} for t in spec.inputs)
    params = inspect.signature(module.forward).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return (per_input,)
    return per_input


def _summary(exc: BaseException) -> str:
    """The one line of a torch exporter error that says what went wrong."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if "## Exception summary" in lines:
        rest = lines[lines.index("## Exception summary") + 1:]
        return rest[0] if rest else type(exc).__name__
    return lines[0] if lines else type(exc).__name__


def export_onnx(
    module: nn.Module,
    spec: ExportSpec,
    config: Mapping[str, Any],
    path: str | Path,
    metadata: ModelMetadata,
) -> Path:
    """Export ``module`` to ``path`` with ``torch.onnx.export(dynamo=True)`` and write the metadata.

    The example inputs are the spec's dummy inputs at :attr:`ExportSpec.export_sizes` (each
    dynamic axis ≥ 2, so none is silently fixed); dynamic axes are passed as
    ``torch.export.Dim`` with the spec's range. Weights are stored inside the file.

    Raises:
        ExportError: the exporter or the ONNX checker failed.
    """
    import onnx

    path = Path(path)
    module = module.eval()
    feeds = spec.dummy_inputs(config, spec.export_sizes, seed=0)
    args = tuple(torch.from_numpy(feeds[name]) for name in spec.input_names)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # torch.export's own pytree deprecation notice, not about this model
            warnings.filterwarnings("ignore", category=FutureWarning, message=".*LeafSpec.*")
            program = torch.onnx.export(
                module,
                args,
                dynamo=True,
                input_names=list(spec.input_names),
                output_names=list(spec.output_names),
                opset_version=spec.opset,
                dynamic_shapes=_dynamic_shapes(module, spec),
                optimize=True,
                verbose=False,
            )
    except Exception as exc:  # torch.export raises many types (UserError, TorchRuntimeError, ...)
        raise ExportError(f"torch.onnx.export of {spec.name!r} failed: {_summary(exc)}") from exc
    if program is None:
        raise ExportError(f"torch.onnx.export of {spec.name!r} returned no ONNX program")
    model = program.model_proto
    rewrites = optimize_for_runtime(model)
    log.info("%s: graph rewrites for ONNX Runtime %s", spec.name, rewrites.as_dict())
    write_metadata(model, metadata)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # onnx.checker.ValidationError, onnx.shape_inference.InferenceError
        raise ExportError(f"the ONNX graph of {spec.name!r} does not pass onnx.checker: {exc}") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
    log.info("exported %s to %s (%d bytes)", spec.name, path, path.stat().st_size)
    return path


def _lookup(key: str, *sources: Mapping[str, Any]) -> Any:
    for source in sources:
        if key and key in source:
            return source[key]
    return None


def build_metadata(
    spec: ExportSpec,
    *,
    model_config: Mapping[str, Any],
    data_id: str,
    metrics: Mapping[str, float],
    extra: Mapping[str, Any],
    fps: float | None = None,
) -> ModelMetadata:
    """The metadata of one export: the spec's keys resolved in the checkpoint's config and extra.

    Args:
        spec: the export spec (names the config keys of window, frame rate and horizons).
        model_config: the checkpoint's config dict.
        data_id: training data id.
        metrics: metrics the checkpoint reached.
        extra: the checkpoint's extra data.
        fps: frame rate in Hz, when neither the config nor the extra holds it.

    Raises:
        ExportError: no frame rate is known, or ``fps`` contradicts the checkpoint's.
    """
    stored = _lookup(spec.fps_key, model_config, extra)
    if stored is not None and fps is not None and not np.isclose(float(stored), fps):
        raise ExportError(
            f"the checkpoint was trained at {float(stored):g} Hz but --fps says {fps:g} Hz; drop --fps"
        )
    rate = fps if stored is None else float(stored)
    if rate is None or not rate > 0:
        raise ExportError(
            f"the checkpoint stores no frame rate ({spec.fps_key!r} in its config or extra); "
            "pass --fps with the frame rate of the training clips"
        )
    window = _lookup(spec.window_key, model_config, extra)
    horizons = _lookup(spec.horizons_key, model_config, extra)
    return ModelMetadata(
        kind=spec.name,
        model_name=spec.model_name,
        config=dict(model_config),
        skeleton_layout=CANONICAL.name,
        joint_names=CANONICAL.joint_names,
        window_frames=int(window) if window is not None else 0,
        fps=float(rate),
        horizons_s=tuple(float(h) for h in horizons) if horizons is not None else (),
        data_id=data_id,
        metrics=dict(metrics),
        project_version=stream.__version__,
        extra=dict(extra),
    )


@dataclass(frozen=True)
class ExportResult:
    """A validated export: the ``.onnx``, its model card and the validation report."""

    spec: ExportSpec
    onnx_path: Path
    card_path: Path
    report: ValidationReport
    metadata: ModelMetadata


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def model_card(spec: ExportSpec, path: Path, meta: ModelMetadata, report: ValidationReport) -> dict[str, Any]:
    """The model card written next to every ``.onnx`` (format: ``inference/models/README.md``)."""
    import onnx
    import onnxruntime

    dims = spec.dims(meta.config, {})

    def tensor(t: Any) -> dict[str, Any]:
        return {"name": t.name, "axes": list(t.axes), "dtype": t.dtype,
                "shape": [dims.get(a, a) for a in t.axes]}

    return {
        "kind": spec.name,
        "description": spec.description,
        "file": path.name,
        "sha256": _sha256(path),
        "bytes": path.stat().st_size,
        "opset": spec.opset,
        "inputs": [tensor(t) for t in spec.inputs],
        "outputs": [tensor(t) for t in spec.outputs],
        "dynamic_axes": {k: list(v) for k, v in spec.dynamic.items()},
        "metadata": {k.removeprefix("istrings."): v for k, v in meta.to_props().items()},
        "validation": report.as_dict(),
        "exported_with": {"torch": torch.__version__, "onnx": onnx.__version__,
                          "onnxruntime": onnxruntime.__version__},
    }


def export_checkpoint(
    checkpoint: str | Path,
    spec: ExportSpec,
    out_dir: str | Path,
    *,
    fps: float | None = None,
) -> ExportResult:
    """Export one checkpoint with its spec to ``out_dir/NAME.onnx`` and ``out_dir/NAME.json``.

    Raises:
        ExportError: the checkpoint holds another model, the export fails, or validation finds
            any difference (then no ``.onnx`` is left behind).
        training.checkpoint.CheckpointError: the checkpoint cannot be read or rebuilt.
    """
    from training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    if ckpt.model_name != spec.model_name:
        raise ExportError(
            f"{checkpoint} holds a {ckpt.model_name!r} model; `istrings export {spec.name}` needs "
            f"a {spec.model_name!r} checkpoint"
        )
    module = export_module(ckpt.build_model(), spec)
    meta = build_metadata(spec, model_config=ckpt.model_config, data_id=ckpt.data_id,
                          metrics=ckpt.metrics, extra=ckpt.extra, fps=fps)
    out = Path(out_dir)
    final = out / f"{spec.name}.onnx"
    tmp = out / f"{spec.name}.tmp.onnx"
    try:
        export_onnx(module, spec, ckpt.model_config, tmp, meta)
        report = validate_export(tmp, module, spec, ckpt.model_config)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(final)
    card = out / f"{spec.name}.json"
    card.write_text(json.dumps(model_card(spec, final, meta, report), indent=2) + "\n", encoding="utf-8")
    return ExportResult(spec=spec, onnx_path=final, card_path=card, report=report, metadata=meta)
