"""MKFF-ST-GCN: multi-kinematic feature fusion + ST-GCN, the learned refiner of noisy duet poses.

Reads top to bottom: the graph, the three layers (temporal self-attention block, spatial graph
convolution, temporal convolution), then the model.

Nodes are **both dancers' canonical joints in one graph** (``N = 2·J = 36``, dancer 0 first):
one set of weights, a learned node embedding tells the dancers apart, and the graph links each
joint to its partner's same joint — so the model sees both bodies at once and can undo an
identity swap, which a per-dancer model with shared weights could not.

Pipeline for a window ``x (B, T, N, 3)`` metres (oldest frame first)::

    ref       = mean of x over N at frame 0 (causal) / over (T, N) (centred)   (B, 1, 1, 3)
    features  = [x - ref, P̃ - ref] / pos_scale, v / vel_scale, a / acc_scale     (B, T, N, 12)
    h         = Linear(12 → C) + time embedding (T, C) + node embedding (N, C)    (B, T, N, C)
    h         = 3 × [LayerNorm → multi-head self-attention over time → LayerNorm → MLP]
    h         = L × ST-GCN [LayerNorm → spatial graph conv (4 partitions) → ReLU → temporal conv]
    refined_o = x_o + pos_scale · Linear(C → 3)(h_o)        the pose at the output frame o

The **causal** variant (``mode="causal"``, live) uses causal features (frames ``t-4d .. t``), a
causal attention mask and left-padded temporal convolutions, and outputs the *last* frame ``o =
T-1``: no added latency. The **centred** variant (offline) uses the paper's centred features, no
mask, symmetric convolutions, and outputs the centre frame ``o = T // 2``.

:meth:`MKFFSTGCN.forward` returns only the output frame (what is exported); it runs the last
attention block's queries and MLP and the ST-GCN on just the ``1 + L·(k-1)`` frames the output
depends on, with unpadded convolutions, which gives exactly :meth:`MKFFSTGCN.forward_all`'s
value at that frame. ``forward_all`` returns every
frame (causal: frame ``t`` sees only frames ``<= t``) and feeds the auxiliary loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

from stream.skeleton import CANONICAL, J
from training.checkpoint import register_model
from training.mkff.features import MODES, FeatureError, motion_features

D = 2
N_NODES = D * J
IN_FEATURES = 12  # position, flow, velocity, acceleration: 3 each
PARTITIONS = 4  # self, centripetal (child → parent), centrifugal (parent → child), partner


@dataclass(frozen=True)
class MKFFConfig:
    """Hyperparameters of MKFF-ST-GCN (saved in checkpoints and ONNX metadata).

    Attributes:
        mode: ``"causal"`` (live: output the last frame) or ``"centred"`` (offline: the centre).
        window: frames ``T`` per window.
        step: frame step ``d`` of flow, velocity and acceleration.
        hidden: channels ``C``.
        heads: attention heads (``hidden`` must divide by it).
        fusion_blocks: LayerNorm → MHSA → MLP blocks (the paper: 3).
        mlp_ratio: MLP width ÷ ``hidden``.
        gcn_blocks: ST-GCN blocks ``L``.
        temporal_kernel: temporal convolution width ``k`` (odd).
        fps: frame rate of the training clips (Hz).
        pos_scale_m: metres per unit of the position features and of the output correction.
        vel_scale_m: metres per frame per unit of the velocity feature.
        acc_scale_m: metres per frame² per unit of the acceleration feature.
    """

    mode: str = "causal"
    window: int = 12
    step: int = 1
    hidden: int = 16
    heads: int = 1
    fusion_blocks: int = 3
    mlp_ratio: int = 2
    gcn_blocks: int = 2
    temporal_kernel: int = 3
    fps: float = 30.0
    pos_scale_m: float = 1.0
    vel_scale_m: float = 0.03
    acc_scale_m: float = 0.03

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise FeatureError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.hidden % self.heads:
            raise FeatureError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
        if self.temporal_kernel < 1 or self.temporal_kernel % 2 == 0:
            raise FeatureError(f"temporal_kernel must be odd, got {self.temporal_kernel}")
        half = (self.receptive_field - 1) // 2
        fits = (self.window >= self.receptive_field if self.mode == "causal"
                else self.window // 2 >= half and self.window - 1 - self.window // 2 >= half)
        if not fits:
            raise FeatureError(f"window {self.window} is shorter than the ST-GCN's receptive field "
                               f"{self.receptive_field} frames; use a longer window or fewer gcn_blocks")
        if self.step < 1 or self.fps <= 0 or min(self.pos_scale_m, self.vel_scale_m, self.acc_scale_m) <= 0:
            raise FeatureError("step must be >= 1 and fps and the feature scales > 0")

    @property
    def receptive_field(self) -> int:
        """Frames of fused features the ST-GCN's output at one frame depends on: ``1 + L·(k-1)``."""
        return 1 + self.gcn_blocks * (self.temporal_kernel - 1)

    @property
    def output_frame(self) -> int:
        """Index of the refined frame in the window: the last (causal) or the centre (centred)."""
        return self.window - 1 if self.mode == "causal" else self.window // 2

    @property
    def latency_frames(self) -> int:
        """Frames the output lags the newest input: 0 causal, ``T - 1 - T//2`` centred."""
        return self.window - 1 - self.output_frame


