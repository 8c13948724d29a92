"""Canonical skeleton and the linear layout maps."""

from __future__ import annotations

import numpy as np
import pytest

from stream.skeleton import (
    CANONICAL,
    LAYOUT_SIZES,
    MEDIAPIPE33_NAMES,
    SMPL29_NAMES,
    Layout,
    LayoutMap,
    SkeletonError,
    layout_map,
    to_canonical,
)


def test_canonical_tree_is_consistent() -> None:
    assert CANONICAL.num_joints == 18
    assert len(CANONICAL.bones) == 17
    # every non-root joint hangs from an earlier joint; mirror is an involution
    mirror = np.array(CANONICAL.mirror)
    assert np.array_equal(mirror[mirror], np.arange(18))
    for j, m in enumerate(CANONICAL.mirror):
        a, b = CANONICAL.joint_names[j], CANONICAL.joint_names[m]
        if a.startswith("l_"):
            assert b == "r_" + a[2:]
        elif not a.startswith("r_"):
            assert a == b
    A = CANONICAL.adjacency()
    assert np.array_equal(A, A.T) and A.sum() == 2 * 17


def test_mirror_maps_bones_onto_bones() -> None:
    m = CANONICAL.mirror
    bones = {frozenset(b) for b in CANONICAL.bones}
    assert {frozenset((m[p], m[c])) for p, c in CANONICAL.bones} == bones


def test_layout_sizes_match_name_tables() -> None:
    assert LAYOUT_SIZES[Layout.MEDIAPIPE33] == len(MEDIAPIPE33_NAMES) == 33
    assert LAYOUT_SIZES[Layout.SMPL29] == len(SMPL29_NAMES) == 29
    for lay in Layout:  # BVH maps register lazily from stream.bvh
        assert layout_map(lay).num_source_joints == LAYOUT_SIZES[lay]
        np.testing.assert_allclose(layout_map(lay).weights.sum(axis=1), 1.0, atol=1e-12)


def test_mediapipe_midpoints_and_picks() -> None:
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(5, 33, 3))  # (T, L, C)
    out = to_canonical(pts, Layout.MEDIAPIPE33)  # (T, J, C)
    assert out.shape == (5, 18, 3) and out.dtype == np.float32
    i = MEDIAPIPE33_NAMES.index
    np.testing.assert_allclose(out[:, 0], (pts[:, i("left_hip")] + pts[:, i("right_hip")]) / 2, atol=1e-6)
    np.testing.assert_allclose(out[:, CANONICAL.index("r_wrist")], pts[:, i("right_wrist")], atol=1e-6)
    # works for 2-channel image coordinates too
    assert to_canonical(pts[..., :2], "mediapipe33").shape == (5, 18, 2)


def test_smpl_map_and_visibility() -> None:
    lm = layout_map(Layout.SMPL29)
    vis = np.ones(29)
    vis[SMPL29_NAMES.index("l_hip")] = 0.2
    cv = lm.apply_visibility(vis)
    assert cv[CANONICAL.index("pelvis")] == pytest.approx(0.2)  # least visible contributor
    assert cv[CANONICAL.index("r_hip")] == pytest.approx(1.0)


def test_bone_lengths_are_rigid_under_rotation() -> None:
    rng = np.random.default_rng(1)
    pts = rng.normal(size=(18, 3))
    c, s = np.cos(0.7), np.sin(0.7)
    R = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    np.testing.assert_allclose(CANONICAL.bone_lengths(pts), CANONICAL.bone_lengths(pts @ R.T), atol=1e-12)


def test_errors_name_the_alternatives() -> None:
    with pytest.raises(SkeletonError, match="known layouts: canonical18"):
        Layout.parse("openpose25")
    with pytest.raises(SkeletonError, match="expects 33 joints"):
        to_canonical(np.zeros((4, 29, 3)), Layout.MEDIAPIPE33)
    with pytest.raises(SkeletonError, match="has no joint 'tail'"):
        CANONICAL.index("tail")
    with pytest.raises(SkeletonError, match="weights of 'pelvis' sum to"):
        LayoutMap.from_spec(
            Layout.CANONICAL18,
            CANONICAL.joint_names,
            {n: ({n: 0.5} if n == "pelvis" else {n: 1.0}) for n in CANONICAL.joint_names},
        )
    assert Layout.parse("3") is Layout.SMPL29 and Layout.parse("Mediapipe33") is Layout.MEDIAPIPE33
