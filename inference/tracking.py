"""People selection and identity tracking: dancer 0 stays dancer 0 through crossings and occlusions.

The pose estimator returns its people in an arbitrary order that changes from frame to frame,
sometimes a third person (an audience member, a reflection), sometimes one or nobody. The
tracker turns those detections into ``D`` (= 2) stable tracks, causally, one frame at a time:

1. **Selection** (:func:`select_people`): keep the ``D`` most confident detections, in their
   detection order; the rest are counted as dropped. Detections with no joint at or above
   the visibility threshold carry no measurement and are dropped too.
2. **Prediction**: every live track's joints are extrapolated at constant velocity from the
   track's last update, ``x̃_j = x_j + v_j · min(t - t_seen, max_predict_s)`` (per joint,
   metres; the velocities are running averages of the measured joint velocities, m/s).
3. **Assignment** of detections to live tracks by the Hungarian method
   (:func:`scipy.optimize.linear_sum_assignment`) on ``cost[d, p]`` = the mean distance (m)
   between track ``d``'s predicted joints and detection ``p``'s joints, over the joints
   ``p`` sees (visibility ≥ threshold). A pair costing more than the gate,
   ``gate_m + gate_speed_mps · (t - t_seen)``, is refused. Hungarian minimises the *total*
   cost, where a greedy nearest-first match can give the closest pair to the wrong track.
4. **Re-acquisition**: detections left over go to tracks that are not live (never seen, or
   lost for longer than ``hold_s``), again by Hungarian on the distance to where each was
   last seen; never-seen tracks come after lost ones and are filled left to right (smallest
   mean ``x`` first).
5. **Update and hold**: a matched track takes the joints its detection sees. A joint the
   detection does not see is held at its last estimate, carried along by the body's
   translation (the mean displacement of the seen joints), for at most ``hold_s``; after
   that the detection's own low-visibility value is used. A track with no detection keeps
   its last estimate and stays *present* for ``hold_s``, then is reported absent (its joints
   still hold the last estimate — never NaN).

Confidence per joint (``(D, J)`` in [0, 1]): the visibility of a seen joint; for a held joint
(or a held person) the last confidence decaying linearly to 0 over ``hold_s``; 0 when absent.

Counters (:class:`TrackerCounters`): detections dropped, swaps corrected (frames where the
tracks took two detections in the opposite of their detection order — what a tracker that
trusted the order would have got wrong), re-acquisitions (a lost track given to a detection
again: a possible identity change), gated detections, dancer-frames held, joint-frames held.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.optimize
from numpy.typing import NDArray

from stream.errors import IStringsError


class TrackingError(IStringsError, ValueError):
    """A tracker setting is out of range or detections have the wrong shape."""


EMPTY, LIVE, LOST = 0, 1, 2
"""Track states: never seen, present (seen within ``hold_s``), lost (absent)."""

_INFEASIBLE = 1e6  # cost of a refused pair (finite: linear_sum_assignment rejects all-inf rows)


@dataclass(frozen=True)
class TrackerConfig:
    """Identity-tracking parameters (units in the names).

    Attributes:
        num_tracks: ``D``, dancers tracked (2 for a duet).
        visibility_threshold: a joint with visibility below this is "not seen".
        hold_s: seconds a missing joint or dancer is held before it is dropped / absent.
        gate_m: largest mean joint distance (m) between a prediction and a detection one
            frame later.
        gate_speed_mps: the gate grows by this many metres per second since the track was
            last seen (a dancer unseen for 0.3 s may be 0.3 · this farther away).
        predict: extrapolate tracks with their velocity (False: match on the last position).
        velocity_smoothing: weight of the newest velocity in its exponential average (0..1].
        max_predict_s: never extrapolate further than this (s).
        min_dt_s: velocities are measured over at least this interval (s), so two frames
            stamped almost at once cannot produce an absurd speed.
    """

    num_tracks: int = 2
    visibility_threshold: float = 0.5
    hold_s: float = 0.5
    gate_m: float = 0.5
    gate_speed_mps: float = 3.0
    predict: bool = True
    velocity_smoothing: float = 0.5
    max_predict_s: float = 0.2
    min_dt_s: float = 0.005

    def __post_init__(self) -> None:
        checks = {
            "num_tracks >= 1": self.num_tracks >= 1,
            "0 <= visibility_threshold <= 1": 0 <= self.visibility_threshold <= 1,
            "hold_s >= 0": self.hold_s >= 0,
            "gate_m > 0": self.gate_m > 0,
            "gate_speed_mps >= 0": self.gate_speed_mps >= 0,
            "0 < velocity_smoothing <= 1": 0 < self.velocity_smoothing <= 1,
            "max_predict_s >= 0": self.max_predict_s >= 0,
            "min_dt_s > 0": self.min_dt_s > 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise TrackingError(f"tracker config out of range: {', '.join(bad)} (got {self})")


@dataclass
class TrackerCounters:
    """Running totals since the tracker started (see the module docstring)."""

    frames: int = 0
    people_dropped: int = 0
    swaps_corrected: int = 0
    reacquired: int = 0
    gated: int = 0
    frames_held: int = 0
    joints_held: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass(frozen=True, eq=False)
class TrackOutput:
    """The tracks after one frame.

    Attributes:
        joints: ``(D, J, 3)`` float64 metres, the held/updated estimate (unsmoothed).
        present: ``(D,)`` bool, seen within ``hold_s``.
        measured: ``(D,)`` bool, matched to a detection this frame.
        confidence: ``(D, J)`` float64 in [0, 1].
        reset: ``(D,)`` bool, the track was (re)acquired this frame: smoothing must restart.
        assignment: ``(D,)`` int, detection index (into the selected detections) per track, -1 if none.
    """

    joints: NDArray[np.float64]
    present: NDArray[np.bool_]
    measured: NDArray[np.bool_]
    confidence: NDArray[np.float64]
    reset: NDArray[np.bool_]
    assignment: NDArray[np.int64]


def select_people(scores: NDArray[np.floating], k: int) -> NDArray[np.int64]:
    """Indices of the ``k`` highest scores, in ascending index (detection) order.

    Ties keep the earlier detection. Shapes: ``scores (P,)`` → ``(min(P, k),)``.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.size <= k:
        return np.arange(s.size, dtype=np.int64)
    top = np.argsort(-s, kind="stable")[:k]
    return np.sort(top).astype(np.int64)


