"""Identity tracking: selection, Hungarian assignment on predictions, holds, re-acquisition."""

from __future__ import annotations

import numpy as np
import pytest

from inference.tracking import (
    LIVE,
    LOST,
    Tracker,
    TrackerConfig,
    TrackingError,
    TrackOutput,
    hungarian,
    mean_joint_distance,
    select_people,
)

J = 18
FPS = 30.0
BODY = np.random.default_rng(0).normal(0.0, 0.25, (J, 3))  # one body shape, metres around its root


def at(x: float, z: float = 0.0, body: np.ndarray = BODY) -> np.ndarray:
    """A ``(J, 3)`` body with its root at ``(x, 1, z)``."""
    return body + np.array([x, 1.0, z])


def step(
    tr: Tracker, i: int, people: list[np.ndarray], vis: np.ndarray | None = None, scores: list[float] | None = None
) -> TrackOutput:
    x = np.stack(people) if people else np.zeros((0, J, 3))
    v = np.ones((len(people), J)) if vis is None else vis
    s = np.full(len(people), 0.9) if scores is None else np.array(scores)
    return tr.update(i / FPS, x, v, s)


def test_select_people_keeps_the_most_confident_in_detection_order() -> None:
    assert select_people(np.array([0.3, 0.9, 0.2, 0.8]), 2).tolist() == [1, 3]
    assert select_people(np.array([0.5, 0.5, 0.5]), 2).tolist() == [0, 1]  # ties: earlier first
    assert select_people(np.array([0.1]), 2).tolist() == [0]
    assert select_people(np.zeros(0), 2).tolist() == []


