"""Plots of training metrics: one PNG per metric, train and validation curves over epochs.

Pure of side effects other than writing the files; uses the non-interactive Agg backend so it
runs on machines without a display.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after matplotlib.use: the backend is chosen first

_PREFIXES = ("train/", "val/")
_SKIP = {"epoch", "time_s", "wall_s"}


def metric_names(history: Sequence[Mapping[str, float]]) -> list[str]:
    """Metric base names (``loss`` for ``train/loss`` and ``val/loss``), in first-seen order."""
    names: list[str] = []
    for row in history:
        for key in row:
            base = key.split("/", 1)[1] if key.startswith(_PREFIXES) else key
            if base not in _SKIP and base not in names:
                names.append(base)
    return names


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def plot_metrics(history: Sequence[Mapping[str, float]], out_dir: str | Path) -> list[Path]:
    """Write ``<out_dir>/plots/<metric>.png`` for every metric in ``history``.

    Args:
        history: one dict per epoch with ``epoch`` and ``train/<m>`` / ``val/<m>`` / ``<m>`` floats.
        out_dir: run directory; the ``plots`` folder is created.

    Returns:
        The written PNG paths.
    """
    plot_dir = Path(out_dir) / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for name in metric_names(history):
        fig, ax = plt.subplots(figsize=(5.0, 3.2), dpi=100)
        drawn = False
        values: list[float] = []
        for key, label in ((f"train/{name}", "train"), (f"val/{name}", "validation"), (name, name)):
            pts = [
                (float(r["epoch"]), float(r[key]))
                for r in history
                if key in r and "epoch" in r and math.isfinite(float(r[key]))
            ]
            if pts:
                xs, ys = zip(*pts, strict=True)
                values += ys
                ax.plot(xs, ys, marker="o" if len(pts) < 30 else None, markersize=3, label=label)
                drawn = True
        if drawn:
            # Losses like NRI's NLL span orders of magnitude: a log axis keeps late epochs readable.
            if min(values) > 0 and max(values) / min(values) > 100:
                ax.set_yscale("log")
            ax.set_xlabel("epoch")
            ax.set_ylabel(name)
            ax.set_title(name)
            ax.grid(alpha=0.3)
            ax.legend()
            fig.tight_layout()
            path = plot_dir / f"{_safe(name)}.png"
            fig.savefig(path)
            paths.append(path)
        plt.close(fig)
    return paths
