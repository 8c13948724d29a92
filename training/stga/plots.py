"""Figures of a forecast evaluation: error per horizon (model vs baselines) and per joint."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after matplotlib.use: the backend is chosen first
import numpy as np

from stream.skeleton import CANONICAL

_SERIES = (("model", "STGA-Net"), ("gated", "STGA-Net, gated"), ("zero_velocity", "zero velocity"),
           ("constant_velocity", "constant velocity"))


def plot_evaluation(report: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """Write ``forecast_per_horizon.png`` and ``forecast_per_joint.png`` from :func:`evaluate_stga`'s report."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    horizons = list(report["horizons_ms"])
    paths = []

    fig, ax = plt.subplots(figsize=(5.5, 3.5), dpi=100)
    for key, label in _SERIES:
        if key in report:  # reports written before the gate have no "gated"
            ax.plot(horizons, report[key]["mpjpe_mm"], marker="o", label=label)
    ax.set_xlabel("horizon (ms)")
    ax.set_ylabel("MPJPE (mm)")
    ax.set_title(f"forecast error, {report.get('windows', '?')} windows: {', '.join(report.get('takes', []))}",
                 fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    paths.append(out / "forecast_per_horizon.png")
    fig.savefig(paths[-1])
    plt.close(fig)

    per_joint = np.asarray(report["per_joint_mm"])  # (H, J)
    fig, ax = plt.subplots(figsize=(8.0, 3.5), dpi=100)
    width = 0.8 / per_joint.shape[0]
    x = np.arange(per_joint.shape[1])
    for k, h in enumerate(horizons):
        ax.bar(x + k * width, per_joint[k], width=width, label=f"{h:g} ms")
    ax.set_xticks(x + 0.4 - width / 2, CANONICAL.joint_names, rotation=60, fontsize=7)
    ax.set_ylabel("MPJPE (mm), both dancers")
    ax.set_title("STGA-Net error per joint", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(out / "forecast_per_joint.png")
    fig.savefig(paths[-1])
    plt.close(fig)
    return paths
