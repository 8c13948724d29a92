"""Graph convolution over a fixed graph (Kipf & Welling), dense and batched.

.. math::

    X' = \\hat A \\, X W + X W_{root} + b, \\qquad \\hat A = D^{-1/2} (A + I) D^{-1/2}

The optional root term ``X W_root`` (PyG's ``GraphConv`` has the same) lets a node tell its own
features from its neighbours': plain GCN only sees the smoothed ``(\\hat A X)_i``, so it cannot
form a bone vector ``x_i - x_parent``, which the duet encoder needs.

``A`` is a fixed ``(N, N)`` adjacency (for a duet: both dancers' own bones, block
diagonal), held as a buffer, so the layer is one ``matmul`` and exports to ONNX as
``MatMul`` with no data-dependent control flow.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn


def normalized_adjacency(adjacency: NDArray[np.floating] | Tensor) -> Tensor:
    """Symmetric normalisation with self loops, ``D^{-1/2} (A + I) D^{-1/2}``.

    Args:
        adjacency: ``(N, N)`` 0/1 (or weighted) symmetric adjacency without self loops.

    Returns:
        ``(N, N)`` float32 tensor.
    """
    A = torch.as_tensor(np.asarray(adjacency), dtype=torch.float32)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"adjacency must be square (N, N), got {tuple(A.shape)}")
    A = A + torch.eye(A.shape[0])
    d_inv_sqrt = A.sum(dim=1).rsqrt()  # (N,) every degree >= 1 thanks to the self loop
    return d_inv_sqrt[:, None] * A * d_inv_sqrt[None, :]


class GCNConv(nn.Module):
    """One graph convolution on a fixed graph.

    Args:
        adjacency: ``(N, N)`` adjacency without self loops; normalised here.
        in_channels: input features per node ``C_in``.
        out_channels: output features per node ``C_out``.
        bias: add a learned bias (default True).
        root_weight: add a separate linear term of each node's own features (default False).

    Shapes:
        input ``(..., N, C_in)`` → output ``(..., N, C_out)``.
    """

    a_hat: Tensor

    def __init__(
        self,
        adjacency: NDArray[np.floating] | Tensor,
        in_channels: int,
        out_channels: int,
        bias: bool = True,
        root_weight: bool = False,
    ) -> None:
        super().__init__()
        self.register_buffer("a_hat", normalized_adjacency(adjacency))
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.weight = nn.Parameter(torch.empty(in_channels, out_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.root = nn.Parameter(torch.empty(in_channels, out_channels)) if root_weight else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_normal_(self.weight)
        if self.root is not None:
            nn.init.xavier_normal_(self.root)
        if self.bias is not None:
            nn.init.constant_(self.bias, 0.0)

    @property
    def num_nodes(self) -> int:
        return int(self.a_hat.shape[0])

    def forward(self, x: Tensor) -> Tensor:
        h = x @ self.weight  # (..., N, C_out): project first, the smaller side goes through Â
        h = self.a_hat @ h  # (N, N) @ (..., N, C_out) → (..., N, C_out)
        if self.root is not None:
            h = h + x @ self.root  # (..., N, C_out)
        if self.bias is not None:
            h = h + self.bias
        return h

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, nodes={self.num_nodes}, root={self.root is not None}"


def xavier_linear_(layer: nn.Linear, bias: float = 0.0) -> None:
    """Xavier-normal weights and a constant bias (the NRI initialisation)."""
    nn.init.xavier_normal_(layer.weight)
    if layer.bias is not None:
        nn.init.constant_(layer.bias, bias)


def fan_in_uniform_(weight: Tensor) -> None:
    """``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, PyTorch's LSTM initialisation."""
    bound = 1.0 / math.sqrt(weight.shape[0])
    nn.init.uniform_(weight, -bound, bound)
