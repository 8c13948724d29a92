"""Keypoint flow, velocity and acceleration of MKFF-ST-GCN, causal and centred.

From poses ``P_t`` (``(B, T, N, 3)`` metres, time on axis 1) and a frame step ``d``:

**centred** (the paper; offline — uses frames up to ``t + 3d``)::

    P̃_t = (P_{t-d} + P_t + P_{t+d}) / 3        keypoint flow      (m)
    v_t = (P̃_{t+d} - P̃_t) / d                  velocity           (m / frame)
    a_t = (v_{t+d} - v_t) / d                  acceleration       (m / frame²)

**causal** (live; uses only ``P_{t-4d} .. P_t``, no added latency)::

    P̃_t = (P_{t-2d} + P_{t-d} + P_t) / 3
    v_t = (P̃_t - P̃_{t-d}) / d
    a_t = (v_t - v_{t-d}) / d

Frame indices outside the window are clamped to its ends (the first/last frame is repeated,
as the live cleaner does at start-up), so every output has the input's shape and no value
depends on a frame outside the window. Units are per *frame*; multiply by ``fps`` (``fps²``)
for m/s (m/s²).
"""

from __future__ import annotations

import torch
from torch import Tensor

from stream.errors import IStringsError

MODES: tuple[str, ...] = ("causal", "centred")


class FeatureError(IStringsError, ValueError):
    """A feature mode or step is invalid."""


def shift(x: Tensor, k: int) -> Tensor:
    """``y_t = x_{clamp(t + k, 0, T-1)}`` along axis 1 (``k < 0``: the past).

    Shapes:
        ``x (B, T, ...)`` → ``(B, T, ...)``.
    """
    T = x.shape[1]
    idx = torch.clamp(torch.arange(T, device=x.device) + k, 0, T - 1)  # (T,)
    return x.index_select(1, idx)


def keypoint_flow(x: Tensor, d: int = 1, mode: str = "causal") -> Tensor:
    """Three-frame mean ``P̃_t`` (see the module docstring); ``(B, T, N, 3)`` → same, metres."""
    _check(d, mode)
    if mode == "causal":
        return (shift(x, -2 * d) + shift(x, -d) + x) / 3.0
    return (shift(x, -d) + x + shift(x, d)) / 3.0


def velocity(flow: Tensor, d: int = 1, mode: str = "causal") -> Tensor:
    """``v_t`` from the flow; ``(B, T, N, 3)`` → same, metres per frame."""
    _check(d, mode)
    if mode == "causal":
        return (flow - shift(flow, -d)) / d
    return (shift(flow, d) - flow) / d


def acceleration(vel: Tensor, d: int = 1, mode: str = "causal") -> Tensor:
    """``a_t`` from the velocity; ``(B, T, N, 3)`` → same, metres per frame²."""
    _check(d, mode)
    if mode == "causal":
        return (vel - shift(vel, -d)) / d
    return (shift(vel, d) - vel) / d


def motion_features(x: Tensor, d: int = 1, mode: str = "causal") -> tuple[Tensor, Tensor, Tensor]:
    """``(flow, velocity, acceleration)`` of poses ``x (B, T, N, 3)`` metres, each ``(B, T, N, 3)``."""
    flow = keypoint_flow(x, d, mode)
    vel = velocity(flow, d, mode)
    return flow, vel, acceleration(vel, d, mode)


def _check(d: int, mode: str) -> None:
    if mode not in MODES:
        raise FeatureError(f"feature mode must be one of {', '.join(MODES)}, got {mode!r}")
    if d < 1:
        raise FeatureError(f"the frame step d must be >= 1, got {d}")
