"""Echo strings: which joints of one dancer move like which joints of the other, a moment later.

A model-free string estimator for the rehearsal report (no training, numpy only). Over a
sliding window of ``window_s`` seconds, every (dancer-0 joint ``i``, dancer-1 joint ``j``) pair
gets the lagged correlation of two body-relative motion signals:

* the **bend** of each bone ``parent(j) → j`` against its parent bone (cosine of the angle), and
* the bone's **direction in the dancer's own facing frame** (from the hip line, y up): x, y, z.

Both are relative to the dancer's own body, so walking, turning and the distance between the
dancers do not count — only how the limbs articulate. For lags ``0 … max_lag_s`` in both
directions (dancer 0 leads, or dancer 1 leads), the score of a lag is the mean over channels
of ``|corr|`` on the bend and on the directions; the pair's **strength** is the larger of the
two at the best lag, in ``[0, 1]``. The **type** says how: 1 = *with* (the signed correlation
at that lag is positive: the joints bend the same way), 2 = *against* (negative: one opens as
the other closes — the paper's "opposition"). The best lag (seconds, positive when dancer 0
leads) is kept too. Windows where nearly every pair correlates (:data:`COMMON_MODE`) carry no
particular string and are zeroed.

Shapes: ``joints (T, D, J, 3)`` metres, y up; outputs per window ``W``: ``strength (W, J, J)``
float32, ``etype (W, J, J)`` int8 in {1, 2}, ``lag_s (W, J, J)`` float32; ``times (W,)`` seconds
= the centre of each window.

Why it exists: the duet NRI of this project does not yet find planted strings (see
``docs/results.md``); a report must mean what it shows, so without a working ``nri.onnx`` it
uses these scores, and says so. On synthetic duets with planted strings a plain lagged
correlation of these signals ranks the planted pairs first (``tests/stream/test_synthetic.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from stream.skeleton import CANONICAL, J

PARENT = np.array([max(p, 0) for p in CANONICAL.parents])
"""Skeleton parent of every canonical joint; the root is its own parent (a zero bone)."""
TYPE_NAMES: dict[int, str] = {1: "with", 2: "against"}
COMMON_MODE = 0.75
"""A window whose *median* pair score reaches this shows no particular string: everything moved at
once (a cut in the video, a jump of the detections, both dancers starting from stillness). Its
strengths are set to 0 and it is counted. On the synthetic duets the median is about 0.55."""


def bend_cosines(joints: NDArray[np.floating]) -> NDArray[np.float64]:
    """Cosine of the angle between each bone ``parent(j) → j`` and its parent's bone.

    ``(T, D, J, 3)`` metres → ``(T, D, J)``; 0 where a bone has zero length (the root).
    """
    X = np.asarray(joints, dtype=np.float64)
    bone = X - X[:, :, PARENT]  # (T, D, J, 3)
    parent_bone = bone[:, :, PARENT]
    den = np.linalg.norm(bone, axis=-1) * np.linalg.norm(parent_bone, axis=-1)
    return np.where(den > 0, (bone * parent_bone).sum(-1) / np.where(den > 0, den, 1.0), 0.0)


def to_facing_frame(vectors: NDArray[np.floating], joints: NDArray[np.floating]) -> NDArray[np.float64]:
    """Turn vectors ``(T, D, J, 3)`` into each dancer's facing frame (from the hip line of ``joints
    (T, D, J, 3)``: the dancer's left is +x, y up) by a rotation about y; lengths are kept."""
    X = np.asarray(joints, dtype=np.float64)
    v = np.asarray(vectors, dtype=np.float64)
    left = X[:, :, CANONICAL.index("l_hip")] - X[:, :, CANONICAL.index("r_hip")]  # (T, D, 3)
    yaw = np.arctan2(-left[..., 2], left[..., 0])[..., None]  # (T, D, 1): left = (cos ψ, 0, -sin ψ)
    x = np.cos(yaw) * v[..., 0] - np.sin(yaw) * v[..., 2]  # rotate by -ψ about y
    z = np.sin(yaw) * v[..., 0] + np.cos(yaw) * v[..., 2]
    return np.stack([x, v[..., 1], z], axis=-1)


def facing_frame_directions(joints: NDArray[np.floating]) -> NDArray[np.float64]:
    """Unit bone directions ``parent(j) → j`` in each dancer's own facing frame.

    ``(T, D, J, 3)`` metres → ``(T, D, J, 3)`` (:func:`to_facing_frame`); the root's zero bone stays 0.
    """
    X = np.asarray(joints, dtype=np.float64)
    out = to_facing_frame(X - X[:, :, PARENT], X)
    norm = np.linalg.norm(out, axis=-1, keepdims=True)
    return out / np.where(norm > 0, norm, 1.0)


