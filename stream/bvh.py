"""BVH motion capture files: a strict parser and vectorised forward kinematics.

A BVH file is a joint hierarchy (``OFFSET``, ``CHANNELS``, ``End Site``) followed by one line of
channel values per frame. :func:`read_bvh` parses it into a :class:`BVH`;
:func:`forward_kinematics` turns every frame into world positions of every joint and end site
in one pass per joint (no loop over frames).

Conventions (as BVH defines them):

* a joint's local rotation for channels listed ``c1 c2 c3`` is ``R = R_c1 · R_c2 · R_c3``
  (intrinsic rotations in the listed order), angles in degrees;
* a joint's world transform is its parent's world transform times ``[R | offset + p]``, where
  ``p`` are the joint's own position channels (usually only the root has them);
* the positions are in the file's unit; scaling to metres is the converter's job
  (:mod:`stream.convert`).

Points: the ``P`` positions returned are the joints in file order, then the end sites in file
order; an end site is named after its joint with ``_End`` (``Head_End``).

Two hierarchies are known and map onto the canonical skeleton (:mod:`stream.skeleton`), and
their maps are registered when this module is imported:

* :data:`Layout.CMU31` — the CMU database in B. Hahne's cgspeed conversion: 31 joints
  ``Hips, LHipJoint, LeftUpLeg, …, RThumb`` + 7 end sites;
* :data:`Layout.SALSA43` — the Second-Life/DAZ-style conversion of the CMU salsa takes
  (subjects 60/61): 43 joints ``hip, abdomen, chest, neck, head, …, lFoot`` + 14 end sites.

Each map is over the joints *and* end sites (38 and 57 points, joints first), because the
canonical foot is the toe tip, which only an end site gives in the salsa hierarchy, and the
canonical head is the centre of the head (between the ``Head`` joint at the skull base and the
``Head_End`` at its top in the CMU hierarchy).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from stream.errors import IStringsError
from stream.skeleton import Layout, LayoutMap, MappingSpec, register_layout

log = logging.getLogger(__name__)

ROTATION_CHANNELS: dict[str, int] = {"Xrotation": 0, "Yrotation": 1, "Zrotation": 2}
POSITION_CHANNELS: dict[str, int] = {"Xposition": 0, "Yposition": 1, "Zposition": 2}
END_SUFFIX = "_End"


class BVHError(IStringsError, ValueError):
    """A BVH file is malformed, truncated or of an unknown hierarchy (the message has the line)."""


@dataclass(frozen=True)
class BVHJoint:
    """One ``ROOT``/``JOINT`` of the hierarchy.

    Attributes:
        name: joint name.
        parent: index of the parent joint, ``-1`` for a root.
        offset: ``(3,)`` offset from the parent, file units.
        channels: channel names in file order (e.g. ``("Zrotation", "Yrotation", "Xrotation")``).
        first_channel: column of the joint's first channel in the motion table.
    """

    name: str
    parent: int
    offset: tuple[float, float, float]
    channels: tuple[str, ...]
    first_channel: int


@dataclass(frozen=True)
class BVHEndSite:
    """An ``End Site``: a fixed point in its joint's frame (a toe tip, the top of the head)."""

    name: str
    parent: int
    offset: tuple[float, float, float]


@dataclass(frozen=True, eq=False)
class BVH:
    """A parsed BVH file.

    Attributes:
        joints: the joints in file order (parents before children).
        end_sites: the end sites in file order.
        frame_time: seconds per frame, as declared by the file.
        motion: ``(T, C)`` float64 channel values, one row per frame (degrees, file units).
        source: where it was read from (for messages).
    """

    joints: tuple[BVHJoint, ...]
    end_sites: tuple[BVHEndSite, ...]
    frame_time: float
    motion: NDArray[np.float64]
    source: str = "<string>"

    @property
    def num_frames(self) -> int:
        return int(self.motion.shape[0])

    @property
    def num_channels(self) -> int:
        return sum(len(j.channels) for j in self.joints)

    @property
    def joint_names(self) -> tuple[str, ...]:
        return tuple(j.name for j in self.joints)

    @property
    def point_names(self) -> tuple[str, ...]:
        """The ``P`` names of :func:`forward_kinematics`'s points: joints, then end sites."""
        return self.joint_names + tuple(e.name for e in self.end_sites)

    @property
    def declared_fps(self) -> float:
        return 1.0 / self.frame_time


