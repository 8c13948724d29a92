"""Validation of an ONNX export against its torch module, on ONNX Runtime.

Checked in this order, every failure collected (never a warning, never the first one only):

1. **names** — the ONNX inputs and outputs are exactly the spec's, in order;
2. **shapes** — the graph declares every dynamic axis symbolic and every static axis with the
   config's size; at every validation size, torch and ONNX Runtime outputs have the spec's shape;
3. **values** — ``|onnx − torch| ≤ atol + rtol·|torch|`` element-wise and finite, at every
   validation size (never the export example's), with the largest absolute difference reported
   per output and size; then the same at the inputs a live model meets and random ones never
   are (:func:`degenerate_inputs`: a still window, all zeros);

plus the istrings metadata must parse. Any failure raises :class:`ExportValidationError`
(an :class:`~exporters.spec.ExportError`) whose message lists them all and whose ``report``
holds every figure.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import Tensor, nn

from exporters.spec import ExportError, ExportSpec
from inference.metadata import MetadataError, ModelMetadata

log = logging.getLogger(__name__)

VALIDATION_PROVIDER = "CPUExecutionProvider"
"""Validation runs on the CPU provider: the reference every other provider is compared with."""


def format_sizes(sizes: Mapping[str, int]) -> str:
    """``{"B": 3, "T": 9}`` → ``"B=3 T=9"``."""
    return " ".join(f"{k}={v}" for k, v in sizes.items())


@dataclass(frozen=True)
class OutputCheck:
    """One output at one validation size.

    Attributes:
        sizes: the dynamic-axis sizes of this run.
        output: output name.
        shape: shape ONNX Runtime returned (empty when it returned none).
        expected_shape: shape torch returned.
        max_abs_diff: largest ``|onnx − torch|`` (NaN when the shapes differ or a value is not finite).
        ok: shapes agree and every element is within tolerance.
        case: ``random`` (the spec's dummy inputs) or a degenerate input, ``still`` or ``zeros``
            (:func:`degenerate_inputs`).
    """

    sizes: Mapping[str, int]
    output: str
    shape: tuple[int, ...]
    expected_shape: tuple[int, ...]
    max_abs_diff: float
    ok: bool
    case: str = "random"


@dataclass(frozen=True)
class ValidationReport:
    """Everything validation found for one ``.onnx``.

    Attributes:
        spec_name: model kind.
        provider: ONNX Runtime provider the comparison ran on.
        atol: absolute tolerance.
        rtol: relative tolerance.
        checks: one entry per output per validation size, then per degenerate input.
        failures: every failure, names first, then shapes, then values.
    """

    spec_name: str
    provider: str
    atol: float
    rtol: float
    checks: tuple[OutputCheck, ...]
    failures: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.failures

    def max_abs_diff(self, output: str) -> float:
        """Largest difference of one output over every validation size (NaN if any was not comparable)."""
        diffs = [c.max_abs_diff for c in self.checks if c.output == output]
        return float(max(diffs)) if diffs and not any(np.isnan(diffs)) else float("nan")

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (model cards)."""
        return {
            "provider": self.provider, "atol": self.atol, "rtol": self.rtol, "ok": self.ok,
            "checks": [
                {"sizes": dict(c.sizes), "case": c.case, "output": c.output, "shape": list(c.shape),
                 "expected_shape": list(c.expected_shape),
                 "max_abs_diff": None if np.isnan(c.max_abs_diff) else c.max_abs_diff, "ok": c.ok}
                for c in self.checks
            ],
            "failures": list(self.failures),
        }


class ExportValidationError(ExportError):
    """An export does not match its torch module; ``report`` holds every check and failure."""

    def __init__(self, message: str, report: ValidationReport) -> None:
        super().__init__(message)
        self.report = report


def _declared(axes: Sequence[str], shape: Sequence[Any], dynamic: Mapping[str, Any],
              static: Mapping[str, int], what: str) -> list[str]:
    """Problems of one declared ONNX shape against the spec's axes."""
    if len(shape) != len(axes):
        return [f"{what} has rank {len(shape)} in the ONNX graph, the spec declares {len(axes)} axes {tuple(axes)}"]
    problems = []
    for i, (axis, dim) in enumerate(zip(axes, shape, strict=True)):
        if axis in dynamic and isinstance(dim, int):
            problems.append(
                f"{what} axis {i} ({axis}) is fixed to {dim} in the ONNX graph but should be dynamic "
                "(was its export example size 1?)"
            )
        elif axis in static and dim != static[axis]:
            problems.append(f"{what} axis {i} ({axis}) is {dim} in the ONNX graph, the config says {static[axis]}")
    return problems


def _torch_outputs(module: nn.Module, args: Sequence[Tensor]) -> list[np.ndarray]:
    with torch.no_grad():
        out = module(*args)
    outs = list(out) if isinstance(out, tuple | list) else [out]
    return [o.detach().cpu().numpy() for o in outs]


def degenerate_inputs(spec: ExportSpec, feeds: Mapping[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """The inputs a live model meets that random ones never are: a still window and all zeros.

    ``still``: every frame of each input with a ``T`` axis is its first frame (dancers holding a
    pose, or a held estimate while a dancer is lost); only when some input has a ``T`` axis.
    ``zeros``: every value 0 (nobody detected yet). These catch a division whose guard the
    exporter removed (onnxscript's optimizer treats ``x + c`` with ``|c| ≤ 1e-8`` as ``x``).
    """
    cases: dict[str, dict[str, np.ndarray]] = {}
    timed = {t.name: t.axes.index("T") for t in spec.inputs if "T" in t.axes}
    if timed:
        still = {}
        for name, value in feeds.items():
            axis = timed.get(name)
            if axis is None:
                still[name] = value
            else:  # every frame the first
                still[name] = np.repeat(np.take(value, [0], axis=axis), value.shape[axis], axis=axis)
        cases["still"] = still
    cases["zeros"] = {name: np.zeros_like(value) for name, value in feeds.items()}
    return cases


def _compare(session: ort.InferenceSession, module: nn.Module, spec: ExportSpec, feeds: Mapping[str, np.ndarray],
             dims: Mapping[str, int], sizes: Mapping[str, int], case: str,
             shape_fail: list[str], value_fail: list[str]) -> list[OutputCheck]:
    """Run ``feeds`` through torch and ONNX Runtime; append failures, return one check per output."""
    where = format_sizes(sizes) + ("" if case == "random" else f" ({case} input)")
    expected = _torch_outputs(module, [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in spec.input_names])
    if len(expected) != len(spec.outputs):
        shape_fail.append(f"at {where} the torch module returns {len(expected)} outputs, the spec declares "
                          f"{len(spec.outputs)}")
    names = [i.name for i in session.get_inputs()]
    try:
        got = session.run(None, {n: feeds[n] for n in names if n in feeds})
    except Exception as exc:  # onnxruntime's Fail / InvalidArgument / RuntimeException
        value_fail.append(f"ONNX Runtime failed at {where}: {str(exc).splitlines()[0]}")
        return []
    by_name = dict(zip([o.name for o in session.get_outputs()], got, strict=True))
    checks = []
    for t, ref in zip(spec.outputs, expected, strict=False):
        want = t.shape(dims)
        if ref.shape != want:
            shape_fail.append(f"torch output {t.name!r} at {where} has shape {ref.shape}, the spec declares {want}")
        if t.name not in by_name:
            continue  # reported under names
        out = np.asarray(by_name[t.name])
        if out.shape != ref.shape:
            shape_fail.append(f"output {t.name!r} at {where}: ONNX shape {out.shape}, torch shape {ref.shape}")
            checks.append(OutputCheck(dict(sizes), t.name, out.shape, ref.shape, float("nan"), False, case))
            continue
        diff = np.abs(out.astype(np.float64) - ref.astype(np.float64))
        max_diff = float(diff.max()) if diff.size else 0.0
        finite = bool(np.isfinite(out).all())
        close = finite and bool(np.allclose(out, ref, atol=spec.atol, rtol=spec.rtol))
        if not np.isfinite(ref).all():
            value_fail.append(f"output {t.name!r} at {where}: the torch model itself returns NaN or infinity")
        elif not finite:
            value_fail.append(f"output {t.name!r} at {where}: ONNX Runtime returned NaN or infinity")
        elif not close:
            value_fail.append(
                f"output {t.name!r} at {where}: max |onnx - torch| = {max_diff:.3g} exceeds "
                f"atol {spec.atol:g} + rtol {spec.rtol:g}·|torch|"
            )
        checks.append(OutputCheck(dict(sizes), t.name, out.shape, ref.shape,
                                  max_diff if finite else float("nan"), close and out.shape == want, case))
    return checks


def validate_export(
    onnx_path: str | Path,
    module: nn.Module,
    spec: ExportSpec,
    config: Mapping[str, Any],
    *,
    seed: int = 1,
) -> ValidationReport:
    """Compare an exported ``.onnx`` with its torch module at every :attr:`ExportSpec.validation_sizes`.

    Args:
        onnx_path: the exported file.
        module: the torch module that was exported (eval mode).
        spec: its export spec.
        config: the model config (static axis sizes).
        seed: seed of the dummy inputs (differs from the export's, so values differ too).

    Returns:
        The report, when every check passed.

    Raises:
        ExportValidationError: any check failed; the message lists every failure.
    """
    module = module.eval()
    so = ort.SessionOptions()
    so.log_severity_level = 3  # errors only: validation reports its own findings
    try:
        session = ort.InferenceSession(str(onnx_path), so, providers=[VALIDATION_PROVIDER])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise ExportError(f"ONNX Runtime cannot load {onnx_path}: {exc}") from exc

    name_fail: list[str] = []
    shape_fail: list[str] = []
    value_fail: list[str] = []
    other_fail: list[str] = []

    # 1. names
    got_in = [i.name for i in session.get_inputs()]
    got_out = [o.name for o in session.get_outputs()]
    if got_in != list(spec.input_names):
        name_fail.append(f"input names are {got_in}, the spec says {list(spec.input_names)}")
    if got_out != list(spec.output_names):
        name_fail.append(f"output names are {got_out}, the spec says {list(spec.output_names)}")

    # 2a. declared shapes
    static = dict(spec.static_dims(config))
    declared = {i.name: i.shape for i in (*session.get_inputs(), *session.get_outputs())}
    for kind, tensors in (("input", spec.inputs), ("output", spec.outputs)):
        for t in tensors:
            if t.name in declared:
                shape_fail += _declared(t.axes, declared[t.name], spec.dynamic, static, f"{kind} {t.name!r}")

    try:
        ModelMetadata.from_props(session.get_modelmeta().custom_metadata_map, source=str(onnx_path))
    except MetadataError as exc:
        other_fail.append(str(exc))

    # 2b + 3. shapes and values at every validation size, then at the degenerate inputs
    checks: list[OutputCheck] = []
    for sizes in spec.validation_sizes:
        feeds = spec.dummy_inputs(config, sizes, seed=seed)
        checks += _compare(session, module, spec, feeds, spec.dims(config, sizes), sizes, "random",
                           shape_fail, value_fail)
    sizes = spec.validation_sizes[0]
    for case, feeds in degenerate_inputs(spec, spec.dummy_inputs(config, sizes, seed=seed)).items():
        checks += _compare(session, module, spec, feeds, spec.dims(config, sizes), sizes, case,
                           shape_fail, value_fail)

    failures = tuple(name_fail + shape_fail + value_fail + other_fail)
    report = ValidationReport(spec_name=spec.name, provider=VALIDATION_PROVIDER, atol=spec.atol, rtol=spec.rtol,
                              checks=tuple(checks), failures=failures)
    if failures:
        listed = "; ".join(f"({i}) {f}" for i, f in enumerate(failures, 1))
        raise ExportValidationError(
            f"{Path(onnx_path).name} does not match the torch model {spec.name!r}: {len(failures)} "
            f"failure(s): {listed}", report)
    for c in checks:
        log.info("%s %s at %s: max |diff| %.3g", spec.name, c.output, format_sizes(c.sizes), c.max_abs_diff)
    return report
