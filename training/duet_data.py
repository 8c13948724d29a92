"""Duet windows for relational inference: features, candidate edges, augmentation, normalisation.

From canonical clips (:class:`stream.clip.Clip`, joints ``(T, D=2, J, 3)`` metres, y up) to
model inputs ``(B, T, N, C=6)``:

1. **features** — per joint position (m) and velocity (m/s, backward finite difference × fps);
2. **windows** of ``T`` frames every ``stride`` frames, dropping windows where a dancer is absent;
3. **centring** of the duet *as a whole*: one centre per window, the mean of both dancers'
   pelvises at the window's last frame (the newest frame, as on the live path), subtracted from
   every joint of both dancers — so the relative position of the two dancers survives;
4. **augmentation** (training only): a random rotation about the vertical (y) axis per window,
   applied to positions and velocities alike (distances between any two joints are preserved);
5. **scaling** by two global scalars fitted on the training data (positions and velocities),
   saved with the checkpoint;
6. **nodes**: the candidate graph's joints, dancer 0 first then dancer 1 → ``(B, T, N, 6)``.

Candidate edges (:class:`CandidateGraph`) are every (dancer-0 joint, dancer-1 joint) pair in
both directions: the ``P = J0·J1`` forward edges (dancer 0 → dancer 1) first, pair ``(a, b)`` at
index ``a·J1 + b``, then the ``P`` reverse edges (dancer 1 → dancer 0) in the same pair order.
With the full skeleton ``E = 2·J·J = 648``. The seed's random choice of 3 joints per dancer is
:meth:`CandidateGraph.sampled` (nodes = the sampled joints only, ``N = 6``, ``E = 18``).

Planted strings (``Clip.edges[i, j]`` = dancer-0 joint i drives dancer-1 joint j) label the
*forward* edge ``i → j`` positive; the reverse edge ``j → i`` is labelled negative (the follower
does not drive the leader), see :meth:`CandidateGraph.edge_labels`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from stream.clip import Clip
from stream.errors import IStringsError
from stream.skeleton import CANONICAL, J

C_FEATURES = 6
"""Node channels: position xyz (m) then velocity xyz (m/s), before scaling."""

PELVIS = CANONICAL.index("pelvis")


class DuetDataError(IStringsError, ValueError):
    """Duet data cannot be turned into windows (too short, wrong shape, no planted strings)."""


@dataclass(frozen=True)
class CandidateGraph:
    """Nodes and candidate inter-dancer edges of the duet model.

    Attributes:
        joints0: canonical joint indices of dancer 0 used as nodes (``J0`` of them).
        joints1: canonical joint indices of dancer 1 used as nodes (``J1``).

    Nodes are ``joints0`` (dancer 0) then ``joints1`` (dancer 1): ``N = J0 + J1``.
    """

    joints0: tuple[int, ...]
    joints1: tuple[int, ...]

    def __post_init__(self) -> None:
        for name, js in (("joints0", self.joints0), ("joints1", self.joints1)):
            if not js or len(set(js)) != len(js) or min(js) < 0 or max(js) >= J:
                raise DuetDataError(f"{name} must be distinct joint indices in 0..{J - 1}, got {js}")

    @classmethod
    def all_pairs(cls) -> CandidateGraph:
        """Every joint of both dancers: ``N = 2J = 36``, ``E = 2·J·J = 648``."""
        return cls(tuple(range(J)), tuple(range(J)))

    @classmethod
    def sampled(cls, per_dancer: int = 3, seed: int = 0) -> CandidateGraph:
        """The seed's variant: ``per_dancer`` random joints of each dancer (fixed by ``seed``)."""
        if not 1 <= per_dancer <= J:
            raise DuetDataError(f"per_dancer must be in 1..{J}, got {per_dancer}")
        rng = np.random.default_rng(seed)
        j0 = tuple(sorted(int(j) for j in rng.choice(J, per_dancer, replace=False)))
        j1 = tuple(sorted(int(j) for j in rng.choice(J, per_dancer, replace=False)))
        return cls(j0, j1)

    @property
    def num_nodes(self) -> int:
        return len(self.joints0) + len(self.joints1)

    @property
    def num_pairs(self) -> int:
        """``P = J0·J1`` inter-dancer pairs (each gives two directed edges)."""
        return len(self.joints0) * len(self.joints1)

    @property
    def num_edges(self) -> int:
        return 2 * self.num_pairs

    def senders_receivers(self) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Node index of every edge's sender and receiver, ``(E,)`` each (order in module doc)."""
        J0, J1 = len(self.joints0), len(self.joints1)
        a = np.repeat(np.arange(J0), J1)  # (P,) dancer-0 node of each pair
        b = J0 + np.tile(np.arange(J1), J0)  # (P,) dancer-1 node of each pair
        return np.concatenate([a, b]), np.concatenate([b, a])

    def one_hot(self) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """``rel_send``, ``rel_rec``: ``(E, N)`` one-hot sender / receiver matrices."""
        send, rec = self.senders_receivers()
        eye = np.eye(self.num_nodes, dtype=np.float32)
        return eye[send], eye[rec]

    def bone_adjacency(self) -> NDArray[np.float32]:
        """``(N, N)`` own-bone adjacency: the skeleton induced on each dancer's nodes, block diagonal.

        No inter-dancer entry: those are the candidate edges the model infers.
        """
        full = CANONICAL.adjacency()  # (J, J)
        A0 = full[np.ix_(self.joints0, self.joints0)]
        A1 = full[np.ix_(self.joints1, self.joints1)]
        N, J0 = self.num_nodes, len(self.joints0)
        A = np.zeros((N, N), dtype=np.float32)
        A[:J0, :J0] = A0
        A[J0:, J0:] = A1
        return A

    def parent_matrix(self) -> NDArray[np.float32]:
        """``(N, N)`` with a 1 at ``[i, parent(i)]`` where the node's skeleton parent is a node too.

        ``x - P @ x`` turns node positions into bone vectors (a node without its parent keeps ``x``).
        """
        P = np.zeros((self.num_nodes, self.num_nodes), dtype=np.float32)
        for offset, joints in ((0, self.joints0), (len(self.joints0), self.joints1)):
            for a, j in enumerate(joints):
                p = CANONICAL.parents[j]
                if p in joints:
                    P[offset + a, offset + joints.index(p)] = 1.0
        return P

    def edge_labels(self, planted: NDArray[np.floating], threshold: float = 0.0) -> NDArray[np.bool_]:
        """Ground truth of every candidate edge from a planted ``(J, J)`` string matrix.

        Forward edge ``dancer-0 i → dancer-1 j`` is positive where ``planted[i, j] > threshold``;
        every reverse edge (dancer 1 → dancer 0) is negative.

        Returns:
            ``(E,)`` bool.
        """
        M = np.asarray(planted)
        if M.shape != (J, J):
            raise DuetDataError(f"planted strings must be ({J}, {J}), got {M.shape}")
        forward = M[np.ix_(self.joints0, self.joints1)].reshape(-1) > threshold  # (P,) pair a·J1+b
        return np.concatenate([forward, np.zeros_like(forward)])

    def node_index(self) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """``(dancer, joint)`` of every node, ``(N,)`` each: indexes ``(..., D, J, C)`` arrays."""
        d = np.array([0] * len(self.joints0) + [1] * len(self.joints1), dtype=np.int64)
        j = np.array(self.joints0 + self.joints1, dtype=np.int64)
        return d, j


