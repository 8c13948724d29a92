"""BVH parsing and forward kinematics: hand-built files, and the real CMU and salsa files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from stream.bvh import (
    BVHError,
    canonical_positions,
    detect_layout,
    forward_kinematics,
    local_transforms,
    parse_bvh,
    read_bvh,
)
from stream.skeleton import CANONICAL, Layout, layout_map
from tests.shared_paths import CMU_DATA

DATA = CMU_DATA
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared CMU data not found at {DATA}")


def _chain(channels: str, values: str, eol: str = "\n") -> str:
    """A root at (1, 2, 3) with one joint ``A`` (offset (0, 0, 1)) and an end site (0, 0, 2)."""
    lines = [
        "HIERARCHY",
        "ROOT Root",
        "{",
        "  OFFSET 0 0 0",
        "  CHANNELS 3 Xposition Yposition Zposition",
        "  JOINT A",
        "  {",
        "    OFFSET 0 0 1",
        f"    CHANNELS {len(channels.split())} {channels}",
        "    End Site",
        "    {",
        "      OFFSET 0 0 2",
        "    }",
        "  }",
        "}",
        "MOTION",
        "Frames: 1",
        "Frame Time: 0.5",
        f"1 2 3 {values}",
    ]
    return eol.join(lines) + eol


def test_rotation_order_is_the_listed_channel_order() -> None:
    # R = Rz(90)·Rx(90) sends (0, 0, 2) to (2, 0, 0); Rx(90)·Rz(90) sends it to (0, -2, 0).
    zx = forward_kinematics(parse_bvh(_chain("Zrotation Xrotation", "90 90")))
    xz = forward_kinematics(parse_bvh(_chain("Xrotation Zrotation", "90 90")))
    assert zx.shape == (1, 3, 3)  # (T, P, 3): Root, A, A_End
    np.testing.assert_allclose(zx[0, 1], [1, 2, 4], atol=1e-12)  # A is not moved by its own rotation
    np.testing.assert_allclose(zx[0, 2], [1 + 2, 2, 4], atol=1e-12)
    np.testing.assert_allclose(xz[0, 2], [1, 2 - 2, 4], atol=1e-12)


def test_mixed_line_endings_and_names() -> None:
    text = _chain("Zrotation Yrotation Xrotation", "10 20 30", eol="\r\n").replace("MOTION\r\n", "MOTION\n")
    bvh = parse_bvh(text, source="mixed.bvh")
    assert bvh.point_names == ("Root", "A", "A_End")
    assert bvh.num_frames == 1 and bvh.num_channels == 6
    assert bvh.frame_time == 0.5 and bvh.declared_fps == 2.0
    assert bvh.joints[1].channels == ("Zrotation", "Yrotation", "Xrotation")


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda t: t.replace("CHANNELS 2 Zrotation Xrotation", "CHANNELS 2 Zrotation Wrotation"),
         r"mixed\.bvh:9: unknown channel 'Wrotation'"),
        (lambda t: t.replace("OFFSET 0 0 1", "OFFSET 0 zero 1"), r"mixed\.bvh:8: expected OFFSET y"),
        (lambda t: t.replace("1 2 3 90 90", "1 2 3 90 x"), r"mixed\.bvh:19: a channel value is not a number"),
        (lambda t: t.replace("1 2 3 90 90", "1 2 3 90"), r"mixed\.bvh:19: expected 5 channel values, found 4"),
        (lambda t: t.replace("Frames: 1", "Frames: 3"), r"file ends after 1 of 3 motion frames \(truncated"),
        (lambda t: t.replace("Frame Time: 0.5", "Frame Time: -1"), r"mixed\.bvh:18: frame time must be positive"),
        (lambda t: t.split("MOTION")[0], r"no MOTION section \(truncated file\?\)"),
        (lambda t: t.split("  }")[0], r"mixed\.bvh:\d+: file ends while expecting .*\(truncated file\?\)"),
        (lambda t: t.replace("JOINT A", "JOINT Root"), r"mixed\.bvh:6: joint 'Root' is defined twice"),
    ],
)
def test_malformed_files_name_the_line(mutate: object, match: str) -> None:
    text = mutate(_chain("Zrotation Xrotation", "90 90"))  # type: ignore[operator]
    with pytest.raises(BVHError, match=match):
        parse_bvh(text, source="mixed.bvh")


@needs_data
def test_truncated_real_file_raises_with_line(tmp_path: Path) -> None:
    raw = (DATA / "20_05.bvh").read_bytes()
    cut = tmp_path / "cut.bvh"
    cut.write_bytes(raw[: len(raw) // 2])  # in the middle of a motion line
    with pytest.raises(BVHError, match=r"cut\.bvh:300: file ends after 113 of 231 motion frames \(truncated"):
        read_bvh(cut)
    lines = raw.split(b"\n")
    cut.write_bytes(b"\n".join(lines[:-2]) + b"\n" + lines[-2][:100])  # last frame cut short
    with pytest.raises(BVHError, match=r"cut\.bvh:418: expected 96 channel values, found \d+ \(truncated file\?\)"):
        read_bvh(cut)
    cut.write_bytes(raw[:3000])  # inside the hierarchy
    with pytest.raises(BVHError, match=r"cut\.bvh:\d+: .*truncated file\?"):
        read_bvh(cut)
    with pytest.raises(BVHError, match="cannot read BVH file"):
        read_bvh(tmp_path / "missing.bvh")


def _reference_fk(bvh_path: Path, frames: list[int], order: str) -> np.ndarray:
    """Per-frame FK with scipy's intrinsic Euler rotations, independent of stream.bvh's maths."""
    bvh = read_bvh(bvh_path)
    out = np.zeros((len(frames), len(bvh.joints), 3))
    for n, f in enumerate(frames):
        Rw: list[np.ndarray] = []
        for b, jnt in enumerate(bvh.joints):
            vals = bvh.motion[f, jnt.first_channel : jnt.first_channel + len(jnt.channels)]
            pos = np.array(jnt.offset) + (vals[:3] if jnt.parent < 0 else 0.0)
            rot_order = "".join(c[0] for c in jnt.channels if c.endswith("rotation"))
            rot_vals = vals[3:] if jnt.parent < 0 else vals
            R = Rotation.from_euler(rot_order.upper(), rot_vals, degrees=True).as_matrix()
            assert rot_order == order[: len(rot_order)] or jnt.parent < 0
            if jnt.parent < 0:
                Rw.append(R)
                out[n, b] = pos
            else:
                Rw.append(Rw[jnt.parent] @ R)
                out[n, b] = out[n, jnt.parent] + Rw[jnt.parent] @ pos
    return out


@needs_data
@pytest.mark.parametrize(("name", "order"), [("20_05.bvh", "ZYX"), ("salsa/60_01_scaled.bvh", "ZXY")])
def test_vectorised_fk_matches_a_per_frame_reference(name: str, order: str) -> None:
    bvh = read_bvh(DATA / name)
    pos = forward_kinematics(bvh)  # (T, P, 3)
    frames = [0, 1, bvh.num_frames // 2, bvh.num_frames - 1]
    ref = _reference_fk(DATA / name, frames, order)  # (F, Jb, 3)
    np.testing.assert_allclose(pos[frames, : len(bvh.joints)], ref, atol=1e-9)
    # every BVH bone (joint → child joint or end site) keeps its length in every frame
    parents = [j.parent for j in bvh.joints] + [e.parent for e in bvh.end_sites]
    lengths = np.stack(
        [np.linalg.norm(pos[:, i] - pos[:, p], axis=-1) for i, p in enumerate(parents) if p >= 0], axis=1
    )  # (T, bones)
    assert lengths.std(axis=0).max() < 1e-9


@needs_data
def test_real_hierarchies_are_detected_and_mapped() -> None:
    cmu = read_bvh(DATA / "20_05.bvh")
    salsa = read_bvh(DATA / "salsa" / "61_03_scaled.bvh")
    assert detect_layout(cmu) is Layout.CMU31 and detect_layout(salsa) is Layout.SALSA43
    assert len(cmu.joints) == 31 and len(cmu.end_sites) == 7
    assert len(salsa.joints) == 43 and len(salsa.end_sites) == 14
    assert "Head_End" in cmu.point_names and "lFoot_End" in salsa.point_names
    assert cmu.joints[0].channels[:3] == ("Xposition", "Yposition", "Zposition")
    assert salsa.joints[1].channels == ("Zrotation", "Xrotation", "Yrotation")
    assert layout_map(Layout.CMU31).num_source_joints == 31 + 7
    assert layout_map(Layout.SALSA43).num_source_joints == 43 + 14

    pos = forward_kinematics(cmu)
    canon = canonical_positions(cmu, pos, Layout.CMU31)  # (T, J, 3)
    names = cmu.point_names
    np.testing.assert_allclose(
        canon[:, CANONICAL.index("head")], (pos[:, names.index("Head")] + pos[:, names.index("Head_End")]) / 2,
        atol=1e-4,
    )
    np.testing.assert_allclose(canon[:, CANONICAL.index("l_wrist")], pos[:, names.index("LeftHand")], atol=1e-4)


def test_unknown_hierarchy_is_refused() -> None:
    bvh = parse_bvh(_chain("Zrotation Xrotation", "0 0"), source="tiny.bvh")
    with pytest.raises(BVHError, match=r"tiny\.bvh: unknown BVH hierarchy \(2 joints: Root, A"):
        detect_layout(bvh)


def test_local_transforms_shapes() -> None:
    bvh = parse_bvh(_chain("Zrotation Xrotation", "90 0"))
    rot, trans = local_transforms(bvh)
    assert rot.shape == (1, 2, 3, 3) and trans.shape == (1, 2, 3)
    np.testing.assert_allclose(trans[0], [[1, 2, 3], [0, 0, 1]])
    np.testing.assert_allclose(rot[0, 1] @ [1, 0, 0], [0, 1, 0], atol=1e-12)
