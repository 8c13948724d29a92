"""Checkpoints that carry the config that built them, loadable with ``weights_only=True``.

A checkpoint is one ``torch.save`` file holding only tensors, strings, numbers, lists and dicts,
so :func:`torch.load` with ``weights_only=True`` (no pickled classes, no code execution) reads it:

====================  ===========================================================================
key                   meaning
====================  ===========================================================================
``format``            ``"istrings-checkpoint"``
``version``           format version (1)
``model_name``        registry name of the model (e.g. ``"nri_mlp"``)
``model_config``      JSON string of the model's frozen config dataclass (``dataclasses.asdict``)
``config_type``       ``"module:QualName"`` of that dataclass (lets :func:`build_model` import the
                      module that registers the model)
``state_dict``        the model's weights (unwrapped: never the ``module.`` prefix of DDP)
``data_id``           id of the training data (e.g. a file's sha256 prefix)
``metrics``           JSON string of scalar metrics at save time
``extra``             plain dict (tensors, numbers, strings, lists, dicts), e.g. normalisation stats
``torch_version``     the torch that wrote it
====================  ===========================================================================

Models register themselves with :func:`register_model`; :meth:`Checkpoint.build_model` rebuilds
the module from ``(model_name, model_config)`` and loads the weights.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stream.errors import IStringsError

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "istrings-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(IStringsError):
    """A checkpoint is missing, unreadable, of another format, or names an unknown model."""


@dataclass(frozen=True)
class ModelEntry:
    """How to rebuild a registered model: its config dataclass and a factory ``config -> Module``."""

    config_cls: type
    build: Callable[[Any], nn.Module]


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, config_cls: type, build: Callable[[Any], nn.Module]) -> None:
    """Register a model under ``name`` so checkpoints can rebuild it.

    Args:
        name: registry name stored in checkpoints (``model_name``).
        config_cls: the frozen dataclass of its hyperparameters.
        build: factory taking a ``config_cls`` instance and returning the (untrained) module.
    """
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError(f"config_cls for {name!r} must be a dataclass, got {config_cls!r}")
    _REGISTRY[name] = ModelEntry(config_cls=config_cls, build=build)


def registered_models() -> tuple[str, ...]:
    """Names of the models registered so far (modules register on import)."""
    return tuple(sorted(_REGISTRY))


def config_to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config (or a plain mapping) as a JSON-able dict (tuples become lists)."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        raw: Any = dataclasses.asdict(config)
    elif isinstance(config, Mapping):
        raw = dict(config)
    else:
        raise TypeError(f"model_config must be a dataclass instance or a mapping, got {type(config)!r}")
    return typing.cast(dict[str, Any], json.loads(json.dumps(raw)))


def _coerce(tp: Any, value: Any) -> Any:
    """Turn a JSON value back into the annotated field type (nested dataclasses, tuples)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return config_from_dict(typing.cast(type, tp), value)
    if origin is tuple and isinstance(value, list):
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v) for v in value)
        if args and len(args) == len(value):
            return tuple(_coerce(a, v) for a, v in zip(args, value, strict=True))
        return tuple(value)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is type(None):
                continue
            if dataclasses.is_dataclass(arg) and isinstance(value, dict):
                return config_from_dict(typing.cast(type, arg), value)
            if typing.get_origin(arg) is tuple and isinstance(value, list):
                return _coerce(arg, value)
    return value


def config_from_dict(config_cls: type, data: Mapping[str, Any]) -> Any:
    """Rebuild a (possibly nested) config dataclass from the dict :func:`config_to_dict` made."""
    hints = typing.get_type_hints(config_cls)
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = set(data) - names
    if unknown:
        raise CheckpointError(
            f"config for {config_cls.__name__} has unknown fields {sorted(unknown)}; "
            "the checkpoint was written by another version of the model"
        )
    return config_cls(**{k: _coerce(hints.get(k, Any), v) for k, v in data.items()})


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint (see the module docstring for the stored keys)."""

    model_name: str
    model_config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    data_id: str
    metrics: dict[str, float]
    extra: dict[str, Any] = field(default_factory=dict)
    config_type: str = ""
    torch_version: str = ""

    def config(self) -> Any:
        """The model's config as its frozen dataclass (imports the registering module if needed)."""
        entry = _entry(self.model_name, self.config_type)
        return config_from_dict(entry.config_cls, self.model_config)

    def build_model(self, *, strict: bool = True) -> nn.Module:
        """Rebuild the registered model from its config and load the weights (eval mode)."""
        entry = _entry(self.model_name, self.config_type)
        model = entry.build(config_from_dict(entry.config_cls, self.model_config))
        try:
            model.load_state_dict(self.state_dict, strict=strict)
        except RuntimeError as exc:
            raise CheckpointError(
                f"weights do not fit model {self.model_name!r} built from the stored config: {exc}"
            ) from exc
        return model.eval()