def clip_features(joints: NDArray[np.floating], fps: float) -> NDArray[np.float32]:
    """Positions and velocities of a clip.

    Args:
        joints: ``(T, D, J, 3)`` metres.
        fps: frames per second.

    Returns:
        ``(T, D, J, 6)``: position (m), velocity (m/s) as the backward difference × fps
        (frame 0 repeats frame 1's velocity).
    """
    x = np.asarray(joints, dtype=np.float32)
    if x.ndim != 4 or x.shape[-1] != 3 or x.shape[0] < 2:
        raise DuetDataError(f"joints must be (T >= 2, D, J, 3), got {x.shape}")
    v = np.empty_like(x)
    v[1:] = (x[1:] - x[:-1]) * np.float32(fps)
    v[0] = v[1]
    return np.concatenate([x, v], axis=-1)


def clip_windows(clip: Clip, window: int, stride: int) -> NDArray[np.float32]:
    """Raw windows of a clip, in metres and m/s, not centred.

    Windows where either dancer is invalid in any frame are dropped.

    Returns:
        ``(B, T, D, J, 6)`` with ``T = window``.
    """
    if window < 2 or stride < 1:
        raise DuetDataError(f"window must be >= 2 and stride >= 1, got {window}, {stride}")
    if clip.num_frames < window:
        raise DuetDataError(
            f"clip has {clip.num_frames} frames, fewer than one window of {window}; use a longer clip"
        )
    feats = clip_features(clip.joints, clip.fps)  # (T_clip, D, J, 6)
    starts = np.arange(0, clip.num_frames - window + 1, stride)  # (B,)
    ok = np.array([clip.valid[s : s + window].all() for s in starts], dtype=bool)
    starts = starts[ok]
    idx = starts[:, None] + np.arange(window)[None, :]  # (B, T)
    return feats[idx]  # (B, T, D, J, 6)


