"""Converters from recorded duets to canonical clips (:class:`stream.clip.Clip`).

Input kinds, recognised by content (the first bytes), not by name:

* **a BVH pair** — two BVH files of two people captured together in one world frame, one
  file per dancer (dancer 0 is the first file). Known hierarchies (:mod:`stream.bvh`) and
  their defaults:

  ============  ========================  ==================  ====================================
  hierarchy     metres per file unit      fps                 notes
  ============  ========================  ==================  ====================================
  ``cmu31``     (1/0.45)·0.0254 ≈ 0.0564  as declared (120)   frame 0 is a rest pose and is dropped
  ``salsa43``   1.2575                    60 (files say 120)  see the salsa README for both figures
  ============  ========================  ==================  ====================================

  Both files stay in their shared world frame (no per-dancer centring). BVH is y up and
  right-handed, as the canonical frame is. Single-frame root glitches (a frame whose root jumps
  away and straight back, e.g. CMU 23_14 frame 689) are repaired by interpolating every joint's
  local rotation (slerp) and translation between the two neighbouring frames.

* **a SMPL-29 duet array** — the seed's ``.npy`` of shape ``(2F, 29, 3)``: even rows dancer 0,
  odd rows dancer 1, HybrIK camera coordinates (x right, y down, z forward, metres). It is
  turned into y up, camera looking along −z by negating y and z (a rotation of 180° about x,
  so left stays left), default 30 fps.

Raw capture recordings (``.isrec``) are not read here: they become clips through the paper's
offline cleaning in ``inference.cleaning``, which ``istrings convert REC.isrec`` runs (the
command line dispatches them; this module recognises them with :func:`is_recording`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from stream.bvh import BVH, canonical_positions, detect_layout, forward_kinematics, local_transforms, read_bvh
from stream.clip import Clip
from stream.errors import IStringsError
from stream.skeleton import CANONICAL, Layout, to_canonical

log = logging.getLogger(__name__)

CMU_ACKNOWLEDGEMENT = (
    "The data used in this project was obtained from mocap.cs.cmu.edu. "
    "The database was created with funding from NSF EIA-0196217."
)
CMU_UNIT_M = 0.0254 / 0.45
"""One CMU ASF length unit in metres (1/0.45 inch ≈ 5.64 cm)."""
SALSA_UNIT_M = 1.2575
"""One unit of the rescaled salsa files in metres (from the CMU originals, see the salsa README)."""
SMPL29_DEFAULT_FPS = 30.0
NPY_MAGIC = b"\x93NUMPY"
RECORDING_MAGIC = b"ISREC\x00\r\n"  # stream.recording's file magic and suffix (not imported: no coupling)
RECORDING_SUFFIX = ".isrec"

StepCallback = Callable[[str, float], None]
"""``(description of the step now starting, fraction of the work done in [0, 1])``."""


class ConvertError(IStringsError, ValueError):
    """An input cannot be converted into a clip (the message says which input and why)."""


class InputKind(Enum):
    BVH = "bvh"
    SMPL29_NPY = "smpl29-npy"


@dataclass(frozen=True)
class HierarchyDefaults:
    """Conversion defaults of a known BVH hierarchy.

    Attributes:
        name: hierarchy name in provenance (the layout name, lower case).
        scale_m: metres per file unit.
        fps: frame rate, or ``None`` for the rate the file declares.
        rest_frames: leading rest-pose frames to drop.
        acknowledgement: text the data's licence asks for.
    """

    name: str
    scale_m: float
    fps: float | None
    rest_frames: int
    acknowledgement: str


HIERARCHY_DEFAULTS: dict[Layout, HierarchyDefaults] = {
    Layout.CMU31: HierarchyDefaults("cmu31", CMU_UNIT_M, None, 1, CMU_ACKNOWLEDGEMENT),
    Layout.SALSA43: HierarchyDefaults("salsa43", SALSA_UNIT_M, 60.0, 0, CMU_ACKNOWLEDGEMENT),
}


@dataclass(frozen=True)
class ConvertOptions:
    """Conversion options; ``None`` means the input kind's default.

    Attributes:
        fps: frame rate of the output clip (frames are not resampled; this sets their timing).
        scale: metres per input unit.
        start_s: seconds to skip at the start (after a dropped rest frame).
        duration_s: seconds to keep (``None``: to the end).
        repair: repair single-frame root glitches in BVH input.
    """

    fps: float | None = None
    scale: float | None = None
    start_s: float = 0.0
    duration_s: float | None = None
    repair: bool = True

    def __post_init__(self) -> None:
        if self.fps is not None and not (self.fps > 0 and np.isfinite(self.fps)):
            raise ConvertError(f"--fps must be a positive number, got {self.fps}")
        if self.scale is not None and not (self.scale > 0 and np.isfinite(self.scale)):
            raise ConvertError(f"--scale must be a positive number, got {self.scale}")
        if not (self.start_s >= 0 and np.isfinite(self.start_s)):
            raise ConvertError(f"--start-s must be ≥ 0, got {self.start_s}")
        if self.duration_s is not None and not (self.duration_s > 0 and np.isfinite(self.duration_s)):
            raise ConvertError(f"--duration-s must be positive, got {self.duration_s}")


def is_recording(path: Path) -> bool:
    """Whether ``path`` is a raw capture recording (by its magic, or its ``.isrec`` suffix)."""
    try:
        with path.open("rb") as f:
            head = f.read(len(RECORDING_MAGIC))
    except OSError:
        return False
    return head == RECORDING_MAGIC or path.suffix == RECORDING_SUFFIX


def detect_input_kind(path: Path) -> InputKind:
    """Recognise an input by its first bytes.

    Raises:
        ConvertError: missing file, or a format this converter does not read.
    """
    try:
        with path.open("rb") as f:
            head = f.read(64)
    except OSError as exc:
        raise ConvertError(f"cannot read input {path}: {exc.strerror or exc}") from exc
    if head.startswith(NPY_MAGIC):
        return InputKind.SMPL29_NPY
    if head.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"HIERARCHY"):
        return InputKind.BVH
    if head.startswith(RECORDING_MAGIC) or path.suffix == RECORDING_SUFFIX:
        raise ConvertError(
            f"{path} is a raw capture recording; give it alone to `istrings convert` (or `istrings clean`), "
            "which runs it through the offline cleaning"
        )
    raise ConvertError(
        f"{path} is neither a BVH file (text starting with HIERARCHY) nor a SMPL-29 duet .npy array; "
        "give two BVH files of one take, or one (2F, 29, 3) .npy"
    )


# --- BVH pairs -------------------------------------------------------------------------------


def _rotation_midpoints(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """Rotations half-way (slerp at ½) between ``(..., 3, 3)`` rotations ``a`` and ``b``."""
    shape = a.shape
    ra = Rotation.from_matrix(a.reshape(-1, 3, 3))
    rb = Rotation.from_matrix(b.reshape(-1, 3, 3))
    mid = ra * Rotation.from_rotvec((ra.inv() * rb).as_rotvec() / 2)
    return np.asarray(mid.as_matrix()).reshape(shape)


def find_root_spikes(
    root_rotations: NDArray[np.float64],
    root_positions_m: NDArray[np.float64],
    pos_tol_m: float = 0.02,
    angle_tol_deg: float = 8.0,
    dominance: float = 1.4,
) -> NDArray[np.intp]:
    """Frames whose root jumps away and straight back (single-frame glitches).

    A frame's deviation is how far its root lies from the half-way point of its two neighbours,
    in position (m) and orientation (degrees), each divided by its tolerance. A frame is a spike
    when its deviation exceeds 1 and is ``dominance`` times both neighbours' (a step, where the
    root jumps and stays, gives two equal deviations and is left alone).

    Args:
        root_rotations: ``(T, 3, 3)`` root world rotations.
        root_positions_m: ``(T, 3)`` root positions, metres.

    Returns:
        Sorted frame indices (never the first or last frame).
    """
    T = root_rotations.shape[0]
    if T < 3:
        return np.zeros(0, dtype=np.intp)
    mid_pos = (root_positions_m[:-2] + root_positions_m[2:]) / 2  # (T-2, 3)
    pos_dev = np.linalg.norm(root_positions_m[1:-1] - mid_pos, axis=-1)  # (T-2,)
    mid_rot = Rotation.from_matrix(_rotation_midpoints(root_rotations[:-2], root_rotations[2:]))
    ang_dev = np.degrees((mid_rot.inv() * Rotation.from_matrix(root_rotations[1:-1])).magnitude())
    score = np.zeros(T)
    score[1:-1] = np.maximum(pos_dev / pos_tol_m, ang_dev / angle_tol_deg)
    neighbours = np.maximum(np.r_[0.0, score[:-1]], np.r_[score[1:], 0.0])
    return np.flatnonzero((score > 1.0) & (score > dominance * neighbours))


def repair_root_spikes(
    rotations: NDArray[np.float64], translations: NDArray[np.float64], scale_m: float, passes: int = 3
) -> tuple[NDArray[np.float64], NDArray[np.float64], list[int]]:
    """Replace single-frame root glitches by the pose half-way between their neighbours.

    Args:
        rotations: ``(T, Jb, 3, 3)`` local joint rotations (joint 0 is the root).
        translations: ``(T, Jb, 3)`` local translations, file units.
        scale_m: metres per file unit (the tolerances are in metres).
        passes: detection passes (a repair can reveal a smaller glitch next to it).

    Returns:
        Repaired copies of both arrays and the sorted repaired frame indices.
    """
    rot, trans = rotations.copy(), translations.copy()
    repaired: set[int] = set()
    for _ in range(passes):
        frames = find_root_spikes(rot[:, 0], trans[:, 0] * scale_m)
        if frames.size == 0:
            break
        rot[frames] = _rotation_midpoints(rot[frames - 1], rot[frames + 1])  # (k, Jb, 3, 3)
        trans[frames] = (trans[frames - 1] + trans[frames + 1]) / 2  # (k, Jb, 3)
        repaired.update(int(f) for f in frames)
    return rot, trans, sorted(repaired)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _trim(num_frames: int, fps: float, options: ConvertOptions) -> slice:
    """Frames kept by ``--start-s``/``--duration-s`` out of ``num_frames`` at ``fps``."""
    start = round(options.start_s * fps)
    if start >= num_frames:
        raise ConvertError(
            f"--start-s {options.start_s:g} is past the end of the input ({num_frames / fps:.2f} s at {fps:g} fps)"
        )
    stop = num_frames if options.duration_s is None else min(num_frames, start + round(options.duration_s * fps))
    if stop <= start:
        raise ConvertError(f"--duration-s {options.duration_s:g} keeps no frame at {fps:g} fps")
    return slice(start, stop)


def convert_bvh_pair(
    paths: Sequence[Path], options: ConvertOptions = ConvertOptions(), on_step: StepCallback | None = None
) -> Clip:
    """Convert two BVH files of one take (dancer 0, dancer 1) into a canonical clip.

    Raises:
        ConvertError: not two files, different hierarchies, frame counts or frame times.
        stream.bvh.BVHError: a file is not valid BVH or of an unknown hierarchy.
    """
    step = on_step or (lambda _msg, _frac: None)
    if len(paths) != 2:
        raise ConvertError(
            f"a BVH duet needs two files captured together (one per dancer), got {len(paths)}: "
            "e.g. `istrings convert 20_05.bvh 21_05.bvh -o walk.npz`"
        )
    files: list[BVH] = []
    for i, path in enumerate(paths):
        step(f"reading {path.name}", 0.8 * i / 2)
        files.append(read_bvh(path))
    layouts = [detect_layout(b) for b in files]
    if layouts[0] != layouts[1]:
        raise ConvertError(
            f"{paths[0].name} is {layouts[0].name} but {paths[1].name} is {layouts[1].name}; "
            "give two files of the same take"
        )
    a, b = files
    if a.num_frames != b.num_frames or not np.isclose(a.frame_time, b.frame_time, rtol=1e-4):
        raise ConvertError(
            f"{paths[0].name} ({a.num_frames} frames of {a.frame_time:g} s) and {paths[1].name} "
            f"({b.num_frames} frames of {b.frame_time:g} s) were not captured together; give two files of one take"
        )
    layout = layouts[0]
    defaults = HIERARCHY_DEFAULTS[layout]
    scale = options.scale if options.scale is not None else defaults.scale_m
    if options.fps is not None:
        fps, fps_origin = options.fps, "--fps"
    elif defaults.fps is not None:
        fps, fps_origin = defaults.fps, f"{defaults.name} default"
    else:
        fps, fps_origin = a.declared_fps, "file"
    rest = defaults.rest_frames
    if a.num_frames <= rest:
        raise ConvertError(f"{paths[0].name} has only its rest pose ({a.num_frames} frames)")

    dancers: list[NDArray[np.float32]] = []
    repaired: list[list[int]] = []
    for i, bvh in enumerate(files):
        step(f"forward kinematics, dancer {i}", 0.8 + 0.1 * i)
        rot, trans = local_transforms(bvh)
        rot, trans = rot[rest:], trans[rest:]  # (T, Jb, 3, 3), (T, Jb, 3): rest pose dropped
        frames: list[int] = []
        if options.repair:
            rot, trans, frames = repair_root_spikes(rot, trans, scale)
            if frames:
                log.info("%s: repaired single-frame root glitches at frames %s", bvh.source,
                         [f + rest for f in frames])
        positions = forward_kinematics(bvh, rot, trans) * scale  # (T, P, 3) metres
        dancers.append(canonical_positions(bvh, positions, layout))  # (T, J, 3)
        repaired.append([f + rest for f in frames])
    joints = np.stack(dancers, axis=1)  # (T, D, J, 3)
    keep = _trim(joints.shape[0], fps, options)
    provenance: dict[str, Any] = {
        "converter": "istrings convert",
        "kind": "bvh-pair",
        "hierarchy": defaults.name,
        "sources": [
            {"dancer": i, "path": str(p), "name": p.name, "sha256": _sha256(p)} for i, p in enumerate(paths)
        ],
        "scale_m_per_unit": scale,
        "fps": fps,
        "fps_origin": fps_origin,
        "declared_fps": a.declared_fps,
        "dropped_rest_frames": rest,
        "repaired_frames": repaired,
        "first_file_frame": rest + keep.start,
        "start_s": options.start_s,
        "frames": keep.stop - keep.start,
        "acknowledgement": defaults.acknowledgement,
    }
    step("building the clip", 0.95)
    return Clip(joints=joints[keep], fps=fps, provenance=provenance)


# --- SMPL-29 duet arrays ---------------------------------------------------------------------

HYBRIK_TO_CANONICAL_AXES = np.array([1.0, -1.0, -1.0])
"""HybrIK camera (x right, y down, z forward) → y up, camera looking along −z."""


def smpl29_duet_to_canonical(array: NDArray[np.floating], scale: float = 1.0) -> NDArray[np.float32]:
    """The seed's interleaved duet ``(2F, 29, 3)`` → canonical ``(F, D=2, J, 3)``, y up.

    Raises:
        ConvertError: wrong shape, odd row count or non-finite values.
    """
    arr = np.asarray(array)
    if arr.ndim != 3 or arr.shape[1:] != (29, 3) or arr.shape[0] == 0 or arr.shape[0] % 2:
        raise ConvertError(
            f"a SMPL-29 duet array must have shape (2F, 29, 3) with rows alternating dancer 0 / dancer 1, "
            f"got {arr.shape}"
        )
    if not np.issubdtype(arr.dtype, np.floating) and not np.issubdtype(arr.dtype, np.integer):
        raise ConvertError(f"a SMPL-29 duet array must be numeric, got dtype {arr.dtype}")
    pts = arr.astype(np.float64).reshape(arr.shape[0] // 2, 2, 29, 3)  # (F, D, 29, 3): rows 2f, 2f+1
    if not np.isfinite(pts).all():
        bad = int(np.argwhere(~np.isfinite(pts).all(axis=(1, 2, 3)))[0, 0])
        raise ConvertError(f"the SMPL-29 array has non-finite values (first at frame {bad}); fill them first")
    pts = pts * HYBRIK_TO_CANONICAL_AXES * scale
    return to_canonical(pts, Layout.SMPL29)  # (F, D, J, 3)


def convert_smpl29(path: Path, options: ConvertOptions = ConvertOptions()) -> Clip:
    """Convert the seed's SMPL-29 duet ``.npy`` into a canonical clip."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConvertError(f"{path} is not a readable .npy array ({exc})") from exc
    scale = options.scale if options.scale is not None else 1.0
    fps = options.fps if options.fps is not None else SMPL29_DEFAULT_FPS
    joints = smpl29_duet_to_canonical(array, scale)
    keep = _trim(joints.shape[0], fps, options)
    provenance: dict[str, Any] = {
        "converter": "istrings convert",
        "kind": "smpl29-npy",
        "layout": Layout.SMPL29.name.lower(),
        "sources": [{"path": str(path), "name": path.name, "sha256": _sha256(path)}],
        "axes": "HybrIK camera (x right, y down, z forward) -> (x, -y, -z): y up, camera looking along -z",
        "scale_m_per_unit": scale,
        "fps": fps,
        "fps_origin": "--fps" if options.fps is not None else "smpl29 default",
        "first_file_frame": keep.start,
        "start_s": options.start_s,
        "frames": keep.stop - keep.start,
    }
    return Clip(joints=joints[keep], fps=fps, provenance=provenance)