# --------------------------------------------------------------------------------------------- the graph


def partition_adjacency() -> NDArray[np.float32]:
    """The duet graph's ``(K=4, N, N)`` partitions, ``A[k, n, m]`` = weight of the message n → m.

    Partitions: self loops; child → parent (centripetal); parent → child (centrifugal); the same
    joint of the other dancer (partner). Each partition is normalised so the messages a node
    receives in it average (divide by the receiver's in-degree in that partition).
    """
    A = np.zeros((PARTITIONS, N_NODES, N_NODES), dtype=np.float32)
    for d in range(D):
        off = d * J
        for j in range(J):
            A[0, off + j, off + j] = 1.0
            A[3, off + j, (1 - d) * J + j] = 1.0
        for parent, child in CANONICAL.bones:
            A[1, off + child, off + parent] = 1.0
            A[2, off + parent, off + child] = 1.0
    deg = A.sum(axis=1, keepdims=True)  # (K, 1, N) in-degree per receiver
    return np.asarray(A / np.maximum(deg, 1.0), dtype=np.float32)


# --------------------------------------------------------------------------------------------- layers


class TemporalAttentionBlock(nn.Module):
    """Pre-norm transformer block over time, one sequence per node.

    ``h = h + W_o MHSA(LN(h), mask);  h = h + MLP(LN(h))`` with
    ``MHSA = softmax(Q Kᵀ / sqrt(C/H) + mask) V`` per head and ``MLP = W_2 ReLU(W_1 h + b_1) + b_2``.
    Q, K, V and W_o have no bias (a key bias cancels in the softmax; the others are absorbed by
    the MLP), which keeps the exported graph short.

    Args:
        hidden: channels ``C``.
        heads: heads ``H`` (1 skips the head split: fewest ONNX nodes on the live path).
        mlp_ratio: MLP width ÷ ``C``.

    Shapes:
        ``h (B, N, T, C)``, ``mask (T, T)`` additive (0 or −inf) → ``(B, N, T, C)``; with
        ``rows``, only those frames are computed (queries, residual, MLP; keys and values still
        come from every frame): ``(B, N, R, C)``, the same values as the full output's rows.
    """

    def __init__(self, hidden: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = 1.0 / math.sqrt(hidden // heads)
        self.norm1 = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden, bias=False)
        self.proj = nn.Linear(hidden, hidden, bias=False)
        self.norm2 = nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, mlp_ratio * hidden), nn.ReLU(),
                                 nn.Linear(mlp_ratio * hidden, hidden))

    def forward(self, h: Tensor, mask: Tensor, rows: slice = slice(None)) -> Tensor:
        B, N, T, C = h.shape
        H = self.heads
        mask = mask[rows]  # (R, T)
        if H == 1:
            q, k, v = self.qkv(self.norm1(h)).chunk(3, dim=-1)  # (B, N, T, C) each
            att = (q[:, :, rows] @ k.transpose(-1, -2)) * self.scale + mask  # (B, N, R, T)
            y = torch.softmax(att, dim=-1) @ v  # (B, N, R, C)
        else:
            qkv = self.qkv(self.norm1(h)).reshape(B, N, T, 3, H, C // H)  # (B, N, T, 3, H, hs)
            qkv = qkv.permute(3, 0, 1, 4, 2, 5)  # (3, B, N, H, T, hs)
            att = (qkv[0][:, :, :, rows] @ qkv[1].transpose(-1, -2)) * self.scale + mask  # (B, N, H, R, T)
            y = torch.softmax(att, dim=-1) @ qkv[2]  # (B, N, H, R, hs)
            y = y.transpose(2, 3).reshape(B, N, y.shape[3], C)  # (B, N, R, C)
        h = h[:, :, rows] + self.proj(y)
        return h + self.mlp(self.norm2(h))


class SpatialGraphConv(nn.Module):
    """ST-GCN's spatial graph convolution with partitions and learnable edge importance.

    ``y_m = Σ_k Σ_n (A_k ⊙ M_k)[n, m] (W_k h_n) + b`` — one weight ``W_k`` per partition, the
    fixed normalised adjacency ``A_k`` (:func:`partition_adjacency`) scaled by a learned mask
    ``M_k`` (initialised to 1), as in Yan, Xiong & Lin (AAAI 2018).

    Shapes:
        ``h (B, N, T, C_in)`` → ``(B, N, T, C_out)``.
    """

    adjacency: Tensor

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.register_buffer("adjacency", torch.from_numpy(partition_adjacency()))  # (K, N, N)
        self.importance = nn.Parameter(torch.ones(PARTITIONS, N_NODES, N_NODES))
        self.linear = nn.Linear(in_channels, PARTITIONS * out_channels)

    def forward(self, h: Tensor) -> Tensor:
        B, N, T, _ = h.shape
        K, C = PARTITIONS, self.out_channels
        hw = self.linear(h).reshape(B, N, T, K, C).permute(0, 3, 1, 2, 4)  # (B, K, N, T, C)
        hw = hw.reshape(B, K * N, T * C)  # (B, K·N, T·C)
        A = (self.adjacency * self.importance).permute(2, 0, 1).reshape(N, K * N)  # (N recv, K·N send)
        return (A @ hw).reshape(B, N, T, C)  # (B, N, T, C)


class TemporalConv(nn.Module):
    """Temporal convolution of width ``k`` along the time axis as one linear map of ``k`` stacked frames.

    ``y_t = W [h_{t-k+1+s}, ..., h_{t+s}] + b`` with ``s = 0`` (causal) or ``(k-1)/2`` (centred).
    ``pad=True`` zero-pads to keep ``T`` frames; ``pad=False`` returns the ``T - k + 1`` frames
    whose inputs are all inside the window.

    Shapes:
        ``h (B, N, T, C)`` → ``(B, N, T, C)`` padded, ``(B, N, T-k+1, C)`` unpadded.
    """

    def __init__(self, channels: int, kernel: int, causal: bool) -> None:
        super().__init__()
        self.kernel = kernel
        self.left = kernel - 1 if causal else (kernel - 1) // 2  # frames of the past per output
        self.linear = nn.Linear(kernel * channels, channels)

    def forward(self, h: Tensor, pad: bool) -> Tensor:
        k = self.kernel
        if pad and k > 1:
            B, N, _, C = h.shape
            h = torch.cat([h.new_zeros(B, N, self.left, C), h, h.new_zeros(B, N, k - 1 - self.left, C)],
                          dim=2)  # (B, N, T+k-1, C)
        T_out = h.shape[2] - k + 1
        stacked = torch.cat([h[:, :, i : i + T_out] for i in range(k)], dim=-1)  # (B, N, T_out, k·C)
        return self.linear(stacked)


class STGCNBlock(nn.Module):
    """``y = TemporalConv(ReLU(SpatialGraphConv(LN(h))))``; ``h + y`` (cropped like ``y`` when unpadded).

    Shapes:
        ``h (B, N, T, C)`` → ``(B, N, T, C)`` padded, ``(B, N, T-k+1, C)`` unpadded.
    """

    def __init__(self, channels: int, kernel: int, causal: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.gcn = SpatialGraphConv(channels, channels)
        self.tcn = TemporalConv(channels, kernel, causal)

    def forward(self, h: Tensor, pad: bool) -> Tensor:
        y = self.tcn(torch.relu(self.gcn(self.norm(h))), pad)
        if not pad:  # the residual at the frames the unpadded convolution kept
            h = h[:, :, self.tcn.left : self.tcn.left + y.shape[2]]
        return h + y


# --------------------------------------------------------------------------------------------- the model


def feature_operator(config: MKFFConfig) -> Tensor:
    """The motion features as one linear map over time: ``(G=4, T, T)``, scaled per group.

    Row ``t`` of group ``g`` holds the weights of frames ``s`` in feature ``g`` at frame ``t``:
    position (identity) and flow ÷ ``pos_scale_m``, velocity ÷ ``vel_scale_m``, acceleration ÷
    ``acc_scale_m`` — obtained by applying :func:`training.mkff.features.motion_features` to the
    identity, so the model computes exactly those formulas. Flow rows sum to 1 and velocity and
    acceleration rows to 0, so the map commutes with subtracting the translation reference.
    """
    T = config.window
    eye = torch.eye(T).reshape(1, T, T, 1)  # (B=1, T, N=T, 1): node j is the unit impulse at frame j
    flow, vel, acc = motion_features(eye, config.step, config.mode)  # (1, T, T, 1) each
    groups = [(eye, config.pos_scale_m), (flow, config.pos_scale_m), (vel, config.vel_scale_m),
              (acc, config.acc_scale_m)]
    return torch.stack([g[0, :, :, 0] / s for g, s in groups])  # (4, T out, T in)


class MKFFSTGCN(nn.Module):
    """MKFF-ST-GCN (see the module docstring).

    Args:
        config: the hyperparameters.

    Shapes:
        ``forward(x (B, T, N, 3) m) -> (B, N, 3) m`` at the output frame;
        ``forward_all(x) -> (B, T, N, 3) m`` at every frame.
    """

    causal_mask: Tensor
    features: Tensor

    def __init__(self, config: MKFFConfig) -> None:
        super().__init__()
        self.config = config
        C, T = config.hidden, config.window
        causal = config.mode == "causal"
        self.embed = nn.Linear(IN_FEATURES, C)
        self.time_embedding = nn.Parameter(torch.zeros(T, C))
        self.node_embedding = nn.Parameter(torch.zeros(N_NODES, 1, C))
        self.fusion = nn.ModuleList(
            TemporalAttentionBlock(C, config.heads, config.mlp_ratio) for _ in range(config.fusion_blocks)
        )
        self.backbone = nn.ModuleList(STGCNBlock(C, config.temporal_kernel, causal) for _ in range(config.gcn_blocks))
        self.norm = nn.LayerNorm(C)
        self.head = nn.Linear(C, 3)
        mask = torch.triu(torch.full((T, T), float("-inf")), diagonal=1) if causal else torch.zeros(T, T)
        self.register_buffer("causal_mask", mask)  # (T, T) additive
        self.register_buffer("features", feature_operator(config))  # (4, T, T)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Small embeddings; a zero head, so an untrained model returns its input frame unchanged."""
        nn.init.normal_(self.time_embedding, std=0.02)
        nn.init.normal_(self.node_embedding, std=0.02)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def _embedding_operator(self) -> Tensor:
        """Features and their projection folded into one map ``(T·3, T·C)``: frame-and-axis in,
        frame-and-channel out (``M[(s, c), (t, o)] = Σ_g W[o, 3g + c] F[g, t, s]``)."""
        T, C = self.config.window, self.config.hidden
        W = self.embed.weight.reshape(C, 4, 3)  # (C out, G, 3 axes)
        return torch.einsum("gts,ogc->scto", self.features, W).reshape(T * 3, T * C)

    def _fused(self, x: Tensor, rows: slice = slice(None)) -> Tensor:
        """Features, projection, embeddings and the attention blocks: ``(B, T, N, 3)`` → ``(B, N, T, C)``
        (``rows``: only those frames of the last block, ``(B, N, R, C)``)."""
        B, T, N, _ = x.shape
        cfg = self.config
        C = cfg.hidden
        # (B, 1, 1, 3) m; causal: frame 0 is in every frame's past, so forward_all stays causal
        ref = x[:, :1].mean(dim=2, keepdim=True) if cfg.mode == "causal" else x.mean(dim=(1, 2), keepdim=True)
        xr = (x - ref).transpose(1, 2).reshape(B, N, T * 3)  # (B, N, T·3) frame-major
        h = (xr @ self._embedding_operator()).reshape(B, N, T, C)  # (B, N, T, C) = embed(features)
        h = h + self.embed.bias + self.time_embedding + self.node_embedding  # (B, N, T, C)
        for i, block in enumerate(self.fusion):
            h = block(h, self.causal_mask, rows if i == len(self.fusion) - 1 else slice(None))
        return h

    def forward(self, x: Tensor, all_frames: bool = False) -> Tensor:
        """Refined poses at the output frame: ``x (B, T, N, 3)`` → ``(B, N, 3)`` metres
        (``all_frames=True``: :meth:`forward_all`, ``(B, T, N, 3)``; the loop calls the module itself)."""
        if all_frames:
            return self.forward_all(x)
        cfg = self.config
        o, R = cfg.output_frame, cfg.receptive_field
        start = o - (R - 1) if cfg.mode == "causal" else o - (R - 1) // 2
        h = self._fused(x, slice(start, start + R))  # (B, N, R, C): the frames the output depends on
        for block in self.backbone:
            h = block(h, pad=False)
        delta = self.head(self.norm(h[:, :, 0]))  # (B, N, 3)
        return x[:, o] + delta * cfg.pos_scale_m

    def forward_all(self, x: Tensor) -> Tensor:
        """Refined poses at every frame: ``x (B, T, N, 3)`` → ``(B, T, N, 3)`` metres."""
        h = self._fused(x)
        for block in self.backbone:
            h = block(h, pad=True)
        return x + self.head(self.norm(h)).transpose(1, 2) * self.config.pos_scale_m


register_model("mkff", MKFFConfig, MKFFSTGCN)
