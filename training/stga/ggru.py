"""Graph GRU cell (G-GRU): a GRU per node whose hidden state also hears its graph neighbours.

Each step mixes the hidden state over a learnable adjacency ``G`` (initialised to the
row-normalised local graph, free to grow entries between the dancers), then runs the usual GRU
update on ``[h, G h]``::

    m = G h
    r = σ(W_r u + U_r [h, m]),   z = σ(W_z u + U_z [h, m])
    n = tanh(W_n u + r ⊙ U_n [h, m])
    h' = (1 − z) ⊙ n + z ⊙ h
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn


class GraphGRUCell(nn.Module):
    """One G-GRU step.

    Args:
        in_channels: ``C_in`` channels of the step input ``u``.
        hidden: ``H`` hidden channels.
        adjacency: ``(N, N)`` initial graph (rows are normalised to sum to one).

    Shapes:
        u ``(B, N, C_in)``, h ``(B, N, H)`` → ``(B, N, H)``.
    """

    G0: Tensor

    def __init__(self, in_channels: int, hidden: int, adjacency: NDArray[np.floating]) -> None:
        super().__init__()
        A = torch.as_tensor(np.asarray(adjacency), dtype=torch.float32)
        self.register_buffer("G0", A / A.sum(dim=1, keepdim=True).clamp_min(1e-6))
        self.G = nn.Parameter(self.G0.clone())  # (N, N) learnable mixing
        self.input_gates = nn.Linear(in_channels, 3 * hidden)
        self.hidden_gates = nn.Linear(2 * hidden, 3 * hidden)
        self.hidden = hidden
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.G.copy_(self.G0)
        for lin in (self.input_gates, self.hidden_gates):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, u: Tensor, h: Tensor) -> Tensor:
        return self.step(self.input_gates(u), h)

    def step(self, gi: Tensor, h: Tensor) -> Tensor:
        """The update given the input gates ``gi = W u + b`` ``(B, N, 3H)`` (callers may build them
        more cheaply, e.g. from parts that do not change between steps)."""
        m = torch.matmul(self.G, h)  # (N, N) @ (B, N, H) → (B, N, H) neighbours' states
        gh = self.hidden_gates(torch.cat([h, m], dim=-1))  # (B, N, 3H)
        i_r, i_z, i_n = gi.chunk(3, dim=-1)
        h_r, h_z, h_n = gh.chunk(3, dim=-1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        return n + z * (h - n)  # = (1 − z) ⊙ n + z ⊙ h, (B, N, H)
