"""Canonical clips: both dancers' canonical joints over time, the unit of training and evaluation.

File format (``.npz``, written with ``numpy.savez_compressed``, read with ``allow_pickle=False``):

==================  ==================  ===============================================
key                 shape / dtype       meaning
==================  ==================  ===============================================
``format``          () str              ``"istrings-clip"``
``version``         () int              format version (1)
``joints``          (T, D, J, 3) f4     metres, right-handed, y up, one shared frame
``valid``           (T, D) bool         False where a dancer was absent (joints then hold
                                        the last estimate, never NaN)
``timestamps``      (T,) f8             seconds from the clip's start
``fps``             () f8               nominal frame rate
``layout``          () str              ``"canonical18"``
``joint_names``     (J,) str
``provenance``      () str              JSON: sources, conversion options, acknowledgements
``edges``           (J, J) f4, optional planted strings: ``edges[i, j]`` = strength with which
                                        dancer-0 joint i drives dancer-1 joint j (synthetic)
``edge_lag``        () int, optional    delay of the planted strings in frames
==================  ==================  ===============================================

``D`` is 2 (a duet), ``J`` is :data:`stream.skeleton.J`.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from stream.errors import IStringsError
from stream.skeleton import CANONICAL, J

CLIP_FORMAT = "istrings-clip"
CLIP_VERSION = 1


class ClipError(IStringsError, ValueError):
    """A clip file is missing, unreadable or not a valid canonical clip."""


@dataclass(frozen=True, eq=False)
class Clip:
    """A canonical duet clip (see the module docstring for the file format).

    Attributes:
        joints: ``(T, D, J, 3)`` float32 metres.
        fps: frames per second.
        timestamps: ``(T,)`` float64 seconds; defaults to ``arange(T) / fps``.
        valid: ``(T, D)`` bool presence mask; defaults to all True.
        provenance: JSON-serialisable description of where the clip came from.
        edges: optional ``(J, J)`` planted string matrix (dancer 0 → dancer 1).
        edge_lag: delay of the planted strings in frames (0 if none).
    """

    joints: NDArray[np.float32]
    fps: float
    timestamps: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    valid: NDArray[np.bool_] = field(default_factory=lambda: np.zeros((0, 0), bool))
    provenance: dict[str, Any] = field(default_factory=dict)
    edges: NDArray[np.float32] | None = None
    edge_lag: int = 0

    def __post_init__(self) -> None:
        joints = np.asarray(self.joints, dtype=np.float32)
        if joints.ndim != 4 or joints.shape[1:] != (2, J, 3):
            raise ClipError(f"clip joints must have shape (T, 2, {J}, 3), got {joints.shape}")
        if not np.isfinite(joints).all():
            raise ClipError("clip joints must be finite (fill missing joints, mark them in `valid`)")
        if not (self.fps > 0 and np.isfinite(self.fps)):
            raise ClipError(f"fps must be positive, got {self.fps}")
        T = joints.shape[0]
        ts = np.asarray(self.timestamps, dtype=np.float64)
        if ts.size == 0:
            ts = np.arange(T, dtype=np.float64) / self.fps
        if ts.shape != (T,):
            raise ClipError(f"timestamps must have shape ({T},), got {ts.shape}")
        valid = np.asarray(self.valid, dtype=bool)
        if valid.size == 0:
            valid = np.ones((T, 2), dtype=bool)
        if valid.shape != (T, 2):
            raise ClipError(f"valid must have shape ({T}, 2), got {valid.shape}")
        edges = None if self.edges is None else np.asarray(self.edges, dtype=np.float32)
        if edges is not None and edges.shape != (J, J):
            raise ClipError(f"edges must have shape ({J}, {J}), got {edges.shape}")
        object.__setattr__(self, "joints", joints)
        object.__setattr__(self, "timestamps", ts)
        object.__setattr__(self, "valid", valid)
        object.__setattr__(self, "edges", edges)

    @property
    def num_frames(self) -> int:
        return int(self.joints.shape[0])

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps

    @property
    def data_id(self) -> str:
        """A short content hash (12 hex digits) naming the data, saved with models trained on it."""
        h = hashlib.sha256()
        h.update(self.joints.tobytes())
        h.update(np.float64(self.fps).tobytes())
        return h.hexdigest()[:12]

    def save(self, path: str | Path) -> Path:
        """Write the clip to ``path`` (``.npz`` is appended if missing)."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {
            "format": np.array(CLIP_FORMAT),
            "version": np.array(CLIP_VERSION),
            "joints": self.joints,
            "valid": self.valid,
            "timestamps": self.timestamps,
            "fps": np.array(float(self.fps)),
            "layout": np.array(CANONICAL.name),
            "joint_names": np.array(CANONICAL.joint_names),
            "provenance": np.array(json.dumps(self.provenance, sort_keys=True)),
        }
        if self.edges is not None:
            arrays["edges"] = self.edges
            arrays["edge_lag"] = np.array(int(self.edge_lag))
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Clip:
        """Read a clip written by :meth:`save`.

        Raises:
            ClipError: missing file, not an npz, not a clip, wrong version or layout.
        """
        path = Path(path)
        if not path.is_file():
            raise ClipError(f"no clip file at {path}")
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise ClipError(f"{path} is not a readable .npz clip ({exc})") from exc
        if str(data.get("format", "")) != CLIP_FORMAT:
            raise ClipError(f"{path} is not an Invisible Strings clip (no format={CLIP_FORMAT!r})")
        if int(data["version"]) != CLIP_VERSION:
            raise ClipError(f"{path}: clip version {int(data['version'])}, this build reads {CLIP_VERSION}")
        if str(data["layout"]) != CANONICAL.name:
            raise ClipError(f"{path}: layout {data['layout']} is not {CANONICAL.name}; convert it again")
        try:
            return cls(
                joints=data["joints"],
                fps=float(data["fps"]),
                timestamps=data["timestamps"],
                valid=data["valid"],
                provenance=json.loads(str(data["provenance"])),
                edges=data.get("edges"),
                edge_lag=int(data.get("edge_lag", 0)),
            )
        except (KeyError, json.JSONDecodeError) as exc:
            raise ClipError(f"{path}: incomplete clip ({exc})") from exc