def crossing(T: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two same-shaped dancers passing each other at 3.6 m/s, 0.1 m apart in depth: at one
    frame they stand at x = ∓0.06, at the next at ±0.06 — each is then nearer to where the
    *other* was than to where it was itself. Returns truth ``(T, 2, J, 3)`` and detections in
    a random order every frame ``(T, 2, J, 3)`` with the order ``(T, 2)``."""
    rng = np.random.default_rng(seed)
    i = np.arange(T)
    xa, xb = -1.26 + 0.12 * i, 1.26 - 0.12 * i
    truth = np.stack([np.stack([at(a), at(b, z=0.1)]) for a, b in zip(xa, xb, strict=True)])
    order = np.stack([rng.permutation(2) for _ in range(T)])
    dets = truth[i[:, None], order] + rng.normal(0.0, noise, truth.shape)
    return truth, dets, order


def identity_errors(
    tr: Tracker, truth: np.ndarray, dets: np.ndarray, skip: frozenset[tuple[int, int]] = frozenset()
) -> int:
    """Frames where a track holds the other dancer (``skip``: (frame, detection) not shown)."""
    errors = 0
    for i in range(len(truth)):
        people = [dets[i, k] for k in range(2) if (i, k) not in skip]
        out = step(tr, i, people)
        for d in range(2):
            if out.measured[d]:
                dist = mean_joint_distance(out.joints[d][None], truth[i])[0]  # (2,) to each true dancer
                errors += int(np.argmin(dist) != d)
    return errors


def test_identities_survive_a_crossing_with_the_detection_order_shuffled() -> None:
    truth, dets, order = crossing(T=22, noise=0.005, seed=1)
    tr = Tracker(TrackerConfig())
    assert identity_errors(tr, truth, dets) == 0
    # every frame after the first whose order put dancer 1 first was a swap corrected
    assert tr.counters.swaps_corrected == int((order[1:, 0] == 1).sum()) > 0
    assert tr.counters.reacquired == 0 and tr.counters.gated == 0


def test_the_crossing_needs_the_prediction() -> None:
    truth, dets, _ = crossing(T=22, noise=0.005, seed=1)
    assert identity_errors(Tracker(TrackerConfig(predict=False)), truth, dets) > 0


def test_identities_survive_an_occlusion_during_the_crossing() -> None:
    truth, dets, order = crossing(T=22, noise=0.005, seed=2)
    hidden = frozenset((i, int(np.flatnonzero(order[i] == 1)[0])) for i in range(9, 14))  # dancer 1 behind dancer 0
    tr = Tracker(TrackerConfig())
    assert identity_errors(tr, truth, dets, skip=hidden) == 0
    assert tr.counters.frames_held == 5 and tr.counters.reacquired == 0


def greedy(cost: np.ndarray) -> list[tuple[int, int]]:
    """Nearest pair first, then the nearest of what is left."""
    c = cost.astype(float).copy()
    pairs = []
    for _ in range(min(c.shape)):
        r, k = np.unravel_index(np.argmin(c), c.shape)
        pairs.append((int(r), int(k)))
        c[r, :] = np.inf
        c[:, k] = np.inf
    return sorted(pairs)


def test_hungarian_beats_greedy_where_the_nearest_pair_is_wrong() -> None:
    # dancers at x = 0 and 1 both step right, by 0.6 and 0.7 m: detections at 0.6 and 1.7.
    # The nearest pair (dancer 1, detection at 0.6: 0.4 m) is wrong.
    tr = Tracker(TrackerConfig(gate_m=1.0, gate_speed_mps=0.0))
    step(tr, 0, [at(0.0), at(1.0)])
    cost = mean_joint_distance(tr.predict(1 / FPS), np.stack([at(0.6), at(1.7)]))
    assert np.allclose(cost, [[0.6, 1.7], [0.4, 0.7]])
    assert greedy(cost) == [(0, 1), (1, 0)]  # greedy: total 2.1 m, identities swapped
    assert hungarian(cost, np.inf) == [(0, 0), (1, 1)]  # Hungarian: total 1.3 m
    out = step(tr, 1, [at(1.7), at(0.6)])
    assert out.assignment.tolist() == [1, 0]
    assert np.allclose(out.joints[0], at(0.6)) and np.allclose(out.joints[1], at(1.7))


def test_more_than_two_people_keeps_the_two_most_confident() -> None:
    tr = Tracker()
    people = [at(-3.0), at(-0.5), at(4.0), at(0.5)]
    out = step(tr, 0, people, scores=[0.3, 0.9, 0.2, 0.8])
    assert np.allclose(out.joints[0], at(-0.5)) and np.allclose(out.joints[1], at(0.5))
    assert tr.counters.people_dropped == 2
    # a detection that sees no joint carries no measurement and is dropped as well
    vis = np.ones((3, J))
    vis[0] = 0.1
    out = step(tr, 1, [at(-0.5), at(-0.49), at(0.5)], vis=vis, scores=[1.0, 0.6, 0.7])
    assert np.allclose(out.joints[0], at(-0.49)) and tr.counters.people_dropped == 3


def test_a_missing_dancer_is_held_then_absent_then_reacquired() -> None:
    tr = Tracker(TrackerConfig(hold_s=0.5))
    for i in range(10):
        out = step(tr, i, [at(-0.5 + 0.01 * i), at(0.5)])
    last = out.joints[1].copy()
    confs = []
    for i in range(10, 40):  # dancer 1 unseen for 1 s
        out = step(tr, i, [at(-0.5 + 0.01 * i)])
        assert np.allclose(out.joints[0], at(-0.5 + 0.01 * i))  # dancer 0 unaffected
        assert np.array_equal(out.joints[1], last) and np.isfinite(out.joints).all()  # held, never NaN
        if i <= 23:  # within 0.5 s of the last sighting (frame 9)
            assert out.present[1] and not out.measured[1]
            confs.append(out.confidence[1].mean())
        elif i >= 25:
            assert not out.present[1] and out.confidence[1].max() == 0.0
            assert tr.state[1] == LOST
    assert np.all(np.diff(confs) < 0) and confs[0] > 0.9  # confidence decays while held
    assert tr.counters.frames_held in (14, 15)
    out = step(tr, 40, [at(2.5), at(-0.5 + 0.4)])  # back, somewhere else
    assert out.present.all() and out.reset.tolist() == [False, True]
    assert np.allclose(out.joints[1], at(2.5)) and tr.state.tolist() == [LIVE, LIVE]
    assert tr.counters.reacquired == 1


def test_a_hidden_joint_moves_with_the_body_for_the_hold_then_takes_the_detection() -> None:
    tr = Tracker(TrackerConfig(hold_s=0.5))
    wrist = 6
    for i in range(40):
        body = at(0.02 * i)
        seen_body = body.copy()
        vis = np.ones((1, J))
        if i >= 10:  # the wrist is hidden: the detector guesses 1 m off with visibility 0.1
            seen_body[wrist] += 1.0
            vis[0, wrist] = 0.1
        out = step(tr, i, [seen_body], vis=vis)
        if 10 <= i <= 23:
            assert np.allclose(out.joints[0, wrist], body[wrist])  # held, carried by the body
            assert 0 < out.confidence[0, wrist] < 1
        elif i >= 26:
            assert np.allclose(out.joints[0, wrist], seen_body[wrist])  # the hold expired
            assert out.confidence[0, wrist] == pytest.approx(0.1)
    assert 14 <= tr.counters.joints_held <= 15


def test_mean_joint_distance_weights_and_shapes() -> None:
    a = np.zeros((2, J, 3))
    b = np.zeros((3, J, 3))
    b[0, 0] = [3.0, 4.0, 0.0]  # one joint 5 m off
    w = np.ones((3, J))
    w[1] = 0.0  # no seen joint: every joint counts
    d = mean_joint_distance(a, b, w)
    assert d.shape == (2, 3)
    assert d[0, 0] == pytest.approx(5.0 / J)
    w[0, 0] = 0.0
    assert mean_joint_distance(a, b, w)[0, 0] == 0.0


def test_bad_config_and_shapes_are_named_errors() -> None:
    with pytest.raises(TrackingError, match="gate_m > 0"):
        TrackerConfig(gate_m=0.0)
    with pytest.raises(TrackingError, match="visibility"):
        Tracker().update(0.0, np.zeros((2, J, 3)), np.zeros((1, J)), np.zeros(2))