def mean_joint_distance(
    a: NDArray[np.floating], b: NDArray[np.floating], weights: NDArray[np.floating | np.bool_] | None = None
) -> NDArray[np.float64]:
    """Pairwise mean joint distance (m) between poses ``a (D, J, 3)`` and ``b (P, J, 3)``.

    ``weights (P, J)`` (e.g. 1 for seen joints, 0 otherwise) weight the joints of each ``b``;
    a ``b`` with all weights 0 uses every joint. Returns ``(D, P)``.
    """
    diff = np.asarray(a, np.float64)[:, None] - np.asarray(b, np.float64)[None]  # (D, P, J, 3)
    dist = np.sqrt(np.square(diff).sum(-1))  # (D, P, J)
    if weights is None:
        return np.asarray(dist.mean(-1))
    w = np.asarray(weights, np.float64)  # (P, J)
    wsum = w.sum(-1, keepdims=True)  # (P, 1)
    w = np.where(wsum > 0, w / np.where(wsum > 0, wsum, 1.0), 1.0 / w.shape[-1])
    return np.asarray((dist * w[None]).sum(-1))


def hungarian(cost: NDArray[np.floating], gate: NDArray[np.floating] | float) -> list[tuple[int, int]]:
    """Minimum-total-cost matching of rows to columns, keeping pairs with ``cost <= gate``.

    ``cost (R, C)``; ``gate`` broadcast against it (e.g. ``(R, 1)`` per row). Returns
    ``(row, col)`` pairs sorted by row.
    """
    c = np.asarray(cost, dtype=np.float64)
    if c.size == 0:
        return []
    ok = c <= gate
    rows, cols = scipy.optimize.linear_sum_assignment(np.where(ok, c, _INFEASIBLE))
    allowed = ok.tolist()
    return [(r, k) for r, k in zip(rows.tolist(), cols.tolist(), strict=True) if allowed[r][k]]