class _Tokens:
    """Whitespace tokens of the hierarchy section, each with its 1-based line number."""

    def __init__(self, lines: list[str], source: str) -> None:
        self.items = [(tok, n + 1) for n, line in enumerate(lines) for tok in line.split()]
        self.pos = 0
        self.source = source
        self.last_line = len(lines)

    def error(self, message: str, line: int | None = None) -> BVHError:
        where = line if line is not None else self.line
        if self.pos >= len(self.items) and "truncated" not in message:
            message += " at the end of the hierarchy (truncated file?)"
        return BVHError(f"{self.source}:{where}: {message}")

    @property
    def line(self) -> int:
        return self.items[self.pos][1] if self.pos < len(self.items) else self.last_line

    def next(self, what: str) -> str:
        if self.pos >= len(self.items):
            raise self.error(f"file ends while expecting {what} (truncated file?)")
        tok = self.items[self.pos][0]
        self.pos += 1
        return tok

    def expect(self, *words: str) -> None:
        for word in words:
            line = self.line
            tok = self.next(repr(word))
            if tok != word:
                raise self.error(f"expected {word!r}, found {tok!r}", line)

    def number(self, what: str) -> float:
        line = self.line
        tok = self.next(what)
        try:
            return float(tok)
        except ValueError as exc:
            raise self.error(f"expected {what} (a number), found {tok!r}", line) from exc


def parse_bvh(text: str, source: str = "<string>") -> BVH:
    """Parse BVH text (CRLF, LF or mixed line endings).

    Raises:
        BVHError: malformed or truncated hierarchy or motion; the message names the line.
    """
    lines = text.splitlines()
    motion_at = next((n for n, line in enumerate(lines) if line.strip() == "MOTION"), None)
    toks = _Tokens(lines if motion_at is None else lines[:motion_at], source)
    toks.expect("HIERARCHY")
    joints: list[BVHJoint] = []
    end_sites: list[BVHEndSite] = []
    n_channels = 0

    def offset() -> tuple[float, float, float]:
        toks.expect("OFFSET")
        return (toks.number("OFFSET x"), toks.number("OFFSET y"), toks.number("OFFSET z"))

    def joint(parent: int) -> None:
        nonlocal n_channels
        name_line = toks.line
        name = toks.next("a joint name")
        if name in ("{", "}"):
            raise toks.error(f"expected a joint name, found {name!r}", name_line)
        if any(j.name == name for j in joints):
            raise toks.error(f"joint {name!r} is defined twice", name_line)
        toks.expect("{")
        off = offset()
        toks.expect("CHANNELS")
        count_line = toks.line
        count = toks.number("the channel count")
        if not 0 <= count <= 6 or count != int(count):
            raise toks.error(f"channel count must be 0..6, found {count:g}", count_line)
        channels = []
        for _ in range(int(count)):
            ch_line = toks.line
            ch = toks.next("a channel name")
            if ch not in ROTATION_CHANNELS and ch not in POSITION_CHANNELS:
                known = ", ".join([*POSITION_CHANNELS, *ROTATION_CHANNELS])
                raise toks.error(f"unknown channel {ch!r} of joint {name!r} (known: {known})", ch_line)
            channels.append(ch)
        if len(set(channels)) != len(channels):
            raise toks.error(f"joint {name!r} repeats a channel: {' '.join(channels)}", count_line)
        index = len(joints)
        joints.append(BVHJoint(name, parent, off, tuple(channels), n_channels))
        n_channels += len(channels)
        while True:
            kw_line = toks.line
            kw = toks.next(f"JOINT, End Site or '}}' closing joint {name!r}")
            if kw == "}":
                return
            if kw == "JOINT":
                joint(index)
            elif kw == "End":
                toks.expect("Site", "{")
                end_sites.append(BVHEndSite(name + END_SUFFIX, index, offset()))
                toks.expect("}")
            else:
                raise toks.error(f"expected JOINT, End Site or '}}' in joint {name!r}, found {kw!r}", kw_line)

    toks.expect("ROOT")
    joint(-1)
    while toks.pos < len(toks.items):
        toks.expect("ROOT")
        joint(-1)
    if motion_at is None:
        raise toks.error("no MOTION section (truncated file?)")
    frame_time, motion = _parse_motion(lines, motion_at, n_channels, source)
    return BVH(tuple(joints), tuple(end_sites), frame_time, motion, source)


