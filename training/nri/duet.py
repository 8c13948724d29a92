"""The duet NRI variant: which of one dancer's joints pull on which of the other's.

The Invisible Strings seed model, with its two faults fixed (see ``docs/results.md ("the duet NRI variant")``):

* **gradient reaches the encoder** — the decoder weights every inter-dancer message by the
  relaxed (or straight-through hard) Gumbel-softmax sample of its edge type, as the original
  NRI does; the seed passed the sampled edges as a bare index list, so the encoder only
  learned from the KL term and its "strings" were samples of the prior;
* **no joint collapses to a constant** — the decoder predicts residuals
  ``x_{t+1} = x_t + Δ`` and always keeps each dancer's own bones as fixed edges.

Architecture (shapes: ``B`` windows, ``T`` frames, ``N = J0 + J1`` nodes, ``E`` candidate
inter-dancer edges in both directions, ``K`` edge types, ``C = 6`` position + velocity,
``H`` hidden):

Encoder (:class:`DuetEncoder`, exported to ONNX for the live path)::

    x (B, T, N, C) → [x, x − x_parent] (B, T, N, 2C) → (B, N, T·2C)
      → GCN over own bones (+root) → node MLP                                 h1 (B, N, H)
      → node→edge W[h_send, h_recv] → ReLU → linear → ReLU                   e1 (B, E, H)  skip
      → edge→node (mean over incoming edges) → GCN over own bones             h2 (B, N, H)
      → node→edge W[h_send, h_recv, e1] → ReLU → linear → ReLU → linear       logits (B, E, K)

The linear layer on ``[h_send, h_recv]`` is computed per node and gathered to the edges
(:class:`PairLinear`), which is the same function at a fraction of the cost. With
``pair_lags`` the first edge pass also adds a linear map of each edge's lagged bone
similarities (:class:`PairFeatures`), a pairwise relation per-node embeddings express badly.

Decoder (:class:`DuetDecoder`): a graph recurrent network of :class:`GCNLSTMCell` steps whose
inter-dancer messages are weighted by the edge sample ``z (B, E, K)`` (type 0 = "no string"
carries no message when ``skip_first``), own bones always present, output ``Δ`` added to the
input frame; ground truth for the first ``burn_in`` steps, then free rollout with teacher
forcing every ``teacher_every`` steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.checkpoint import register_model
from training.duet_data import C_FEATURES, CandidateGraph
from training.nri.gcn import GCNConv, xavier_linear_
from training.nri.gcn_lstm import GCNLSTMCell, edge_slots, typed_operators
from training.nri.gumbel import SEED_PRIORS, gumbel_softmax
from training.safe_ops import sqrt_plus

ALL_JOINTS: tuple[int, ...] = CandidateGraph.all_pairs().joints0


RECON_LOSSES = ("gaussian", "mse", "log_bone")
"""Reconstruction losses of the duet NRI (see :class:`DuetNRIConfig`)."""


@dataclass(frozen=True)
class DuetNRIConfig:
    """Hyperparameters of the duet NRI variant (saved in checkpoints and ONNX metadata).

    Attributes:
        joints0: dancer-0 joints used as nodes (canonical indices; default all 18).
        joints1: dancer-1 joints used as nodes.
        window: frames ``T`` the encoder sees (its input is ``T·C`` per node).
        in_channels: ``C`` node channels (position + velocity = 6).
        hidden: ``H``.
        edge_types: ``K`` in {2, 3, 4, 5}; type 0 means "no string".
        prior: prior over types; empty → the seed's prior for ``K``.
        skip_first: type 0 carries no message in the decoder.
        compact_encoder: the seed's compact encoder (one edge pass, no skip); default full.
        tau: Gumbel-softmax temperature.
        hard: straight-through hard samples in training.
        burn_in: the decoder is fed the ground truth for its first ``burn_in`` steps (its hidden
            state gathers every joint's recent past, so a string's lagged pull is visible), then
            rolls out freely with ground truth again every ``teacher_every`` steps.
        teacher_every: ground truth is fed to the decoder every this many steps after burn-in.
        mean_messages: divide each node's inter-dancer messages by its number of candidate
            incoming edges (NRI's averaging); else they are summed.
        recon: ``"gaussian"`` (NLL with fixed ``output_var``, as NRI), ``"mse"``, or
            ``"log_bone"``: the mean over windows and nodes of ``log(e + 1e-8)``, ``e`` a node's
            squared error of its *bone vector* (position minus its skeleton parent's; a root's
            position) over the predicted frames. Every node then counts by how many times its
            error shrinks, not by its size: a string that makes a driven bone exact is worth
            as much as the whole body's coasting error, where in position MSE it is a few
            per cent of it.
        output_var: variance of the Gaussian likelihood (normalised units).
        kl_weight: weight of the KL term (0 turns it off).
        dropout: dropout in the encoder's edge MLPs.
        bone_features: the encoder also sees every node relative to its skeleton parent
            (bone vectors and their velocities), a fixed linear map of its input.
        pair_lags: ``L``; 0 turns it off. Otherwise the encoder also gets, for every candidate
            edge, ``2 L`` pairwise numbers computed from the window (:class:`PairFeatures`): at
            each lag ``0..L-1`` frames (sender earlier), the correlation of the sender's and
            the receiver's bone-direction changes and the mean cosine of their bone directions.
        kinematic_messages: inter-dancer messages carry the sender's kinematics only (position,
            velocity, bone vector), not its hidden state (see :class:`GCNLSTMCell`).
        future: ``F``; 0 is the seed's setup: encoder and decoder see the same ``window`` frames
            and the loss counts every predicted frame — so the encoder, which has seen the
            frames the decoder must predict, can pass them on through the edge sample (it does:
            see ``docs/results.md``). ``F ≥ 1``: training windows hold ``window + F`` frames;
            the encoder sees the first ``window`` (what the live path has), the decoder is fed
            the truth through frame ``window − 1`` (``burn_in`` is ignored) and predicts the
            ``F`` frames after it, the only ones the loss counts, so the edges must *forecast*.
        supervised: train the encoder alone with cross-entropy against the planted strings
            (type 1 = string, 0 = none; NRI's *supervised* baseline) instead of the ELBO; the
            decoder stays untrained. Needs clips with planted strings. Its edges then mean what
            the training data's strings mean (see the checkpoint's card), nothing learned from
            the dancers' own motion.
        strong_threshold: the "strong edge" readout keeps edges whose largest non-null type
            probability is at least this (0.8 in the seed).
        velocity_step: ``k``; 0 is the plain residual ``x_{t+1} = x_t + Δ``. Otherwise the decoder
            predicts around constant velocity: positions ``p_{t+1} = p_t + k·v_t + Δ_p`` and
            velocities ``v_{t+1} = v_t + Δ_v``, with ``k = vel_scale / (fps · pos_scale)`` turning
            a normalised velocity into a normalised position step (set by the training code
            from the data). Then Δ is only what the joint does beyond coasting, which is where
            a partner's pull shows.
        rigid_bones: the decoder moves each dancer as a chain of rigid bones (needs
            ``velocity_step``; :func:`training.duet_nri.train_duet` sets it from the data when
            it is 0): every non-root node turns its bone direction ``d`` (unit, from its
            skeleton parent), coasting on its last turn, plus the network's correction, plus a
            *pull* towards the bone directions of the partner joints that send it a string:
            ``d' = normalise(c + Σ_k g_k Σ_e z_ek (d_sender(e) − c) / max(1, Σ_ke z_ek))`` with
            ``c = 2d − d_prev + Δ`` and a gain ``g_k`` per message-carrying type (``pull_gain``).
            Bone lengths are kept, roots coast, and forward kinematics gives the positions;
            velocities follow from them, so the reconstruction loss counts positions only. A
            string that makes a bone point where the partner's bone points is then one linear
            term of the decoder: reconstruction can reward exactly the edges that carry it.
        pull_gain: ``g_k`` of every type at the start (``rigid_bones``).
        learn_pull_gain: train ``g_k`` with the decoder. Off by default: a learned gain goes to 0
            while the encoder's edges are still random (each one pulls a bone the wrong way), and
            then no edge is rewarded any more (``docs/results.md``).
    """

    joints0: tuple[int, ...] = ALL_JOINTS
    joints1: tuple[int, ...] = ALL_JOINTS
    window: int = 8
    in_channels: int = C_FEATURES
    hidden: int = 64
    edge_types: int = 2
    prior: tuple[float, ...] = field(default=())
    skip_first: bool = True
    compact_encoder: bool = False
    tau: float = 0.5
    hard: bool = False
    burn_in: int = 0
    teacher_every: int = 8
    mean_messages: bool = False
    recon: str = "gaussian"
    output_var: float = 5e-5
    kl_weight: float = 1.0
    dropout: float = 0.0
    bone_features: bool = True
    pair_lags: int = 0
    kinematic_messages: bool = False
    future: int = 0
    supervised: bool = False
    strong_threshold: float = 0.8
    velocity_step: float = 0.0
    rigid_bones: bool = False
    pull_gain: float = 1.0
    learn_pull_gain: bool = False

    def __post_init__(self) -> None:
        if self.edge_types not in SEED_PRIORS and not self.prior:
            raise ValueError(f"edge_types must be one of {sorted(SEED_PRIORS)} unless a prior is given")
        if self.prior and (len(self.prior) != self.edge_types or abs(sum(self.prior) - 1) > 1e-4):
            raise ValueError(f"prior must have {self.edge_types} probabilities summing to 1, got {self.prior}")
        if self.recon not in RECON_LOSSES:
            raise ValueError(f"recon must be one of {', '.join(RECON_LOSSES)}, got {self.recon!r}")
        if self.window < 2 or self.hidden < 1 or self.teacher_every < 1:
            raise ValueError("window must be >= 2, hidden >= 1, teacher_every >= 1")
        if not 0 <= self.pair_lags < self.window - 1:
            raise ValueError(f"pair_lags must be in [0, window - 1), got {self.pair_lags}")
        if self.future < 0:
            raise ValueError(f"future must be >= 0, got {self.future}")
        if not 0 <= self.burn_in < self.window:
            raise ValueError(f"burn_in must be in [0, window), got {self.burn_in}")

    @property
    def graph(self) -> CandidateGraph:
        return CandidateGraph(tuple(self.joints0), tuple(self.joints1))

    @property
    def frames(self) -> int:
        """Frames of a training window: ``window + future``."""
        return self.window + self.future

    @property
    def type_prior(self) -> tuple[float, ...]:
        return tuple(self.prior) if self.prior else tuple(SEED_PRIORS[self.edge_types])

    @property
    def message_types(self) -> int:
        """``K'``: edge types that carry a message in the decoder."""
        return self.edge_types - 1 if self.skip_first else self.edge_types