def _entry(model_name: str, config_type: str) -> ModelEntry:
    if model_name not in _REGISTRY and config_type:
        module_name = config_type.split(":", 1)[0]
        # Only our own packages are imported on a checkpoint's say-so.
        if module_name.split(".", 1)[0] in ("training", "exporters"):
            importlib.import_module(module_name)
    if model_name not in _REGISTRY:
        raise CheckpointError(
            f"unknown model {model_name!r}; known: {', '.join(registered_models()) or 'none'} "
            "(import the module that defines it before loading)"
        )
    return _REGISTRY[model_name]


def _check_extra(value: Any, where: str) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"checkpoint extra keys must be str, got {k!r} at {where}")
            _check_extra(v, f"{where}.{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_extra(v, f"{where}[{i}]")
    elif not isinstance(value, torch.Tensor | str | int | float | bool | type(None)):
        raise TypeError(
            f"checkpoint extra holds a {type(value).__name__} at {where}; use tensors, numbers, "
            "strings, lists or dicts so weights_only loading works"
        )


def save_checkpoint(
    path: str | Path,
    *,
    model_name: str,
    model_config: Any,
    state_dict: Mapping[str, torch.Tensor],
    data_id: str,
    metrics: Mapping[str, float],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (``path.tmp`` then rename); returns the path.

    Args:
        path: destination ``.pt`` file; parent directories are created.
        model_name: registry name (see :func:`register_model`).
        model_config: the frozen config dataclass (or a plain dict) that built the model.
        state_dict: the unwrapped model's ``state_dict()``; tensors are moved to CPU.
        data_id: id of the training data.
        metrics: scalar metrics (floats) at save time.
        extra: plain dict of tensors/numbers/strings/lists/dicts (e.g. normalisation stats).
    """
    path = Path(path)
    extra_d = dict(extra or {})
    _check_extra(extra_d, "extra")
    config_type = ""
    if dataclasses.is_dataclass(model_config) and not isinstance(model_config, type):
        cls = type(model_config)
        config_type = f"{cls.__module__}:{cls.__qualname__}"
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model_name": model_name,
        "model_config": json.dumps(config_to_dict(model_config), sort_keys=True),
        "config_type": config_type,
        "state_dict": {k: v.detach().cpu().clone() for k, v in state_dict.items()},
        "data_id": data_id,
        "metrics": json.dumps({k: float(v) for k, v in metrics.items()}, sort_keys=True),
        "extra": extra_d,
        "torch_version": str(torch.__version__),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint with ``torch.load(weights_only=True)``.

    Raises:
        CheckpointError: missing file, not a torch file, or not an istrings checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; train one with `istrings train ...`")
    try:
        raw = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types (UnpicklingError, RuntimeError, EOFError)
        raise CheckpointError(f"checkpoint {path} could not be read: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an istrings checkpoint (no format {CHECKPOINT_FORMAT!r})")
    if int(raw.get("version", -1)) > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {raw['version']}, newer than this code "
            f"({CHECKPOINT_VERSION}); upgrade invisible-strings"
        )
    try:
        return Checkpoint(
            model_name=str(raw["model_name"]),
            model_config=json.loads(raw["model_config"]),
            state_dict=dict(raw["state_dict"]),
            data_id=str(raw["data_id"]),
            metrics={k: float(v) for k, v in json.loads(raw["metrics"]).items()},
            extra=dict(raw.get("extra") or {}),
            config_type=str(raw.get("config_type", "")),
            torch_version=str(raw.get("torch_version", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is incomplete or corrupt: {exc}") from exc