def duet_centre(windows: NDArray[np.floating] | Tensor, at: int = -1) -> NDArray[np.float32]:
    """One centre per window: the mean of both pelvises at frame ``at`` (default the last), ``(B, 3)`` m."""
    w = np.asarray(windows)
    return np.asarray(w[:, at, :, PELVIS, :3].mean(axis=1), dtype=np.float32)  # (B, D, 3) → (B, 3)


def centre_windows(windows: NDArray[np.floating], at: int = -1) -> NDArray[np.float32]:
    """Subtract one duet centre per window (:func:`duet_centre` at frame ``at``) from both
    dancers' positions (velocities unchanged). ``(B, T, D, J, 6)`` → ``(B, T, D, J, 6)``.

    Centre at the newest frame the encoder sees: a window that also holds frames to forecast
    must not be centred on one of them (that would tell a decoder where both dancers end up).
    """
    w = np.array(windows, dtype=np.float32, copy=True)
    w[..., :3] -= duet_centre(w, at)[:, None, None, None, :]  # (B, 1, 1, 1, 3)
    return w


def rotation_y(angles: NDArray[np.floating]) -> NDArray[np.float32]:
    """Rotation matrices about +y (right-handed), ``(B,)`` radians → ``(B, 3, 3)``."""
    a = np.asarray(angles, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    z, o = np.zeros_like(a), np.ones_like(a)
    R = np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)
    return R.astype(np.float32)


def rotate_windows(windows: NDArray[np.floating], angles: NDArray[np.floating]) -> NDArray[np.float32]:
    """Rotate positions and velocities of every window about the vertical axis through the origin.

    Args:
        windows: ``(B, T, D, J, 6)`` (centre first so the rotation is about the duet centre).
        angles: ``(B,)`` radians.
    """
    w = np.asarray(windows, dtype=np.float32)
    R = rotation_y(angles)  # (B, 3, 3)
    pos = np.einsum("bij,btdkj->btdki", R, w[..., :3])
    vel = np.einsum("bij,btdkj->btdki", R, w[..., 3:])
    return np.concatenate([pos, vel], axis=-1).astype(np.float32)


