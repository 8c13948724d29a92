"""Temporal dilated convolution with a ``(k, 1)`` kernel: each node's channels over time.

A "valid" convolution (no padding): frame ``t`` of the output sees input frames
``t, t + d, …, t + (k − 1)·d``, so ``T`` shrinks by ``(k − 1)·d``. Written as one linear map of
the ``k`` time-shifted slices concatenated on channels — the same function as
``Conv2d(C, C, (k, 1), dilation=(d, 1))`` without the layout permutes around it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class TemporalDilatedConv(nn.Module):
    """``(k, 1)`` dilated convolution over time, valid padding.

    Args:
        channels: ``C`` in and out.
        kernel: ``k`` taps (default 3).
        dilation: ``d`` frames between taps (default 1).

    Shapes:
        x ``(B, T, N, C)`` → ``(B, T − (k − 1)·d, N, C)``.
    """

    def __init__(self, channels: int, kernel: int = 3, dilation: int = 1) -> None:
        super().__init__()
        if kernel < 1 or dilation < 1:
            raise ValueError(f"kernel and dilation must be >= 1, got {kernel}, {dilation}")
        self.kernel, self.dilation = kernel, dilation
        self.linear = nn.Linear(kernel * channels, channels)
        self.reset_parameters()

    @property
    def shrink(self) -> int:
        """Frames lost: ``(k − 1)·d``."""
        return (self.kernel - 1) * self.dilation

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        T_out = x.shape[1] - self.shrink
        taps = [x[:, i * self.dilation : i * self.dilation + T_out] for i in range(self.kernel)]  # k × (B, T', N, C)
        return self.linear(torch.cat(taps, dim=-1))  # (B, T', N, k·C) → (B, T', N, C)
