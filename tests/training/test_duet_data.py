"""Duet windows: candidate edges, labels, features, whole-duet centring, rotation, scaling."""

from __future__ import annotations

import numpy as np
import pytest

from stream.clip import Clip
from stream.skeleton import CANONICAL, J
from training.duet_data import (
    PELVIS,
    CandidateGraph,
    DuetDataError,
    Normalizer,
    build_windows,
    centre_windows,
    clip_features,
    clip_windows,
    rotate_windows,
    to_nodes,
)


def _clip(T: int = 20, fps: float = 30.0, seed: int = 0, edges: np.ndarray | None = None) -> Clip:
    """Two random walkers 1.2 m apart (x), dancer 1 shifted by +1.2 m on x."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0.0, 0.3, size=(1, 2, J, 3)) + np.array([0.0, 1.0, 0.0])
    walk = np.cumsum(rng.normal(0.0, 0.01, size=(T, 2, J, 3)), axis=0)
    joints = base + walk
    joints[:, 1, :, 0] += 1.2
    return Clip(joints=joints.astype(np.float32), fps=fps, edges=edges)


def test_all_pairs_graph_sizes_and_order() -> None:
    g = CandidateGraph.all_pairs()
    send, recv = g.senders_receivers()
    assert g.num_nodes == 2 * J == 36
    assert g.num_edges == 2 * J * J == 648 == send.shape[0] == recv.shape[0]
    # Forward pair (a, b) at a·J + b: dancer-0 node a → dancer-1 node J + b; reverse right after.
    a, b = 4, 11
    e = a * J + b
    assert (send[e], recv[e]) == (a, J + b)
    assert (send[J * J + e], recv[J * J + e]) == (J + b, a)
    # Every edge joins the two dancers, no duplicates.
    assert np.all((send < J) != (recv < J))
    assert len(set(zip(send.tolist(), recv.tolist(), strict=True))) == 648
    rel_send, rel_rec = g.one_hot()
    assert rel_send.shape == rel_rec.shape == (648, 36)
    np.testing.assert_array_equal(rel_send.argmax(1), send)


def test_bone_adjacency_is_block_diagonal_own_bones() -> None:
    A = CandidateGraph.all_pairs().bone_adjacency()
    assert A.shape == (36, 36)
    np.testing.assert_array_equal(A[:J, :J], CANONICAL.adjacency())
    np.testing.assert_array_equal(A[J:, J:], CANONICAL.adjacency())
    assert A[:J, J:].sum() == 0 and A[J:, :J].sum() == 0


def test_sampled_graph_is_the_seeds_six_nodes() -> None:
    g = CandidateGraph.sampled(3, seed=5)
    assert g.num_nodes == 6 and g.num_edges == 18
    assert g == CandidateGraph.sampled(3, seed=5)  # fixed by the seed
    with pytest.raises(DuetDataError, match="per_dancer"):
        CandidateGraph.sampled(0)
    with pytest.raises(DuetDataError, match="distinct joint indices"):
        CandidateGraph((1, 1), (2,))


def test_edge_labels_forward_positive_reverse_negative() -> None:
    planted = np.zeros((J, J), np.float32)
    planted[6, 12] = 0.9  # dancer-0 l_wrist drives dancer-1 l_ankle
    g = CandidateGraph.all_pairs()
    lab = g.edge_labels(planted)
    assert lab.shape == (648,) and lab.sum() == 1
    assert lab[6 * J + 12]
    assert not lab[J * J + 6 * J + 12]
    with pytest.raises(DuetDataError, match=r"planted strings must be \(18, 18\)"):
        g.edge_labels(np.zeros((3, 3)))


def test_features_are_position_and_velocity_times_fps() -> None:
    clip = _clip(T=5, fps=50.0)
    f = clip_features(clip.joints, clip.fps)
    assert f.shape == (5, 2, J, 6)
    np.testing.assert_allclose(f[..., :3], clip.joints)
    np.testing.assert_allclose(f[3, ..., 3:], (clip.joints[3] - clip.joints[2]) * 50.0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(f[0, ..., 3:], f[1, ..., 3:])


def test_windows_count_and_invalid_frames_dropped() -> None:
    clip = _clip(T=20)
    assert clip_windows(clip, window=8, stride=4).shape == (4, 8, 2, J, 6)  # starts 0, 4, 8, 12
    valid = np.ones((20, 2), bool)
    valid[9, 1] = False  # dancer 1 absent at frame 9: windows starting 4 and 8 are dropped
    gappy = Clip(joints=clip.joints, fps=clip.fps, valid=valid)
    assert clip_windows(gappy, window=8, stride=4).shape[0] == 2
    with pytest.raises(DuetDataError, match="fewer than one window"):
        clip_windows(clip, window=21, stride=1)


def test_whole_duet_centring_keeps_relative_position() -> None:
    w = clip_windows(_clip(T=12), window=12, stride=1)
    c = centre_windows(w)
    # One centre for both: the vector between the dancers' pelvises is unchanged.
    rel_before = w[..., 1, PELVIS, :3] - w[..., 0, PELVIS, :3]
    rel_after = c[..., 1, PELVIS, :3] - c[..., 0, PELVIS, :3]
    np.testing.assert_allclose(rel_after, rel_before, atol=1e-5)
    assert np.abs(rel_after[..., 0]).mean() > 0.5  # still far apart (1.2 m ± the random bodies)
    # The mean pelvis at the last frame is the origin; velocities are untouched.
    np.testing.assert_allclose(c[:, -1, :, PELVIS, :3].mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_array_equal(c[..., 3:], w[..., 3:])


def test_rotation_about_y_preserves_distances_between_dancers() -> None:
    c = centre_windows(clip_windows(_clip(T=10), window=10, stride=1))
    r = rotate_windows(c, np.array([1.1]))
    def dists(w: np.ndarray) -> np.ndarray:
        p0, p1 = w[0, :, 0, :, :3], w[0, :, 1, :, :3]  # (T, J, 3)
        return np.linalg.norm(p0[:, :, None] - p1[:, None, :], axis=-1)  # (T, J, J)
    np.testing.assert_allclose(dists(r), dists(c), atol=1e-5)
    # Heights (y) unchanged, speeds unchanged, but the horizontal layout moved.
    np.testing.assert_allclose(r[..., 1], c[..., 1], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(r[..., 3:], axis=-1), np.linalg.norm(c[..., 3:], axis=-1),
                               rtol=1e-5, atol=1e-6)
    assert np.abs(r[..., 0] - c[..., 0]).max() > 0.1


def test_normalizer_and_nodes() -> None:
    planted = np.zeros((J, J), np.float32)
    planted[3, 5] = 1.0
    src = build_windows([_clip(T=16, edges=planted), _clip(T=16, seed=1, edges=planted)],
                        CandidateGraph.all_pairs(), window=8, stride=8)
    assert len(src) == 4 and src.labels is not None and src.labels.shape == (4, 648)
    norm = src.normalizer
    x = src.batch(slice(None))["x"].numpy()
    assert x.shape == (4, 8, 36, 6)
    np.testing.assert_allclose(np.sqrt(np.mean(x[..., :3] ** 2)), 1.0, rtol=1e-4)  # fitted scale
    np.testing.assert_allclose(x[:, :, J + 2, :3] * norm.pos_scale, src.windows[:, :, 1, 2, :3], atol=1e-5)
    g = CandidateGraph((0, 9), (4,))
    np.testing.assert_array_equal(to_nodes(src.windows, g)[:, :, 2], src.windows[:, :, 1, 4])
    with pytest.raises(DuetDataError, match="no windows"):
        Normalizer.fit(np.zeros((0, 8, 2, J, 6)))


def test_synthetic_spec_threads_coupling_and_lag() -> None:
    from training.duet_nri import load_duet_clips

    local = load_duet_clips("synthetic:2:20:5")
    world = load_duet_clips("synthetic:2:20:5:world")
    world2 = load_duet_clips("synthetic:2:20:5:world:2")
    assert [c.edge_lag for c in (local[0], world[0], world2[0])] == [6, 1, 2]
    assert world[0].provenance["coupling"] == "world" and local[0].provenance["coupling"] == "local"
    np.testing.assert_array_equal(local[1].edges, world[1].edges)  # same seed, same strings
    assert np.abs(local[1].joints[:, 1] - world[1].joints[:, 1]).max() > 1e-2  # acting differently
    rigid = load_duet_clips("synthetic:2:20:5:world:1:1")
    some = load_duet_clips("synthetic:2:20:5:world:1:0.7-0.8")
    assert rigid[0].provenance["strength"] == [1.0, 1.0] and world[0].provenance["strength"] == [0.6, 1.0]
    assert set(rigid[1].edges[rigid[1].edges > 0].tolist()) == {1.0}
    assert ((some[1].edges[some[1].edges > 0] >= 0.7) & (some[1].edges[some[1].edges > 0] <= 0.8)).all()
    for bad, match in (("synthetic:2:20:5:global", "unknown coupling"), ("synthetic:2:20:5:world:x", "bad synthetic"),
                       ("synthetic:2:20:5:world:1:1:3", "too many"), ("synthetic:2:20:5:world:-1", "lag_s"),
                       ("synthetic:2:20:5:world:1:9", "strength"), ("synthetic:2:20:5:world:1:a-b", "bad synthetic")):
        with pytest.raises(DuetDataError, match=match):
            load_duet_clips(bad)
