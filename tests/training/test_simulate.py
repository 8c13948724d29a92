"""Particle simulations: shapes, labels, walls, energy, file round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.simulate import (
    BOX_SIZE,
    SimulationError,
    charge_forces,
    load_particles,
    save_particles,
    simulate,
    spring_energy,
    spring_forces,
)


def test_nri_protocol_gives_49_frames() -> None:
    data = simulate("springs", 3, 4, seed=0, length=5000, sample_freq=100)
    assert data.loc.shape == (3, 49, 2, 4)
    assert data.vel.shape == (3, 49, 2, 4)
    assert data.edges.shape == (3, 4, 4)
    assert data.loc.dtype == np.float32 and data.edges.dtype == np.int64


@pytest.mark.parametrize("kind", ["springs", "charged"])
def test_labels_symmetric_binary_zero_diagonal(kind: str) -> None:
    data = simulate(kind, 50, 5, seed=1, length=300, sample_freq=100)  # type: ignore[arg-type]
    e = data.edges
    assert np.array_equal(e, e.transpose(0, 2, 1))
    assert set(np.unique(e)) <= {0, 1}
    assert (e[:, np.arange(5), np.arange(5)] == 0).all()
    # p = 0.5 per pair (springs) or per charge: the positive rate over 50 x 10 pairs is near 0.5.
    off = e[:, ~np.eye(5, dtype=bool)]
    assert 0.35 < off.mean() < 0.65


def test_charged_labels_are_a_two_class_partition() -> None:
    # "Same sign" is an equivalence relation with at most two classes: for any i, j, k,
    # same(i, j) and same(j, k) imply same(i, k), and different(i, j) and different(j, k) imply same(i, k).
    e = simulate("charged", 40, 5, seed=2, length=200, sample_freq=100).edges.astype(bool)
    s = e | np.eye(5, dtype=bool)[None]
    for i in range(5):
        for j in range(5):
            for k in range(5):
                assert (s[:, i, k] == (s[:, i, j] == s[:, j, k])).all()


def test_positions_stay_in_box_and_reflect() -> None:
    data = simulate("charged", 20, 5, seed=3, length=5000, sample_freq=100)
    assert np.abs(data.loc).max() <= BOX_SIZE + 1e-5
    # Charged particles start with loc_std 1 and repel: some reach the walls within 5,000 steps.
    assert np.abs(data.loc).max() > 3.0


def test_spring_energy_roughly_conserved_without_walls() -> None:
    data = simulate("springs", 30, 5, seed=4, length=2000, sample_freq=100)
    away = np.abs(data.loc).max(axis=(1, 2, 3)) < BOX_SIZE - 0.5  # runs that never touch a wall
    assert away.sum() >= 10
    loc, vel, springs = (data.loc[away].astype(np.float64), data.vel[away].astype(np.float64),
                         data.edges[away].astype(np.float64))
    e0 = spring_energy(loc[:, 0], vel[:, 0], springs)
    e1 = spring_energy(loc[:, -1], vel[:, -1], springs)
    rel = np.abs(e1 - e0) / e0
    assert rel.max() < 0.01, rel.max()


def test_forces_match_hand_computation() -> None:
    loc = np.array([[[0.0, 1.0], [0.0, 0.0]]])  # (S=1, 2, N=2): balls at (0, 0) and (1, 0)
    springs = np.array([[[0.0, 1.0], [1.0, 0.0]]])
    f = spring_forces(loc, springs, k=0.1)
    np.testing.assert_allclose(f[0], [[0.1, -0.1], [0.0, 0.0]], atol=1e-12)  # pulled together
    f = charge_forces(loc, np.array([[1.0, 1.0]]))
    np.testing.assert_allclose(f[0], [[-1.0, 1.0], [0.0, 0.0]], atol=1e-12)  # like charges repel, 1/r^2
    f = charge_forces(np.array([[[0.0, 1e-3], [0.0, 0.0]]]), np.array([[1.0, -1.0]]))
    np.testing.assert_allclose(np.abs(f[0, 0]), [100.0, 100.0])  # clipped at 0.1 / dt


def test_same_seed_same_data_and_chunking_bounds() -> None:
    a = simulate("springs", 5, 3, seed=9, length=400, sample_freq=100, chunk=2)
    b = simulate("springs", 5, 3, seed=9, length=400, sample_freq=100, chunk=2)
    c = simulate("springs", 5, 3, seed=10, length=400, sample_freq=100, chunk=2)
    assert np.array_equal(a.loc, b.loc) and a.data_id() == b.data_id()
    assert not np.array_equal(a.loc, c.loc) and a.data_id() != c.data_id()


def test_npz_round_trip(tmp_path: Path) -> None:
    data = simulate("springs", 4, 3, seed=5, length=300, sample_freq=100)
    path = save_particles(tmp_path / "s.npz", data, seed=5, length=300, sample_freq=100)
    back = load_particles(path)
    assert back.sim == "springs"
    assert np.array_equal(back.loc, data.loc) and np.array_equal(back.edges, data.edges)


def test_reads_nri_npy_directory_and_maps_charges(tmp_path: Path) -> None:
    S, T, N = 3, 4, 3
    rng = np.random.default_rng(0)
    q = np.array([1, -1, 1])
    raw_edges = np.tile(np.outer(q, q), (S, 1, 1))  # NRI stores q_i q_j, diagonal +1
    np.save(tmp_path / "loc_test.npy", rng.standard_normal((S, T, 2, N)))
    np.save(tmp_path / "vel_test.npy", rng.standard_normal((S, T, 2, N)))
    np.save(tmp_path / "edges_test.npy", raw_edges)
    data = load_particles(tmp_path, "test")
    assert data.sim == "charged"
    np.testing.assert_array_equal(data.edges[0], [[0, 0, 1], [0, 0, 0], [1, 0, 0]])


def test_errors_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(SimulationError, match="istrings simulate"):
        load_particles(tmp_path / "nope.npz")
    np.savez(tmp_path / "other.npz", joints=np.zeros(3))
    with pytest.raises(SimulationError, match="not a particle file"):
        load_particles(tmp_path / "other.npz")
    with pytest.raises(SimulationError, match=r"edges_train\.npy"):
        load_particles(tmp_path, "train")
    with pytest.raises(SimulationError, match="unknown simulation"):
        simulate("gravity", 1, 2)  # type: ignore[arg-type]
