"""The real two-person motion capture the models train and evaluate on, as canonical clips.

Every take in ``../shared/data/cmu-mocap`` is converted once with :mod:`stream.convert` and
cached as a clip (``runs/cache/clips/NAME-<source hash>.npz``):

==============  =====================================  ======  =============
take            files                                  fps     dancer 0 / 1
==============  =====================================  ======  =============
salsa_01..05    salsa/60_NN_scaled + 61_NN_scaled      60      lead / follow
cmu_walk        20_05 + 21_05                          120     A / B
cmu_march       20_07 + 21_07                          120     A / B
cmu_squats      22_14 + 23_14                          120     A / B
==============  =====================================  ======  =============

Whole takes are held out for validation (:data:`VAL_TAKES`), never windows of a training take.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stream.clip import Clip
from stream.errors import IStringsError

log = logging.getLogger(__name__)

SHARED_ENV = "ISTRINGS_SHARED"
VAL_TAKES: tuple[str, ...] = ("salsa_05", "cmu_squats")
"""Takes held out whole for validation: one salsa take and one CMU take."""

_TAKES: dict[str, tuple[str, str, str]] = {  # name -> (group, dancer-0 file, dancer-1 file)
    **{f"salsa_0{k}": ("salsa", f"salsa/60_0{k}_scaled.bvh", f"salsa/61_0{k}_scaled.bvh") for k in range(1, 6)},
    "cmu_walk": ("cmu", "20_05.bvh", "21_05.bvh"),
    "cmu_march": ("cmu", "20_07.bvh", "21_07.bvh"),
    "cmu_squats": ("cmu", "22_14.bvh", "23_14.bvh"),
}


class CorpusError(IStringsError):
    """The shared motion-capture data cannot be found or read."""


@dataclass(frozen=True)
class Take:
    """One real duet take: its name, its group (``"salsa"`` or ``"cmu"``) and its canonical clip."""

    name: str
    group: str
    clip: Clip


def shared_dir() -> Path:
    """The shared data folder: ``$ISTRINGS_SHARED``, else ``../shared`` beside the repository.

    Raises:
        CorpusError: neither exists.
    """
    env = os.environ.get(SHARED_ENV)
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "shared"
    if not (path / "data" / "cmu-mocap").is_dir():
        raise CorpusError(f"no motion-capture data at {path}/data/cmu-mocap; set ${SHARED_ENV} to the shared folder")
    return path


def take_names() -> tuple[str, ...]:
    """Names of every real take, salsa first."""
    return tuple(_TAKES)


def _source_hash(files: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(str(f.stat().st_size).encode())
    return h.hexdigest()[:10]


def load_take(name: str, cache_dir: Path | None = None) -> Take:
    """One take as a canonical clip, converted on first use and cached.

    Raises:
        CorpusError: unknown take or missing data.
    """
    from stream.convert import convert  # the BVH reader is only needed on a cache miss

    if name not in _TAKES:
        raise CorpusError(f"unknown take {name!r}; takes: {', '.join(_TAKES)}")
    group, f0, f1 = _TAKES[name]
    root = shared_dir() / "data" / "cmu-mocap"
    files = [root / f0, root / f1]
    cache = Path(cache_dir) if cache_dir is not None else Path("runs") / "cache" / "clips"
    path = cache / f"{name}-{_source_hash(files)}.npz"
    if path.is_file():
        return Take(name, group, Clip.load(path))
    log.info("converting %s from %s", name, ", ".join(str(f) for f in files))
    clip = convert(files)
    clip.save(path)
    return Take(name, group, clip)


def real_takes(cache_dir: Path | None = None, names: Sequence[str] | None = None) -> list[Take]:
    """Every real two-person take (or the named ones) as canonical clips."""
    return [load_take(n, cache_dir) for n in (names or take_names())]


def split_takes(takes: Sequence[Take], val: Sequence[str] = VAL_TAKES) -> tuple[list[Take], list[Take]]:
    """Split whole takes into (train, validation); ``val`` names the held-out takes.

    Raises:
        CorpusError: a held-out name matches no take.
    """
    names = {t.name for t in takes}
    missing = [v for v in val if v not in names]
    if missing:
        raise CorpusError(f"held-out takes {missing} are not among {sorted(names)}")
    return [t for t in takes if t.name not in val], [t for t in takes if t.name in val]


def resample(clip: Clip, fps: float) -> Clip:
    """Linear resampling in time to ``fps`` (e.g. CMU 120 fps → 60 fps).

    Joints ``(T, D, J, 3)`` are interpolated per coordinate; a frame is valid when both
    neighbours it is interpolated from are valid. Provenance records the resampling.
    """
    if fps <= 0:
        raise CorpusError(f"fps must be positive, got {fps}")
    if np.isclose(fps, clip.fps):
        return clip
    t_src = np.arange(clip.num_frames) / clip.fps  # (T,) s
    T_new = int(np.floor(t_src[-1] * fps + 1e-9)) + 1
    t_new = np.arange(T_new) / fps  # (T',) s
    pos = t_new * clip.fps
    i0 = np.clip(np.floor(pos).astype(int), 0, clip.num_frames - 1)
    i1 = np.clip(i0 + 1, 0, clip.num_frames - 1)
    w = (pos - i0)[:, None, None, None]
    joints = (1 - w) * clip.joints[i0] + w * clip.joints[i1]  # (T', D, J, 3)
    valid = clip.valid[i0] & clip.valid[i1]  # (T', D)
    prov = {**clip.provenance, "resampled": {"from_fps": clip.fps, "to_fps": fps}}
    return Clip(joints=joints.astype(np.float32), fps=fps, valid=valid, provenance=prov,
                edges=clip.edges, edge_lag=round(clip.edge_lag * fps / clip.fps))