_NEVER = -1e9  # "last seen" time of a joint never measured (s): older than any hold


@dataclass
class _Tracks:
    """Mutable state of ``D`` tracks of ``J`` joints."""

    pos: NDArray[np.float64]  # (D, J, 3) m, last estimate
    vel: NDArray[np.float64]  # (D, J, 3) m/s
    joint_seen: NDArray[np.float64]  # (D, J) s, when each joint was last measured
    seen: NDArray[np.float64]  # (D,) s, when each track was last matched
    conf: NDArray[np.float64]  # (D, J) confidence at conf_t
    conf_t: NDArray[np.float64]  # (D, J) s, from when the confidence decays
    state: NDArray[np.int64]  # (D,) EMPTY / LIVE / LOST


class Tracker:
    """Causal identity tracker of ``D`` dancers (see the module docstring).

    Args:
        config: the parameters.
        num_joints: ``J``.

    Shapes:
        update: ``joints (P, J, 3)`` m, ``visibility (P, J)``, ``scores (P,)`` → :class:`TrackOutput`.
    """

    def __init__(self, config: TrackerConfig | None = None, num_joints: int = 18) -> None:
        self.config = config or TrackerConfig()
        self.num_joints = int(num_joints)
        self.counters = TrackerCounters()
        D, J = self.config.num_tracks, self.num_joints
        self._tr = _Tracks(
            pos=np.zeros((D, J, 3)), vel=np.zeros((D, J, 3)), joint_seen=np.full((D, J), _NEVER),
            seen=np.full(D, _NEVER), conf=np.zeros((D, J)), conf_t=np.full((D, J), _NEVER),
            state=np.full(D, EMPTY, np.int64),
        )

    @property
    def state(self) -> NDArray[np.int64]:
        """``(D,)`` track states (:data:`EMPTY`, :data:`LIVE`, :data:`LOST`)."""
        return self._tr.state.copy()

    def predict(self, t: float) -> NDArray[np.float64]:
        """``(D, J, 3)`` joints extrapolated to ``t`` (s) at constant velocity (m)."""
        tr = self._tr
        if not self.config.predict:
            return tr.pos.copy()
        horizon = np.minimum(np.maximum(t - tr.seen, 0.0), self.config.max_predict_s)  # (D,) s
        return tr.pos + tr.vel * horizon[:, None, None]  # (D, J, 3)

    def update(
        self, t: float, joints: NDArray[np.floating], visibility: NDArray[np.floating], scores: NDArray[np.floating]
    ) -> TrackOutput:
        """Advance to time ``t`` (s, non-decreasing) with this frame's detections.

        Raises:
            TrackingError: the arrays do not have the shapes ``(P, J, 3)``, ``(P, J)``, ``(P,)``.
        """
        cfg, tr, cnt = self.config, self._tr, self.counters
        D, J = cfg.num_tracks, self.num_joints
        x = np.asarray(joints, dtype=np.float64)
        vis = np.asarray(visibility, dtype=np.float64)
        sc = np.asarray(scores, dtype=np.float64).reshape(-1)
        P = sc.shape[0]
        if x.shape != (P, J, 3) or vis.shape != (P, J):
            raise TrackingError(
                f"detections must be joints ({P}, {J}, 3) and visibility ({P}, {J}), got {x.shape}, {vis.shape}"
            )
        cnt.frames += 1
        seen = vis >= cfg.visibility_threshold  # (P, J)
        n_seen = seen.sum(-1)  # (P,) joints each detection measures
        if P > D or not n_seen.all():  # drop detections that measure nothing, keep the D most confident
            idx = np.flatnonzero(n_seen)
            keep = idx[select_people(sc[idx], D)]  # (P',) in detection order
            cnt.people_dropped += P - keep.size
            x, vis, seen, n_seen = x[keep], vis[keep], seen[keep], n_seen[keep]
        n_det = x.shape[0]
        w_seen = seen * (1.0 / np.maximum(n_seen, 1))[:, None]  # (P', J) mean over the seen joints

        state, t_seen = tr.state, tr.seen
        for d in range(D):  # expire tracks held too long
            if state[d] == LIVE and t - t_seen[d] > cfg.hold_s:
                state[d] = LOST
        assignment = [-1] * D  # detection per track
        live = [d for d in range(D) if state[d] == LIVE]
        if live and n_det:
            ages = [max(t - float(t_seen[d]), 0.0) for d in live]  # s since each live track was seen
            pred = self.predict(t) if len(live) == D else self.predict(t)[live]  # (n_live, J, 3) m
            dist = np.sqrt(np.square(pred[:, None] - x[None]).sum(-1))  # (n_live, P', J) m
            cost = (dist * w_seen).sum(-1)  # (n_live, P') mean distance over the seen joints
            gate = np.array([cfg.gate_m + cfg.gate_speed_mps * a for a in ages])  # (n_live,) m
            for r, p in hungarian(cost, gate[:, None]):
                assignment[live[r]] = p
            matched = [p for p in assignment if p >= 0]  # detection indices in track order
            cnt.swaps_corrected += int(matched != sorted(matched))
        left = [p for p in range(n_det) if p not in assignment]  # unmatched detections
        cnt.gated += min(len(left), sum(assignment[d] < 0 for d in live))
        free = [d for d in range(D) if state[d] != LIVE]
        reset = np.zeros(D, dtype=bool)
        if free and left:
            for r, p in hungarian(self._reacquire_cost(np.array(free), x[left], seen[left]), np.inf):
                d = free[r]
                assignment[d] = left[p]
                cnt.reacquired += int(state[d] == LOST)
                reset[d] = True

        assign = np.array(assignment, dtype=np.int64)  # (D,)
        cnt.joints_held += self._apply(t, assign, x, vis, seen, w_seen, reset)
        measured = assign >= 0
        present = state == LIVE
        cnt.frames_held += int((present & ~measured).sum())
        if cfg.hold_s > 0:  # linear decay over the hold, in [0, 1]
            decay = np.minimum(np.maximum(1.0 - (t - tr.conf_t) * (1.0 / cfg.hold_s), 0.0), 1.0)  # (D, J)
        else:
            decay = (t <= tr.conf_t).astype(np.float64)
        confidence = tr.conf * decay * present[:, None]  # (D, J)
        return TrackOutput(
            joints=tr.pos.copy(), present=present, measured=measured, confidence=confidence,
            reset=reset, assignment=assign,
        )

    def _reacquire_cost(
        self, tracks: NDArray[np.int64], x: NDArray[np.float64], seen: NDArray[np.bool_]
    ) -> NDArray[np.float64]:
        """``(n_tracks, n_dets)``: lost tracks by distance (m) to their last estimate; empty
        tracks after them (cost 1000 + rank difference), left to right by mean ``x``."""
        tr = self._tr
        cost = mean_joint_distance(tr.pos[tracks], x, seen)  # (n, m) m
        w = seen / np.maximum(seen.sum(-1, keepdims=True), 1)  # (m, J)
        mean_x = (x[..., 0] * w).sum(-1)  # (m,) m
        rank = np.argsort(np.argsort(mean_x, kind="stable"), kind="stable")  # (m,) left-to-right
        is_empty = tr.state[tracks] == EMPTY  # (n,)
        order = np.cumsum(is_empty) - 1  # (n,) index among the empty tracks
        empty_cost = 1e3 + np.abs(order[:, None] - rank[None, :])  # (n, m)
        return np.where(is_empty[:, None], empty_cost, cost)

    def _apply(
        self,
        t: float,
        assignment: NDArray[np.int64],
        x: NDArray[np.float64],
        vis: NDArray[np.float64],
        seen: NDArray[np.bool_],
        w_seen: NDArray[np.float64],
        reset: NDArray[np.bool_],
    ) -> int:
        """Write matched detections into their tracks; returns the number of joints held."""
        cfg, tr = self.config, self._tr
        matched = [k for k, a in enumerate(assignment.tolist()) if a >= 0]
        if not matched:
            return 0
        p = [int(assignment[k]) for k in matched]
        D = assignment.size
        d: slice | list[int] = slice(None) if len(matched) == D else matched  # a view when all are matched
        if p == list(range(x.shape[0])):  # the detections in track order: views, no copies
            xd, vd, sd, wd = x, vis, seen, w_seen  # (n, J, 3), (n, J), (n, J), (n, J)
        elif p == [1, 0] and x.shape[0] == 2:
            xd, vd, sd, wd = x[::-1], vis[::-1], seen[::-1], w_seen[::-1]
        else:
            xd, vd, sd, wd = x[p], vis[p], seen[p], w_seen[p]
        old, vel, joint_seen = tr.pos[d], tr.vel[d], tr.joint_seen[d]  # (n, J, 3) m, (n, J, 3) m/s, (n, J) s
        last = tr.seen[d][:, None]  # (n, 1) s, the track's previous update
        step = xd - old  # (n, J, 3) m
        hold = ~sd & (t - joint_seen <= cfg.hold_s)  # (n, J) joints held
        # velocity from the joints seen now and at the track's previous update
        cont = sd & (joint_seen == last)  # (n, J)
        fresh = reset[d]  # (n,): a new track has no history to hold or differentiate
        any_fresh = bool(fresh.any())
        if any_fresh:
            hold &= ~fresh[:, None]
            cont &= ~fresh[:, None]
        inv_dt = 1.0 / np.maximum(t - last, cfg.min_dt_s)  # (n, 1) 1/s
        gain = cont * cfg.velocity_smoothing  # (n, J)
        vel = vel + gain[..., None] * (step * inv_dt[..., None] - vel)  # (n, J, 3) m/s
        n_held = int(np.count_nonzero(hold))
        if n_held:  # held joints follow the body: the mean displacement and velocity of the seen joints
            shift = np.matmul(wd[:, None, :], step)  # (n, 1, J) @ (n, J, 3) -> (n, 1, 3) m
            wv = cont / np.maximum(np.add.reduce(cont, axis=-1, keepdims=True), 1)  # (n, J)
            body_vel = np.matmul(wv[:, None, :], vel)  # (n, 1, 3) m/s
            h3 = hold[..., None]
            tr.pos[d] = np.where(h3, old + shift, xd)
            vel = np.where(h3, body_vel, vel)
            tr.conf[d] = np.where(hold, tr.conf[d], vd)
            tr.conf_t[d] = np.where(hold, tr.conf_t[d], t)
        else:
            tr.pos[d] = xd
            tr.conf[d] = vd
            tr.conf_t[d] = t
        if any_fresh:
            vel[fresh] = 0.0
            tr.joint_seen[d] = np.where(sd, t, np.where(fresh[:, None], _NEVER, joint_seen))
        else:
            tr.joint_seen[d] = np.where(sd, t, joint_seen)
        tr.vel[d] = vel
        tr.seen[d] = t
        tr.state[d] = LIVE
        return n_held
