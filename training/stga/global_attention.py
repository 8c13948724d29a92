"""Global graph attention: ``X' = concat_k W_k X (B_k + C_k)`` over every pair of nodes.

For relations between joints that the body graph does not connect — above all between one
dancer's joints and the other's. Per head ``k`` (``K`` heads, ``C/K`` channels each):

* ``B_k`` — an **adaptive** adjacency computed from the data: the window's time-averaged node
  features are embedded twice (``θ_k``, ``φ_k``, ``E`` channels) and
  ``B_k = softmax_j(θ_k(x̄_i) · φ_k(x̄_j) / √E)``, one ``(N, N)`` matrix per sample;
* ``C_k`` — a learnable ``(N, N)`` matrix shared by all samples, starting at zero;
* ``W_k`` — a linear map ``C → C/K``; the heads are concatenated back to ``C`` channels.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class GlobalGraphAttention(nn.Module):
    """Adaptive plus learned all-pairs attention.

    Args:
        channels: ``C`` input and output channels (divisible by ``heads``).
        nodes: ``N``.
        heads: ``K`` heads (default 2).
        embed: ``E`` channels of the similarity embeddings θ, φ (default 16).

    Shapes:
        x ``(B, T, N, C)`` → ``(B, T, N, C)``; :meth:`adjacency` ``(B, K, N, N)``.
    """

    def __init__(self, channels: int, nodes: int, heads: int = 2, embed: int = 16) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.heads, self.embed = heads, embed
        self.theta = nn.Linear(channels, heads * embed)
        self.phi = nn.Linear(channels, heads * embed)
        self.C = nn.Parameter(torch.zeros(heads, nodes, nodes))  # (K, N, N) learned part
        self.W = nn.Linear(channels, channels, bias=False)  # the K maps W_k, stacked
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for lin in (self.theta, self.phi):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)
        nn.init.zeros_(self.C)
        nn.init.xavier_uniform_(self.W.weight)

    def adjacency(self, x: Tensor) -> Tensor:
        """``B_k + C_k`` for every sample: ``(B, T, N, C)`` → ``(B, K, N, N)``."""
        Bn, _, N, _ = x.shape
        xm = x.mean(dim=1)  # (B, N, C) summary of the window
        th = self.theta(xm).reshape(Bn, N, self.heads, self.embed).transpose(1, 2)  # (B, K, N, E)
        ph = self.phi(xm).reshape(Bn, N, self.heads, self.embed).transpose(1, 2)  # (B, K, N, E)
        adaptive = torch.softmax(th @ ph.transpose(-1, -2) / math.sqrt(self.embed), dim=-1)  # (B, K, N, N)
        return adaptive + self.C

    def forward(self, x: Tensor) -> Tensor:
        Bn, T, N, C = x.shape
        adj = self.adjacency(x)  # (B, K, N, N)
        v = self.W(x).reshape(Bn, T, N, self.heads, C // self.heads)  # (B, T, N, K, C/K)
        out = torch.einsum("bknm,btmkc->btnkc", adj, v)  # (B, T, N, K, C/K)
        return out.reshape(Bn, T, N, C)  # heads concatenated
