"""One export spec per model, written as data.

An :class:`ExportSpec` says everything the exporter and the validator need to know about a
model, and nothing about how to run them: the ONNX input and output names with their named
axes, which axes are dynamic (with their range), the sizes used for the export example and the
sizes used for validation (always different ones), the opset and the tolerances. The dummy
inputs come from the spec (:meth:`ExportSpec.dummy_inputs`) and serve both export and
validation, so the two can never disagree about what a valid input looks like.

Axis names use the project's one vocabulary (``B`` batch, ``T`` frames, ``N`` nodes, ``E``
edges, ``K`` edge types, ``C`` channels). An axis is either *dynamic* (a key of
:attr:`ExportSpec.dynamic`) or *static*, its size then read from the model's config by
:attr:`ExportSpec.static_dims`.

This module imports numpy only (no torch, no onnx), so the command line can list the specs
without loading the training stack.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from stream.errors import IStringsError

DEFAULT_OPSET = 20
"""ONNX default-domain opset of every export (ONNX Runtime ≥ 1.17 runs it; the project asks for ≥ 1.18).
Opset 20 has a ``Gelu`` operator: one node where opset 18 spells the activation out in five."""

MIN_EXAMPLE_SIZE = 2
"""Smallest export-example size of a dynamic axis: the exporter silently fixes an axis whose
example size is 1 (torch.export specialises sizes 0 and 1)."""

HEADS: tuple[str, ...] = ("identity", "softmax")
"""What :attr:`ExportSpec.head` may apply to the exported part's single output."""


class ExportError(IStringsError):
    """A model cannot be exported, or its ONNX export does not match the torch model."""


@dataclass(frozen=True)
class TensorSpec:
    """One named ONNX input or output.

    Attributes:
        name: the ONNX name (what the runtime feeds and fetches by).
        axes: one axis name per dimension, e.g. ``("B", "T", "N", "C")``.
        dtype: numpy dtype name of the tensor (``"float32"``).
    """

    name: str
    axes: tuple[str, ...]
    dtype: str = "float32"

    def shape(self, dims: Mapping[str, int]) -> tuple[int, ...]:
        """Concrete shape for axis sizes ``dims`` (raises :class:`ExportError` on a missing axis)."""
        missing = [a for a in self.axes if a not in dims]
        if missing:
            raise ExportError(f"{self.name}: no size for axes {missing} (known: {sorted(dims)})")
        return tuple(int(dims[a]) for a in self.axes)


def _no_static_dims(config: Mapping[str, Any]) -> dict[str, int]:
    return {}


