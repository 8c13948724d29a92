"""How well noisy duet poses are refined: PCK and MPJPE, the filter baselines, and the evaluation.

**PCK@α** — the fraction of joints within ``α · torso`` of the clean joint, where ``torso`` is
the *clean* neck–pelvis distance of the same dancer in the same frame (about 0.46 m on the
salsa takes, so PCK@0.05 ≈ within 2.3 cm, @0.1 ≈ 4.6 cm, @0.2 ≈ 9.2 cm). **MPJPE** — the mean
Euclidean joint error in millimetres. Both over every joint of every frame where the clean
clip has the dancer.

Methods compared on the *same* noisy sequences (fixed seed):

* ``raw`` — the noisy input;
* ``one_euro`` — :class:`inference.filters.OneEuroFilter` (the live cleaner's filter), causal,
  parameters from a grid search on the *training* split (:func:`tune_one_euro`);
* ``dct_offline`` — the seed's offline low-pass (:func:`inference.filters.dct_lowpass`, the
  lowest 25 % of the whole sequence's DCT frequencies kept, as ``inference.cleaning.clean_offline``);
* ``mkff_causal`` / ``mkff_centred`` — the refiner over the window ending at / centred on each
  frame (frames outside the sequence repeat its first / last frame).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from inference.filters import OneEuroFilter, dct_lowpass
from stream.skeleton import CANONICAL, J

log = logging.getLogger(__name__)

PCK_ALPHAS: tuple[float, ...] = (0.2, 0.1, 0.05)
NECK, PELVIS = CANONICAL.index("neck"), CANONICAL.index("pelvis")
ONE_EURO_GRID: dict[str, tuple[float, ...]] = {
    "min_cutoff": (0.3, 0.6, 1.0, 1.5, 2.5, 4.0),  # Hz
    "beta": (0.0, 0.3, 1.0, 3.0, 10.0),  # Hz per m/s
}
"""The grid :func:`tune_one_euro` searches (``d_cutoff`` fixed at 1 Hz, the filter's default)."""
DCT_KEEP = 0.25


def torso_length(target: NDArray[np.floating]) -> NDArray[np.float64]:
    """Clean neck–pelvis distance per dancer and frame: ``(..., J, 3)`` → ``(...)`` metres."""
    t = np.asarray(target, dtype=np.float64)
    return np.asarray(np.linalg.norm(t[..., NECK, :] - t[..., PELVIS, :], axis=-1))


def pck(pred: NDArray[np.floating], target: NDArray[np.floating], alpha: float,
        mask: NDArray[np.bool_] | None = None) -> float:
    """Fraction of joints with ``|pred − target| < alpha · torso_length(target)``.

    Shapes:
        ``pred, target (..., J, 3)`` metres; ``mask (...)`` bool selects the poses scored.
    """
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if p.shape != t.shape or p.shape[-2:] != (J, 3):
        raise ValueError(f"pred {p.shape} and target {t.shape} must both be (..., {J}, 3)")
    hit = np.linalg.norm(p - t, axis=-1) < alpha * torso_length(t)[..., None]  # (..., J)
    if mask is not None:
        hit = hit[np.asarray(mask, dtype=bool)]
    if hit.size == 0:
        raise ValueError("no pose to score")
    return float(hit.mean())


def pose_metrics(pred: NDArray[np.floating], target: NDArray[np.floating],
                 mask: NDArray[np.bool_] | None = None) -> dict[str, float]:
    """``pck@0.2``, ``pck@0.1``, ``pck@0.05`` (fractions) and ``mpjpe_mm`` of ``(..., J, 3)`` poses."""
    err = np.linalg.norm(np.asarray(pred, np.float64) - np.asarray(target, np.float64), axis=-1)  # (..., J)
    if mask is not None:
        err = err[np.asarray(mask, dtype=bool)]
    out = {f"pck@{a:g}": pck(pred, target, a, mask) for a in PCK_ALPHAS}
    out["mpjpe_mm"] = float(err.mean() * 1000.0)
    return out


# --------------------------------------------------------------------------------------------- baselines


def one_euro(noisy: NDArray[np.floating], fps: float, min_cutoff: float, beta: float,
             d_cutoff: float = 1.0) -> NDArray[np.float64]:
    """The live cleaner's One Euro filter over a sequence ``(T, D, J, 3)`` m, frame times ``t / fps``."""
    x = np.asarray(noisy, dtype=np.float64)
    f = OneEuroFilter(x.shape[1:], min_cutoff=min_cutoff, beta=beta, d_cutoff=d_cutoff, fallback_dt=1.0 / fps)
    return np.stack([f.step(x[t], t / fps) for t in range(x.shape[0])])


def dct_offline(noisy: NDArray[np.floating], keep: float = DCT_KEEP) -> NDArray[np.float64]:
    """The seed's offline DCT low-pass over the whole sequence ``(T, D, J, 3)`` (time on axis 0)."""
    return dct_lowpass(noisy, keep=keep, axis=0)


@dataclass(frozen=True)
class OneEuroParams:
    """One Euro parameters chosen on the training split and the score they reached there."""

    min_cutoff: float
    beta: float
    d_cutoff: float
    train_pck05: float
    train_mpjpe_mm: float

    def to_dict(self) -> dict[str, float]:
        return {"min_cutoff": self.min_cutoff, "beta": self.beta, "d_cutoff": self.d_cutoff,
                "train_pck05": self.train_pck05, "train_mpjpe_mm": self.train_mpjpe_mm}


def tune_one_euro(noisy: Sequence[NDArray[np.floating]], clean: Sequence[NDArray[np.floating]], fps: float,
                  grid: dict[str, tuple[float, ...]] | None = None) -> OneEuroParams:
    """Grid search of One Euro's ``min_cutoff × beta`` on training sequences, best PCK@0.05 (then MPJPE).

    Args:
        noisy, clean: matching ``(T, D, J, 3)`` sequences of the *training* split.
        fps: their frame rate.
        grid: ``{"min_cutoff": (...), "beta": (...)}``, default :data:`ONE_EURO_GRID`.
    """
    g = grid or ONE_EURO_GRID
    target = np.concatenate([np.asarray(c) for c in clean])
    best: tuple[float, float, float, float] | None = None  # (-pck, mpjpe, min_cutoff, beta)
    for mc, beta in itertools.product(g["min_cutoff"], g["beta"]):
        pred = np.concatenate([one_euro(n, fps, mc, beta) for n in noisy])
        m = pose_metrics(pred, target)
        key = (-m["pck@0.05"], m["mpjpe_mm"], mc, beta)
        log.debug("one euro min_cutoff %g beta %g: pck@0.05 %.4f mpjpe %.1f mm", mc, beta, -key[0], key[1])
        if best is None or key < best:
            best = key
    assert best is not None  # the grid is not empty
    return OneEuroParams(min_cutoff=best[2], beta=best[3], d_cutoff=1.0, train_pck05=-best[0],
                         train_mpjpe_mm=best[1])


# --------------------------------------------------------------------------------------------- the refiner


def sliding_windows(seq: NDArray[np.floating], window: int, output_frame: int) -> NDArray[np.float32]:
    """Every frame's window, the frame at index ``output_frame`` of its window; outside frames clamp.

    Shapes:
        ``seq (T, D, J, 3)`` → ``(T, window, D·J, 3)`` float32.
    """
    x = np.asarray(seq, dtype=np.float32)
    T = x.shape[0]
    idx = np.clip(np.arange(T)[:, None] + np.arange(window)[None, :] - output_frame, 0, T - 1)  # (T, window)
    return x.reshape(T, -1, 3)[idx]  # (T, window, N, 3)


@torch.no_grad()
def refine_sequence(model: torch.nn.Module, seq: NDArray[np.floating], window: int, output_frame: int,
                    batch_size: int = 1024) -> NDArray[np.float32]:
    """Run the refiner over every frame of ``seq (T, D, J, 3)`` metres → ``(T, D, J, 3)``."""
    wins = sliding_windows(seq, window, output_frame)  # (T, window, N, 3)
    outs = [model(torch.from_numpy(wins[i : i + batch_size])).numpy() for i in range(0, len(wins), batch_size)]
    T, D = seq.shape[0], seq.shape[1]
    return np.concatenate(outs).reshape(T, D, J, 3)  # (T, N, 3) -> (T, D, J, 3)
