"""The export spec of STGA-Net (``stga``): a window of both dancers → their poses at the horizons.

The exported graph is the whole :class:`training.stga.model.STGANet`: raw canonical positions
in, positions out, both in metres in the same shared frame (the duet normalisation is inside the
model), so the live path feeds its ring buffer unchanged. The G-GRU rollout is a fixed-length
loop, unrolled in the graph.

Imports numpy only at module level (the command line lists the kinds without torch).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exporters.spec import ExportError, ExportSpec, TensorSpec


def _stga_dims(config: Mapping[str, Any]) -> dict[str, int]:
    """Static axes of STGA-Net from its config (an ``STGAConfig`` as a dict)."""
    from stream.skeleton import J

    try:
        return {
            "T": int(config["past_frames"]),  # observed frames, the last one is "now"
            "N": 2 * J,  # dancer 0's joints, then dancer 1's
            "C": 3,  # x, y, z metres
            "H": len(config["horizons_ms"]),  # forecast horizons
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportError(f"the config is not an STGA-Net config ({exc}); export a 'stga' checkpoint") from exc


STGA = ExportSpec(
    name="stga",
    model_name="stga",
    description=(
        "STGA-Net forecaster: both dancers' last T frames (B, T, N, 3) metres → both dancers at "
        "H future horizons (B, H, N, 3) metres, same frame"
    ),
    inputs=(TensorSpec("window", ("B", "T", "N", "C")),),
    outputs=(TensorSpec("forecast", ("B", "H", "N", "C")),),
    dynamic={"B": (1, 4096)},
    export_sizes={"B": 2},
    validation_sizes=({"B": 1}, {"B": 3}, {"B": 7}),
    static_dims=_stga_dims,
    # Metres out of a few hundred float32 multiply-adds per value; inputs of std 0.5 m per frame
    # are far rougher than real motion (velocity features ~30× their training range).
    atol=1e-4,
    rtol=1e-4,
    input_std=0.5,
    window_key="past_frames",
    fps_key="fps",
    horizons_key="horizons_s",
)