# --- entry point -----------------------------------------------------------------------------


def convert(
    paths: Sequence[Path], options: ConvertOptions = ConvertOptions(), on_step: StepCallback | None = None
) -> Clip:
    """Convert the inputs (two BVH files, or one SMPL-29 ``.npy``) into a canonical clip.

    Raises:
        ConvertError: unknown formats, or a combination of inputs that is not one duet.
    """
    if not paths:
        raise ConvertError("no input given: give two BVH files of one take, or one SMPL-29 duet .npy")
    kinds = [detect_input_kind(Path(p)) for p in paths]
    if all(k is InputKind.BVH for k in kinds):
        return convert_bvh_pair([Path(p) for p in paths], options, on_step)
    if kinds == [InputKind.SMPL29_NPY]:
        return convert_smpl29(Path(paths[0]), options)
    raise ConvertError(
        f"cannot combine inputs of kinds {', '.join(k.value for k in kinds)}: "
        "give two BVH files of one take, or one SMPL-29 duet .npy"
    )


def pelvis_distance(joints: NDArray[np.floating]) -> NDArray[np.float64]:
    """Distance between the two dancers' pelvises ``(T,)`` (metres) from ``(T, D, J, 3)`` joints."""
    pelvis = CANONICAL.index("pelvis")
    pts = np.asarray(joints, dtype=np.float64)
    return np.asarray(np.linalg.norm(pts[:, 0, pelvis] - pts[:, 1, pelvis], axis=-1))
