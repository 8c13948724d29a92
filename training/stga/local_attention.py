"""Local spatial graph attention: ``X' = W X softmax(M ⊙ A)`` over a fixed body graph.

The attention weights are a softmax of a learnable mask ``M`` restricted to the entries of the
fixed adjacency ``A`` (bones, left/right counterparts, distal links; see
:mod:`training.stga.graph`). Read as a masked softmax over each node's neighbours::

    P[i, j] = A[i, j] · exp(M[i, j]) / Σ_k A[i, k] · exp(M[i, k])

so ``P`` is exactly zero wherever ``A`` is zero and each row of ``P`` sums to one. ``M`` starts
at zero (uniform attention over the neighbours). ``P`` depends on parameters only, not on the
data: at export it folds into one constant ``(N, N)`` matrix.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn


class LocalGraphAttention(nn.Module):
    """Masked-softmax graph attention over a fixed adjacency.

    Args:
        channels: ``C`` input and output channels.
        adjacency: ``(N, N)`` 0/1 adjacency; every row needs at least one 1 (a self loop).

    Shapes:
        x ``(B, T, N, C)`` → ``(B, T, N, C)``.
    """

    mask_bias: Tensor

    def __init__(self, channels: int, adjacency: NDArray[np.floating]) -> None:
        super().__init__()
        A = torch.as_tensor(np.asarray(adjacency), dtype=torch.float32)
        if A.dim() != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"adjacency must be square (N, N), got {tuple(A.shape)}")
        if bool((A.sum(dim=1) <= 0).any()):
            raise ValueError("every node needs at least one neighbour in the adjacency (add self loops)")
        # -inf where A is zero: those entries get exactly zero weight after the softmax.
        self.register_buffer("mask_bias", torch.where(A > 0, 0.0, float("-inf")))
        self.M = nn.Parameter(torch.zeros_like(A))  # (N, N) learnable mask
        self.W = nn.Linear(channels, channels, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.M)
        nn.init.xavier_uniform_(self.W.weight)

    def attention(self) -> Tensor:
        """``P`` ``(N, N)``: row-stochastic, zero wherever the adjacency is zero."""
        return torch.softmax(self.M + self.mask_bias, dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        P = self.attention()  # (N, N) receiver i, sender j
        return torch.matmul(P, self.W(x))  # (N, N) @ (B, T, N, C) → (B, T, N, C)