def _standardise(a: NDArray[np.float64], axis: int) -> NDArray[np.float64]:
    """Zero mean, unit variance along ``axis``; a constant signal becomes 0 (it correlates with nothing)."""
    sd = a.std(axis=axis, keepdims=True)
    return (a - a.mean(axis=axis, keepdims=True)) / np.where(sd > 1e-9, sd, np.inf)


def _lagged(a: NDArray[np.float64], b: NDArray[np.float64], lag: int) -> NDArray[np.float64]:
    """Signed per-channel correlation of ``a`` at ``t - lag`` with ``b`` at ``t`` (``lag < 0``: b leads).

    ``a (W, L, J, C)``, ``b (W, L, J, C)`` → ``(W, J, J, C)`` correlations (mean over the overlap).
    """
    L = a.shape[1]
    if lag >= 0:
        x, y = a[:, : L - lag], b[:, lag:]
    else:
        x, y = a[:, -lag:], b[:, : L + lag]
    x, y = _standardise(x, 1), _standardise(y, 1)
    return np.einsum("wtic,wtjc->wijc", x, y) / x.shape[1]


@dataclass(frozen=True)
class EchoStrings:
    """Echo-string scores of a session, one row per window (see the module docstring).

    Attributes:
        times: ``(W,)`` seconds, each window's centre.
        strength: ``(W, J, J)`` float32 in [0, 1], dancer-0 joint i vs dancer-1 joint j.
        etype: ``(W, J, J)`` int8, 1 = with, 2 = against.
        lag_s: ``(W, J, J)`` float32 seconds at the best lag, positive when dancer 0 leads.
        window_s: window length, seconds.
        common: ``(W,)`` bool, windows where most pairs correlate (see :data:`COMMON_MODE`); their
            strengths are set to 0.
    """

    times: NDArray[np.float64]
    strength: NDArray[np.float32]
    etype: NDArray[np.int8]
    lag_s: NDArray[np.float32]
    window_s: float
    common: NDArray[np.bool_]


def echo_strings(
    joints: NDArray[np.floating],
    fps: float,
    *,
    window_s: float = 3.0,
    hop_s: float = 0.25,
    max_lag_s: float = 0.4,
    lag_step: int = 1,
) -> EchoStrings:
    """Score every pair over sliding windows of a session.

    Args:
        joints: ``(T, D, J, 3)`` metres.
        fps: frames per second of ``joints``.
        window_s: window length, seconds (at least 8 frames).
        hop_s: step between windows, seconds.
        max_lag_s: the longest lag tried, either way, seconds.
        lag_step: try every this many frames of lag.

    Raises:
        ValueError: fewer frames than one window, or settings out of range.
    """
    X = np.asarray(joints, dtype=np.float64)
    if X.ndim != 4 or X.shape[1:] != (2, J, 3):
        raise ValueError(f"joints must be (T, 2, {J}, 3), got {X.shape}")
    if not (fps > 0 and window_s > 0 and hop_s > 0 and max_lag_s >= 0 and lag_step >= 1):
        raise ValueError("fps, window_s and hop_s must be positive, max_lag_s >= 0, lag_step >= 1")
    L = max(8, round(window_s * fps))
    T = X.shape[0]
    if T < L:
        raise ValueError(f"need at least {L} frames ({window_s:g} s at {fps:g} fps) for one window, got {T}")
    hop = max(1, round(hop_s * fps))
    max_lag = min(round(max_lag_s * fps), L // 2)
    starts = np.arange(0, T - L + 1, hop)  # (W,)
    bend = bend_cosines(X)[..., None]  # (T, D, J, 1)
    dirs = facing_frame_directions(X)  # (T, D, J, 3)
    idx = starts[:, None] + np.arange(L)[None, :]  # (W, L) frame indices
    W = len(starts)
    best = np.zeros((W, J, J))
    sign = np.ones((W, J, J))
    lag_best = np.zeros((W, J, J))
    for feat in (bend, dirs):
        a, b = feat[idx][:, :, 0], feat[idx][:, :, 1]  # (W, L, J, C) dancer 0, dancer 1
        for lag in range(-max_lag, max_lag + 1, lag_step):
            r = _lagged(a, b, lag)  # (W, J, J, C)
            score = np.abs(r).mean(axis=-1)  # (W, J, J)
            better = score > best
            best = np.where(better, score, best)
            sign = np.where(better, np.sign(r.sum(axis=-1)) + (r.sum(axis=-1) == 0), sign)
            lag_best = np.where(better, lag / fps, lag_best)
    common = np.median(best.reshape(W, -1), axis=1) >= COMMON_MODE  # (W,)
    best[common] = 0.0
    return EchoStrings(
        times=(starts + 0.5 * (L - 1)) / fps,
        strength=np.clip(best, 0.0, 1.0).astype(np.float32),
        common=common,
        etype=np.where(sign >= 0, 1, 2).astype(np.int8),
        lag_s=lag_best.astype(np.float32),
        window_s=L / fps,
    )
