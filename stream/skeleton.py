"""The canonical duet skeleton and the mappings of every source layout onto it.

Every source — MediaPipe Pose (33 landmarks), SMPL/HybrIK (29 joints), the CMU BVH
hierarchy (31 joints) and the salsa BVH hierarchy (43 joints) — is mapped onto one
canonical body of ``J = 18`` joints. A mapping is a fixed linear map: each canonical
joint is a weighted mean of source joints (a midpoint where the source has no such joint),
so a whole sequence maps with one matrix product and the map is exact for points in any
frame, metric or image.

Canonical joints (index, name, parent)::

    0  pelvis      -        midpoint of the two hip joints
    1  spine       pelvis   mid torso
    2  neck        spine    midpoint of the two shoulder joints
    3  head        neck     centre of the head
    4  l_shoulder  neck     5  l_elbow  l_shoulder   6  l_wrist  l_elbow
    7  r_shoulder  neck     8  r_elbow  r_shoulder   9  r_wrist  r_elbow
    10 l_hip       pelvis   11 l_knee   l_hip        12 l_ankle  l_knee    13 l_foot  l_ankle
    14 r_hip       pelvis   15 r_knee   r_hip        16 r_ankle  r_knee    17 r_foot  r_ankle

"Left" is the dancer's own left. Frame convention: metres, right-handed, y up, the camera
looking along −z; both dancers in one frame.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
from numpy.typing import NDArray

from stream.errors import IStringsError


class SkeletonError(IStringsError, ValueError):
    """A layout or mapping is unknown or does not fit the data it is applied to."""


class Layout(IntEnum):
    """Source layout ids, as carried in the PoseFrame header (``u16``).

    The numbers are part of the wire protocol: never renumber, only append.
    """

    CANONICAL18 = 1
    MEDIAPIPE33 = 2
    SMPL29 = 3
    CMU31 = 4
    SALSA43 = 5

    @classmethod
    def parse(cls, value: str | int | Layout) -> Layout:
        """Accept a layout by enum, number or case-insensitive name.

        Raises:
            SkeletonError: the value names no known layout (the message lists them).
        """
        if isinstance(value, Layout):
            return value
        try:
            if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
                return cls(int(value))
            return cls[str(value).upper()]
        except (KeyError, ValueError) as exc:
            known = ", ".join(f"{m.name.lower()} ({m.value})" for m in cls)
            raise SkeletonError(f"unknown skeleton layout {value!r}; known layouts: {known}") from exc


@dataclass(frozen=True)
class Skeleton:
    """A body layout: joint names, parents (a tree), left/right counterparts.

    Attributes:
        name: layout name.
        joint_names: ``J`` names.
        parents: ``J`` parent indices, ``-1`` for the root.
        mirror: ``J`` indices of each joint's left/right counterpart (itself on the midline).
    """

    name: str
    joint_names: tuple[str, ...]
    parents: tuple[int, ...]
    mirror: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        J = len(self.joint_names)
        if len(self.parents) != J:
            raise SkeletonError(f"{self.name}: {J} names but {len(self.parents)} parents")
        for j, p in enumerate(self.parents):
            if p >= j:
                raise SkeletonError(f"{self.name}: parent of joint {j} must come before it (got {p})")
        if self.mirror and sorted(self.mirror) != list(range(J)):
            raise SkeletonError(f"{self.name}: mirror must be a permutation of 0..{J - 1}")

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def bones(self) -> tuple[tuple[int, int], ...]:
        """``(parent, child)`` pairs, one per non-root joint, in joint order."""
        return tuple((p, j) for j, p in enumerate(self.parents) if p >= 0)

    def index(self, name: str) -> int:
        """Index of a joint by name (raises :class:`SkeletonError` naming the valid names)."""
        try:
            return self.joint_names.index(name)
        except ValueError as exc:
            raise SkeletonError(
                f"{self.name} has no joint {name!r}; joints: {', '.join(self.joint_names)}"
            ) from exc

    def adjacency(self, self_loops: bool = False) -> NDArray[np.float32]:
        """Symmetric bone adjacency ``(J, J)``, 1 where two joints share a bone."""
        J = self.num_joints
        A = np.zeros((J, J), dtype=np.float32)
        for p, c in self.bones:
            A[p, c] = A[c, p] = 1.0
        if self_loops:
            A += np.eye(J, dtype=np.float32)
        return A

    def bone_lengths(self, points: NDArray[np.floating]) -> NDArray[np.float64]:
        """Bone lengths of ``points`` ``(..., J, 3)`` → ``(..., J-1)`` in the points' unit."""
        pts = np.asarray(points, dtype=np.float64)
        if pts.shape[-2] != self.num_joints:
            raise SkeletonError(f"{self.name}: expected {self.num_joints} joints, got shape {pts.shape}")
        idx_p = np.array([p for p, _ in self.bones])
        idx_c = np.array([c for _, c in self.bones])
        return np.asarray(np.linalg.norm(pts[..., idx_c, :] - pts[..., idx_p, :], axis=-1))