class PairLinear(nn.Module):
    """``W [h_send, h_recv] + b`` for every edge, computed per node then gathered.

    Equal to a linear layer on the concatenated sender and receiver features, but the matmuls
    run over ``N`` nodes instead of ``E`` edges (``E = 648`` vs ``N = 36`` for all pairs).

    Shapes:
        ``h (B, N, C_in)`` → ``(B, E, C_out)``.
    """

    send_idx: Tensor
    recv_idx: Tensor

    def __init__(self, send: Tensor, recv: Tensor, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.register_buffer("send_idx", send.clone())
        self.register_buffer("recv_idx", recv.clone())
        self.send = nn.Linear(in_channels, out_channels)
        self.recv = nn.Linear(in_channels, out_channels, bias=False)
        xavier_linear_(self.send, bias=0.1)
        xavier_linear_(self.recv)

    def forward(self, h: Tensor) -> Tensor:
        hs = self.send(h).index_select(1, self.send_idx)  # (B, N, C_out) → (B, E, C_out)
        hr = self.recv(h).index_select(1, self.recv_idx)  # (B, E, C_out)
        return hs + hr


class PairFeatures(nn.Module):
    """Lagged similarity of every candidate edge's two bones over the window (no parameters).

    A string copies the sender's bone direction onto the receiver's a few frames later, a
    *pairwise* relation that a per-node embedding summed per edge (:class:`PairLinear`) finds
    hard to express. With unit bone directions ``u_n(t)`` (bone = node minus its skeleton
    parent; a node without a parent node keeps its position) and their changes
    ``Δu_n(t) = u_n(t+1) − u_n(t)``, for every lag ``l = 0..L-1`` and edge ``s → r``:

    * ``corr_l = Σ_t Δu_s(t)·Δu_r(t+l) / sqrt(Σ_t |Δu_s(t)|² · Σ_t |Δu_r(t+l)|²)``
      (in [-1, 1]; 1 when the receiver's bone turns exactly as the sender's did ``l`` frames
      before),
    * ``cos_l = mean_t u_s(t)·u_r(t+l)``.

    Both are invariant to a common rotation of the duet and to its scale. Only positions
    (the first three channels) are used.

    Shapes:
        ``x (B, T, N, C)`` → ``(B, E, 2 L)`` ordered ``[corr_0, cos_0, corr_1, cos_1, …]``.
    """

    bone_op: Tensor
    slots: Tensor

    def __init__(self, bone_op: Tensor, send: Tensor, recv: Tensor, lags: int) -> None:
        super().__init__()
        self.lags = lags
        self.register_buffer("bone_op", bone_op.clone())
        self.register_buffer("slots", send * bone_op.shape[0] + recv)  # (E,) flat index into (N, N)

    def operators(self, T: int, dtype: torch.dtype, device: torch.device) -> Tensor:
        """The constant linear map from a node's unit-direction series to every lagged series.

        ``(3T, 2·L·3(T−1) + 2·L·3T)``: a row is one ``(channel, frame)`` of ``u``; the columns are
        first the series of ``Δu`` (``T − 1`` frames), then those of ``u`` (``T`` frames), each
        ordered ``(early | late, lag l, channel, frame)``. The early series of lag ``l`` is the
        series with its last ``l`` frames zeroed, the late one the series shifted ``l`` frames back
        (``late[t] = v[t + l]``, zeros at the end). Applying it is one 2-D matmul, where the
        difference, shifts and masks one by one cost ONNX Runtime several times more.
        """
        L = self.lags

        def shifts(S: int) -> Tensor:  # (2, L, S, S): v @ [0, l] is the early, v @ [1, l] the late series
            t = torch.arange(S, device=device)
            lag = torch.arange(L, device=device)
            keep = (t[None, :] < S - lag[:, None]).to(dtype)  # (L, S) frames with a partner l later
            shift = (t[None, :, None] == t[None, None, :] + lag[:, None, None]) & (keep[:, None, :] > 0)
            return torch.stack([torch.diag_embed(keep), shift.to(dtype)])

        def per_channel(P: Tensor, op: Tensor) -> Tensor:  # P (T, S), op (2, L, S, S) → (3T, 2·L·3·S)
            m = torch.einsum("ts,ilsr->iltr", P, op)  # (2, L, T, S)
            eye = torch.eye(3, dtype=dtype, device=device)
            return torch.einsum("cd,iltr->ctildr", eye, m).reshape(3 * T, -1)

        t = torch.arange(T, device=device)
        diff = (t[:, None] == t[None, :-1] + 1).to(dtype) - (t[:, None] == t[None, :-1]).to(dtype)  # (T, T−1): Δ
        return torch.cat([per_channel(diff, shifts(T - 1)), per_channel(torch.eye(T, dtype=dtype, device=device),
                                                                         shifts(T))], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        B, T, N, _ = x.shape
        L = self.lags
        bones = torch.matmul(self.bone_op, x[..., :3])  # (B, T, N, 3)
        u = bones / (bones.norm(dim=-1, keepdim=True) + 1e-6)  # unit directions
        series = u.permute(0, 2, 3, 1).reshape(B, N, 3 * T) @ self.operators(T, x.dtype, x.device)
        split = 2 * L * 3 * (T - 1)
        d = series[..., :split].reshape(B, N, 2, L, 3 * (T - 1)).permute(2, 0, 3, 1, 4)  # (2, B, L, N, 3(T−1))
        v = series[..., split:].reshape(B, N, 2, L, 3 * T).permute(2, 0, 3, 1, 4)  # (2, B, L, N, 3T)
        # Σ_t early_n(t)·late_m(t) per lag: (B, L, N, N), sender n earlier, receiver m later
        num = torch.matmul(d[0], d[1].transpose(-1, -2))
        na, nb = (d[0] * d[0]).sum(dim=-1), (d[1] * d[1]).sum(dim=-1)  # (B, L, N): Σ |Δu|² over the same frames
        corr = num / sqrt_plus(na[..., :, None] * nb[..., None, :], 1e-12)  # (B, L, N, N)
        frames = T - torch.arange(L, device=x.device, dtype=x.dtype)  # (L,) frames per lag
        cos = torch.matmul(v[0], v[1].transpose(-1, -2)) / frames[:, None, None]  # (B, L, N, N)
        every = torch.stack([corr, cos], dim=2).reshape(B, 2 * L, N * N)  # corr_0, cos_0, corr_1, …
        return every.index_select(2, self.slots).transpose(1, 2)  # (B, E, 2L)


class DuetEncoder(nn.Module):
    """Window of both dancers → logits over ``K`` edge types for every candidate edge.

    No data-dependent control flow: exports to ONNX with a dynamic batch axis.

    Shapes:
        ``x (B, T, N, C)`` → ``logits (B, E, K)``.
    """

    rec_mean: Tensor
    bone_op: Tensor

    def __init__(self, config: DuetNRIConfig) -> None:
        super().__init__()
        self.config = config
        graph = config.graph
        H = config.hidden
        # x - P x: each node relative to its parent (identity rows where the parent is absent).
        self.register_buffer("bone_op", torch.eye(graph.num_nodes) - torch.as_tensor(graph.parent_matrix()))
        channels = config.in_channels * (2 if config.bone_features else 1)
        send, recv = (torch.as_tensor(a) for a in graph.senders_receivers())
        _, rel_rec = graph.one_hot()  # (E, N)
        indeg = rel_rec.sum(axis=0, keepdims=True)  # (1, N)
        # (N, E) mean over each node's incoming edges; forward uses the same mean from the edge
        # order (:meth:`incoming_mean`), the buffer stays in the state dict of saved checkpoints
        self.register_buffer("rec_mean", torch.as_tensor((rel_rec / np.maximum(indeg, 1.0)).T.copy()))
        self.joints = (len(graph.joints0), len(graph.joints1))
        bones = graph.bone_adjacency()
        self.pair_features = (
            PairFeatures(self.bone_op, send, recv, config.pair_lags) if config.pair_lags else None
        )
        self.pair_in = nn.Linear(2 * config.pair_lags, H, bias=False) if config.pair_lags else None
        self.gcn1 = GCNConv(bones, config.window * channels, H, root_weight=True)
        self.node1 = nn.Linear(H, H)
        self.pair1 = PairLinear(send, recv, H, H)
        self.edge1 = nn.Linear(H, H)
        self.gcn2 = GCNConv(bones, H, H, root_weight=True)
        self.pair2 = PairLinear(send, recv, H, H)
        self.skip = None if config.compact_encoder else nn.Linear(H, H, bias=False)
        self.edge2 = nn.Linear(H, H)
        self.drop = nn.Dropout(config.dropout)
        self.fc_out = nn.Linear(H, config.edge_types)
        for m in (self.node1, self.edge1, self.edge2, self.fc_out, self.skip, self.pair_in):
            if m is not None:
                xavier_linear_(m, bias=0.1 if m.bias is not None else 0.0)

    def forward(self, x: Tensor) -> Tensor:
        B, _, N, _ = x.shape  # (B, T, N, C)
        pair: Tensor | float = 0.0
        if self.pair_features is not None and self.pair_in is not None:
            pair = self.pair_in(self.pair_features(x))  # (B, E, H)
        if self.config.bone_features:
            x = torch.cat([x, self.bone_op @ x], dim=-1)  # (B, T, N, 2C): + bone vectors
        x = x.permute(0, 2, 1, 3).reshape(B, N, -1)  # (B, N, T·C'): a node's whole trajectory
        h = F.relu(self.gcn1(x))  # (B, N, H)
        h = F.relu(self.node1(h))  # (B, N, H)
        if self.skip is None:  # the seed's compact encoder: one edge pass
            h2 = F.relu(self.gcn2(h))  # (B, N, H)
            e = self.drop(F.relu(self.pair2(h2) + pair))  # (B, E, H)
            return self.fc_out(F.relu(self.edge2(e)))  # (B, E, K)
        e1 = self.drop(F.relu(self.pair1(h) + pair))  # (B, E, H): node → edge (+ pair features)
        e1 = F.relu(self.edge1(e1))  # (B, E, H), kept for the skip connection
        n = self.incoming_mean(e1)  # (B, N, H): edge → node, mean over incoming
        h2 = F.relu(self.gcn2(n))  # (B, N, H)
        e2 = self.drop(F.relu(self.pair2(h2) + self.skip(e1)))  # (B, E, H): node → edge + skip
        e2 = F.relu(self.edge2(e2))  # (B, E, H)
        return self.fc_out(e2)  # (B, E, K)

    def incoming_mean(self, e: Tensor) -> Tensor:
        """Mean of every node's incoming edges: ``(B, E, H)`` → ``(B, N, H)``, as ``rec_mean @ e``.

        Edges come in the order of :meth:`training.duet_data.CandidateGraph.senders_receivers`:
        forward (dancer-0 joint a → dancer-1 joint b) at ``a·J1 + b``, then the reverse edges in
        the same (a, b) order. So a dancer-1 node's incoming edges are one column of the forward
        ``(J0, J1)`` block and a dancer-0 node's one row of the reverse block: two means over an
        axis instead of an ``(N, E)`` matmul (about 1.5 M multiply-adds fewer per window).
        """
        J0, J1 = self.joints
        blocks = e.reshape(e.shape[0], 2, J0, J1, e.shape[-1])  # (B, 2, J0, J1, H)
        return torch.cat([blocks[:, 1].mean(dim=2), blocks[:, 0].mean(dim=1)], dim=1)  # (B, J0 + J1, H)


class DuetDecoder(nn.Module):
    """Graph recurrent decoder: GCN-LSTM over own bones + edge-weighted inter-dancer messages.

    Shapes:
        ``x (B, T, N, C)``, ``z (B, E, K)`` → predictions ``(B, T-1, N, C)`` of frames ``1..T-1``.
    """

    slots: Tensor
    msg_scale: Tensor
    bone_op: Tensor
    fk_op: Tensor
    is_root: Tensor

    def __init__(self, config: DuetNRIConfig) -> None:
        super().__init__()
        self.config = config
        graph = config.graph
        self.num_nodes = graph.num_nodes
        send, recv = graph.senders_receivers()
        self.register_buffer("slots", edge_slots(send, recv, graph.num_nodes))  # (E,)
        indeg = np.bincount(recv, minlength=graph.num_nodes).astype(np.float32)  # (N,) candidate in-degree
        scale = 1.0 / np.maximum(indeg, 1.0) if config.mean_messages else np.ones_like(indeg)
        self.register_buffer("msg_scale", torch.as_tensor(scale)[:, None])  # (N, 1) per receiver
        H = config.hidden
        kin = np.eye(graph.num_nodes, dtype=np.float32) - graph.parent_matrix() if config.kinematic_messages else None
        self.cell = GCNLSTMCell(graph.bone_adjacency(), config.in_channels, H, config.message_types,
                                kinematic_messages=kin)
        self.out = nn.Sequential(nn.Linear(H, H), nn.ReLU(), nn.Linear(H, config.in_channels))
        for m in self.out:
            if isinstance(m, nn.Linear):
                xavier_linear_(m)
        with torch.no_grad():
            last = self.out[-1]
            if isinstance(last, nn.Linear):
                last.weight.mul_(0.1)  # start near "no change": Δ ≈ 0
        parents = graph.parent_matrix()  # (N, N)
        eye = np.eye(graph.num_nodes, dtype=np.float32)
        # constants of the graph, not saved (checkpoints from before rigid_bones load as they are)
        self.register_buffer("bone_op", torch.as_tensor(eye - parents), persistent=False)  # (N, N) positions → bones
        self.register_buffer("fk_op", torch.as_tensor(np.linalg.inv(eye - parents).astype(np.float32)),
                             persistent=False)  # (N, N) bones → positions
        self.register_buffer("is_root", torch.as_tensor(parents.sum(axis=1) == 0)[:, None], persistent=False)
        # the pull's gain per message-carrying type (rigid_bones)
        self.pull_gain = (nn.Parameter(torch.full((config.message_types,), float(config.pull_gain)),
                                       requires_grad=config.learn_pull_gain) if config.rigid_bones else None)
        if config.rigid_bones:  # start exactly at coasting: a random correction would drown a string's pull
            with torch.no_grad():
                last = self.out[-1]
                if isinstance(last, nn.Linear):
                    last.weight.zero_()
                    last.bias.zero_()
        if config.rigid_bones and not config.velocity_step > 0:
            raise ValueError("rigid_bones needs velocity_step > 0 (the decoder's velocities come from its positions)")

    def advance(self, x: Tensor, h: Tensor, A: Tensor | None = None, deg: Tensor | None = None) -> Tensor:
        """The next frame from ``x (B, N, C)`` and the cell's state ``h (B, N, H)``: ``x + Δ``, plus
        ``velocity_step · v`` on the positions when set; with ``rigid_bones``, turned bones and
        forward kinematics with the pull of the typed edges ``A (B, K', N, N)``, ``deg (B, K', N, 1)``
        (see :class:`DuetNRIConfig`)."""
        k = self.config.velocity_step
        if self.pull_gain is not None and A is not None and deg is not None:
            return self._rigid_advance(x, h, A, deg, k)
        nxt = x + self.out(h)
        if k:
            nxt = nxt + F.pad(x[..., 3:6] * k, (0, x.shape[-1] - 3))  # (B, N, C): coast on the velocity
        return nxt

    def _rigid_advance(self, x: Tensor, h: Tensor, A: Tensor, deg: Tensor, k: float) -> Tensor:
        assert self.pull_gain is not None
        pos, vel = x[..., :3], x[..., 3:6]  # (B, N, 3) normalised
        b = self.bone_op @ pos  # (B, N, 3) bone vectors (roots: their position)
        b_prev = self.bone_op @ (pos - k * vel)  # the previous frame's
        length = b.norm(dim=-1, keepdim=True)  # (B, N, 1)
        d = b / length.clamp_min(1e-6)
        d_prev = b_prev / b_prev.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        delta = self.out(h)[..., :3]  # (B, N, 3)
        c = 2 * d - d_prev + delta  # coast on the last turn, plus the correction
        pull = A @ d.unsqueeze(1) - deg * c.unsqueeze(1)  # (B, K', N, 3): Σ_e z (d_sender − c)
        # averaged over the incoming weight once it passes 1: many weak edges pull no harder than one
        weight = deg.sum(dim=1).clamp_min(1.0)  # (B, N, 1)
        turned = c + (pull * self.pull_gain.view(1, -1, 1, 1)).sum(dim=1) / weight
        d_new = turned / turned.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        b_new = torch.where(self.is_root, b + k * vel + delta, length * d_new)  # (B, N, 3)
        pos_new = self.fk_op @ b_new  # forward kinematics
        vel_new = (pos_new - pos) / k
        return torch.cat([pos_new, vel_new, x[..., 6:]], dim=-1)

    def typed(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Typed edge weights of the message-carrying types from ``z (B, E, K)``, scaled per receiver:
        ``A (B, K', N, N)`` (``A[b, k, i, j]`` for the edge ``j → i``) and ``deg (B, K', N, 1)``."""
        zm = z[..., 1:] if self.config.skip_first else z  # (B, E, K')
        A, deg = typed_operators(zm, self.slots, self.num_nodes)  # (B, K', N, N), (B, K', N, 1)
        return A * self.msg_scale, deg * self.msg_scale

    def operators(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Cell operators from ``z (B, E, K)``: ``ops (B, 1+K', N, N)``, ``deg (B, N, K')``."""
        return self.cell.operators(*self.typed(z))

    def forward(self, x: Tensor, z: Tensor, teacher_every: int | None = None, burn_in: int | None = None
                ) -> Tensor:
        m = teacher_every or self.config.teacher_every
        b = self.config.burn_in if burn_in is None else burn_in
        B, T, N, _ = x.shape  # (B, T, N, C)
        A, deg = self.operators(z)
        pull = self.typed(z) if self.pull_gain is not None else (None, None)  # rigid bones: the pull's edges
        h = x.new_zeros(B, N, self.config.hidden)
        c = torch.zeros_like(h)
        preds: list[Tensor] = []
        inp = x[:, 0]
        for t in range(T - 1):  # the recurrence is the only loop
            if t < b or (t - b) % m == 0:
                inp = x[:, t]  # ground truth: burn-in, then teacher forcing every m steps
            h, c = self.cell(inp, h, c, A, deg)
            inp = self.advance(inp, h, *pull)  # (B, N, C)
            preds.append(inp)
        return torch.stack(preds, dim=1)  # (B, T-1, N, C)

    def rollout(self, x: Tensor, z: Tensor, burn_in: int, steps: int) -> Tensor:
        """Teacher-forced through frames ``0..burn_in-1``, then ``steps`` free predictions.

        Returns:
            ``(B, steps, N, C)``: predictions of frames ``burn_in .. burn_in + steps - 1``.
        """
        B, _, N, _ = x.shape  # (B, T, N, C)
        A, deg = self.operators(z)
        pull = self.typed(z) if self.pull_gain is not None else (None, None)
        h = x.new_zeros(B, N, self.config.hidden)
        c = torch.zeros_like(h)
        inp = x[:, 0]
        for t in range(burn_in):
            h, c = self.cell(x[:, t], h, c, A, deg)
            inp = self.advance(x[:, t], h, *pull)
        preds = [inp]
        for _ in range(steps - 1):
            h, c = self.cell(inp, h, c, A, deg)
            inp = self.advance(inp, h, *pull)
            preds.append(inp)
        return torch.stack(preds, dim=1)  # (B, steps, N, C)


@dataclass(frozen=True)
class DuetOutput:
    """One forward pass: ``logits (B, E, K)``, ``edges`` sample ``(B, E, K)``, ``pred (B, T-1, N, C)``."""

    logits: Tensor
    edges: Tensor
    pred: Tensor


class DuetNRI(nn.Module):
    """Encoder + Gumbel-softmax edge sample + decoder (see the module docstring)."""

    def __init__(self, config: DuetNRIConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = DuetEncoder(config)
        self.decoder = DuetDecoder(config)

    def forward(self, x: Tensor, hard: bool | None = None) -> DuetOutput:
        """``x (B, T, N, C)`` normalised windows, ``T == config.frames`` (``window + future``).

        With ``future`` the encoder sees only ``x[:, :window]``; ``pred`` still covers frames
        ``1..T-1`` (the truth is fed through frame ``window − 1``).
        """
        W = self.config.window
        logits = self.encoder(x[:, :W] if self.config.future else x)  # (B, E, K)
        use_hard = self.config.hard if hard is None else hard
        if self.training:
            z = gumbel_softmax(logits, tau=self.config.tau, hard=use_hard)  # (B, E, K), differentiable
        else:
            z = F.softmax(logits, dim=-1)
            if use_hard:
                z = F.one_hot(z.argmax(-1), self.config.edge_types).to(z.dtype)
        pred = self.decoder(x, z, burn_in=W) if self.config.future else self.decoder(x, z)
        return DuetOutput(logits=logits, edges=z, pred=pred)


def edge_strength(logits: Tensor) -> Tensor:
    """``1 − P(no string)`` of every edge: ``(B, E, K)`` → ``(B, E)`` in [0, 1]."""
    return 1.0 - F.softmax(logits, dim=-1)[..., 0]


def strong_edges(logits: Tensor, threshold: float = 0.8) -> Tensor:
    """The seed's readout: edges whose largest non-null type probability is ``>= threshold``.

    ``(B, E, K)`` → ``(B, E)`` bool.
    """
    probs = F.softmax(logits, dim=-1)
    return probs[..., 1:].amax(dim=-1) >= threshold


def build_duet_nri(config: DuetNRIConfig) -> DuetNRI:
    return DuetNRI(config)


register_model("nri_duet", DuetNRIConfig, build_duet_nri)
