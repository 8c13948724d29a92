"""The live window: a ring buffer of the last cleaned frames, and the model input made from it.

The models were trained on windows of ``T`` frames at the clips' frame rate ``fps`` (model
metadata). The live stream comes at its own rate, with frames skipped whenever the process falls
behind (latest frame wins). So the window is *resampled in time*: its ``T`` frames are taken at
``t_now − (T−1−k)/fps`` for ``k = 0..T−1`` by linear interpolation between the buffered frames
(``t_now`` the newest frame's time), which gives the training spacing at any input rate.

Features and normalisation are the numpy port of ``training/duet_data.py`` (which imports torch
and must not be imported here):

1. position (m) and velocity (m/s) = backward difference × fps, frame 0 repeating frame 1's;
2. centring of the duet as a whole: the mean of both pelvises at the newest frame is subtracted
   from every position of both dancers (velocities unchanged);
3. scaling: positions / ``pos_scale``, velocities / ``vel_scale`` (the model's
   ``metadata.extra["normalizer"]``);
4. nodes: dancer 0's ``joints0`` then dancer 1's ``joints1`` → ``(T, N, C=6)``.

The buffer stores every frame twice (at ``i`` and ``i + capacity``), so the last ``capacity``
frames are always one contiguous slice: no copy, no wrap-around logic per read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from stream.errors import IStringsError
from stream.skeleton import CANONICAL, J

D = 2
C_FEATURES = 6
PELVIS = CANONICAL.index("pelvis")
DEFAULT_CAPACITY = 4096
"""Frames kept: enough for a 2-second window at 2,000 input frames/s."""


class WindowError(IStringsError, ValueError):
    """A window setting is invalid, or a model's normalisation is missing from its metadata."""


@dataclass(frozen=True)
class Normalization:
    """Scales of the training data (``training.duet_data.Normalizer``).

    Attributes:
        pos_scale: metres per unit.
        vel_scale: metres per second per unit.
    """

    pos_scale: float
    vel_scale: float

    def __post_init__(self) -> None:
        if not (self.pos_scale > 0 and self.vel_scale > 0):
            raise WindowError(f"normalisation scales must be positive, got {self.pos_scale}, {self.vel_scale}")

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any], source: str = "model") -> Normalization:
        """Read ``extra["normalizer"]`` (``pos_scale``, ``vel_scale``) of a model's metadata.

        Raises:
            WindowError: absent or unreadable (re-export the model with a checkpoint that has it).
        """
        norm = extra.get("normalizer")
        try:
            return cls(float(norm["pos_scale"]), float(norm["vel_scale"]))  # type: ignore[index]
        except (TypeError, KeyError, ValueError) as exc:
            raise WindowError(f"{source} has no normalizer.pos_scale / vel_scale in its metadata extra; "
                              "re-export it from a checkpoint that stores them") from exc


@dataclass(frozen=True)
class WindowSpec:
    """What a model takes: ``frames`` (``T``) at ``fps``, the node joints of each dancer, the scales.

    Attributes:
        frames: ``T``.
        fps: frame rate of the window, Hz.
        joints0: dancer-0 canonical joints used as nodes (``J0``).
        joints1: dancer-1 canonical joints (``J1``); ``N = J0 + J1``.
        norm: the scales (``None``: positions and velocities in metres and m/s, centred).
    """

    frames: int
    fps: float
    joints0: tuple[int, ...] = tuple(range(J))
    joints1: tuple[int, ...] = tuple(range(J))
    norm: Normalization | None = None

    def __post_init__(self) -> None:
        if self.frames < 2 or not self.fps > 0:
            raise WindowError(f"a window needs >= 2 frames and fps > 0, got {self.frames}, {self.fps}")
        for js in (self.joints0, self.joints1):
            if not js or min(js) < 0 or max(js) >= J:
                raise WindowError(f"node joints must be canonical indices 0..{J - 1}, got {js}")

    @property
    def span_s(self) -> float:
        """Seconds from the window's first to its last frame."""
        return (self.frames - 1) / self.fps

    @property
    def num_nodes(self) -> int:
        return len(self.joints0) + len(self.joints1)

    def node_index(self) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """``(dancer, joint)`` of every node, ``(N,)`` each."""
        d = np.array([0] * len(self.joints0) + [1] * len(self.joints1), dtype=np.int64)
        return d, np.array(self.joints0 + self.joints1, dtype=np.int64)


def features(positions: NDArray[np.floating], fps: float) -> NDArray[np.float32]:
    """``(T, D, J, 3)`` metres → ``(T, D, J, 6)`` position and velocity (backward difference × fps,
    frame 0 repeating frame 1's), as ``training.duet_data.clip_features``."""
    x = np.asarray(positions, dtype=np.float32)
    v = np.empty_like(x)
    v[1:] = (x[1:] - x[:-1]) * np.float32(fps)
    v[0] = v[1]
    return np.concatenate([x, v], axis=-1)


def normalize(feats: NDArray[np.floating], spec: WindowSpec) -> NDArray[np.float32]:
    """Centre on the duet (both pelvises at the newest frame), scale, select nodes.

    ``(T, D, J, 6)`` → ``(T, N, 6)`` float32.
    """
    w = np.array(feats, dtype=np.float32, copy=True)  # (T, D, J, 6)
    w[..., :3] -= w[-1, :, PELVIS, :3].mean(axis=0)  # (3,) duet centre at the newest frame
    if spec.norm is not None:
        w[..., :3] /= np.float32(spec.norm.pos_scale)
        w[..., 3:] /= np.float32(spec.norm.vel_scale)
    d, j = spec.node_index()
    return np.ascontiguousarray(w[:, d, j, :])  # (T, N, 6)


