"""ONNX Runtime sessions for the live path: provider choice, metadata checks, typed model wrappers.

Never imports torch (nor onnx): the inference process runs on a machine with only
``onnxruntime`` (``onnxruntime-gpu`` on Linux x86-64 and Windows).

Provider choice (``--device``):

==============  ===================================================================
``auto``        TensorRT → CUDA → CPU, the first that really loads; never fails
``tensorrt``    TensorRT (CUDA, then CPU, for the nodes TensorRT does not take)
``cuda``        CUDA, then CPU for unsupported nodes
``cpu``         CPU only
==============  ===================================================================

``onnxruntime.get_available_providers()`` lists what the *build* contains, not what can load:
``onnxruntime-gpu`` on a machine without CUDA libraries lists CUDA and TensorRT and then falls
back to CPU on its own, with a multi-line log. So every GPU provider is probed first (its
provider library is loaded, which names the missing CUDA/TensorRT library), then the session
is created and the provider it really got is checked; the outcome is one log line (and
:attr:`ProviderChoice.message`), e.g. ``device cuda: CUDA requested but unavailable
(libcublasLt.so.13: cannot open shared object file: No such file or directory): using CPU``.
A request for ``cuda`` or ``tensorrt`` that cannot be met falls back to CPU with a warning, or
raises :class:`ProviderError` with ``fallback=False``.

CUDA and cuDNN installed as NVIDIA pip wheels are loaded with ``onnxruntime.preload_dlls``
before the probe (torch would load them, but this path never imports torch).

Sessions are set up for small models on a busy machine: one intra-op and one inter-op thread,
sequential execution, full graph optimisation, a few warm-up runs, and I/O binding on GPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib.util
import io
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

import stream
from inference.metadata import METADATA_SCHEMA_VERSION, MetadataError, ModelMetadata, major
from stream.errors import IStringsError
from stream.skeleton import CANONICAL

log = logging.getLogger(__name__)

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

DEVICES: tuple[str, ...] = ("auto", "cuda", "tensorrt", "cpu")
"""Values of ``--device``."""

_ORDER: dict[str, tuple[str, ...]] = {
    "auto": (TENSORRT, CUDA, CPU),
    "tensorrt": (TENSORRT, CUDA, CPU),
    "cuda": (CUDA, CPU),
    "cpu": (CPU,),
}
_SHORT = {TENSORRT: "TensorRT", CUDA: "CUDA", CPU: "CPU"}
_LIBRARY = {TENSORRT: "onnxruntime_providers_tensorrt", CUDA: "onnxruntime_providers_cuda"}

_DTYPES: dict[str, np.dtype[Any]] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(double)": np.dtype(np.float64),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(bool)": np.dtype(np.bool_),
}


class ModelError(IStringsError):
    """A model file is missing, does not fit this code (metadata), or gets input it cannot take."""


class ProviderError(ModelError):
    """The requested execution provider cannot run here and fallback was turned off."""


# ---------------------------------------------------------------------------------------------
# provider choice


def provider_problem(provider: str, available: Sequence[str] | None = None) -> str | None:
    """Why a GPU execution provider cannot be used on this machine, or ``None`` if it loads.

    Args:
        provider: ``TensorrtExecutionProvider`` or ``CUDAExecutionProvider`` (CPU always works).
        available: the providers of the onnxruntime build (default: it is asked).
    """
    if provider == CPU:
        return None
    providers = ort.get_available_providers() if available is None else list(available)
    if provider not in providers:
        return (f"onnxruntime {ort.__version__} reports no {provider} (a build without it; "
                "install onnxruntime-gpu for NVIDIA GPUs)")
    name = _LIBRARY.get(provider)
    if name is None:
        return f"{provider} is not supported by istrings (use one of {', '.join(_SHORT)})"
    capi = Path(ort.__file__).parent / "capi"

    def lib(stem: str) -> Path:
        return capi / (f"{stem}.dll" if sys.platform == "win32" else f"lib{stem}.so")

    library = lib(name)
    if not library.is_file():
        return None  # another packaging: let the session decide
    try:
        # A provider library takes its host symbols (Provider_GetHost) from the shared bridge,
        # which ONNX Runtime itself loads with RTLD_GLOBAL before any provider: do the same.
        shared = lib("onnxruntime_providers_shared")
        if shared.is_file():
            ctypes.CDLL(str(shared), mode=ctypes.RTLD_GLOBAL)
        ctypes.CDLL(str(library))  # the loader names the first missing CUDA/cuDNN/TensorRT library
    except OSError as exc:
        if "undefined symbol" in str(exc):
            return None  # not a missing library: inconclusive, the session check decides
        return f"{_SHORT[provider]} libraries missing ({exc})"
    return None


@functools.cache
def _preload_cuda_wheels() -> None:
    """Load CUDA/cuDNN from NVIDIA's pip wheels (``onnxruntime-gpu[cuda,cudnn]``) when installed.

    ONNX Runtime does not find those libraries on its own (torch would load them, but the live
    path never imports torch); ``onnxruntime.preload_dlls`` does, printing what it misses, which
    goes to the debug log instead.
    """
    preload = getattr(ort, "preload_dlls", None)
    if preload is None or importlib.util.find_spec("nvidia") is None:
        return
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            preload()
    except (OSError, RuntimeError) as exc:
        log.debug("onnxruntime.preload_dlls failed: %s", exc)
    for line in out.getvalue().splitlines():
        log.debug("onnxruntime.preload_dlls: %s", line)


@dataclass(frozen=True)
class ProviderChoice:
    """The outcome of a provider choice.

    Attributes:
        device: what was asked (``auto``, ``cuda``, ``tensorrt``, ``cpu``).
        providers: the providers the session runs on, preferred first.
        reasons: why each preferred provider was skipped.
    """

    device: str
    providers: tuple[str, ...]
    reasons: tuple[str, ...] = ()

    @property
    def provider(self) -> str:
        """The provider that runs the model (the first of :attr:`providers`)."""
        return self.providers[0]

    @property
    def on_gpu(self) -> bool:
        return self.provider in (TENSORRT, CUDA)

    @property
    def fell_back(self) -> bool:
        """An explicit GPU request that did not get its provider."""
        return self.device in ("cuda", "tensorrt") and self.provider != _ORDER[self.device][0]

    @property
    def message(self) -> str:
        """One line: what was asked, what runs, and why."""
        got = _SHORT.get(self.provider, self.provider)
        why = "; ".join(self.reasons)
        if self.device == "auto":
            return f"device auto: using {got}" + (f" ({why})" if why else "")
        if self.fell_back:
            wanted = _SHORT[_ORDER[self.device][0]]
            return f"device {self.device}: {wanted} requested but {why}: using {got}"
        return f"device {self.device}: using {got}" + (f" ({why})" if why else "")


def choose_providers(device: str = "auto", available: Sequence[str] | None = None) -> ProviderChoice:
    """The providers to try for ``device``, each GPU one probed first (see the module docstring).

    Raises:
        ModelError: ``device`` is not one of :data:`DEVICES`.
    """
    if device not in _ORDER:
        raise ModelError(f"unknown device {device!r}; use one of {', '.join(DEVICES)}")
    if device != "cpu":
        _preload_cuda_wheels()
    keep: list[str] = []
    reasons: list[str] = []
    for provider in _ORDER[device]:
        problem = provider_problem(provider, available)
        if problem is None:
            keep.append(provider)
        else:
            reasons.append(problem)
    return ProviderChoice(device=device, providers=tuple(keep), reasons=tuple(reasons))


def session_options(intra_op_threads: int = 1, inter_op_threads: int = 1) -> ort.SessionOptions:
    """Options for a small model next to other busy processes: few threads, sequential, optimised."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = intra_op_threads
    so.inter_op_num_threads = inter_op_threads
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # errors only: the provider outcome is reported as one line here
    return so


