"""Evaluation metrics as pure numpy functions: edge accuracy, AUROC, pose errors.

No sklearn: AUROC is the Mann–Whitney U statistic computed from average ranks (ties count
one half), which equals the area under the ROC curve.
"""

from __future__ import annotations

import itertools

import numpy as np
from numpy.typing import ArrayLike, NDArray


def edge_accuracy(pred: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of edges whose predicted type equals the label.

    Shapes:
        pred, labels ``(B, E)`` integer types (any equal shapes).
    """
    p, y = np.asarray(pred), np.asarray(labels)
    if p.shape != y.shape:
        raise ValueError(f"pred {p.shape} and labels {y.shape} differ in shape")
    if p.size == 0:
        raise ValueError("no edges to score")
    return float((p == y).mean())


def best_labeling(pred: ArrayLike, labels: ArrayLike, num_types: int) -> tuple[float, tuple[int, ...]]:
    """Accuracy under the best relabelling of predicted types (unsupervised types have no names).

    Tries every permutation ``perm`` of the ``K`` types (``K! <= 120`` for ``K <= 5``), mapping a
    predicted type ``k`` to ``perm[k]``, over the whole set at once.

    Returns:
        ``(accuracy, perm)`` of the best permutation.
    """
    p, y = np.asarray(pred), np.asarray(labels)
    if num_types > 6:
        raise ValueError(f"best labeling tries K! permutations; K={num_types} is too many (max 6)")
    best = (-1.0, tuple(range(num_types)))
    for perm in itertools.permutations(range(num_types)):
        acc = edge_accuracy(np.asarray(perm)[p], y)
        if acc > best[0]:
            best = (acc, perm)
    return best


def auroc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (1 = positive).

    Rank-based: ``(R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg)`` with average ranks for ties.

    Returns:
        AUROC in [0, 1]; NaN when one class is absent.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"scores {s.shape} and labels {y.shape} differ in size")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(s.size, dtype=np.float64)
    # Average rank (1-based) over each run of equal scores.
    boundaries = np.flatnonzero(np.diff(sorted_s)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [s.size]])
    run_rank = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
    ranks[order] = np.repeat(run_rank, ends - starts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def mse(pred: ArrayLike, target: ArrayLike) -> float:
    """Mean squared error over all elements."""
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if p.shape != t.shape:
        raise ValueError(f"pred {p.shape} and target {t.shape} differ in shape")
    return float(((p - t) ** 2).mean())


def mpjpe(pred: ArrayLike, target: ArrayLike) -> float:
    """Mean per-joint position error: mean Euclidean distance over the last axis (e.g. metres).

    Shapes:
        ``(..., J, 3)`` both → scalar.
    """
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if p.shape != t.shape:
        raise ValueError(f"pred {p.shape} and target {t.shape} differ in shape")
    return float(np.linalg.norm(p - t, axis=-1).mean())


def mpjpe_per_horizon(pred: ArrayLike, target: ArrayLike) -> NDArray[np.float64]:
    """MPJPE for every forecast horizon.

    Shapes:
        ``(B, H, ..., 3)`` both (``H`` horizons on axis 1) → ``(H,)``.
    """
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if p.shape != t.shape or p.ndim < 3:
        raise ValueError(f"need equal shapes (B, H, ..., 3), got {p.shape} and {t.shape}")
    err = np.linalg.norm(p - t, axis=-1)  # (B, H, ...)
    return np.asarray(err.reshape(err.shape[0], err.shape[1], -1).mean(axis=(0, 2)))


def mae(pred: ArrayLike, target: ArrayLike) -> float:
    """Mean absolute error over all elements."""
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if p.shape != t.shape:
        raise ValueError(f"pred {p.shape} and target {t.shape} differ in shape")
    return float(np.abs(p - t).mean())