class FrameBuffer:
    """The last ``capacity`` cleaned frames of both dancers with their times.

    Args:
        capacity: frames kept.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 2:
            raise WindowError(f"capacity must be >= 2, got {capacity}")
        self.capacity = capacity
        self._t = np.zeros(2 * capacity, dtype=np.float64)  # (2·cap,) s
        self._x = np.zeros((2 * capacity, D, J, 3), dtype=np.float32)  # (2·cap, D, J, 3) m
        self._both = np.zeros(2 * capacity, dtype=bool)  # both dancers present
        self._next = 0  # slot of the next write, in [0, cap)
        self.count = 0

    def clear(self) -> None:
        self._next = 0
        self.count = 0

    def push(self, t_s: float, joints: NDArray[np.floating], both_present: bool = True) -> None:
        """Append one frame: time (s, increasing), ``joints (D, J, 3)`` metres."""
        k = self._next
        for slot in (k, k + self.capacity):
            self._t[slot] = t_s
            self._x[slot] = joints
            self._both[slot] = both_present
        self._next = (k + 1) % self.capacity
        self.count = min(self.count + 1, self.capacity)

    def hold(self, dancers: NDArray[np.bool_], joints: NDArray[np.floating]) -> None:
        """Set every buffered frame of the ``dancers (D,)`` marked to ``joints (D, J, 3)``: a dancer
        (re)acquired now has no past, so its window holds its current pose."""
        self._x[:, dancers] = joints[dancers]

    def _view(self) -> tuple[NDArray[np.float64], NDArray[np.float32], NDArray[np.bool_]]:
        """Contiguous oldest-first views of the ``count`` buffered frames."""
        end = self._next + self.capacity
        start = end - self.count
        return self._t[start:end], self._x[start:end], self._both[start:end]

    @property
    def newest_t(self) -> float:
        return float(self._view()[0][-1]) if self.count else float("nan")

    def covers(self, span_s: float) -> bool:
        """Whether the buffered frames reach ``span_s`` seconds back from the newest."""
        if self.count < 2:
            return False
        t = self._view()[0]
        return bool(t[-1] - t[0] >= span_s - 1e-9)

    def both_present_over(self, span_s: float) -> bool:
        """Whether both dancers were present in every frame of the last ``span_s`` seconds."""
        t, _, both = self._view()
        if not len(t):
            return False
        first = int(np.searchsorted(t, t[-1] - span_s - 1e-9, side="left"))
        return bool(both[max(first - 1, 0):].all())

    def resampled(self, frames: int, fps: float) -> NDArray[np.float32]:
        """The last ``frames`` frames at ``fps``, ending at the newest frame: ``(T, D, J, 3)`` metres.

        Linear interpolation between buffered frames; times before the oldest frame repeat it.

        Raises:
            WindowError: the buffer is empty.
        """
        if self.count == 0:
            raise WindowError("no frame buffered yet")
        t, x, _ = self._view()
        return interpolate(t, x, t[-1] - (frames - 1 - np.arange(frames)) / fps)  # (T, D, J, 3), oldest first

    def history(self, span_s: float) -> tuple[NDArray[np.float64], NDArray[np.float32]]:
        """Times ``(n,)`` s and joints ``(n, D, J, 3)`` of the frames in the last ``span_s`` seconds."""
        t, x, _ = self._view()
        first = int(np.searchsorted(t, t[-1] - span_s, side="left")) if len(t) else 0
        return t[first:], x[first:]


def model_window(buffer: FrameBuffer, spec: WindowSpec) -> NDArray[np.float32]:
    """The normalised model input ``(T, N, 6)`` from the buffer (see the module docstring)."""
    return normalize(features(buffer.resampled(spec.frames, spec.fps), spec.fps), spec)


def interpolate(
    times: NDArray[np.floating], joints: NDArray[np.floating], at: NDArray[np.floating]
) -> NDArray[np.float32]:
    """Frames ``joints (n, ...)`` at increasing ``times (n,)`` s, linearly interpolated to ``at (M,)`` s → ``(M, ...)``.

    Times outside ``[times[0], times[-1]]`` repeat the first or last frame.
    """
    ts = np.asarray(times, dtype=np.float64)
    q = np.asarray(at, dtype=np.float64)
    x = np.asarray(joints)
    # per live frame: minimum/maximum instead of np.clip (the same values, about a quarter less time)
    hi = np.minimum(np.searchsorted(ts, q, side="left"), len(ts) - 1)  # first frame at or after each time
    lo = np.maximum(hi - 1, 0)
    t_lo = ts[lo]
    span = ts[hi] - t_lo
    pos = span > 0
    w = np.where(pos, (q - t_lo) / np.where(pos, span, 1.0), 1.0)
    np.maximum(w, 0.0, out=w)
    np.minimum(w, 1.0, out=w)
    w = w.astype(np.float32).reshape(-1, *([1] * (x.ndim - 1)))  # (M, 1, …)
    return np.asarray((1 - w) * x[lo] + w * x[hi], dtype=np.float32)


def interpolate_at(times: NDArray[np.floating], joints: NDArray[np.floating], t: float) -> NDArray[np.float32]:
    """Joints ``(D, J, 3)`` at time ``t`` from frames ``times (n,)``, ``joints (n, D, J, 3)`` (clamped)."""
    return interpolate(times, joints, np.array([t]))[0]


def joints_from_config(config: Mapping[str, Any]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(joints0, joints1)`` of a model config (all joints when the config names none)."""
    def get(key: str) -> tuple[int, ...]:
        v: Sequence[int] | None = config.get(key)
        return tuple(int(j) for j in v) if v else tuple(range(J))

    return get("joints0"), get("joints1")