def _parse_motion(
    lines: list[str], motion_at: int, n_channels: int, source: str
) -> tuple[float, NDArray[np.float64]]:
    """Parse ``Frames:``, ``Frame Time:`` and the ``(T, C)`` table after the ``MOTION`` line."""
    rows = [(n + 1, line) for n, line in enumerate(lines[motion_at + 1 :], start=motion_at + 1) if line.strip()]

    def header(i: int, key: str) -> tuple[str, int]:
        if i >= len(rows):
            raise BVHError(f"{source}:{len(lines)}: file ends before '{key}' (truncated file?)")
        line_no, line = rows[i]
        if not line.strip().startswith(key):
            raise BVHError(f"{source}:{line_no}: expected '{key} …', found {line.strip()[:40]!r}")
        return line.strip()[len(key) :].strip(), line_no

    frames_text, frames_line = header(0, "Frames:")
    time_text, time_line = header(1, "Frame Time:")
    try:
        n_frames = int(frames_text)
    except ValueError as exc:
        raise BVHError(f"{source}:{frames_line}: frame count {frames_text!r} is not an integer") from exc
    try:
        frame_time = float(time_text)
    except ValueError as exc:
        raise BVHError(f"{source}:{time_line}: frame time {time_text!r} is not a number") from exc
    if n_frames < 1:
        raise BVHError(f"{source}:{frames_line}: the file declares {n_frames} frames; it needs at least 1")
    if not (frame_time > 0 and np.isfinite(frame_time)):
        raise BVHError(f"{source}:{time_line}: frame time must be positive, got {frame_time}")

    data = rows[2:]
    if len(data) < n_frames:
        raise BVHError(
            f"{source}:{len(lines)}: file ends after {len(data)} of {n_frames} motion frames (truncated file?)"
        )
    if len(data) > n_frames:
        raise BVHError(
            f"{source}:{data[n_frames][0]}: {len(data)} motion lines but 'Frames: {n_frames}'; "
            "fix the frame count or remove the extra lines"
        )
    split = [line.split() for _, line in data]
    for (line_no, _), values in zip(data, split, strict=True):
        if len(values) != n_channels:
            raise BVHError(
                f"{source}:{line_no}: expected {n_channels} channel values, found {len(values)}"
                + (" (truncated file?)" if line_no == data[-1][0] else "")
            )
    try:
        motion = np.array(list(itertools.chain.from_iterable(split)), dtype=np.float64)
    except ValueError:
        for (line_no, _), values in zip(data, split, strict=True):
            try:
                np.array(values, dtype=np.float64)
            except ValueError as exc:
                raise BVHError(f"{source}:{line_no}: a channel value is not a number") from exc
        raise
    motion = motion.reshape(n_frames, n_channels)  # (T, C)
    if not np.isfinite(motion).all():
        line_no = data[int(np.argwhere(~np.isfinite(motion))[0, 0])][0]
        raise BVHError(f"{source}:{line_no}: channel values must be finite")
    return frame_time, motion