CANONICAL = Skeleton(
    name="canonical18",
    joint_names=(
        "pelvis", "spine", "neck", "head",
        "l_shoulder", "l_elbow", "l_wrist",
        "r_shoulder", "r_elbow", "r_wrist",
        "l_hip", "l_knee", "l_ankle", "l_foot",
        "r_hip", "r_knee", "r_ankle", "r_foot",
    ),
    parents=(-1, 0, 1, 2, 2, 4, 5, 2, 7, 8, 0, 10, 11, 12, 0, 14, 15, 16),
    mirror=(0, 1, 2, 3, 7, 8, 9, 4, 5, 6, 14, 15, 16, 17, 10, 11, 12, 13),
)
"""The canonical duet skeleton: ``J = 18`` joints, 17 bones."""

J = CANONICAL.num_joints

# Source joint names, in source order.
MEDIAPIPE33_NAMES: tuple[str, ...] = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
    "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel", "right_heel",
    "left_foot_index", "right_foot_index",
)
SMPL29_NAMES: tuple[str, ...] = (
    "pelvis", "l_hip", "r_hip", "spine1", "l_knee", "r_knee", "spine2", "l_ankle", "r_ankle",
    "spine3", "l_foot", "r_foot", "neck", "l_collar", "r_collar", "jaw", "l_shoulder", "r_shoulder",
    "l_elbow", "r_elbow", "l_wrist", "r_wrist", "l_thumb", "r_thumb", "head", "l_middle", "r_middle",
    "l_bigtoe", "r_bigtoe",
)

# Canonical joint -> {source joint name: weight}. Weights of one joint sum to 1.
MappingSpec = Mapping[str, Mapping[str, float]]

_MEDIAPIPE_SPEC: MappingSpec = {
    "pelvis": {"left_hip": 0.5, "right_hip": 0.5},
    "spine": {"left_hip": 0.25, "right_hip": 0.25, "left_shoulder": 0.25, "right_shoulder": 0.25},
    "neck": {"left_shoulder": 0.5, "right_shoulder": 0.5},
    "head": {"left_ear": 0.5, "right_ear": 0.5},
    "l_shoulder": {"left_shoulder": 1.0}, "l_elbow": {"left_elbow": 1.0}, "l_wrist": {"left_wrist": 1.0},
    "r_shoulder": {"right_shoulder": 1.0}, "r_elbow": {"right_elbow": 1.0},
    "r_wrist": {"right_wrist": 1.0},
    "l_hip": {"left_hip": 1.0}, "l_knee": {"left_knee": 1.0}, "l_ankle": {"left_ankle": 1.0},
    "l_foot": {"left_foot_index": 1.0},
    "r_hip": {"right_hip": 1.0}, "r_knee": {"right_knee": 1.0}, "r_ankle": {"right_ankle": 1.0},
    "r_foot": {"right_foot_index": 1.0},
}

_SMPL_SPEC: MappingSpec = {
    "pelvis": {"l_hip": 0.5, "r_hip": 0.5},
    "spine": {"spine2": 1.0},
    "neck": {"l_shoulder": 0.5, "r_shoulder": 0.5},
    "head": {"head": 1.0},
    "l_shoulder": {"l_shoulder": 1.0}, "l_elbow": {"l_elbow": 1.0}, "l_wrist": {"l_wrist": 1.0},
    "r_shoulder": {"r_shoulder": 1.0}, "r_elbow": {"r_elbow": 1.0}, "r_wrist": {"r_wrist": 1.0},
    "l_hip": {"l_hip": 1.0}, "l_knee": {"l_knee": 1.0}, "l_ankle": {"l_ankle": 1.0},
    "l_foot": {"l_bigtoe": 1.0},
    "r_hip": {"r_hip": 1.0}, "r_knee": {"r_knee": 1.0}, "r_ankle": {"r_ankle": 1.0},
    "r_foot": {"r_bigtoe": 1.0},
}

_CANONICAL_SPEC: MappingSpec = {name: {name: 1.0} for name in CANONICAL.joint_names}


