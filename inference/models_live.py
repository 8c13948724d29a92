"""The models of the live process, typed: strings (NRI), forecasts (STGA-Net), the refiner (MKFF).

Each wrapper runs one exported ``.onnx`` (``inference/models/KIND.onnx``) on ONNX Runtime through
:class:`inference.runtime.OnnxModel` (provider choice, metadata checks) and speaks the live
path's shapes: canonical joints ``(D, J, 3)`` in metres, windows oldest frame first.

Strings. The NRI encoder gives, for every candidate edge ``e`` (``E = 2·J0·J1``: the forward
edges dancer-0 joint ``a`` → dancer-1 joint ``b`` at index ``a·J1 + b``, then the reverse edges
``b → a`` in the same pair order, see ``training/duet_data.py``), the probabilities of ``K``
edge types, type 0 = no string. The strength of a directed edge is ``1 − P(type 0)``. The OSC
matrix has one value per *pair* (dancer-0 joint i, dancer-1 joint j); the two directions are
combined by :data:`COMBINE`:

* ``max`` (default): the stronger direction — keeps the scale of the strength the model was
  scored on (training labels only the driving direction, so the other is normally near 0);
* ``noisy-or``: ``1 − P0(i→j)·P0(j→i)``, the probability that at least one direction is a
  string if the two were independent;
* ``forward``: only dancer 0 → dancer 1 (leader drives follower).

Joints that are not nodes of the model's candidate graph keep strength 0.

Forecasts. STGA-Net takes the last ``T`` frames at its ``fps`` in metres, both dancers as
``N = 2J`` nodes, and returns both dancers at its horizons (metadata ``horizons_s``), metres, in
the same frame; horizon ``h`` ms means ``h`` ms after the newest input frame.

Refiner. MKFF-ST-GCN (causal mode only) takes the last ``T`` tracked frames ``(B, T, N, 3)``
metres and returns the newest frame refined ``(B, N, 3)``; it implements the cleaner's
:class:`inference.cleaning.Refiner` hook.

:func:`load_models` never raises: a model that is missing or refused is reported (one log line
each, and in :attr:`LoadedModels.problems`) and the service runs without it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from inference.runtime import EdgeModel, ModelError, OnnxModel
from inference.window import Normalization, WindowError, WindowSpec, joints_from_config
from stream.skeleton import J

log = logging.getLogger(__name__)

D = 2
MODEL_FILES: dict[str, str] = {"nri": "nri.onnx", "stga": "stga.onnx", "mkff": "mkff.onnx"}
COMBINE: tuple[str, ...] = ("max", "noisy-or", "forward")
DEFAULT_MODELS_DIR = Path(__file__).resolve().parent / "models"
"""The bundled models."""


def combine_directions(
    probs: NDArray[np.floating], joints0: tuple[int, ...], joints1: tuple[int, ...], how: str = "max"
) -> NDArray[np.float32]:
    """The ``(J, J)`` pair strengths of one window's edge probabilities (see the module docstring).

    Args:
        probs: ``(E, K)`` with ``E = 2·J0·J1`` (forward pairs, then reverse pairs), type 0 = none.
        joints0, joints1: canonical joints of the model's dancer-0 and dancer-1 nodes.
        how: one of :data:`COMBINE`.

    Raises:
        ModelError: ``probs`` does not have ``2·J0·J1`` rows, or ``how`` is unknown.
    """
    p = np.asarray(probs, dtype=np.float32)
    J0, J1 = len(joints0), len(joints1)
    if p.ndim != 2 or p.shape[0] != 2 * J0 * J1 or p.shape[1] < 2:
        raise ModelError(f"edge probabilities must be (2·{J0}·{J1}, K >= 2), got {p.shape}")
    none_fwd = p[: J0 * J1, 0].reshape(J0, J1)  # (J0, J1) P(no string), dancer-0 a → dancer-1 b
    none_rev = p[J0 * J1 :, 0].reshape(J0, J1)  # (J0, J1) the same pairs, b → a
    s: NDArray[np.floating]
    if how == "max":
        s = 1.0 - np.minimum(none_fwd, none_rev)
    elif how == "noisy-or":
        s = 1.0 - none_fwd * none_rev
    elif how == "forward":
        s = 1.0 - none_fwd
    else:
        raise ModelError(f"unknown direction combination {how!r}; use one of {', '.join(COMBINE)}")
    s = np.clip(s, 0.0, 1.0)
    if J0 == J1 == J and joints0 == joints1 == tuple(range(J)):
        return s.astype(np.float32, copy=False)  # the full candidate graph: already (J, J) in joint order
    out = np.zeros((J, J), dtype=np.float32)
    out[np.ix_(joints0, joints1)] = s
    return out


class StringsModel:
    """The NRI encoder as the live path uses it: a normalised window → ``(J, J)`` strengths.

    Args:
        path: ``nri.onnx``.
        device: ``auto``, ``cuda``, ``tensorrt`` or ``cpu``.
        combine: how the two directions of a pair combine (:data:`COMBINE`).

    Raises:
        ModelError: missing, unloadable or refused model, or no normalisation in its metadata.
    """

    def __init__(self, path: str | Path, *, device: str = "auto", combine: str = "max") -> None:
        if combine not in COMBINE:
            raise ModelError(f"unknown direction combination {combine!r}; use one of {', '.join(COMBINE)}")
        self.model = EdgeModel(path, device=device)
        meta = self.model.metadata
        try:
            joints0, joints1 = joints_from_config(meta.config)
            self.spec = WindowSpec(frames=int(meta.window_frames), fps=float(meta.fps), joints0=joints0,
                                   joints1=joints1, norm=Normalization.from_extra(meta.extra, str(path)))
        except WindowError as exc:
            raise ModelError(f"refusing {path}: {exc}") from exc
        shape = self.model.window_shape
        if shape[1:] != (self.spec.frames, self.spec.num_nodes, 6):
            raise ModelError(f"refusing {path}: it takes windows {shape}, its metadata says "
                             f"(B, {self.spec.frames}, {self.spec.num_nodes}, 6)")
        self.combine = combine

    @property
    def provider(self) -> str:
        return self.model.provider

    def probabilities(self, window: NDArray[np.float32]) -> NDArray[np.float32]:
        """``(E, K)`` edge-type probabilities of one normalised window ``(T, N, 6)``."""
        return np.asarray(self.model(window)[0], dtype=np.float32)  # (1, E, K) → (E, K)

    def strengths(self, window: NDArray[np.float32]) -> NDArray[np.float32]:
        """``(J, J)`` strengths in [0, 1]: dancer-0 joint i vs dancer-1 joint j."""
        return combine_directions(self.probabilities(window), self.spec.joints0, self.spec.joints1, self.combine)


def _single_io(model: OnnxModel, what: str, names: tuple[str, str]) -> tuple[str, str]:
    """The input and output names, checked against the export spec's (``exporters/spec_*.py``)."""
    got = ([i.name for i in model.inputs], [o.name for o in model.outputs])
    if got != ([names[0]], [names[1]]):
        raise ModelError(f"{model.path.name} is not {what}: inputs {got[0]}, outputs {got[1]} "
                         f"(expected {names[0]!r} → {names[1]!r})")
    return names


