"""Particle simulations of NRI (Kipf et al. 2018): springs and charged particles in a 2-D box.

Protocol (NRI's ``data/synthetic_sim.py`` / ``generate_dataset.py``, re-implemented and
vectorised over simulations):

* ``N`` balls in the box ``[-5, 5]^2`` with elastic walls (a ball past a wall is mirrored back
  and its velocity component turned inwards); unit masses; time step ``dt = 0.001``;
  each force component clipped to ``±0.1 / dt = ±100``.
* Initial positions ``~ N(0, loc_std^2)``; initial velocities of random direction and norm 0.5.
* **springs**: each unordered pair is joined with probability 0.5 by a spring of constant
  ``k = 0.1`` (``F_i = -k Σ_j a_ij (x_i - x_j)``); ``loc_std = 0.5``.
  Label 1 = spring.
* **charged**: charges ``q = ±1`` with probability 0.5 each; Coulomb-like force of strength 1,
  ``F_i = Σ_j q_i q_j (x_i - x_j) / |x_i - x_j|^3`` (like charges repel); ``loc_std = 1``.
  Label 1 = same sign (``q_i q_j > 0``).
* Integration (as NRI): velocity kick from the initial forces, then ``length - 1`` steps of
  position drift, wall clamp, sample every ``sample_freq`` steps, force, velocity kick. The
  saved velocity is the one after the drift (before that step's kick). ``length = 5000`` and
  ``sample_freq = 100`` give ``T = length / sample_freq - 1 = 49`` frames (steps 100 … 4900).

File layout (NRI's own arrays in one ``.npz``): ``loc (S, T, 2, N)`` and ``vel (S, T, 2, N)``
float32 (box units, per unit time), ``edges (S, N, N)`` int64 class of every ordered pair
(symmetric, diagonal 0), plus ``sim`` (str), ``seed``, ``length``, ``sample_freq``.
:func:`load_particles` also reads a directory of NRI's ``loc_<split>.npy`` / ``vel_<split>.npy`` /
``edges_<split>.npy`` triplets (charged labels ±1 are mapped to 0/1 as NRI does).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from stream.errors import IStringsError

log = logging.getLogger(__name__)

BOX_SIZE = 5.0
DT = 0.001
MAX_FORCE = 0.1 / DT
VEL_NORM = 0.5
SPRING_K = 0.1
CHARGE_STRENGTH = 1.0
LOC_STD: dict[str, float] = {"springs": 0.5, "charged": 1.0}

SimKind = Literal["springs", "charged"]
Array = NDArray[np.float64]


class SimulationError(IStringsError):
    """Bad simulation settings, or a particle file that is missing or malformed."""


@dataclass(frozen=True)
class ParticleData:
    """Trajectories and ground-truth interaction classes.

    Attributes:
        loc: ``(S, T, 2, N)`` float32 positions (box units).
        vel: ``(S, T, 2, N)`` float32 velocities (box units per unit time).
        edges: ``(S, N, N)`` int64 class of each ordered pair, diagonal 0.
        sim: ``"springs"``, ``"charged"`` or ``"unknown"``.
    """

    loc: NDArray[np.float32]
    vel: NDArray[np.float32]
    edges: NDArray[np.int64]
    sim: str = "unknown"

    @property
    def num_sims(self) -> int:
        return int(self.loc.shape[0])

    @property
    def num_balls(self) -> int:
        return int(self.loc.shape[3])

    @property
    def num_timesteps(self) -> int:
        return int(self.loc.shape[1])

    def data_id(self) -> str:
        """16-hex content hash (shapes, positions, labels) identifying the data set."""
        h = hashlib.sha256()
        for a in (self.loc, self.vel, self.edges):
            h.update(str(a.shape).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        return f"{self.sim}-{h.hexdigest()[:16]}"


def clamp_to_box(loc: Array, vel: Array, box: float = BOX_SIZE) -> tuple[Array, Array]:
    """Elastic walls: mirror positions past ``±box`` back inside and point those velocities inwards."""
    over = loc > box
    loc = np.where(over, 2 * box - loc, loc)
    vel = np.where(over, -np.abs(vel), vel)
    under = loc < -box
    loc = np.where(under, -2 * box - loc, loc)
    vel = np.where(under, np.abs(vel), vel)
    return loc, vel


def spring_forces(loc: Array, springs: Array, k: float = SPRING_K) -> Array:
    """``F_i = -k Σ_j a_ij (x_i - x_j)``, clipped to ±MAX_FORCE.

    Shapes:
        loc ``(S, 2, N)``, springs ``(S, N, N)`` 0/1 → ``(S, 2, N)``.
    """
    diff = loc[:, :, :, None] - loc[:, :, None, :]  # (S, 2, N, N): x_i - x_j
    f = -k * (springs[:, None] * diff).sum(-1)
    return np.clip(f, -MAX_FORCE, MAX_FORCE)


def charge_forces(loc: Array, charges: Array, strength: float = CHARGE_STRENGTH) -> Array:
    """``F_i = s Σ_{j≠i} q_i q_j (x_i - x_j) / r_ij^3``, clipped to ±MAX_FORCE.

    Shapes:
        loc ``(S, 2, N)``, charges ``(S, N)`` → ``(S, 2, N)``.
    """
    n = loc.shape[-1]
    diff = loc[:, :, :, None] - loc[:, :, None, :]  # (S, 2, N, N)
    r2 = (diff**2).sum(1)  # (S, N, N)
    eye = np.eye(n, dtype=bool)
    inv_r3 = np.where(eye, 0.0, np.power(np.where(eye, 1.0, r2), -1.5))
    qq = charges[:, :, None] * charges[:, None, :]  # (S, N, N)
    f = strength * ((qq * inv_r3)[:, None] * diff).sum(-1)
    return np.clip(f, -MAX_FORCE, MAX_FORCE)


def spring_energy(loc: Array, vel: Array, springs: Array, k: float = SPRING_K) -> Array:
    """Kinetic + spring potential energy per simulation (unit masses).

    Shapes:
        loc, vel ``(S, 2, N)``, springs ``(S, N, N)`` → ``(S,)``.
    """
    kin = 0.5 * (vel**2).sum((1, 2))
    diff = loc[:, :, :, None] - loc[:, :, None, :]
    pot = 0.5 * 0.5 * k * (springs * (diff**2).sum(1)).sum((1, 2))  # each pair counted twice
    return np.asarray(kin + pot)


def _simulate_chunk(kind: SimKind, s: int, n: int, length: int, sample_freq: int,
                    rng: np.random.Generator) -> tuple[Array, Array, NDArray[np.int64]]:
    t_save = length // sample_freq - 1
    if kind == "springs":
        upper = np.triu(rng.random((s, n, n)) < 0.5, k=1)
        springs = (upper | upper.transpose(0, 2, 1)).astype(np.float64)  # (S, N, N), diag 0
        labels = springs.astype(np.int64)

        def force(x: Array) -> Array:
            return spring_forces(x, springs)
    else:
        charges = np.where(rng.random((s, n)) < 0.5, -1.0, 1.0)  # (S, N)
        labels = (charges[:, :, None] * charges[:, None, :] > 0).astype(np.int64)
        labels[:, np.arange(n), np.arange(n)] = 0

        def force(x: Array) -> Array:
            return charge_forces(x, charges)

    loc = rng.standard_normal((s, 2, n)) * LOC_STD[kind]
    vel = rng.standard_normal((s, 2, n))
    vel = vel * VEL_NORM / np.linalg.norm(vel, axis=1, keepdims=True)
    loc, vel = clamp_to_box(loc, vel)
    out_loc = np.empty((s, t_save, 2, n))
    out_vel = np.empty((s, t_save, 2, n))
    vel = vel + DT * force(loc)
    counter = 0
    for i in range(1, length):
        loc = loc + DT * vel
        loc, vel = clamp_to_box(loc, vel)
        if i % sample_freq == 0 and counter < t_save:
            out_loc[:, counter], out_vel[:, counter] = loc, vel
            counter += 1
        vel = vel + DT * force(loc)
    return out_loc, out_vel, labels


def simulate(kind: SimKind, num_sims: int, num_balls: int = 5, *, seed: int = 0, length: int = 5000,
             sample_freq: int = 100, chunk: int = 2000,
             progress: Callable[[int], None] | None = None) -> ParticleData:
    """Run ``num_sims`` independent simulations, ``chunk`` at a time (bounded memory).

    Args:
        kind: ``"springs"`` or ``"charged"``.
        num_sims: ``S``.
        num_balls: ``N``.
        seed: seeds a numpy ``Generator``; the same seed and chunk give the same data.
        length: integration steps (``dt = 0.001`` each).
        sample_freq: steps between saved frames.
        chunk: simulations integrated together.
        progress: called with the number of simulations finished after each chunk.

    Returns:
        :class:`ParticleData` with ``T = length // sample_freq - 1`` frames.
    """
    if kind not in LOC_STD:
        raise SimulationError(f"unknown simulation {kind!r}; use springs or charged")
    if num_sims < 1 or num_balls < 2 or sample_freq < 1 or length // sample_freq < 2:
        raise SimulationError("need sims >= 1, balls >= 2 and length >= 2 * sample_freq")
    rng = np.random.default_rng(seed)
    locs, vels, edges = [], [], []
    done = 0
    while done < num_sims:
        s = min(chunk, num_sims - done)
        loc, vel, lab = _simulate_chunk(kind, s, num_balls, length, sample_freq, rng)
        locs.append(loc.astype(np.float32))  # (S, T, 2, N)
        vels.append(vel.astype(np.float32))
        edges.append(lab)
        done += s
        if progress is not None:
            progress(done)
    return ParticleData(np.concatenate(locs), np.concatenate(vels), np.concatenate(edges), kind)


def save_particles(path: str | Path, data: ParticleData, *, seed: int, length: int, sample_freq: int) -> Path:
    """Write NRI's arrays plus metadata to a compressed ``.npz``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, loc=data.loc, vel=data.vel, edges=data.edges, sim=np.array(data.sim),
                        seed=np.array(seed), length=np.array(length), sample_freq=np.array(sample_freq))
    return path