@dataclass(frozen=True, eq=False)
class ExportSpec:
    """How one model kind is exported and validated.

    Attributes:
        name: model kind as the command line names it (``"nri"``); also the ``.onnx`` file stem.
        model_name: the checkpoint registry name of the model it exports (``"nri_duet"``).
        description: one line for help texts and model cards.
        inputs: ONNX inputs, in the order the exported module's ``forward`` takes them.
        outputs: ONNX outputs, in the order the exported module returns them.
        dynamic: dynamic axes → ``(min, max)`` sizes accepted by the exported graph.
        export_sizes: size of every dynamic axis in the export example (each ≥ 2).
        validation_sizes: sets of dynamic-axis sizes validated after export; every set differs
            from :attr:`export_sizes`.
        static_dims: the model config (a JSON dict) → sizes of the static axes.
        submodule: dotted attribute path of the part of the checkpoint's model that is
            exported (``"encoder"``); empty for the whole model.
        head: applied to the exported part's single output: ``"identity"`` or ``"softmax"``
            (over the last axis, e.g. logits ``(B, E, K)`` → probabilities).
        opset: ONNX default-domain opset.
        atol: absolute tolerance of the torch ↔ ONNX Runtime comparison.
        rtol: relative tolerance (``|onnx − torch| ≤ atol + rtol·|torch|`` element-wise).
        input_std: standard deviation of the dummy inputs (the models see normalised inputs,
            about unit scale).
        window_key: config key of the window length ``T`` in frames (metadata), or empty.
        fps_key: config or checkpoint-extra key of the frame rate in Hz (metadata), or empty.
        horizons_key: config key of the forecast horizons in seconds (forecasters), or empty.
    """

    name: str
    model_name: str
    description: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    dynamic: Mapping[str, tuple[int, int]]
    export_sizes: Mapping[str, int]
    validation_sizes: tuple[Mapping[str, int], ...]
    static_dims: Callable[[Mapping[str, Any]], Mapping[str, int]] = _no_static_dims
    submodule: str = ""
    head: str = "identity"
    opset: int = DEFAULT_OPSET
    atol: float = 1e-5
    rtol: float = 1e-4
    input_std: float = 1.0
    window_key: str = ""
    fps_key: str = "fps"
    horizons_key: str = ""

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.head not in HEADS:
            problems.append(f"head {self.head!r} is not one of {HEADS}")
        if self.head != "identity" and len(self.outputs) != 1:
            problems.append(f"head {self.head!r} needs exactly one output, spec has {len(self.outputs)}")
        names = [t.name for t in (*self.inputs, *self.outputs)]
        if len(set(names)) != len(names):
            problems.append(f"input/output names must be unique, got {names}")
        for axis, (lo, hi) in self.dynamic.items():
            if not 1 <= lo <= hi:
                problems.append(f"dynamic axis {axis}: range ({lo}, {hi}) must satisfy 1 <= min <= max")
        if set(self.export_sizes) != set(self.dynamic):
            problems.append(f"export_sizes must size exactly the dynamic axes {sorted(self.dynamic)}")
        for axis, size in self.export_sizes.items():
            if size < MIN_EXAMPLE_SIZE:
                problems.append(
                    f"export size of dynamic axis {axis} is {size}; use >= {MIN_EXAMPLE_SIZE} "
                    "(the exporter would silently fix an axis of example size 1)"
                )
        if not self.validation_sizes:
            problems.append("validation_sizes is empty: validate at shapes other than the export example")
        for sizes in self.validation_sizes:
            if set(sizes) != set(self.dynamic):
                problems.append(f"validation sizes {dict(sizes)} must size exactly {sorted(self.dynamic)}")
            elif dict(sizes) == dict(self.export_sizes):
                problems.append(f"validation sizes {dict(sizes)} equal the export example; pick other sizes")
            for axis, size in sizes.items():
                lo, hi = self.dynamic.get(axis, (1, 0))
                if not lo <= size <= hi:
                    problems.append(f"validation size {axis}={size} is outside the range ({lo}, {hi})")
        if problems:
            raise ExportError(f"export spec {self.name!r} is invalid: " + "; ".join(problems))

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)

    def dims(self, config: Mapping[str, Any], sizes: Mapping[str, int]) -> dict[str, int]:
        """Every axis size: the static ones from ``config``, the dynamic ones from ``sizes``."""
        static = dict(self.static_dims(config))
        clash = set(static) & set(self.dynamic)
        if clash:
            raise ExportError(f"spec {self.name!r}: axes {sorted(clash)} are both static and dynamic")
        return {**static, **{k: int(v) for k, v in sizes.items()}}

    def dummy_inputs(
        self, config: Mapping[str, Any], sizes: Mapping[str, int], seed: int = 0
    ) -> dict[str, NDArray[Any]]:
        """Random inputs, one array per ONNX input, at the given dynamic-axis sizes.

        Float inputs are normal with standard deviation :attr:`input_std`; the same seed gives
        the same arrays, so export and validation see reproducible data.
        """
        dims = self.dims(config, sizes)
        rng = np.random.default_rng(seed)
        out: dict[str, NDArray[Any]] = {}
        for t in self.inputs:
            shape = t.shape(dims)
            dtype = np.dtype(t.dtype)
            if dtype.kind != "f":
                raise ExportError(f"{self.name}: dummy inputs of dtype {t.dtype} are not supported")
            out[t.name] = (rng.standard_normal(shape) * self.input_std).astype(dtype)
        return out