def _provider_options(provider: str, device_id: int) -> dict[str, str]:
    if provider == TENSORRT:
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "istrings" / "tensorrt"
        cache.mkdir(parents=True, exist_ok=True)
        # Building a TensorRT engine takes seconds to minutes: cache it across runs.
        return {"device_id": str(device_id), "trt_engine_cache_enable": "True",
                "trt_engine_cache_path": str(cache), "trt_fp16_enable": "False"}
    if provider == CUDA:
        return {"device_id": str(device_id)}
    return {}


def create_session(
    path: str | Path,
    device: str = "auto",
    *,
    fallback: bool = True,
    intra_op_threads: int = 1,
    inter_op_threads: int = 1,
    device_id: int = 0,
) -> tuple[ort.InferenceSession, ProviderChoice]:
    """An ONNX Runtime session on the best provider ``device`` allows, and what it got and why.

    Raises:
        ModelError: the file is missing or not a model ONNX Runtime can load.
        ProviderError: an explicit ``cuda``/``tensorrt`` request cannot be met and ``fallback`` is False.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model {path} does not exist; export one with `istrings export`")
    choice = choose_providers(device)
    so = session_options(intra_op_threads, inter_op_threads)
    providers = [(p, _provider_options(p, device_id)) for p in choice.providers]
    try:
        session = ort.InferenceSession(str(path), so, providers=providers)
    except Exception as exc:  # onnxruntime raises Fail / InvalidProtobuf / NoSuchFile ...
        raise ModelError(f"ONNX Runtime cannot load {path}: {str(exc).splitlines()[0]}") from exc
    active = tuple(session.get_providers())
    if active and active[0] != choice.provider:  # listed and loadable, but ONNX Runtime did not start it
        failed = [p for p in choice.providers if p not in active]
        reasons = (*choice.reasons, *(f"onnxruntime could not start {_SHORT.get(p, p)} (no usable GPU or driver?)"
                                      for p in failed))
        choice = ProviderChoice(device=device, providers=active, reasons=reasons)
    if choice.fell_back:
        if not fallback:
            raise ProviderError(f"{choice.message}; use --device auto or cpu")
        log.warning(choice.message)
    else:
        log.info(choice.message)
    return session, choice


# ---------------------------------------------------------------------------------------------
# metadata


def check_metadata(meta: ModelMetadata, source: str, kind: str | None = None) -> None:
    """Refuse a model whose metadata does not fit this code.

    Raises:
        ModelError: another skeleton layout or joint order, another metadata schema or
            project major version, or another model kind than ``kind``.
    """
    problems = []
    if meta.skeleton_layout != CANONICAL.name or tuple(meta.joint_names) != CANONICAL.joint_names:
        problems.append(f"it was trained on skeleton layout {meta.skeleton_layout!r} "
                        f"({len(meta.joint_names)} joints), this code streams {CANONICAL.name!r} "
                        f"({CANONICAL.num_joints} joints)")
    if meta.schema_version != METADATA_SCHEMA_VERSION:
        problems.append(f"its metadata schema is {meta.schema_version}, this code reads {METADATA_SCHEMA_VERSION}")
    ours = major(stream.__version__)
    try:
        theirs = major(meta.project_version)
    except MetadataError as exc:
        raise ModelError(f"refusing {source}: {exc}") from exc
    if theirs != ours:
        problems.append(f"it was exported by invisible-strings {meta.project_version}, this is "
                        f"{stream.__version__} (major {theirs} ≠ {ours})")
    if kind is not None and meta.kind != kind:
        problems.append(f"it is a {meta.kind!r} model, not {kind!r}")
    if problems:
        raise ModelError(f"refusing {source}: " + "; ".join(problems) + "; re-export it with `istrings export`")


# ---------------------------------------------------------------------------------------------
# typed wrappers


@dataclass(frozen=True)
class TensorInfo:
    """A declared model input or output: name, shape (``int`` static, ``str`` named dynamic, ``None``
    unnamed dynamic) and numpy dtype."""

    name: str
    shape: tuple[int | str | None, ...]
    dtype: np.dtype[Any]

    @classmethod
    def from_node(cls, node: Any) -> TensorInfo:
        shape = tuple(d if isinstance(d, int | str) else None for d in node.shape)
        dtype = _DTYPES.get(node.type)
        if dtype is None:
            raise ModelError(f"{node.name!r} has element type {node.type}, which istrings models never use")
        return cls(name=node.name, shape=shape, dtype=dtype)


class OnnxModel:
    """An exported istrings model on ONNX Runtime: numpy in, numpy out, inputs checked.

    Args:
        path: the ``.onnx`` file.
        device: ``auto``, ``cuda``, ``tensorrt`` or ``cpu`` (see the module docstring).
        fallback: fall back to CPU when an explicit GPU request cannot be met (else raise).
        warmup: runs on zero inputs right after loading (the first runs allocate and, on
            TensorRT, build the engine).
        io_binding: bind inputs and outputs through ONNX Runtime I/O binding (default: on GPU).
        intra_op_threads: ONNX Runtime intra-op threads (1 suits small models).
        inter_op_threads: inter-op threads.
        device_id: GPU index.

    Raises:
        ModelError: missing file, unreadable or unfitting metadata, another kind than :attr:`kind`.
    """

    kind: ClassVar[str | None] = None
    """Model kind this wrapper runs (``None``: any)."""

    def __init__(
        self,
        path: str | Path,
        *,
        device: str = "auto",
        fallback: bool = True,
        warmup: int = 3,
        io_binding: bool | None = None,
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
        device_id: int = 0,
    ) -> None:
        self.path = Path(path)
        self.session, self.choice = create_session(
            self.path, device, fallback=fallback, intra_op_threads=intra_op_threads,
            inter_op_threads=inter_op_threads, device_id=device_id)
        try:
            self.metadata = ModelMetadata.from_props(self.session.get_modelmeta().custom_metadata_map,
                                                     source=str(self.path))
        except MetadataError as exc:
            raise ModelError(f"refusing {self.path}: {exc}") from exc
        check_metadata(self.metadata, str(self.path), self.kind)
        self.inputs = tuple(TensorInfo.from_node(n) for n in self.session.get_inputs())
        self.outputs = tuple(TensorInfo.from_node(n) for n in self.session.get_outputs())
        self.io_binding = self.choice.on_gpu if io_binding is None else io_binding
        self._device_id = device_id
        self.warmup(warmup)

    @property
    def provider(self) -> str:
        return self.choice.provider

    def check_inputs(self, feeds: Mapping[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        """The feeds as contiguous arrays, after checking names, dtypes, ranks and sizes.

        A named dynamic axis must have the same size in every input that shares its name.

        Raises:
            ModelError: the first problem, naming the input, what was expected and what came.
        """
        expected = [i.name for i in self.inputs]
        if sorted(feeds) != sorted(expected):
            raise ModelError(f"{self.path.name} takes inputs {expected}, got {sorted(feeds)}")
        out: dict[str, NDArray[Any]] = {}
        named: dict[str, tuple[int, str]] = {}
        for info in self.inputs:
            arr = np.asarray(feeds[info.name])
            if arr.dtype != info.dtype:
                raise ModelError(f"input {info.name!r} must be {info.dtype}, got {arr.dtype}; "
                                 f"convert with .astype(np.{info.dtype})")
            if arr.ndim != len(info.shape):
                raise ModelError(f"input {info.name!r} must have shape {self._pretty(info.shape)} "
                                 f"(rank {len(info.shape)}), got {arr.shape}")
            for axis, (want, got) in enumerate(zip(info.shape, arr.shape, strict=True)):
                if isinstance(want, int) and want != got:
                    raise ModelError(f"input {info.name!r} must have shape {self._pretty(info.shape)}, got "
                                     f"{arr.shape} (axis {axis} must be {want})")
                if isinstance(want, str):
                    seen = named.setdefault(want, (got, info.name))
                    if seen[0] != got:
                        raise ModelError(f"axis {want} is {seen[0]} in {seen[1]!r} but {got} in {info.name!r}")
                    if got < 1:
                        raise ModelError(f"input {info.name!r} has an empty axis {want}: {arr.shape}")
            out[info.name] = np.ascontiguousarray(arr)
        return out

    @staticmethod
    def _pretty(shape: Sequence[int | str | None]) -> str:
        return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"

    def run(self, feeds: Mapping[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        """Run the model: ``{input name: array}`` → ``{output name: array}`` (inputs checked first)."""
        checked = self.check_inputs(feeds)
        names = [o.name for o in self.outputs]
        if not self.io_binding:
            return dict(zip(names, self.session.run(names, checked), strict=True))
        binding = self.session.io_binding()
        device_type = "cuda" if self.choice.on_gpu else "cpu"
        for name, arr in checked.items():
            binding.bind_cpu_input(name, arr)  # copied to the device once, by ONNX Runtime
        for name in names:
            binding.bind_output(name, device_type, self._device_id)
        self.session.run_with_iobinding(binding)
        return dict(zip(names, binding.copy_outputs_to_cpu(), strict=True))

    def example_inputs(self, batch: int = 1) -> dict[str, NDArray[Any]]:
        """Zero inputs of the declared shapes, every dynamic axis of size ``batch``."""
        return {i.name: np.zeros(tuple(d if isinstance(d, int) else batch for d in i.shape), dtype=i.dtype)
                for i in self.inputs}

    def warmup(self, runs: int = 3) -> None:
        """Run the model ``runs`` times on zero inputs (allocations, kernels, TensorRT engines)."""
        feeds = self.example_inputs()
        for _ in range(runs):
            self.run(feeds)


class EdgeModel(OnnxModel):
    """The NRI encoder: a window of both dancers → edge-type probabilities.

    Shapes:
        ``window (T, N, C)`` or ``(B, T, N, C)`` float32, normalised as in training (see
        ``metadata.extra``) → ``edge_probs (B, E, K)``, summing to 1 over ``K`` (type 0 = no string).
    """

    kind: ClassVar[str | None] = "nri"
    INPUT = "window"
    OUTPUT = "edge_probs"

    def __init__(self, path: str | Path, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        if [i.name for i in self.inputs] != [self.INPUT] or self.OUTPUT not in [o.name for o in self.outputs]:
            raise ModelError(f"{self.path.name} is not an NRI encoder: inputs {[i.name for i in self.inputs]}, "
                             f"outputs {[o.name for o in self.outputs]} (expected {self.INPUT!r} → {self.OUTPUT!r})")

    @property
    def window_shape(self) -> tuple[int | str | None, ...]:
        """Declared ``(B, T, N, C)`` of the input."""
        return self.inputs[0].shape

    def __call__(self, window: NDArray[np.float32]) -> NDArray[np.float32]:
        """Edge probabilities ``(B, E, K)`` of one window ``(T, N, C)`` (``B = 1``) or a batch ``(B, T, N, C)``."""
        x = np.asarray(window)
        if x.ndim not in (3, 4):
            raise ModelError(f"window must be (T, N, C) or (B, T, N, C), got shape {x.shape}")
        if x.ndim == 3:
            x = x[None]  # (T, N, C) → (1, T, N, C)
        return self.run({self.INPUT: x})[self.OUTPUT]