def read_bvh(path: str | Path) -> BVH:
    """Read and parse a BVH file.

    Raises:
        BVHError: the file is missing, not text, or not valid BVH.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BVHError(f"cannot read BVH file {path}: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    if "\x00" in text[:4096]:
        raise BVHError(f"{path} is a binary file, not BVH text")
    return parse_bvh(text, source=str(path))


# --- forward kinematics ------------------------------------------------------------------------


def axis_rotations(angles_deg: NDArray[np.floating], axis: int) -> NDArray[np.float64]:
    """Rotation matrices ``(T, 3, 3)`` about axis 0/1/2 (x/y/z) by ``(T,)`` angles in degrees."""
    a = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    c, s = np.cos(a), np.sin(a)
    R = np.zeros((*a.shape, 3, 3), dtype=np.float64)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    R[..., axis, axis] = 1.0
    R[..., i, i] = c
    R[..., j, j] = c
    R[..., i, j] = -s
    R[..., j, i] = s
    return R


def local_transforms(bvh: BVH) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Every joint's local rotation and translation in every frame.

    Returns:
        rotations ``(T, Jb, 3, 3)`` (``R = R_c1 · R_c2 · R_c3`` in channel order) and
        translations ``(T, Jb, 3)`` (offset + position channels, file units), where ``Jb`` is
        the number of BVH joints (end sites excluded).
    """
    T, Jb = bvh.num_frames, len(bvh.joints)
    rotations = np.broadcast_to(np.eye(3), (T, Jb, 3, 3)).copy()  # (T, Jb, 3, 3)
    translations = np.broadcast_to(
        np.array([j.offset for j in bvh.joints], dtype=np.float64), (T, Jb, 3)
    ).copy()  # (T, Jb, 3)
    for b, jnt in enumerate(bvh.joints):
        for k, ch in enumerate(jnt.channels):
            values = bvh.motion[:, jnt.first_channel + k]  # (T,)
            if ch in POSITION_CHANNELS:
                translations[:, b, POSITION_CHANNELS[ch]] += values
            else:
                rotations[:, b] = rotations[:, b] @ axis_rotations(values, ROTATION_CHANNELS[ch])
    return rotations, translations


def forward_kinematics(
    bvh: BVH,
    rotations: NDArray[np.float64] | None = None,
    translations: NDArray[np.float64] | None = None,
) -> NDArray[np.float64]:
    """World positions of every joint and end site in every frame.

    Args:
        bvh: the parsed file (its hierarchy, and its motion unless both overrides are given).
        rotations: optional ``(T, Jb, 3, 3)`` local rotations replacing the file's.
        translations: optional ``(T, Jb, 3)`` local translations replacing the file's.

    Returns:
        ``(T, P, 3)`` float64 positions in file units, ``P = Jb + number of end sites``, in the
        order of :attr:`BVH.point_names`.
    """
    if rotations is None or translations is None:
        file_rot, file_trans = local_transforms(bvh)
        rotations = file_rot if rotations is None else rotations
        translations = file_trans if translations is None else translations
    T, Jb = rotations.shape[0], len(bvh.joints)
    if rotations.shape != (T, Jb, 3, 3) or translations.shape != (T, Jb, 3):
        raise BVHError(
            f"{bvh.source}: expected rotations ({T}, {Jb}, 3, 3) and translations ({T}, {Jb}, 3), "
            f"got {rotations.shape} and {translations.shape}"
        )
    world_R = np.empty_like(rotations)  # (T, Jb, 3, 3)
    world_t = np.empty_like(translations)  # (T, Jb, 3)
    for b, jnt in enumerate(bvh.joints):
        if jnt.parent < 0:
            world_R[:, b] = rotations[:, b]
            world_t[:, b] = translations[:, b]
        else:
            p = jnt.parent
            world_R[:, b] = world_R[:, p] @ rotations[:, b]
            world_t[:, b] = world_t[:, p] + np.einsum("tij,tj->ti", world_R[:, p], translations[:, b])
    if not bvh.end_sites:
        return world_t
    parents = np.array([e.parent for e in bvh.end_sites])
    offsets = np.array([e.offset for e in bvh.end_sites], dtype=np.float64)  # (E, 3)
    ends = world_t[:, parents] + np.einsum("teij,ej->tei", world_R[:, parents], offsets)  # (T, E, 3)
    return np.concatenate([world_t, ends], axis=1)  # (T, P, 3)


