"""Synthetic duets with planted strings: rigid bodies, reproducible, ground truth that shows in the motion."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from stream.clip import Clip
from stream.skeleton import CANONICAL, J
from stream.synthetic import (
    STRING_JOINTS,
    SyntheticConfig,
    SyntheticError,
    SyntheticStream,
    generate_clip,
    make_dataset,
)
from training.reports.echo import PARENT as ECHO_PARENT
from training.reports.echo import bend_cosines, facing_frame_directions

PARENT = ECHO_PARENT  # the root is its own parent (zero bone)
ENV = {**os.environ, "COLUMNS": "120", "NO_COLOR": "1"}
BONE_TOL_M = 1e-5


# ----------------------------------------------------------------------------- plain scores


def _standardise(a: NDArray[np.float64]) -> NDArray[np.float64]:
    sd = a.std(axis=0)
    return (a - a.mean(axis=0)) / np.where(sd > 1e-9, sd, np.inf)


def lagged_correlation_scores(feature: NDArray[np.float64], max_lag: int) -> NDArray[np.float64]:
    """``score[i, j]`` = max over lags 0..max_lag of the mean over channels of |corr(dancer-0 i at t - lag,
    dancer-1 j at t)|; feature ``(T, D, J, C)`` → ``(J, J)``."""
    T = feature.shape[0]
    best = np.zeros((feature.shape[2],) * 2)
    for lag in range(max_lag + 1):
        a = _standardise(feature[: T - lag, 0])  # (T', J, C)
        b = _standardise(feature[lag:, 1])
        best = np.maximum(best, np.abs(np.einsum("tic,tjc->ijc", a, b) / a.shape[0]).mean(axis=-1))
    return best


def string_scores(joints: NDArray[np.floating], max_lag: int = 10) -> NDArray[np.float64]:
    """Plain lagged-correlation score of every (dancer-0 i, dancer-1 j) pair: the larger of the scores
    on bend cosines and on facing-frame bone directions, ``(T, D, J, 3)`` → ``(J, J)``."""
    bend = lagged_correlation_scores(bend_cosines(joints)[..., None], max_lag)
    direction = lagged_correlation_scores(facing_frame_directions(joints), max_lag)
    return np.maximum(bend, direction)


def auroc(score: NDArray[np.float64], truth: NDArray[np.floating]) -> float:
    """Area under the ROC curve of ``score`` against ``truth > 0`` (ties count one half)."""
    pos, neg = score[truth > 0], score[truth == 0]
    return float((pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean())


def corr(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    return float(np.corrcoef(a, b)[0, 1])


# ----------------------------------------------------------------------------- bodies and motion


def test_bones_are_rigid_and_bodies_differ() -> None:
    clip = generate_clip(SyntheticConfig(duration_s=20, seed=1))
    lengths = CANONICAL.bone_lengths(clip.joints)  # (T, D, J-1) metres
    assert np.ptp(lengths, axis=0).max() < BONE_TOL_M
    assert np.abs(lengths[0, 0] - lengths[0, 1]).max() > 0.01  # two different bodies
    legs = lengths[0, :, [10, 11]].sum(axis=0)  # bones of joints 11, 12: thigh + shin of the left leg
    assert ((legs > 0.7) & (legs < 1.0)).all(), legs
    # The dancers move: every articulated joint travels relative to the pelvis.
    rel = clip.joints - clip.joints[:, :, :1]
    assert rel.std(axis=0)[:, [3, 6, 9, 12, 16]].min() > 0.01


def test_duet_stands_on_the_floor_and_keeps_its_distance() -> None:
    clip = generate_clip(SyntheticConfig(duration_s=20, seed=2))
    feet = clip.joints[:, :, [12, 13, 16, 17], 1]  # (T, D, 4) heights of ankles and toes, metres
    assert feet.min() > -1e-4
    assert feet.min(axis=-1).max() < 0.1  # some foot is always on (or near) the floor
    gap = np.linalg.norm(clip.joints[:, 0, 0, [0, 2]] - clip.joints[:, 1, 0, [0, 2]], axis=-1)
    assert gap.min() >= 0.6 and gap.max() <= 1.5
    assert clip.joints[:, :, 3, 1].min() > 1.0  # heads stay up


def test_same_seed_same_duet_other_seed_other_duet() -> None:
    a = generate_clip(SyntheticConfig(duration_s=5, seed=7))
    b = generate_clip(SyntheticConfig(duration_s=5, seed=7))
    c = generate_clip(SyntheticConfig(duration_s=5, seed=8))
    np.testing.assert_array_equal(a.joints, b.joints)
    assert a.edges is not None and b.edges is not None and c.edges is not None
    np.testing.assert_array_equal(a.edges, b.edges)
    assert np.abs(a.joints - c.joints).max() > 0.1
    assert a.data_id == b.data_id != c.data_id


# ----------------------------------------------------------------------------- planted strings


def test_edges_match_the_config() -> None:
    strings = ((6, 9), (3, 12), (16, 3))
    clip = generate_clip(SyntheticConfig(duration_s=2, fps=50, strings=strings, strength=0.7, lag_s=0.1))
    expected = np.zeros((J, J), np.float32)
    for i, j in strings:
        expected[i, j] = 0.7
    assert clip.edges is not None
    np.testing.assert_array_equal(clip.edges, expected)
    assert clip.edge_lag == 5 and clip.fps == 50 and clip.num_frames == 100
    assert clip.provenance["strings"] == [[3, 12], [6, 9], [16, 3]]
    for seed in range(5):
        rnd = generate_clip(SyntheticConfig(duration_s=1, num_strings=5, seed=seed))
        assert rnd.edges is not None
        src, dst = np.nonzero(rnd.edges)
        assert len(dst) == 5 and len(set(dst.tolist())) == 5  # each driven joint has one driver
        assert set(src.tolist()) | set(dst.tolist()) <= set(STRING_JOINTS)
        assert np.allclose(rnd.edges[src, dst], 0.9)
    none = generate_clip(SyntheticConfig(duration_s=1, num_strings=0))
    assert none.edges is not None and not none.edges.any()


def test_driven_joint_bends_like_its_driver_a_lag_later() -> None:
    strings = ((6, 9), (3, 3), (12, 16), (5, 8))  # wrist→wrist, head→head, ankle→ankle, elbow→elbow
    cfg = SyntheticConfig(duration_s=30, seed=2, strings=strings, strength=0.9)
    clip = generate_clip(cfg)
    free = generate_clip(SyntheticConfig(duration_s=30, seed=2, strings=()))  # the same duet, no strings
    L = clip.edge_lag
    assert L == 6
    B, B_free = bend_cosines(clip.joints), bend_cosines(free.joints)  # (T, D, J)
    for i, j in strings:
        at_lag = corr(B[:-L, 0, i], B[L:, 1, j])
        assert at_lag > 0.95, (i, j, at_lag)
        assert corr(B[:, 0, i], B[:, 1, j]) < at_lag - 0.1, (i, j)  # the delay is real
        assert abs(corr(B_free[:-L, 0, i], B_free[L:, 1, j])) < 0.5, (i, j)  # without the string: nothing
    for j in (6, 12, 13, 17):  # undriven joints of dancer 1 ignore the drivers
        for i, _ in strings:
            assert abs(corr(B[:-L, 0, i], B[L:, 1, j])) < 0.5, (i, j)
    # Dancer 0 does not depend on the strings at all.
    np.testing.assert_array_equal(clip.joints[:, 0], free.joints[:, 0])


def test_lagged_correlation_finds_the_planted_strings() -> None:
    """A plain score (lagged |corr| of bone directions, all pairs) ranks the planted strings first."""
    values, among_candidates = [], []
    cand = np.ix_(STRING_JOINTS, STRING_JOINTS)  # only pairs that could carry a string
    for seed in range(3):
        clip = generate_clip(SyntheticConfig(duration_s=30, seed=seed))
        truth = clip.edges if clip.edges is not None else np.zeros((J, J))
        score = string_scores(clip.joints)
        values.append(auroc(score, truth))
        among_candidates.append(auroc(score[cand], truth[cand]))
    print(f"lagged-correlation AUROC on 30 s clips, seeds 0-2: all pairs {values}, candidates {among_candidates}")
    assert min(values) >= 0.9 and min(among_candidates) >= 0.9, (values, among_candidates)
    # and the score is no artefact of the metric: against a wrong matrix it is near chance
    wrong = np.roll(truth, 5, axis=1)
    assert auroc(score, wrong) < 0.8


def test_clip_round_trips_with_its_ground_truth(tmp_path: Path) -> None:
    clip = generate_clip(SyntheticConfig(duration_s=3, seed=4, num_strings=3))
    back = Clip.load(clip.save(tmp_path / "duet"))
    np.testing.assert_array_equal(back.joints, clip.joints)
    assert back.edges is not None and clip.edges is not None
    np.testing.assert_array_equal(back.edges, clip.edges)
    assert back.edge_lag == clip.edge_lag == 6 and back.fps == 30.0
    assert back.provenance == clip.provenance and back.provenance["source"] == "stream.synthetic"


# ----------------------------------------------------------------------------- training sets and the live stream


def test_make_dataset_gives_independent_rigid_duets() -> None:
    ds = make_dataset(40, 25, num_strings=(1, 3), strength=(0.5, 1.0), seed=3, chunk_frames=300)
    assert ds.joints.shape == (40, 25, 2, J, 3) and ds.joints.dtype == np.float32
    assert ds.edges.shape == (40, J, J) and ds.lag == 6 and ds.fps == 30.0
    counts = (ds.edges > 0).sum(axis=(1, 2))
    assert counts.min() >= 1 and counts.max() <= 3 and len(set(counts.tolist())) > 1
    assert ds.edges.max() <= 1.0 and ds.edges[ds.edges > 0].min() >= 0.5
    assert np.ptp(CANONICAL.bone_lengths(ds.joints), axis=1).max() < BONE_TOL_M
    assert np.abs(ds.joints[0] - ds.joints[1]).max() > 0.1
    again = make_dataset(40, 25, num_strings=(1, 3), strength=(0.5, 1.0), seed=3)  # chunking does not matter
    np.testing.assert_allclose(again.joints, ds.joints, atol=1e-6)
    np.testing.assert_array_equal(again.edges, ds.edges)
    with pytest.raises(SyntheticError, match="num_strings"):
        make_dataset(2, 10, num_strings=(3, 1))


def test_stream_continues_the_clip_without_a_seam() -> None:
    cfg = SyntheticConfig(duration_s=4, seed=9, fps=25)
    stream = SyntheticStream(cfg, block=7)
    frames = np.stack(list(itertools.islice(stream, 250)))  # (250, D, J, 3): 10 s, past the 4 s "duration"
    assert stream.frame_index == 250 and stream.lag == 5 and stream.fps == 25
    longer = generate_clip(SyntheticConfig(duration_s=10, seed=9, fps=25))
    np.testing.assert_allclose(frames, longer.joints, atol=1e-6)
    assert longer.edges is not None
    np.testing.assert_array_equal(stream.edges, longer.edges)
    step = np.linalg.norm(np.diff(frames, axis=0), axis=-1).max(axis=(1, 2))  # (249,) largest joint step, m
    assert step.max() < 0.2  # < 5 m/s at 25 fps: no jumps at block boundaries


# ----------------------------------------------------------------------------- world coupling


def unit_bones(joints: NDArray[np.floating]) -> NDArray[np.float64]:
    """Unit world directions of every bone ``parent(j) → j``: ``(T, D, J, 3)`` → same (root: 0)."""
    X = np.asarray(joints, dtype=np.float64)
    bone = X - X[:, :, PARENT]
    n = np.linalg.norm(bone, axis=-1, keepdims=True)
    return bone / np.where(n > 0, n, 1.0)


WORLD_STRINGS = ((5, 11), (9, 6), (13, 8), (16, 3))  # l_elbow→l_knee, r_wrist→l_wrist, l_foot→r_elbow, r_ankle→head


@pytest.mark.parametrize("lag_frames", [1, 2])
def test_world_strings_copy_the_drivers_bone_direction_a_lag_later(lag_frames: int) -> None:
    cfg = SyntheticConfig(duration_s=3.0, strings=WORLD_STRINGS, strength=1.0, lag_s=lag_frames / 30.0,
                          coupling="world", seed=5)
    X = generate_clip(cfg).joints  # (T, D, J, 3)
    d = unit_bones(X)
    L = lag_frames
    for i, j in WORLD_STRINGS:
        err = np.abs(d[L:, 1, j] - d[:-L, 0, i]).max()
        assert err < 1e-5, f"{i}->{j}: driven bone off the driver's lagged direction by {err}"
        # Not the same as a plain copy without the lag (the motion is not static).
        assert np.abs(d[:, 1, j] - d[:, 0, i]).max() > 1e-3
    # Bone lengths stay exact, including the subtree under a driven joint (r_elbow's wrist).
    lengths = np.linalg.norm(X - X[:, :, PARENT], axis=-1)  # (T, D, J)
    assert np.abs(lengths - lengths[:1]).max() < BONE_TOL_M


def test_world_strength_blends_and_leaves_dancer_zero_and_undriven_joints_alone() -> None:
    base = {"duration_s": 2.0, "strings": ((6, 9),), "lag_s": 1 / 30.0, "seed": 8}
    full = generate_clip(SyntheticConfig(**base, strength=1.0, coupling="world")).joints  # type: ignore[arg-type]
    half = generate_clip(SyntheticConfig(**base, strength=0.5, coupling="world")).joints  # type: ignore[arg-type]
    local = generate_clip(SyntheticConfig(**base, strength=0.5)).joints  # type: ignore[arg-type]
    np.testing.assert_allclose(half[:, 0], local[:, 0], atol=1e-6)  # the driver is the same dancer
    d_full, d_half = unit_bones(full), unit_bones(half)
    # A half-strength bone lies between its own direction and the driver's: closer to the driver than
    # an undriven body would be, yet not on it.
    gap_full = np.abs(d_full[1:, 1, 9] - d_full[:-1, 0, 6]).max()
    gap_half = np.linalg.norm(d_half[1:, 1, 9] - d_half[:-1, 0, 6], axis=-1)
    assert gap_full < 1e-5 and gap_half.max() > 1e-2
    # Joints off the driven chain (the left arm of dancer 1) move as without world strings.
    np.testing.assert_allclose(d_half[:, 1, [5, 6]], unit_bones(local)[:, 1, [5, 6]], atol=1e-5)
    # The subtree under a driven bone turns with it: the wrist's bend stays what the angles say.
    lengths = np.linalg.norm(half - half[:, :, PARENT], axis=-1)
    assert np.abs(lengths - lengths[:1]).max() < BONE_TOL_M


def test_make_dataset_world_mode_is_rigid_and_carries_its_strings() -> None:
    ds = make_dataset(4, 40, seed=2, lag_s=1 / 30.0, strength=(1.0, 1.0), coupling="world")
    assert ds.lag == 1 and ds.joints.shape == (4, 40, 2, J, 3)
    for s in range(4):
        d = unit_bones(ds.joints[s])
        lengths = np.linalg.norm(ds.joints[s] - ds.joints[s][:, :, PARENT], axis=-1)
        assert np.abs(lengths - lengths[:1]).max() < BONE_TOL_M
        for i, j in zip(*np.nonzero(ds.edges[s]), strict=True):
            assert np.abs(d[1:, 1, j] - d[:-1, 0, i]).max() < 1e-5
    # Same seed, local coupling: same strings and same driver motion, other driven motion.
    loc = make_dataset(4, 40, seed=2, lag_s=1 / 30.0, strength=(1.0, 1.0))
    np.testing.assert_array_equal(loc.edges, ds.edges)
    np.testing.assert_allclose(loc.joints[:, :, 0], ds.joints[:, :, 0], atol=1e-6)
    assert np.abs(loc.joints[:, :, 1] - ds.joints[:, :, 1]).max() > 1e-2


# ----------------------------------------------------------------------------- config and command line


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fps": 0}, "fps must be positive"),
        ({"strength": 1.5}, "strength"),
        ({"num_strings": 12}, "num_strings"),
        ({"strings": ((0, 9),)}, "must join two of these joints"),
        ({"strings": ((6, 9), (3, 9))}, "driven twice"),
        ({"lag_s": -0.1}, "lag_s"),
        ({"duration_s": 0}, "no frame"),
        ({"coupling": "global"}, "coupling must be one of local, world"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(SyntheticError, match=match):
        SyntheticConfig(**kwargs)  # type: ignore[arg-type]


def _istrings(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream.cli", *args], capture_output=True, text=True, env=ENV, timeout=120
    )


def test_simulate_duet_writes_a_clip(tmp_path: Path) -> None:
    out = tmp_path / "duet.npz"
    r = _istrings("simulate", "duet", "-o", str(out), "--duration-s", "4", "--fps", "20", "--strings", "2",
                  "--lag-s", "0.25", "--seed", "5")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("\n") == 1 and "80 frames at 20 fps" in r.stdout and "lag 5 frames" in r.stdout
    clip = Clip.load(out)
    assert clip.num_frames == 80 and clip.edge_lag == 5 and clip.edges is not None
    assert (clip.edges > 0).sum() == 2
    ref = generate_clip(SyntheticConfig(duration_s=4, fps=20, num_strings=2, lag_s=0.25, seed=5))
    np.testing.assert_array_equal(clip.joints, ref.joints)
    r = _istrings("simulate", "duet", "-o", str(out), "--string", "l_wrist:r_wrist", "--string", "12:16",
                  "--duration-s", "1", "--overwrite")
    assert r.returncode == 0, r.stderr and "l_wrist->r_wrist, l_ankle->r_ankle" in r.stdout
    edges = Clip.load(out).edges
    assert edges is not None and edges[6, 9] > 0 and edges[12, 16] > 0 and (edges > 0).sum() == 2


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("--fps", "0"), "fps must be positive"),
        (("--strings", "40"), "num_strings"),
        (("--lag-s", "-1"), "lag_s"),
        (("--strength", "0"), "strength"),
        (("--string", "l_wrist-r_wrist"), "DRIVER:DRIVEN"),
        (("--string", "l_wrist:nose"), "no joint 'nose'"),
    ],
)
def test_simulate_duet_rejects_bad_arguments_in_one_line(tmp_path: Path, args: tuple[str, ...], match: str) -> None:
    out = tmp_path / "x.npz"
    r = _istrings("simulate", "duet", "-o", str(out), *args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("istrings: error:") and match in lines[0], r.stderr
    assert not out.exists()


def test_simulate_duet_keeps_an_existing_file(tmp_path: Path) -> None:
    out = tmp_path / "keep.npz"
    out.write_bytes(b"precious")
    r = _istrings("simulate", "duet", "-o", str(out), "--duration-s", "1")
    assert r.returncode == 2 and "--overwrite" in r.stderr
    assert out.read_bytes() == b"precious"
