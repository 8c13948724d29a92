"""The export spec of MKFF-ST-GCN (``training/mkff/model.py``): a window of noisy poses → the refined pose.

Only the **causal** refiner belongs on the live path (it outputs the newest frame, no added
latency); a centred checkpoint exports with the same spec (its output is the window's centre
frame, ``latency_frames`` behind, and its metadata says ``mode = "centred"``).

The input is raw metres in the shared frame — the model centres and scales internally — so the
dummy inputs have a standard deviation of 1 m, about the spread of a duet.

Like :mod:`exporters.registry`, importing this module imports neither torch nor the training code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exporters.spec import ExportError, ExportSpec, TensorSpec

_JOINTS = 18  # stream.skeleton.J, the canonical skeleton; both dancers → N = 36
_DANCERS = 2


def _mkff_dims(config: Mapping[str, Any]) -> dict[str, int]:
    """Static axes of MKFF-ST-GCN from its config (an ``MKFFConfig`` as a dict)."""
    try:
        return {"T": int(config["window"]), "N": _DANCERS * _JOINTS, "C": 3}
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportError(f"the config is not an MKFF config ({exc}); export an 'mkff' checkpoint") from exc


MKFF = ExportSpec(
    name="mkff",
    model_name="mkff",
    description=(
        "MKFF-ST-GCN refiner: the last T frames of both dancers' noisy canonical joints (B, T, N, 3) "
        "metres, oldest first, dancer 0 then dancer 1 → the refined joints of the output frame "
        "(B, N, 3) metres (causal: the newest frame)"
    ),
    inputs=(TensorSpec("window", ("B", "T", "N", "C")),),
    outputs=(TensorSpec("refined", ("B", "N", "C")),),
    dynamic={"B": (1, 4096)},
    export_sizes={"B": 2},
    validation_sizes=({"B": 1}, {"B": 3}, {"B": 8}),
    static_dims=_mkff_dims,
    atol=2e-5,  # metres: 0.02 mm, float32 through ~10 layers with the input's ~1 m magnitude
    rtol=1e-4,
    input_std=1.0,
    window_key="window",
    fps_key="fps",
)