def _from_nri_dir(path: Path, split: str) -> ParticleData:
    files = [path / f"{name}_{split}.npy" for name in ("loc", "vel", "edges")]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise SimulationError(f"{path} lacks {', '.join(missing)}; expected NRI's loc/vel/edges_<split>.npy")
    loc, vel, edges = (np.load(f, allow_pickle=False) for f in files)
    edges = edges.astype(np.int64)
    sim = "unknown"
    if (edges < 0).any():  # NRI's charged files store q_i q_j = ±1 (diagonal +1)
        edges = (edges + 1) // 2
        sim = "charged"
    n = edges.shape[-1]
    edges[:, np.arange(n), np.arange(n)] = 0
    return ParticleData(loc.astype(np.float32), vel.astype(np.float32), edges, sim)


def load_particles(path: str | Path, split: str = "train") -> ParticleData:
    """Read a ``.npz`` written by :func:`save_particles`, or a directory of NRI ``.npy`` triplets.

    Raises:
        SimulationError: missing file, missing arrays, or inconsistent shapes.
    """
    path = Path(path)
    if path.is_dir():
        data = _from_nri_dir(path, split)
    elif path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                if not {"loc", "vel", "edges"} <= set(z.files):
                    raise SimulationError(f"{path} is not a particle file (needs loc, vel, edges arrays); "
                                          "make one with `istrings simulate springs ...`")
                sim = str(z["sim"]) if "sim" in z.files else "unknown"
                data = ParticleData(z["loc"].astype(np.float32), z["vel"].astype(np.float32),
                                    z["edges"].astype(np.int64), sim)
        except (OSError, ValueError) as exc:
            raise SimulationError(f"cannot read particle file {path}: {exc}") from exc
    else:
        raise SimulationError(f"particle data {path} does not exist; make it with `istrings simulate ...`")
    S, _T, two, N = data.loc.shape
    if two != 2 or data.vel.shape != data.loc.shape or data.edges.shape != (S, N, N):
        raise SimulationError(f"{path}: inconsistent shapes loc {data.loc.shape}, vel {data.vel.shape}, "
                              f"edges {data.edges.shape}; expected (S, T, 2, N), (S, T, 2, N), (S, N, N)")
    return data
