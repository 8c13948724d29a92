"""A GCN-LSTM cell whose graph is fixed bones plus relaxed, typed inter-dancer edges.

One step of the duet decoder's graph recurrent network. With ``s = [x_t, h_{t-1}]`` per node:

.. math::

    m_i &= U \\big[ (\\hat A_{bones} s)_i,\\; (A_1 s)_i, \\dots, (A_{K'} s)_i,\\;
           d_{1,i}, \\dots, d_{K',i} \\big], \\qquad
           (A_k s)_i = \\sum_{e: j \\to i} z_{e,k} \\, s_j,\\; d_{k,i} = \\sum_{e: j \\to i} z_{e,k} \\\\
    [i, f, o, g] &= W [s_i, m_i] + b \\\\
    c_t &= \\sigma(f) \\odot c_{t-1} + \\sigma(i) \\odot \\tanh(g), \\qquad
    h_t = \\sigma(o) \\odot \\tanh(c_t)

``z`` is the relaxed (or straight-through hard) Gumbel-softmax sample of every candidate
edge's type: every inter-dancer message is *multiplied* by it, so the reconstruction loss
sends gradient through ``z`` back to the encoder (the seed passed a bare index list of
sampled edges, which cuts that path). Each dancer's own bones (``\\hat A_{bones}``, GCN
normalised) are always present, so a joint with no incoming string still sees its own body;
the node's own ``s_i`` enters the gates directly (a root weight), so bone vectors
``s_i - s_parent`` are within reach.

The sums over edges are dense per-type operators ``A_k[i, j] = z_{e,k}`` for the edge
``e: j → i``, built once per window by one scatter (:func:`typed_operators`) and stacked under
the bone operator (:meth:`GCNLSTMCell.operators`); a step is then one batched matmul for every
neighbourhood and two linear layers, and nothing loops over samples or edges.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

from training.nri.gcn import normalized_adjacency, xavier_linear_


def edge_slots(senders: NDArray[np.integer] | Tensor, receivers: NDArray[np.integer] | Tensor,
               num_nodes: int) -> Tensor:
    """Flat index ``receiver·N + sender`` of every edge in an ``(N, N)`` operator, ``(E,)`` int64.

    Raises:
        ValueError: two edges share a (sender, receiver) pair (their weights would collide).
    """
    send = torch.as_tensor(np.asarray(senders), dtype=torch.int64)
    recv = torch.as_tensor(np.asarray(receivers), dtype=torch.int64)
    slots = recv * num_nodes + send  # (E,)
    if slots.unique().numel() != slots.numel():
        raise ValueError("duplicate (sender, receiver) edges; merge them before building the decoder")
    return slots


def typed_operators(z: Tensor, slots: Tensor, num_nodes: int) -> tuple[Tensor, Tensor]:
    """Per-type weighted adjacency and in-degree from edge weights.

    Args:
        z: ``(B, E, K')`` edge weights (the edge-type sample, message-carrying types only).
        slots: ``(E,)`` flat index ``receiver·N + sender`` of every edge (:func:`edge_slots`).
        num_nodes: ``N``.

    Returns:
        ``A``: ``(B, K', N, N)`` with ``A[b, k, i, j] = z[b, e, k]`` for the edge ``e: j → i``
        (0 where there is no candidate edge); ``deg``: ``(B, K', N, 1)`` the weighted in-degree.
    """
    B, _, K = z.shape  # (B, E, K')
    zt = z.transpose(1, 2)  # (B, K', E)
    A = zt.new_zeros(B, K, num_nodes * num_nodes).index_copy(2, slots, zt)  # (B, K', N·N), differentiable
    A = A.view(B, K, num_nodes, num_nodes)  # (B, K', N, N)
    return A, A.sum(dim=-1, keepdim=True)


class GCNLSTMCell(nn.Module):
    """LSTM cell over a graph of fixed bones plus typed, weighted inter-dancer edges.

    Args:
        bone_adjacency: ``(N, N)`` adjacency of both dancers' own bones (no inter-dancer edge).
        in_channels: node input features ``C``.
        hidden: hidden features ``H``.
        edge_types: number of message-carrying edge types ``K'``.
        message_channels: width ``M`` of the neighbourhood message (default ``H``).
        kinematic_messages: ``(N, N)`` bone operator ``I − P`` (``P`` picks each node's skeleton
            parent); when given, inter-dancer messages carry the sender's *kinematics only*,
            ``[x_j, (I − P) x_j]`` (its input features and its bone vector), not its hidden state.
            With hidden states the partner's nodes serve the decoder as spare memory and as a
            relay back to its own body (edges on in both directions whatever the data, and a
            decoder that forecasts as well with the partner taken from another window); with
            kinematics only, an edge helps only if the partner's motion does.

    Shapes:
        ``x (B, N, C)``, ``h, c (B, N, H)``, operators from :meth:`operators`
        ``ops (B, 1+K', N, N)``, ``deg (B, N, K')`` → ``h', c' (B, N, H)``.
    """

    a_bones: Tensor
    kin_op: Tensor | None

    def __init__(
        self,
        bone_adjacency: NDArray[np.floating] | Tensor,
        in_channels: int,
        hidden: int,
        edge_types: int,
        message_channels: int | None = None,
        kinematic_messages: NDArray[np.floating] | Tensor | None = None,
    ) -> None:
        super().__init__()
        self.register_buffer("a_bones", normalized_adjacency(bone_adjacency))
        kin = None if kinematic_messages is None else torch.as_tensor(np.asarray(kinematic_messages),
                                                                       dtype=torch.float32)
        self.register_buffer("kin_op", kin)  # None: not in the state dict (older checkpoints load)
        self.in_channels = in_channels
        self.hidden = hidden
        self.edge_types = edge_types
        self.message_channels = message_channels or hidden
        S = in_channels + hidden
        sender = S if kin is None else 2 * in_channels  # what one inter-dancer sender contributes
        # U: bone neighbourhood, every type's weighted senders and in-degrees → one message.
        self.message = nn.Linear(S + edge_types * sender + edge_types, self.message_channels)
        # W: the node itself (root) and its message → the four gates.
        self.gates = nn.Linear(S + self.message_channels, 4 * hidden)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        xavier_linear_(self.message)
        xavier_linear_(self.gates)
        if self.gates.bias is not None:
            with torch.no_grad():
                # Forget-gate bias 1: remember by default (Jozefowicz et al., 2015).
                self.gates.bias[self.hidden : 2 * self.hidden].fill_(1.0)

    def operators(self, A: Tensor, deg: Tensor) -> tuple[Tensor, Tensor]:
        """Stack the bone operator over the typed ones (once per window).

        ``A (B, K', N, N)``, ``deg (B, K', N, 1)`` → ``ops (B, 1+K', N, N)``, ``deg (B, N, K')``.
        """
        B, _, N, _ = A.shape
        ops = torch.cat([self.a_bones.expand(B, 1, N, N), A], dim=1)  # (B, 1+K', N, N)
        return ops, deg.squeeze(-1).transpose(1, 2)  # (B, N, K')

    def forward(self, x: Tensor, h: Tensor, c: Tensor, ops: Tensor, deg: Tensor) -> tuple[Tensor, Tensor]:
        B, N, _ = x.shape
        s = torch.cat([x, h], dim=-1)  # (B, N, S) with S = C + H
        if self.kin_op is None:
            nb = ops @ s.unsqueeze(1)  # (B, 1+K', N, N) @ (B, 1, N, S) → (B, 1+K', N, S)
            nb = nb.permute(0, 2, 1, 3).reshape(B, N, -1)  # (B, N, (1+K')·S)
        else:
            own = ops[:, 0] @ s  # (B, N, S): bone neighbourhood of the full state
            k = torch.cat([x, self.kin_op @ x], dim=-1)  # (B, N, 2C): sender kinematics
            typed = (ops[:, 1:] @ k.unsqueeze(1)).permute(0, 2, 1, 3).reshape(B, N, -1)  # (B, N, K'·2C)
            nb = torch.cat([own, typed], dim=-1)
        m = self.message(torch.cat([nb, deg], dim=-1))  # (B, N, M)
        gates = self.gates(torch.cat([s, m], dim=-1))  # (B, N, 4H)
        i, f, o, g = gates.chunk(4, dim=-1)  # 4 × (B, N, H)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        return h_new, c_new

    def extra_repr(self) -> str:
        return (
            f"in={self.in_channels}, hidden={self.hidden}, edge_types={self.edge_types}, "
            f"message={self.message_channels}, nodes={self.a_bones.shape[0]}"
        )
