"""Converters to canonical clips: real CMU and salsa BVH pairs, hand-built SMPL-29 arrays, the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from stream.clip import Clip
from stream.convert import (
    CMU_ACKNOWLEDGEMENT,
    CMU_UNIT_M,
    SALSA_UNIT_M,
    ConvertError,
    ConvertOptions,
    convert,
    find_root_spikes,
    pelvis_distance,
    smpl29_duet_to_canonical,
)
from stream.skeleton import CANONICAL, SMPL29_NAMES
from tests.shared_paths import CMU_DATA

DATA = CMU_DATA
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared CMU data not found at {DATA}")
ISTRINGS = Path(sys.executable).with_name("istrings")

ix = CANONICAL.index
TORSO_BONES = {("pelvis", "spine"), ("spine", "neck"), ("neck", "head")}
LIMB = np.array([(CANONICAL.joint_names[p], CANONICAL.joint_names[c]) not in TORSO_BONES for p, c in CANONICAL.bones])


@pytest.fixture(scope="module")
def cmu_walk() -> Clip:
    return convert([DATA / "20_05.bvh", DATA / "21_05.bvh"])


@pytest.fixture(scope="module")
def salsa_05() -> Clip:
    return convert([DATA / "salsa" / "60_05_scaled.bvh", DATA / "salsa" / "61_05_scaled.bvh"])


def _bone_std_mm(clip: Clip) -> NDArray[np.float64]:
    """Std over time of every bone of both dancers, mm: ``(D, bones)``."""
    lengths = CANONICAL.bone_lengths(clip.joints.astype(np.float64))  # (T, D, bones)
    return np.asarray(lengths.std(axis=0) * 1000)


def _left_is_left(clip: Clip, a: str, b: str) -> NDArray[np.float64]:
    """Fraction of frames, per dancer, where joint ``a`` lies on the dancer's left of ``b``.

    The dancer's forward is the horizontal direction of the feet (ankle → foot, both feet);
    with y up and a right-handed frame their left is ``up × forward``.
    """
    X = clip.joints.astype(np.float64)  # (T, D, J, 3)
    fwd = X[:, :, ix("l_foot")] - X[:, :, ix("l_ankle")] + X[:, :, ix("r_foot")] - X[:, :, ix("r_ankle")]
    fwd[..., 1] = 0.0
    left = np.cross([0.0, 1.0, 0.0], fwd)  # (T, D, 3)
    side = np.einsum("tdc,tdc->td", X[:, :, ix(a)] - X[:, :, ix(b)], left)
    return np.asarray((side > 0).mean(axis=0))


@needs_data
def test_cmu_pair_units_frame_and_provenance(cmu_walk: Clip) -> None:
    clip = cmu_walk
    assert clip.num_frames == 231 - 1 and clip.fps == pytest.approx(120.0, rel=1e-4)  # rest frame dropped
    # README: the partners walk side by side 15.1–15.4 CMU units apart
    dist = pelvis_distance(clip.joints)
    assert 15.0 * CMU_UNIT_M < np.median(dist) < 15.5 * CMU_UNIT_M
    prov = clip.provenance
    assert prov["hierarchy"] == "cmu31" and prov["acknowledgement"] == CMU_ACKNOWLEDGEMENT
    assert prov["scale_m_per_unit"] == pytest.approx(0.0254 / 0.45)
    assert [s["name"] for s in prov["sources"]] == ["20_05.bvh", "21_05.bvh"]
    assert prov["dropped_rest_frames"] == 1 and prov["repaired_frames"] == [[], []]
    # the first kept frame is file frame 1: its root is 3.7895 17.3716 -17.6866 (units) for 20_05
    pelvis0 = clip.joints[0, 0, ix("pelvis")] / CMU_UNIT_M
    assert abs(pelvis0[0] - 3.79) < 1.0 and abs(pelvis0[2] + 17.69) < 1.0


@needs_data
@pytest.mark.parametrize("which", ["cmu_walk", "salsa_05"])
def test_bvh_bones_are_rigid_and_body_is_upright(which: str, request: pytest.FixtureRequest) -> None:
    clip: Clip = request.getfixturevalue(which)
    std = _bone_std_mm(clip)  # (D, bones)
    assert std[:, LIMB].max() < 1.0  # limbs, hips, shoulders: rigid segments of the BVH
    # torso bones follow the articulated spine/neck: measured ≤ 1.2 mm (walk), ≤ 5.6 mm (salsa 05)
    assert std[:, ~LIMB].max() < 10.0
    X = clip.joints
    assert (X[:, :, ix("head"), 1] > X[:, :, ix("pelvis"), 1] + 0.3).all()  # y up
    lowest = X[:, :, :, 1].min(axis=2)  # (T, D) lowest joint of each dancer, m
    assert ((np.median(lowest, axis=0) > 0.0) & (np.median(lowest, axis=0) < 0.10)).all()  # floor at y ≈ 0
    assert (np.median(X[:, :, ix("pelvis"), 1], axis=0) > 0.75).all()
    assert (_left_is_left(clip, "l_shoulder", "r_shoulder") > 0.9).all()
    assert (_left_is_left(clip, "l_hip", "r_hip") > 0.9).all()


@needs_data
def test_salsa_pair_defaults(salsa_05: Clip) -> None:
    clip = salsa_05
    prov = clip.provenance
    assert clip.fps == 60.0 and prov["declared_fps"] == pytest.approx(120.0, rel=1e-3)
    assert prov["fps_origin"] == "salsa43 default" and prov["scale_m_per_unit"] == SALSA_UNIT_M
    assert prov["hierarchy"] == "salsa43" and prov["acknowledgement"] == CMU_ACKNOWLEDGEMENT
    assert clip.num_frames == 1678 and prov["dropped_rest_frames"] == 0
    assert 0.55 < np.median(pelvis_distance(clip.joints)) < 0.95


@needs_data
@pytest.mark.slow
@pytest.mark.parametrize("take", ["01", "02", "03", "04"])
def test_every_salsa_take_is_a_close_couple(take: str) -> None:
    clip = convert([DATA / "salsa" / f"60_{take}_scaled.bvh", DATA / "salsa" / f"61_{take}_scaled.bvh"])
    dist = pelvis_distance(clip.joints)
    assert 0.55 < np.median(dist) < 0.95  # README (hip distance): 0.65–0.83 m
    assert dist[0] > 1.5  # the partners start 1.5–2.2 m apart
    assert _bone_std_mm(clip)[:, LIMB].max() < 1.0


@needs_data
def test_overrides_and_trimming() -> None:
    paths = [DATA / "20_05.bvh", DATA / "21_05.bvh"]
    clip = convert(paths, ConvertOptions(fps=60.0, scale=1.0, start_s=0.5, duration_s=1.0))
    assert clip.fps == 60.0 and clip.num_frames == 60
    assert clip.provenance["first_file_frame"] == 1 + 30 and clip.provenance["fps_origin"] == "--fps"
    ref = convert(paths)
    np.testing.assert_allclose(clip.joints[0], ref.joints[30] / CMU_UNIT_M, rtol=1e-5, atol=1e-4)
    with pytest.raises(ConvertError, match=r"--start-s 5 is past the end of the input \(3\.83 s at 60 fps\)"):
        convert(paths, ConvertOptions(fps=60.0, start_s=5.0))
    with pytest.raises(ConvertError, match="--fps must be a positive number"):
        ConvertOptions(fps=0.0)


@needs_data
def test_single_frame_glitch_in_23_14_is_repaired() -> None:
    clip = convert([DATA / "22_14.bvh", DATA / "23_14.bvh"])
    assert clip.provenance["repaired_frames"] == [[], [689]]
    pelvis = clip.joints[:, 1, ix("pelvis")].astype(np.float64)  # (T, 3); clip frame = file frame - 1
    jump = np.linalg.norm(pelvis[688] - (pelvis[687] + pelvis[689]) / 2)
    assert jump < 0.002
    raw = convert([DATA / "22_14.bvh", DATA / "23_14.bvh"], ConvertOptions(repair=False))
    raw_pelvis = raw.joints[:, 1, ix("pelvis")].astype(np.float64)
    assert np.linalg.norm(raw_pelvis[688] - (raw_pelvis[687] + raw_pelvis[689]) / 2) > 0.01


def test_spikes_are_found_and_steps_are_not() -> None:
    T = 50
    t = np.arange(T) / 60.0
    pos = np.stack([np.sin(t), 0.9 + 0.0 * t, 0.5 * t], axis=1)  # (T, 3) smooth root path, m
    yaw = Rotation.from_euler("y", 90 * t[:, None], degrees=True).as_matrix()  # (T, 3, 3)
    assert find_root_spikes(yaw, pos).size == 0
    spiky_pos, spiky_rot = pos.copy(), yaw.copy()
    spiky_pos[20] += [0.0, 0.0, 0.03]  # 3 cm away and back
    spiky_rot[35] = spiky_rot[35] @ Rotation.from_euler("x", 20, degrees=True).as_matrix()
    assert find_root_spikes(spiky_rot, spiky_pos).tolist() == [20, 35]
    step = pos.copy()
    step[25:] += [0.05, 0.0, 0.0]  # jumps and stays: not a glitch to interpolate
    assert find_root_spikes(yaw, step).size == 0


# --- SMPL-29 ---------------------------------------------------------------------------------

# A standing body facing +z in the target frame (y up, the camera looking along −z), left at +x.
_BODY = {
    "pelvis": (0, 0.95, 0), "l_hip": (0.1, 0.9, 0), "r_hip": (-0.1, 0.9, 0), "spine1": (0, 1.05, 0),
    "l_knee": (0.1, 0.5, 0.02), "r_knee": (-0.1, 0.5, 0.02), "spine2": (0, 1.2, 0),
    "l_ankle": (0.1, 0.1, 0), "r_ankle": (-0.1, 0.1, 0), "spine3": (0, 1.3, 0),
    "l_foot": (0.1, 0.03, 0.12), "r_foot": (-0.1, 0.03, 0.12), "neck": (0, 1.5, 0),
    "l_collar": (0.08, 1.45, 0), "r_collar": (-0.08, 1.45, 0), "jaw": (0, 1.6, 0.08),
    "l_shoulder": (0.18, 1.45, 0), "r_shoulder": (-0.18, 1.45, 0), "l_elbow": (0.45, 1.45, 0),
    "r_elbow": (-0.45, 1.45, 0), "l_wrist": (0.7, 1.45, 0), "r_wrist": (-0.7, 1.45, 0),
    "l_thumb": (0.75, 1.45, 0.03), "r_thumb": (-0.75, 1.45, 0.03), "head": (0, 1.7, 0.02),
    "l_middle": (0.8, 1.45, 0), "r_middle": (-0.8, 1.45, 0), "l_bigtoe": (0.1, 0.01, 0.18),
    "r_bigtoe": (-0.1, 0.01, 0.18),
}


def _smpl_duet(F: int = 12) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """A seed-format array ``(2F, 29, 3)`` (HybrIK camera, y down) and its target ``(F, D, 29, 3)``."""
    body = np.array([_BODY[n] for n in SMPL29_NAMES], dtype=np.float64)  # (29, 3)
    t = np.arange(F) / 30.0
    target = np.zeros((F, 2, 29, 3))
    target[:, 0] = body + np.stack([-0.5 + 0.2 * np.sin(t), 0 * t, -3.0 + 0 * t], 1)[:, None]
    target[:, 1] = body + np.stack([0.5 + 0 * t, 0 * t, -3.5 + 0.3 * t], 1)[:, None]
    hybrik = target * [1.0, -1.0, -1.0]  # y down, z forward from the camera
    return hybrik.reshape(2 * F, 29, 3), target  # rows: f0 dancer 0, f0 dancer 1, f1 dancer 0, ...


def test_smpl29_duet_maps_axes_dancers_and_joints() -> None:
    seed, target = _smpl_duet()
    joints = smpl29_duet_to_canonical(seed)  # (F, D, J, 3)
    assert joints.shape == (12, 2, CANONICAL.num_joints, 3)
    name = SMPL29_NAMES.index
    np.testing.assert_allclose(joints[:, :, ix("head")], target[:, :, name("head")], atol=1e-6)
    np.testing.assert_allclose(joints[:, :, ix("l_foot")], target[:, :, name("l_bigtoe")], atol=1e-6)
    np.testing.assert_allclose(
        joints[:, :, ix("pelvis")], (target[:, :, name("l_hip")] + target[:, :, name("r_hip")]) / 2, atol=1e-6
    )
    assert (joints[:, 0, ix("pelvis"), 0] < 0).all() and (joints[:, 1, ix("pelvis"), 0] > 0).all()
    assert (joints[:, :, ix("head"), 1] > joints[:, :, ix("pelvis"), 1]).all()  # y up
    assert (joints[:, :, ix("pelvis"), 2] < -2.5).all()  # in front of a camera looking along −z
    clip = Clip(joints=joints, fps=30.0)
    assert (_left_is_left(clip, "l_shoulder", "r_shoulder") == 1.0).all()
    assert _bone_std_mm(clip).max() < 1e-3


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros((3, 29, 3)), r"shape \(2F, 29, 3\).*got \(3, 29, 3\)"),
        (np.zeros((4, 24, 3)), r"got \(4, 24, 3\)"),
        (np.full((4, 29, 3), np.nan), r"non-finite values \(first at frame 0\)"),
    ],
)
def test_smpl29_bad_arrays(array: NDArray[np.float64], match: str) -> None:
    with pytest.raises(ConvertError, match=match):
        smpl29_duet_to_canonical(array)


def test_smpl29_npy_file_and_defaults(tmp_path: Path) -> None:
    seed, target = _smpl_duet()
    np.save(tmp_path / "duet.npy", seed.astype(np.float32))
    clip = convert([tmp_path / "duet.npy"], ConvertOptions(scale=2.0))
    assert clip.fps == 30.0 and clip.num_frames == 12
    np.testing.assert_allclose(clip.joints[:, :, ix("head")], 2 * target[:, :, SMPL29_NAMES.index("head")], atol=1e-5)
    assert clip.provenance["kind"] == "smpl29-npy" and clip.provenance["scale_m_per_unit"] == 2.0
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ConvertError, match=r"objects\.npy is not a readable \.npy array"):
        convert([tmp_path / "objects.npy"])


@needs_data
def test_input_kinds_are_checked(tmp_path: Path) -> None:
    np.save(tmp_path / "duet.npy", _smpl_duet()[0])
    with pytest.raises(ConvertError, match="cannot combine inputs of kinds bvh, smpl29-npy"):
        convert([DATA / "20_05.bvh", tmp_path / "duet.npy"])
    with pytest.raises(ConvertError, match="a BVH duet needs two files captured together"):
        convert([DATA / "20_05.bvh"])
    with pytest.raises(ConvertError, match="were not captured together"):
        convert([DATA / "20_05.bvh", DATA / "21_07.bvh"])
    with pytest.raises(ConvertError, match=r"README\.md is neither a BVH file"):
        convert([DATA / "README.md"])
    (tmp_path / "take.bin").write_bytes(b"ISREC\x00\r\n\x01\x00")
    with pytest.raises(ConvertError, match=r"take\.bin is a raw capture recording"):
        convert([tmp_path / "take.bin"])


# --- command line ----------------------------------------------------------------------------


def _istrings(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ISTRINGS), *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


@needs_data
def test_cli_converts_a_pair(tmp_path: Path) -> None:
    res = _istrings(
        "convert", DATA / "20_05.bvh", DATA / "21_05.bvh", "-o", "walk", "--start-s", "0.5", "--duration-s", "1",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("walk.npz: 120 frames at 120 fps (1.00 s), mean inter-dancer pelvis distance 0.8")
    clip = Clip.load(tmp_path / "walk.npz")
    assert clip.num_frames == 120 and clip.provenance["acknowledgement"] == CMU_ACKNOWLEDGEMENT


def test_cli_converts_a_smpl_array(tmp_path: Path) -> None:
    np.save(tmp_path / "duet.npy", _smpl_duet()[0])
    res = _istrings("convert", "duet.npy", "-o", "duet.npz", "--fps", "25", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "12 frames at 25 fps (0.48 s), mean inter-dancer pelvis distance" in res.stdout
    assert Clip.load(tmp_path / "duet.npz").fps == 25.0


def test_cli_wrong_format_is_one_error_line(tmp_path: Path) -> None:
    (tmp_path / "notes.bvh").write_text("this is not motion capture\n")
    res = _istrings("convert", "notes.bvh", "notes.bvh", "-o", "x.npz", cwd=tmp_path)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert res.stderr.count("\n") == 1
    assert res.stderr.startswith("istrings: error: notes.bvh is neither a BVH file")
    assert not (tmp_path / "x.npz").exists()


def test_cli_converts_a_raw_recording_through_the_offline_cleaning(tmp_path: Path) -> None:
    from stream.protocol import PoseFrame, encode
    from stream.recording import RecordingWriter
    from stream.skeleton import Layout

    rng = np.random.default_rng(3)
    base = rng.normal(scale=0.3, size=(2, 18, 3)) + np.array([[[-0.5, 1.0, -3.0]], [[0.5, 1.0, -3.0]]])
    with RecordingWriter(tmp_path / "take.isrec", source="tcp://127.0.0.1:5555") as w:
        for t in range(40):
            world = (base + 0.01 * t).astype(np.float32)
            order = [1, 0] if t % 2 else [0, 1]  # detection order flips every frame
            frame = PoseFrame(
                seq=t, t_capture_ns=t * 33_333_333, layout=Layout.CANONICAL18,
                scores=np.full(2, 0.9, np.float32), image=np.full((2, 18, 4), 0.5, np.float32),
                world=world[order],
            )
            w.write(encode(frame), receive_ns=t * 33_333_333 + 1_000_000)
    res = _istrings("convert", "take.isrec", "-o", "take.npz", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "40 frames at 30 fps" in res.stdout and "cleaned offline" in res.stdout
    clip = Clip.load(tmp_path / "take.npz")
    assert clip.provenance["cleaning"] == "offline (paper)"
    # identities held through the flipping order: dancer 0 stays on the left (x < 0)
    assert (clip.joints[:, 0, :, 0].mean(axis=1) < clip.joints[:, 1, :, 0].mean(axis=1)).all()


@needs_data
@pytest.mark.slow
def test_bench_convert_reports_every_shared_pair(tmp_path: Path) -> None:
    import json

    res = _istrings("bench", "convert", "--data", DATA, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    takes = json.loads(res.stdout)["takes"]
    assert len(takes) == 8
    for name, t in takes.items():
        assert t["limb_bone_std_mm_max"] < 1.0, name  # rigid BVH limbs
        if name.startswith("salsa"):
            assert 0.65 <= t["pelvis_distance_m"]["median"] <= 0.85, name