def _static(dim: int | str | None) -> int | None:
    return dim if isinstance(dim, int) else None


class ForecastModel(OnnxModel):
    """STGA-Net: the last ``T`` frames of both dancers → both dancers at the model's horizons.

    Shapes:
        ``__call__(window (T, D, J, 3) metres, oldest first)`` → ``(H, D, J, 3)`` metres, in the
        input's frame; ONNX: ``(B, T, N, 3)`` → ``(B, H, N, 3)``, ``N = D·J`` dancer 0 first.

    Raises:
        ModelError: not an STGA-Net export (kind, shapes or horizons).
    """

    kind: ClassVar[str | None] = "stga"

    def __init__(self, path: str | Path, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self._in, self._out = _single_io(self, "an STGA-Net forecaster", ("window", "forecast"))
        meta = self.metadata
        self.horizons_ms: tuple[int, ...] = tuple(round(h * 1000.0) for h in meta.horizons_s)
        if not self.horizons_ms:
            raise ModelError(f"refusing {self.path}: its metadata lists no forecast horizons (horizons_s)")
        self.spec = WindowSpec(frames=int(meta.window_frames), fps=float(meta.fps))
        frames = meta.extra.get("horizon_frames")
        if isinstance(frames, list) and len(frames) == len(self.horizons_ms):
            lead = tuple(int(f) / self.spec.fps for f in frames)  # the model steps whole frames of its rate
        else:
            lead = tuple(float(h) for h in meta.horizons_s)
        self.lead_s: tuple[float, ...] = lead
        """Seconds each forecast lies after the window's newest frame (``horizon_frames / fps``)."""
        ishape, oshape = self.inputs[0].shape, self.outputs[0].shape
        want_in = (self.spec.frames, D * J, 3)
        if len(ishape) != 4 or any(_static(a) not in (None, b) for a, b in zip(ishape[1:], want_in, strict=True)):
            raise ModelError(f"refusing {self.path}: input {ishape}, expected (B, {want_in[0]}, {D * J}, 3)")
        want_out = (len(self.horizons_ms), D * J, 3)
        if len(oshape) != 4 or any(_static(a) not in (None, b) for a, b in zip(oshape[1:], want_out, strict=True)):
            raise ModelError(f"refusing {self.path}: output {oshape}, expected (B, {want_out[0]}, {D * J}, 3)")

    def __call__(self, window: NDArray[np.floating]) -> NDArray[np.float32]:
        x = np.asarray(window, dtype=np.float32)
        if x.shape != (self.spec.frames, D, J, 3):
            raise ModelError(f"forecast window must be ({self.spec.frames}, {D}, {J}, 3), got {x.shape}")
        y = self.run({self._in: x.reshape(1, self.spec.frames, D * J, 3)})[self._out]  # (1, H, N, 3)
        return np.asarray(y[0], dtype=np.float32).reshape(len(self.horizons_ms), D, J, 3)  # (H, D, J, 3)


class RefinerModel(OnnxModel):
    """MKFF-ST-GCN, causal: the cleaner's learned refiner (:class:`inference.cleaning.Refiner`).

    Shapes:
        ``refine(window (T, D, J, 3) metres, oldest first)`` → ``(D, J, 3)`` metres, the newest
        frame refined; ONNX: ``(B, T, N, 3)`` → ``(B, N, 3)``.

    Raises:
        ModelError: not an MKFF export, or a centred (offline) one, whose output lags.
    """

    kind: ClassVar[str | None] = "mkff"

    def __init__(self, path: str | Path, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self._in, self._out = _single_io(self, "an MKFF-ST-GCN refiner", ("window", "refined"))
        mode = str(self.metadata.config.get("mode", "causal"))
        if mode != "causal":
            raise ModelError(f"refusing {self.path}: it is a {mode!r} refiner, which outputs a frame in the "
                             "past; the live path needs mode 'causal' (export a causal checkpoint)")
        self.frames = int(self.metadata.window_frames)
        self.fps = float(self.metadata.fps)  # its window's frame rate, Hz
        ishape = self.inputs[0].shape
        if len(ishape) != 4 or _static(ishape[1]) not in (None, self.frames) or _static(ishape[2]) not in (None, D * J):
            raise ModelError(f"refusing {self.path}: input {ishape}, expected (B, {self.frames}, {D * J}, 3)")

    def refine(self, window: NDArray[np.float32]) -> NDArray[np.float32]:
        x = np.asarray(window, dtype=np.float32)
        T = x.shape[0]
        y = self.run({self._in: x.reshape(1, T, D * J, 3)})[self._out]  # (1, N, 3)
        return np.asarray(y, dtype=np.float32).reshape(D, J, 3)


@dataclass
class LoadedModels:
    """What :func:`load_models` found.

    Attributes:
        strings: the NRI encoder, or None.
        forecast: STGA-Net, or None.
        refiner: MKFF-ST-GCN (causal), or None.
        problems: kind → why it is not loaded (missing file or refusal), one line each.
        providers: kind → the ONNX Runtime provider it runs on.
    """

    strings: StringsModel | None = None
    forecast: ForecastModel | None = None
    refiner: RefinerModel | None = None
    problems: dict[str, str] = field(default_factory=dict)
    providers: dict[str, str] = field(default_factory=dict)

    @property
    def missing(self) -> tuple[str, ...]:
        """The required kinds (``nri``, ``stga``) that are not loaded; the refiner is optional."""
        return tuple(k for k, m in (("nri", self.strings), ("stga", self.forecast)) if m is None)

    @property
    def device(self) -> str:
        """The providers in use, e.g. ``"CPUExecutionProvider"`` (``"none"`` without models)."""
        return ",".join(sorted(set(self.providers.values()))) or "none"


def load_models(
    models_dir: str | Path | None = None,
    *,
    device: str = "auto",
    combine: str = "max",
    kinds: tuple[str, ...] = ("nri", "stga", "mkff"),
) -> LoadedModels:
    """Load every model of ``models_dir`` (default: the bundled ones) that exists and fits.

    A missing file or a refused model is logged once (WARNING, naming the file and what to do)
    and recorded in :attr:`LoadedModels.problems`; nothing raises.
    """
    root = Path(models_dir) if models_dir is not None else DEFAULT_MODELS_DIR
    out = LoadedModels()
    for kind in kinds:
        path = root / MODEL_FILES[kind]
        if not path.is_file():
            out.problems[kind] = f"no {path.name} in {root}"
            level = logging.INFO if kind == "mkff" else logging.WARNING
            log.log(level, "no %s model: %s does not exist; %s (export one with `istrings export %s -o %s`)",
                    kind, path, "frames are smoothed by the One Euro filter instead" if kind == "mkff"
                    else "running without it, status no-model", kind, root)
            continue
        try:
            if kind == "nri":
                out.strings = StringsModel(path, device=device, combine=combine)
                out.providers[kind] = out.strings.provider
            elif kind == "stga":
                out.forecast = ForecastModel(path, device=device)
                out.providers[kind] = out.forecast.provider
            else:
                out.refiner = RefinerModel(path, device=device)
                out.providers[kind] = out.refiner.provider
        except ModelError as exc:
            out.problems[kind] = str(exc)
            log.warning("%s model not used: %s", kind, exc)
    return out