@dataclass(frozen=True)
class Normalizer:
    """Global scales of the training data: ``x / pos_scale``, ``v / vel_scale``.

    Attributes:
        pos_scale: metres per unit (std of the centred positions).
        vel_scale: metres per second per unit (std of the velocities).
    """

    pos_scale: float
    vel_scale: float

    @classmethod
    def fit(cls, centred: NDArray[np.floating]) -> Normalizer:
        """Fit on centred windows ``(B, T, D, J, 6)``."""
        w = np.asarray(centred)
        if w.size == 0:
            raise DuetDataError("no windows to fit the normalisation on; use longer or more clips")
        pos = float(np.sqrt(np.mean(np.square(w[..., :3]))))
        vel = float(np.sqrt(np.mean(np.square(w[..., 3:]))))
        return cls(pos_scale=max(pos, 1e-6), vel_scale=max(vel, 1e-6))

    def apply(self, centred: NDArray[np.floating]) -> NDArray[np.float32]:
        w = np.asarray(centred, dtype=np.float32)
        scale = np.array([self.pos_scale] * 3 + [self.vel_scale] * 3, dtype=np.float32)
        return w / scale

    def as_dict(self) -> dict[str, float]:
        return {"pos_scale": self.pos_scale, "vel_scale": self.vel_scale}


def to_nodes(windows: NDArray[np.floating], graph: CandidateGraph) -> NDArray[np.float32]:
    """Select the graph's nodes: ``(B, T, D, J, C)`` → ``(B, T, N, C)``, dancer 0's nodes first."""
    d, j = graph.node_index()
    return np.ascontiguousarray(np.asarray(windows, dtype=np.float32)[:, :, d, j, :])


@dataclass(frozen=True)
class DuetBatchSource:
    """Centred windows of many clips with their edge labels; makes model-ready batches.

    Attributes:
        windows: ``(B, T, D, J, 6)`` centred windows, metres and m/s.
        labels: ``(B, E)`` bool edge labels, or ``None`` when the clips carry no planted strings.
        graph: the candidate graph.
        normalizer: global scales.
    """

    windows: NDArray[np.float32]
    labels: NDArray[np.bool_] | None
    graph: CandidateGraph
    normalizer: Normalizer

    def __len__(self) -> int:
        return int(self.windows.shape[0])

    def batch(
        self, index: NDArray[np.int64] | slice, rng: np.random.Generator | None = None
    ) -> dict[str, Tensor]:
        """Model-ready batch: ``{"x": (B, T, N, 6)}`` (+ ``"labels": (B, E)`` when known).

        With ``rng`` given, every window is rotated by a random angle about y (augmentation).
        """
        w = self.windows[index]  # (B, T, D, J, 6)
        if rng is not None:
            w = rotate_windows(w, np.asarray(rng.uniform(0.0, 2.0 * np.pi, size=w.shape[0])))
        x = to_nodes(self.normalizer.apply(w), self.graph)  # (B, T, N, 6)
        out = {"x": torch.from_numpy(x)}
        if self.labels is not None:
            out["labels"] = torch.from_numpy(self.labels[index])
        return out


def build_windows(
    clips: Sequence[Clip],
    graph: CandidateGraph,
    window: int,
    stride: int,
    normalizer: Normalizer | None = None,
    centre_at: int = -1,
) -> DuetBatchSource:
    """Centred windows of every clip; fits the normaliser when none is given (training data).

    ``centre_at``: the frame of each window whose duet centre is subtracted (default the last;
    see :func:`centre_windows`). Labels come from each clip's planted strings; if any clip has
    none, labels are ``None``.
    """
    if not clips:
        raise DuetDataError("no clips given")
    parts: list[NDArray[np.float32]] = []
    labels: list[NDArray[np.bool_]] = []
    have_labels = all(c.edges is not None for c in clips)
    for clip in clips:
        w = centre_windows(clip_windows(clip, window, stride), centre_at)  # (B_clip, T, D, J, 6)
        parts.append(w)
        if have_labels and clip.edges is not None:
            labels.append(np.repeat(graph.edge_labels(clip.edges)[None], w.shape[0], axis=0))
    windows = np.concatenate(parts, axis=0)
    if windows.shape[0] == 0:
        raise DuetDataError("no complete window in the clips (every window has an absent dancer)")
    norm = normalizer or Normalizer.fit(windows)
    return DuetBatchSource(
        windows=windows,
        labels=np.concatenate(labels, axis=0) if have_labels else None,
        graph=graph,
        normalizer=norm,
    )