# --- the known hierarchies and their canonical maps ---------------------------------------------

CMU31_JOINTS: tuple[str, ...] = (
    "Hips", "LHipJoint", "LeftUpLeg", "LeftLeg", "LeftFoot", "LeftToeBase", "RHipJoint", "RightUpLeg",
    "RightLeg", "RightFoot", "RightToeBase", "LowerBack", "Spine", "Spine1", "Neck", "Neck1", "Head",
    "LeftShoulder", "LeftArm", "LeftForeArm", "LeftHand", "LeftFingerBase", "LeftHandIndex1", "LThumb",
    "RightShoulder", "RightArm", "RightForeArm", "RightHand", "RightFingerBase", "RightHandIndex1", "RThumb",
)
CMU31_END_SITES: tuple[str, ...] = tuple(
    n + END_SUFFIX
    for n in ("LeftToeBase", "RightToeBase", "Head", "LeftHandIndex1", "LThumb", "RightHandIndex1", "RThumb")
)
SALSA43_JOINTS: tuple[str, ...] = (
    "hip", "abdomen", "chest", "neck", "head", "leftEye", "rightEye",
    "rCollar", "rShldr", "rForeArm", "rHand", "rThumb1", "rThumb2", "rIndex1", "rIndex2", "rMid1", "rMid2",
    "rRing1", "rRing2", "rPinky1", "rPinky2",
    "lCollar", "lShldr", "lForeArm", "lHand", "lThumb1", "lThumb2", "lIndex1", "lIndex2", "lMid1", "lMid2",
    "lRing1", "lRing2", "lPinky1", "lPinky2",
    "rButtock", "rThigh", "rShin", "rFoot", "lButtock", "lThigh", "lShin", "lFoot",
)
SALSA43_END_SITES: tuple[str, ...] = tuple(
    n + END_SUFFIX
    for n in (
        "leftEye", "rightEye", "rThumb2", "rIndex2", "rMid2", "rRing2", "rPinky2",
        "lThumb2", "lIndex2", "lMid2", "lRing2", "lPinky2", "rFoot", "lFoot",
    )
)