@dataclass(frozen=True)
class LayoutMap:
    """A linear map from a source layout onto the canonical skeleton.

    ``canonical = W @ source`` per frame, with ``W`` of shape ``(J, L)``.

    Attributes:
        layout: the source layout.
        source_names: the ``L`` source joint names, in source order.
        weights: ``(J, L)`` float64, rows sum to 1.
    """

    layout: Layout
    source_names: tuple[str, ...]
    weights: NDArray[np.float64]

    @classmethod
    def from_spec(cls, layout: Layout, source_names: Sequence[str], spec: MappingSpec) -> LayoutMap:
        """Build the map from ``{canonical joint: {source joint: weight}}``.

        Raises:
            SkeletonError: a canonical joint is missing, a source name is unknown, or weights
                do not sum to 1.
        """
        names = tuple(source_names)
        W = np.zeros((J, len(names)), dtype=np.float64)
        for j, cname in enumerate(CANONICAL.joint_names):
            if cname not in spec:
                raise SkeletonError(f"mapping for {layout.name} lacks canonical joint {cname!r}")
            for sname, w in spec[cname].items():
                if sname not in names:
                    raise SkeletonError(f"mapping for {layout.name}: no source joint {sname!r}")
                W[j, names.index(sname)] += w
            if not np.isclose(W[j].sum(), 1.0):
                raise SkeletonError(f"mapping for {layout.name}: weights of {cname!r} sum to {W[j].sum()}")
        return cls(layout=layout, source_names=names, weights=W)

    @property
    def num_source_joints(self) -> int:
        return len(self.source_names)

    def apply(self, points: NDArray[np.floating]) -> NDArray[np.float32]:
        """Map ``(..., L, C)`` source points to ``(..., J, C)`` canonical points (float32).

        Works for any channel count ``C`` (3D metres, 2D image coordinates, ...).
        """
        pts = np.asarray(points)
        if pts.ndim < 2 or pts.shape[-2] != self.num_source_joints:
            raise SkeletonError(
                f"{self.layout.name} expects {self.num_source_joints} joints on axis -2, got shape {pts.shape}"
            )
        out = np.einsum("jl,...lc->...jc", self.weights, pts.astype(np.float64))  # (..., J, C)
        return out.astype(np.float32)

    def apply_visibility(self, visibility: NDArray[np.floating]) -> NDArray[np.float32]:
        """Canonical visibility ``(..., J)`` from source visibility ``(..., L)``.

        A canonical joint is as visible as its least visible contributing source joint.
        """
        vis = np.asarray(visibility, dtype=np.float64)
        if vis.shape[-1] != self.num_source_joints:
            raise SkeletonError(f"{self.layout.name} expects {self.num_source_joints} visibilities")
        used = self.weights > 0  # (J, L)
        big = np.where(used, vis[..., None, :], np.inf)  # (..., J, L)
        return np.asarray(big.min(axis=-1), dtype=np.float32)


_MAPS: dict[Layout, LayoutMap] = {}


def register_layout(layout_map: LayoutMap) -> None:
    """Register a source layout's map (BVH hierarchies register theirs on import)."""
    _MAPS[layout_map.layout] = layout_map


register_layout(LayoutMap.from_spec(Layout.CANONICAL18, CANONICAL.joint_names, _CANONICAL_SPEC))
register_layout(LayoutMap.from_spec(Layout.MEDIAPIPE33, MEDIAPIPE33_NAMES, _MEDIAPIPE_SPEC))
register_layout(LayoutMap.from_spec(Layout.SMPL29, SMPL29_NAMES, _SMPL_SPEC))


def layout_map(layout: Layout | str | int) -> LayoutMap:
    """The registered map of a layout.

    Raises:
        SkeletonError: the layout is unknown or has no map yet (BVH maps live in ``stream.bvh``).
    """
    lay = Layout.parse(layout)
    if lay not in _MAPS and lay in (Layout.CMU31, Layout.SALSA43):
        import stream.bvh  # noqa: F401  (registers the BVH maps)
    try:
        return _MAPS[lay]
    except KeyError as exc:
        raise SkeletonError(f"no mapping registered for layout {lay.name}") from exc


LAYOUT_SIZES: dict[Layout, int] = {
    Layout.CANONICAL18: 18,
    Layout.MEDIAPIPE33: 33,
    Layout.SMPL29: 29,
    # BVH layouts carry their joints followed by their end sites (the salsa toe tip, the CMU
    # head top exist only as end sites): CMU 31 joints + 7 end sites, salsa 43 + 14.
    Layout.CMU31: 38,
    Layout.SALSA43: 57,
}
"""Number of source points ``L`` of every layout (static: the wire protocol checks it)."""


def num_landmarks(layout: Layout | str | int) -> int:
    """Number of source joints ``L`` of a layout."""
    return LAYOUT_SIZES[Layout.parse(layout)]


def to_canonical(points: NDArray[np.floating], layout: Layout | str | int) -> NDArray[np.float32]:
    """Map ``(..., L, C)`` points of a source layout onto the canonical ``(..., J, C)``."""
    return layout_map(layout).apply(points)
