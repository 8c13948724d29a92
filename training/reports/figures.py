"""The report's pictures (matplotlib, Agg; PNG files): heat map, timeline, hubs, tension, forecasts.

Colours: dancer A (dancer 0) orange, dancer B (dancer 1) teal; tension red, release blue, held grey.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch
from numpy.typing import NDArray

from stream.skeleton import CANONICAL, J
from training.reports.analysis import (
    Episode,
    ForecastQuality,
    StringsTimeline,
    TopString,
    joint_name,
    pair_distance,
    pair_name,
)
from training.reports.echo import to_facing_frame

DANCER_COLOURS = ("#e8833a", "#2a9d8f")
KIND_COLOURS = {"tension": "#d62828", "release": "#277da1", "held": "#9e9e9e"}
DPI = 110


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def heatmap(tl: StringsTimeline, path: Path, rows: int = 20) -> Path:
    """Strength of the ``rows`` strongest pairs (by mean strength) × time; strong cells outlined by a contour."""
    mean = tl.strength.mean(axis=0).ravel()
    order = np.argsort(-mean)[:rows]
    data = tl.strength.reshape(len(tl.times), -1)[:, order].T  # (rows, W)
    fig, ax = plt.subplots(figsize=(11, 0.28 * len(order) + 1.6))
    extent = (float(tl.times[0]), float(tl.times[-1]), len(order) - 0.5, -0.5)
    im = ax.imshow(data, aspect="auto", cmap="magma", vmin=0, vmax=1, extent=extent, interpolation="nearest")
    if len(tl.times) > 1 and (data >= tl.threshold).any():
        ax.contour(np.linspace(tl.times[0], tl.times[-1], data.shape[1]), np.arange(len(order)), data,
                   levels=[tl.threshold], colors="cyan", linewidths=0.6)
    ax.set_yticks(range(len(order)), [pair_name(*divmod(int(k), J)) for k in order], fontsize=7)
    ax.set_xlabel("time (s)")
    ax.set_title(f"Strongest strings over time ({tl.source}); cyan: strong (≥ {tl.threshold:g})")
    fig.colorbar(im, ax=ax, label="strength", fraction=0.03, pad=0.01)
    return _save(fig, path)


def timeline(tl: StringsTimeline, distance: NDArray[np.floating], path: Path) -> Path:
    """Number of strong strings, their total strength and the dancers' distance (pelvis to pelvis) over time."""
    fig, axes = plt.subplots(3, 1, figsize=(11, 6), sharex=True)
    axes[0].step(tl.times, tl.strong.sum(axis=(1, 2)), where="mid", color="#6a4c93")
    axes[0].set_ylabel("strong strings")
    axes[1].plot(tl.times, np.where(tl.strong, tl.strength, 0.0).sum(axis=(1, 2)), color="#1982c4")
    axes[1].set_ylabel("total strength\n(strong strings)")
    axes[2].plot(tl.times, distance, color="#333333")
    axes[2].set_ylabel("distance (m)")
    axes[2].set_xlabel("time (s)")
    axes[0].set_title("Summary over the session")
    for ax in axes:
        ax.grid(alpha=0.3)
    return _save(fig, path)


def mean_body(joints: NDArray[np.floating]) -> NDArray[np.float64]:
    """Each dancer's average pose in its own facing frame (pelvis at 0, left = +x, y up).

    ``(T, D, J, 3)`` → ``(D, J, 3)`` metres."""
    X = np.asarray(joints, np.float64)
    return to_facing_frame(X - X[:, :, :1], X).mean(axis=0)


def hubs(hub: NDArray[np.floating], joints: NDArray[np.floating], path: Path) -> Path:
    """Body map: both dancers from the front, each joint's disc sized by its hub score."""
    body = mean_body(joints)  # (D, J, 3)
    fig, axes = plt.subplots(1, 2, figsize=(9, 6))
    for d, ax in enumerate(axes):
        xy = body[d][:, [0, 1]] * np.array([-1.0, 1.0])  # seen from the front: the dancer's left on the right
        for p, c in CANONICAL.bones:
            ax.plot(xy[[p, c], 0], xy[[p, c], 1], color="#555555", lw=2, zorder=1)
        ax.scatter(xy[:, 0], xy[:, 1], s=20 + 1500 * np.asarray(hub[d]), color=DANCER_COLOURS[d], alpha=0.75,
                   edgecolors="black", zorder=2)
        for j in np.argsort(-np.asarray(hub[d]))[:4]:
            if hub[d][j] > 0:
                ax.annotate(f"{CANONICAL.joint_names[j]} {100 * hub[d][j]:.0f}%", xy[j], fontsize=8,
                            xytext=(8, 4), textcoords="offset points")
        ax.set_aspect("equal")
        ax.set_title(f"dancer {'AB'[d]}")
        ax.axis("off")
    fig.suptitle("Hubs: disc size = share of the time a joint carries a strong string (seen from the front)")
    return _save(fig, path)


def tension(tl: StringsTimeline, episodes: list[Episode], top: list[TopString], times: NDArray[np.floating],
            joints: NDArray[np.floating], path: Path, rows: int = 4) -> Path:
    """For the top strings: the distance between their joints, strong periods shaded by tension/release."""
    pairs = [(s.i, s.j) for s in top[:rows]]
    fig, axes = plt.subplots(max(1, len(pairs)), 1, figsize=(11, 1.9 * max(1, len(pairs)) + 0.6), sharex=True,
                             squeeze=False)
    t = np.asarray(times, np.float64)
    for ax, (i, j) in zip(axes[:, 0], pairs, strict=False):
        dist, _ = pair_distance(times, joints, i, j, t)
        ax.plot(t, dist, color="#222222", lw=1)
        for e in episodes:
            if (e.i, e.j) == (i, j):
                ax.axvspan(e.start_s, e.end_s, color=KIND_COLOURS[e.kind], alpha=0.3, lw=0)
        ax.set_ylabel("m", fontsize=8)
        ax.set_title(pair_name(i, j), fontsize=9, loc="left")
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("time (s)")
    fig.legend(handles=[Patch(color=c, alpha=0.4, label=k) for k, c in KIND_COLOURS.items()], loc="upper right",
               ncols=3, fontsize=8)
    fig.suptitle("Tension and release: distance between the joints of each strong string", fontsize=10, x=0.35)
    return _save(fig, path)


def forecast(fq: ForecastQuality, path: Path) -> Path:
    """STGA-Net error per horizon over time (solid) against holding the last frame (dashed means)."""
    fig, ax = plt.subplots(figsize=(11, 3.6))
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(fq.horizons_ms)))
    for k, h in enumerate(fq.horizons_ms):
        ax.plot(fq.times, fq.error_mm[:, k], color=colours[k], lw=1, label=f"{h} ms")
        b = fq.baseline_mm[:, k]
        if np.isfinite(b).any():
            ax.axhline(float(np.nanmean(b)), color=colours[k], ls="--", lw=0.8)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("MPJPE (mm)")
    ax.set_title("Forecast error over the session (dashed: holding the last frame, mean)")
    ax.legend(fontsize=8, ncols=len(fq.horizons_ms))
    ax.grid(alpha=0.3)
    return _save(fig, path)


__all__ = ["forecast", "heatmap", "hubs", "joint_name", "mean_body", "tension", "timeline"]