# Choices (measured on the CMU pairs and the salsa takes, see tests/stream/test_convert.py):
# * pelvis = midpoint of the hip joints (LeftUpLeg / lThigh), neck = midpoint of the upper-arm roots
#   (LeftArm / lShldr); the collar and hip-joint channels are zero in this data, so pelvis→hip and
#   neck→shoulder are rigid.
# * spine ≈ half-way from the pelvis to the neck: CMU ¾ Spine + ¼ Hips, salsa ½ abdomen + ½ chest.
# * head centre: CMU midway between the Head joint (skull base) and Head_End (top of the head);
#   salsa the mean of the head joint and the two eyes (≈ 5 cm up and forward of the skull base).
# * foot: CMU LeftToeBase (the ball of the foot, rigid with the ankle; the toe end site bends with the
#   toe joint by up to 37°), salsa lFoot_End (the toe tip; lFoot is the ankle and has no toe joint).
# The torso bones (pelvis-spine, spine-neck, neck-head) follow the articulated spine and neck, so
# their length varies by a few mm; every limb bone is rigid.
_CMU31_SPEC: MappingSpec = {
    "pelvis": {"LeftUpLeg": 0.5, "RightUpLeg": 0.5},
    "spine": {"Spine": 0.75, "Hips": 0.25},
    "neck": {"LeftArm": 0.5, "RightArm": 0.5},
    "head": {"Head": 0.5, "Head_End": 0.5},
    "l_shoulder": {"LeftArm": 1.0}, "l_elbow": {"LeftForeArm": 1.0}, "l_wrist": {"LeftHand": 1.0},
    "r_shoulder": {"RightArm": 1.0}, "r_elbow": {"RightForeArm": 1.0}, "r_wrist": {"RightHand": 1.0},
    "l_hip": {"LeftUpLeg": 1.0}, "l_knee": {"LeftLeg": 1.0}, "l_ankle": {"LeftFoot": 1.0},
    "l_foot": {"LeftToeBase": 1.0},
    "r_hip": {"RightUpLeg": 1.0}, "r_knee": {"RightLeg": 1.0}, "r_ankle": {"RightFoot": 1.0},
    "r_foot": {"RightToeBase": 1.0},
}
_SALSA43_SPEC: MappingSpec = {
    "pelvis": {"lThigh": 0.5, "rThigh": 0.5},
    "spine": {"abdomen": 0.5, "chest": 0.5},
    "neck": {"lShldr": 0.5, "rShldr": 0.5},
    "head": {"head": 1 / 3, "leftEye": 1 / 3, "rightEye": 1 / 3},
    "l_shoulder": {"lShldr": 1.0}, "l_elbow": {"lForeArm": 1.0}, "l_wrist": {"lHand": 1.0},
    "r_shoulder": {"rShldr": 1.0}, "r_elbow": {"rForeArm": 1.0}, "r_wrist": {"rHand": 1.0},
    "l_hip": {"lThigh": 1.0}, "l_knee": {"lShin": 1.0}, "l_ankle": {"lFoot": 1.0},
    "l_foot": {"lFoot_End": 1.0},
    "r_hip": {"rThigh": 1.0}, "r_knee": {"rShin": 1.0}, "r_ankle": {"rFoot": 1.0},
    "r_foot": {"rFoot_End": 1.0},
}

BVH_LAYOUT_MAPS: dict[Layout, LayoutMap] = {
    Layout.CMU31: LayoutMap.from_spec(Layout.CMU31, CMU31_JOINTS + CMU31_END_SITES, _CMU31_SPEC),
    Layout.SALSA43: LayoutMap.from_spec(Layout.SALSA43, SALSA43_JOINTS + SALSA43_END_SITES, _SALSA43_SPEC),
}
"""Maps of the known hierarchies: source points are the joints, then the end sites (38 and 57)."""

for _map in BVH_LAYOUT_MAPS.values():
    register_layout(_map)


def detect_layout(bvh: BVH) -> Layout:
    """Which known hierarchy a file has (by its joint and end-site names, in any order).

    Raises:
        BVHError: the hierarchy is neither the CMU 31-joint nor the salsa 43-joint one.
    """
    names = set(bvh.point_names)
    for layout, lmap in BVH_LAYOUT_MAPS.items():
        if names == set(lmap.source_names):
            return layout
    known = "; ".join(
        f"{lay.name} ({len(m.source_names)} points: {', '.join(m.source_names[:4])}, …)"
        for lay, m in BVH_LAYOUT_MAPS.items()
    )
    raise BVHError(
        f"{bvh.source}: unknown BVH hierarchy ({len(bvh.joints)} joints: "
        f"{', '.join(bvh.joint_names[:6])}, …); known hierarchies: {known}"
    )


def canonical_positions(bvh: BVH, positions: NDArray[np.floating], layout: Layout) -> NDArray[np.float32]:
    """Map :func:`forward_kinematics` points ``(T, P, 3)`` onto the canonical ``(T, J, 3)``.

    The points are reordered by name into the layout's source order first, so a file that lists
    the same joints in another order maps the same way.
    """
    lmap = BVH_LAYOUT_MAPS[layout]
    index = {name: i for i, name in enumerate(bvh.point_names)}
    try:
        order = np.array([index[name] for name in lmap.source_names])
    except KeyError as exc:
        raise BVHError(f"{bvh.source}: has no point {exc.args[0]!r} of layout {layout.name}") from exc
    return lmap.apply(np.asarray(positions)[:, order])  # (T, L, 3) -> (T, J, 3)
