"""The metadata inside every exported ``.onnx``: what a model is, what it expects, where it came from.

Stored as ONNX ``metadata_props`` (string key → string value; ONNX Runtime exposes them as
``InferenceSession.get_modelmeta().custom_metadata_map``), every key prefixed ``istrings.``:

==========================  =====================================================================
key                         value
==========================  =====================================================================
``schema_version``          integer, :data:`METADATA_SCHEMA_VERSION` (bumped when keys change)
``project_version``         ``stream.__version__`` of the exporting code
``kind``                    model kind (``"nri"``)
``model_name``              checkpoint registry name (``"nri_duet"``)
``config``                  JSON of the model's frozen config dataclass
``skeleton.layout``         canonical skeleton layout name (``"canonical18"``)
``skeleton.joints``         JSON list of the canonical joint names, in order
``window_frames``           window length ``T`` the model expects, frames
``fps``                     frame rate the model expects, Hz
``horizons_s``              JSON list of forecast horizons, seconds (empty unless a forecaster)
``data_id``                 id of the training data
``metrics``                 JSON of the metrics the checkpoint reached
``extra``                   JSON of the checkpoint's plain extra data (e.g. normalisation scales)
==========================  =====================================================================

Pure functions and one frozen dataclass; ``onnx`` is imported only inside :func:`write_metadata`
and :func:`read_metadata`, so the runtime (which never imports torch or onnx) and the exporter share the same
schema with :meth:`ModelMetadata.from_props`.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stream.errors import IStringsError

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

METADATA_SCHEMA_VERSION = 1
"""Version of the key set below; a reader refuses a newer one."""

PREFIX = "istrings."

_REQUIRED = (
    "schema_version", "project_version", "kind", "model_name", "config", "skeleton.layout",
    "skeleton.joints", "window_frames", "fps", "horizons_s", "data_id", "metrics", "extra",
)

_MAX_EXTRA_ELEMENTS = 256
"""Array-like extra entries larger than this are left out of the metadata (they stay in the checkpoint)."""


class MetadataError(IStringsError):
    """An ONNX file carries no, incomplete or unreadable istrings metadata."""


def major(version: str) -> int:
    """Major number of a ``MAJOR.MINOR.PATCH`` version string (raises :class:`MetadataError`)."""
    try:
        return int(version.split(".", 1)[0])
    except ValueError as exc:
        raise MetadataError(f"version {version!r} is not of the form MAJOR.MINOR.PATCH") from exc


def jsonable(value: Any, where: str = "extra") -> Any:
    """A JSON-able copy of checkpoint data: tensors and arrays become lists, large ones are dropped.

    Returns ``None`` for a value that cannot be represented (logged once per key).
    """
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            j = jsonable(v, f"{where}.{k}")
            if j is not None or v is None:
                out[str(k)] = j
        return out
    if isinstance(value, list | tuple):
        return [jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars, torch tensors
    if callable(tolist):
        numel = getattr(value, "numel", None)  # torch: numel(); numpy: .size
        size = int(numel()) if callable(numel) else int(getattr(value, "size", 0))
        if size <= _MAX_EXTRA_ELEMENTS:
            return jsonable(tolist(), where)
        log.info("metadata leaves out %s (%d elements): it stays in the checkpoint", where, size)
        return None
    log.info("metadata leaves out %s (a %s): it stays in the checkpoint", where, type(value).__name__)
    return None


@dataclass(frozen=True)
class ModelMetadata:
    """Parsed istrings metadata of one model (see the module docstring for the keys).

    Attributes:
        kind: model kind (``"nri"``).
        model_name: checkpoint registry name.
        config: the model's config as a JSON dict.
        skeleton_layout: canonical layout name the model's joints follow.
        joint_names: the canonical joint names, in order.
        window_frames: window length ``T`` the model expects, frames.
        fps: frame rate the model expects, Hz.
        horizons_s: forecast horizons, seconds (empty unless a forecaster).
        data_id: training data id.
        metrics: metrics reached by the checkpoint.
        extra: plain extra data of the checkpoint (e.g. normalisation scales).
        project_version: project version of the exporting code.
        schema_version: metadata schema version.
    """

    kind: str
    model_name: str
    config: Mapping[str, Any]
    skeleton_layout: str
    joint_names: tuple[str, ...]
    window_frames: int
    fps: float
    horizons_s: tuple[float, ...]
    data_id: str
    metrics: Mapping[str, float]
    project_version: str
    extra: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = METADATA_SCHEMA_VERSION

    def to_props(self) -> dict[str, str]:
        """The ``istrings.*`` string properties stored in the ONNX file."""
        raw: dict[str, str] = {
            "schema_version": str(self.schema_version),
            "project_version": self.project_version,
            "kind": self.kind,
            "model_name": self.model_name,
            "config": json.dumps(dict(self.config), sort_keys=True),
            "skeleton.layout": self.skeleton_layout,
            "skeleton.joints": json.dumps(list(self.joint_names)),
            "window_frames": str(int(self.window_frames)),
            "fps": repr(float(self.fps)),
            "horizons_s": json.dumps([float(h) for h in self.horizons_s]),
            "data_id": self.data_id,
            "metrics": json.dumps({k: float(v) for k, v in self.metrics.items()}, sort_keys=True),
            "extra": json.dumps(jsonable(dict(self.extra)), sort_keys=True),
        }
        return {PREFIX + k: v for k, v in raw.items()}

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str = "model") -> ModelMetadata:
        """Parse the properties :meth:`to_props` wrote (other keys are ignored).

        Raises:
            MetadataError: no istrings metadata, a missing key, an unreadable value, or a
                schema newer than this code.
        """
        ours = {k[len(PREFIX):]: v for k, v in props.items() if k.startswith(PREFIX)}
        if not ours:
            raise MetadataError(
                f"{source} carries no istrings metadata; export it with `istrings export` "
                "(a bare torch.onnx.export has none)"
            )
        missing = [k for k in _REQUIRED if k not in ours]
        try:
            schema = int(ours.get("schema_version", "-1"))
        except ValueError as exc:
            raise MetadataError(
                f"{source}: metadata schema_version {ours['schema_version']!r} is not a number"
            ) from exc
        if schema > METADATA_SCHEMA_VERSION:
            raise MetadataError(
                f"{source} has metadata schema {schema}, newer than this code reads "
                f"({METADATA_SCHEMA_VERSION}); upgrade invisible-strings"
            )
        if missing:
            lacking = ", ".join(PREFIX + k for k in missing)
            raise MetadataError(f"{source}: metadata lacks {lacking}; re-export it with `istrings export`")
        try:
            return cls(
                kind=ours["kind"],
                model_name=ours["model_name"],
                config=json.loads(ours["config"]),
                skeleton_layout=ours["skeleton.layout"],
                joint_names=tuple(json.loads(ours["skeleton.joints"])),
                window_frames=int(ours["window_frames"]),
                fps=float(ours["fps"]),
                horizons_s=tuple(float(h) for h in json.loads(ours["horizons_s"])),
                data_id=ours["data_id"],
                metrics={k: float(v) for k, v in json.loads(ours["metrics"]).items()},
                project_version=ours["project_version"],
                extra=json.loads(ours["extra"]),
                schema_version=schema,
            )
        except (ValueError, TypeError, AttributeError) as exc:
            raise MetadataError(f"{source}: istrings metadata is unreadable ({exc}); re-export it") from exc


def write_metadata(model: onnx.ModelProto, meta: ModelMetadata) -> None:
    """Replace the model's ``istrings.*`` metadata properties by ``meta`` (other keys are kept)."""
    keep = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    for key, value in [*keep, *sorted(meta.to_props().items())]:
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value


def read_metadata(path: str | Path) -> ModelMetadata:
    """Read the istrings metadata of an ``.onnx`` file (imports ``onnx``; the runtime reads it
    through ONNX Runtime instead).

    Raises:
        MetadataError: the file is missing, not ONNX, or carries no valid istrings metadata.
    """
    import onnx

    path = Path(path)
    if not path.is_file():
        raise MetadataError(f"{path} does not exist")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, google.protobuf errors, OSError
        raise MetadataError(f"{path} is not a readable ONNX file: {exc}") from exc
    return ModelMetadata.from_props({p.key: p.value for p in model.metadata_props}, source=str(path))
