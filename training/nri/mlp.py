"""The original NRI model (Kipf et al. 2018): MLP encoder, MLP and RNN decoders, fully batched.

The graph is explicit: ``E`` directed edges given by one-hot *receiver* and *sender* matrices
``rel_rec, rel_send`` of shape ``(E, N)``. Node→edge is ``[rel_send @ h, rel_rec @ h]`` and
edge→node is ``rel_rec.T @ h_e``; every step is a matmul/einsum over the whole batch, with no
Python loop over samples, edges or edge types (edge types use stacked weights ``(K, C_in, C_out)``).

Encoder (factor-graph pass, ``factor=True``)::

    h_i  = f_v1(x_i)                        x_i: node i's whole trajectory (T·C values)
    h_ij = f_e1([h_i, h_j])                 node → edge
    h_j  = f_v2(mean_{i→j} h_ij)            edge → node
    h_ij = f_e2([h_i, h_j, h_ij(skip)])     node → edge, with the skip of the first edge pass
    logits_ij = W h_ij                      (B, E, K)

Decoder (MLP, Markov): ``x_j^{t+1} = x_j^t + f_out([x_j^t, Σ_i Σ_k z_ij,k f_k([x_i^t, x_j^t])])``,
messages weighted by the relaxed edge samples ``z`` so the reconstruction loss reaches the
encoder. ``skip_first`` makes type 0 the "no edge" type (no message). The RNN decoder replaces the
Markov state by a GRU over message-aggregated hidden states.

Shapes: ``B`` batch, ``N`` nodes, ``T`` frames, ``C`` channels per node (4 for particles:
x, y, vx, vy), ``E`` edges, ``K`` edge types, ``H`` hidden width.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.checkpoint import register_model
from training.nri.gumbel import gumbel_softmax


def fully_connected_edges(num_nodes: int) -> tuple[Tensor, Tensor]:
    """Sender and receiver indices ``(E,)`` of all ordered pairs ``i != j``, ``E = N (N - 1)``.

    Edge order is row-major over the off-diagonal of an ``N x N`` matrix: edge ``e`` = ``(i, j)``
    with sender ``i`` and receiver ``j``, so ``labels[:, e] = edges[:, i, j]``.
    """
    off = ~torch.eye(num_nodes, dtype=torch.bool)
    send, recv = off.nonzero(as_tuple=True)
    return send, recv


def relation_matrices(senders: Tensor, receivers: Tensor, num_nodes: int) -> tuple[Tensor, Tensor]:
    """One-hot ``(rel_rec, rel_send)``, each ``(E, N)`` float32, from index vectors ``(E,)``."""
    rel_rec = F.one_hot(receivers.long(), num_nodes).float()
    rel_send = F.one_hot(senders.long(), num_nodes).float()
    return rel_rec, rel_send


class MLPBlock(nn.Module):
    """Two ELU layers, dropout between, batch norm over the features of every leading position.

    Shapes:
        ``(..., C_in)`` → ``(..., C_out)``.
    """

    def __init__(self, n_in: int, n_hid: int, n_out: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(n_in, n_hid)
        self.fc2 = nn.Linear(n_hid, n_out)
        self.bn = nn.BatchNorm1d(n_out)
        self.dropout = dropout
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for fc in (self.fc1, self.fc2):
            nn.init.xavier_normal_(fc.weight)
            nn.init.constant_(fc.bias, 0.1)
        self.bn.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        h = F.elu(self.fc1(x))
        h = F.dropout(h, self.dropout, training=self.training)
        h = F.elu(self.fc2(h))
        lead = h.shape[:-1]
        return self.bn(h.reshape(-1, h.size(-1))).reshape(*lead, h.size(-1))  # (..., C_out)


class MLPEncoder(nn.Module):
    """NRI's MLP encoder: edge-type logits from whole trajectories.

    Args:
        n_in: ``T * C`` (a node's flattened trajectory).
        n_hid: hidden width ``H``.
        edge_types: ``K``.
        dropout: dropout probability inside the MLP blocks.
        factor: use the factor-graph pass (edge→node→edge); else a second edge MLP.

    Shapes:
        x ``(B, N, T, C)``, rel_rec/rel_send ``(E, N)`` → logits ``(B, E, K)``.
    """

    def __init__(self, n_in: int, n_hid: int, edge_types: int, dropout: float = 0.0, factor: bool = True) -> None:
        super().__init__()
        self.factor = factor
        self.mlp1 = MLPBlock(n_in, n_hid, n_hid, dropout)
        self.mlp2 = MLPBlock(2 * n_hid, n_hid, n_hid, dropout)
        self.mlp3 = MLPBlock(n_hid, n_hid, n_hid, dropout)
        self.mlp4 = MLPBlock(3 * n_hid if factor else 2 * n_hid, n_hid, n_hid, dropout)
        self.fc_out = nn.Linear(n_hid, edge_types)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_normal_(self.fc_out.weight)
        nn.init.constant_(self.fc_out.bias, 0.1)

    @staticmethod
    def node2edge(h: Tensor, rel_rec: Tensor, rel_send: Tensor) -> Tensor:
        """``(B, N, H)`` → ``(B, E, 2H)`` as ``[sender, receiver]``."""
        return torch.cat([rel_send @ h, rel_rec @ h], dim=-1)

    @staticmethod
    def edge2node(h: Tensor, rel_rec: Tensor) -> Tensor:
        """``(B, E, H)`` → ``(B, N, H)``: mean of each node's incoming edges."""
        in_degree = rel_rec.sum(0).clamp(min=1.0).unsqueeze(-1)  # (N, 1)
        return (rel_rec.t() @ h) / in_degree

    def forward(self, x: Tensor, rel_rec: Tensor, rel_send: Tensor) -> Tensor:
        B, N = x.shape[:2]
        h = self.mlp1(x.reshape(B, N, -1))  # (B, N, T*C) → (B, N, H)
        h = self.mlp2(self.node2edge(h, rel_rec, rel_send))  # (B, E, H)
        skip = h
        if self.factor:
            h = self.mlp3(self.edge2node(h, rel_rec))  # (B, N, H)
            h = torch.cat([self.node2edge(h, rel_rec, rel_send), skip], dim=-1)  # (B, E, 3H)
        else:
            h = torch.cat([self.mlp3(h), skip], dim=-1)  # (B, E, 2H)
        return self.fc_out(self.mlp4(h))  # (B, E, K)


class TypedLinear(nn.Module):
    """A separate linear map per edge type, applied to the same input at once.

    Shapes:
        x ``(..., C_in)`` → ``(..., K, C_out)``.
    """

    def __init__(self, types: int, n_in: int, n_out: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(types, n_in, n_out))
        self.bias = nn.Parameter(torch.empty(types, n_out)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same law as nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
        bound = 1.0 / math.sqrt(self.weight.size(1))
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        y = torch.einsum("...i,kio->...ko", x, self.weight)
        return y + self.bias if self.bias is not None else y


class TypedMessages(nn.Module):
    """Per-type message MLPs ``f_k`` on edge inputs, summed with edge-type weights ``z``.

    Shapes:
        pre ``(B, T, E, C_in)``, z ``(B, E, K)`` → ``(B, T, E, H)``.
    """

    def __init__(self, edge_types: int, n_in: int, n_hid: int, skip_first: bool, dropout: float,
                 act: Literal["relu", "tanh"]) -> None:
        super().__init__()
        self.start = 1 if skip_first else 0
        used = edge_types - self.start
        self.fc1 = TypedLinear(used, n_in, n_hid)
        self.fc2 = nn.Parameter(torch.empty(used, n_hid, n_hid))
        self.fc2_bias = nn.Parameter(torch.empty(used, n_hid))
        self.dropout = dropout
        self.act = torch.relu if act == "relu" else torch.tanh
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.fc1.reset_parameters()
        bound = 1.0 / math.sqrt(self.fc2.size(1))
        nn.init.uniform_(self.fc2, -bound, bound)
        nn.init.uniform_(self.fc2_bias, -bound, bound)

    def forward(self, pre: Tensor, z: Tensor) -> Tensor:
        m = self.act(self.fc1(pre))  # (B, T, E, K', H)
        m = F.dropout(m, self.dropout, training=self.training)
        # Type k's second layer acts on type k's first-layer output: (B, T, E, K', H) x (K', H, H).
        m = self.act(torch.einsum("...ki,kio->...ko", m, self.fc2) + self.fc2_bias)  # (B, T, E, K', H)
        w = z[:, None, :, self.start:, None]  # (B, 1, E, K', 1)
        return (m * w).sum(dim=-2)  # (B, T, E, H)


class MLPDecoder(nn.Module):
    """NRI's Markov MLP decoder: one step ``x^t → x^{t+1}`` with residual output.

    Args:
        n_in: channels per node ``C``.
        edge_types: ``K``.
        msg_hid: message width.
        n_hid: output MLP width.
        skip_first: type 0 sends no message ("no edge").
        dropout: dropout probability.

    Shapes:
        x ``(B, N, T, C)``, z ``(B, E, K)`` → predictions ``(B, N, T - 1, C)`` of frames ``1..T-1``.
    """

    def __init__(self, n_in: int, edge_types: int, msg_hid: int, n_hid: int, skip_first: bool = False,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.msgs = TypedMessages(edge_types, 2 * n_in, msg_hid, skip_first, dropout, "relu")
        self.out_fc1 = nn.Linear(n_in + msg_hid, n_hid)
        self.out_fc2 = nn.Linear(n_hid, n_hid)
        self.out_fc3 = nn.Linear(n_hid, n_in)
        self.dropout = dropout

    def step(self, x: Tensor, z: Tensor, rel_rec: Tensor, rel_send: Tensor) -> Tensor:
        """One step for many start frames: ``(B, T', N, C)`` → ``(B, T', N, C)``."""
        pre = torch.cat([rel_send @ x, rel_rec @ x], dim=-1)  # (B, T', E, 2C)
        msg = self.msgs(pre, z)  # (B, T', E, H)
        agg = rel_rec.t() @ msg  # (B, T', N, H): sum over incoming edges
        h = F.dropout(F.relu(self.out_fc1(torch.cat([x, agg], dim=-1))), self.dropout, self.training)
        h = F.dropout(F.relu(self.out_fc2(h)), self.dropout, self.training)
        return x + self.out_fc3(h)

    def forward(self, x: Tensor, z: Tensor, rel_rec: Tensor, rel_send: Tensor, pred_steps: int = 1) -> Tensor:
        B, N, T, C = x.shape
        xt = x.transpose(1, 2)  # (B, T, N, C)
        # Teacher forcing every pred_steps frames: start from the true frames 0, p, 2p, ... and
        # roll each start forward p steps; all starts advance together.
        cur = xt[:, 0::pred_steps]  # (B, T', N, C), T' = ceil(T / p)
        preds = []
        for _ in range(pred_steps):
            cur = self.step(cur, z, rel_rec, rel_send)
            preds.append(cur)
        out = torch.stack(preds, dim=2)  # (B, T', p, N, C): start s, step i → frame s*p + i + 1
        out = out.reshape(B, -1, N, C)[:, : T - 1]  # (B, T - 1, N, C)
        return out.transpose(1, 2)  # (B, N, T - 1, C)


class RNNDecoder(nn.Module):
    """NRI's recurrent decoder: a GRU per node whose input is the aggregated typed messages.

    Teacher forcing: with ``burn_in_steps`` the true frames drive the first ``burn_in_steps``
    steps and the model then runs free; otherwise the true frame is fed every ``pred_steps``.

    Shapes:
        x ``(B, N, T, C)``, z ``(B, E, K)`` → predictions ``(B, N, T - 1, C)``.
    """

    def __init__(self, n_in: int, edge_types: int, n_hid: int, skip_first: bool = False,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.msgs = TypedMessages(edge_types, 2 * n_hid, n_hid, skip_first, dropout, "tanh")
        self.hidden_r = nn.Linear(n_hid, n_hid, bias=False)
        self.hidden_i = nn.Linear(n_hid, n_hid, bias=False)
        self.hidden_h = nn.Linear(n_hid, n_hid, bias=False)
        self.input_r = nn.Linear(n_in, n_hid)
        self.input_i = nn.Linear(n_in, n_hid)
        self.input_n = nn.Linear(n_in, n_hid)
        self.out_fc1 = nn.Linear(n_hid, n_hid)
        self.out_fc2 = nn.Linear(n_hid, n_hid)
        self.out_fc3 = nn.Linear(n_hid, n_in)
        self.n_hid = n_hid
        self.dropout = dropout

    def step(self, x: Tensor, hidden: Tensor, z: Tensor, rel_rec: Tensor, rel_send: Tensor
             ) -> tuple[Tensor, Tensor]:
        """``x (B, N, C)``, ``hidden (B, N, H)`` → next ``x``, next ``hidden``."""
        pre = torch.cat([rel_send @ hidden, rel_rec @ hidden], dim=-1)  # (B, E, 2H)
        msg = self.msgs(pre.unsqueeze(1), z).squeeze(1)  # (B, E, H)
        in_degree = rel_rec.sum(0).clamp(min=1.0).unsqueeze(-1)  # (N, 1)
        agg = (rel_rec.t() @ msg) / in_degree  # (B, N, H): mean over incoming edges
        r = torch.sigmoid(self.input_r(x) + self.hidden_r(agg))
        i = torch.sigmoid(self.input_i(x) + self.hidden_i(agg))
        n = torch.tanh(self.input_n(x) + r * self.hidden_h(agg))
        hidden = (1 - i) * n + i * hidden
        h = F.dropout(F.relu(self.out_fc1(hidden)), self.dropout, self.training)
        h = F.dropout(F.relu(self.out_fc2(h)), self.dropout, self.training)
        return x + self.out_fc3(h), hidden

    def forward(self, x: Tensor, z: Tensor, rel_rec: Tensor, rel_send: Tensor, pred_steps: int = 1,
                burn_in_steps: int | None = None) -> Tensor:
        B, N, T, _C = x.shape
        hidden = x.new_zeros(B, N, self.n_hid)
        preds: list[Tensor] = []
        for t in range(T - 1):
            teacher = t < burn_in_steps if burn_in_steps is not None else t % pred_steps == 0
            inp = x[:, :, t] if teacher or not preds else preds[-1]  # (B, N, C)
            pred, hidden = self.step(inp, hidden, z, rel_rec, rel_send)
            preds.append(pred)
        return torch.stack(preds, dim=2)  # (B, N, T - 1, C)


@dataclass(frozen=True)
class NRIConfig:
    """Hyperparameters of the original NRI model.

    Attributes:
        num_nodes: ``N``.
        num_channels: ``C`` per node and frame (4 for particles: x, y, vx, vy).
        num_timesteps: ``T`` frames seen by the encoder (its input is ``T * C`` per node).
        edge_types: ``K``.
        encoder_hidden: encoder width.
        decoder_hidden: decoder width (messages and output MLP).
        decoder: ``"mlp"`` (Markov) or ``"rnn"``.
        skip_first: edge type 0 sends no message.
        dropout: dropout probability (encoder and decoder).
        factor: factor-graph encoder pass.
    """

    num_nodes: int = 5
    num_channels: int = 4
    num_timesteps: int = 49
    edge_types: int = 2
    encoder_hidden: int = 256
    decoder_hidden: int = 256
    decoder: str = "mlp"
    skip_first: bool = False
    dropout: float = 0.0
    factor: bool = True

    def __post_init__(self) -> None:
        if self.decoder not in ("mlp", "rnn"):
            raise ValueError(f"decoder must be 'mlp' or 'rnn', got {self.decoder!r}")
        if self.edge_types < 2 or self.num_nodes < 2:
            raise ValueError(f"need edge_types >= 2 and num_nodes >= 2, got {self.edge_types}, {self.num_nodes}")


class NRI(nn.Module):
    """Encoder + decoder on the fully connected graph of ``N`` nodes.

    ``forward`` returns ``(logits (B, E, K), z (B, E, K), preds (B, N, T - 1, C))``, where ``z``
    is the Gumbel-softmax sample that weighted the decoder's messages.
    """

    def __init__(self, cfg: NRIConfig) -> None:
        super().__init__()
        self.cfg = cfg
        send, recv = fully_connected_edges(cfg.num_nodes)
        rel_rec, rel_send = relation_matrices(send, recv, cfg.num_nodes)
        self.register_buffer("rel_rec", rel_rec, persistent=False)  # (E, N)
        self.register_buffer("rel_send", rel_send, persistent=False)  # (E, N)
        self.encoder = MLPEncoder(cfg.num_timesteps * cfg.num_channels, cfg.encoder_hidden, cfg.edge_types,
                                  cfg.dropout, cfg.factor)
        self.decoder: MLPDecoder | RNNDecoder
        if cfg.decoder == "mlp":
            self.decoder = MLPDecoder(cfg.num_channels, cfg.edge_types, cfg.decoder_hidden, cfg.decoder_hidden,
                                      cfg.skip_first, cfg.dropout)
        else:
            self.decoder = RNNDecoder(cfg.num_channels, cfg.edge_types, cfg.decoder_hidden, cfg.skip_first,
                                      cfg.dropout)

    @property
    def num_edges(self) -> int:
        return int(typing.cast(Tensor, self.rel_rec).shape[0])

    def encode(self, x: Tensor) -> Tensor:
        """Edge-type logits ``(B, E, K)`` from trajectories ``(B, N, T, C)``."""
        return self.encoder(x, self.rel_rec, self.rel_send)

    def decode(self, x: Tensor, z: Tensor, pred_steps: int = 1, burn_in_steps: int | None = None) -> Tensor:
        """Predictions ``(B, N, T - 1, C)`` of frames ``1..T-1`` given edge weights ``z (B, E, K)``."""
        if isinstance(self.decoder, RNNDecoder):
            return self.decoder(x, z, self.rel_rec, self.rel_send, pred_steps,
                                burn_in_steps)
        return self.decoder(x, z, self.rel_rec, self.rel_send, pred_steps)

    def forward(self, x: Tensor, tau: float = 0.5, hard: bool = False, pred_steps: int = 1,
                burn_in_steps: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
        if x.dim() != 4 or x.shape[1] != self.cfg.num_nodes or x.shape[3] != self.cfg.num_channels:
            raise ValueError(f"expected x of shape (B, {self.cfg.num_nodes}, T, {self.cfg.num_channels}), "
                             f"got {tuple(x.shape)}")
        enc_in = x[:, :, : self.cfg.num_timesteps]  # (B, N, T_enc, C)
        logits = self.encode(enc_in)  # (B, E, K)
        z = gumbel_softmax(logits, tau=tau, hard=hard)  # (B, E, K)
        return logits, z, self.decode(x, z, pred_steps, burn_in_steps)


register_model("nri_mlp", NRIConfig, NRI)
