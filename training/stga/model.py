"""STGA-Net for duets: both dancers' recent poses → both dancers' poses at future horizons.

The exported module takes raw canonical positions and returns positions in the same frame, so
the live path feeds its ring buffer as is::

    window (B, T, N, 3) metres, N = 2J (dancer 0's joints, then dancer 1's), shared world frame
      → duet frame: subtract one centre (mean of both pelvises at the last frame) and, with
        canonical_yaw, rotate about y so dancer 0's hip axis at the last frame lies along +x
      → features: position / pos_scale and velocity (backward difference × fps) / vel_scale
                                                                     (B, T−1, N, 6)
      → linear embedding + learned node embedding                    (B, T−1, N, C)
      → blocks: h + local attention (bones, mirror pairs, distal)
                  + global attention (adaptive B_k + learned C_k)  → LayerNorm → GELU
                → temporal dilated conv (k, 1), valid → + cropped input → LayerNorm
                                                                     (B, T', N, C)
      → mean over the remaining frames                               (B, N, C)
      → G-GRU rollout, one step per horizon h_k (fixed length):
            input [previous displacement, last velocity, horizon embedding]
            displacement d_k = α_k · v_last · t_k + Δ_k(state)      (B, N, 3)
      → back to the world frame: last observed frame + R⁻¹ d_k       (B, H, N, 3) metres

Residual on top of a damped constant-velocity guess: ``α_k`` (one per horizon) starts at 1
(constant velocity) and is learned, so the network only has to predict the correction ``Δ``.
No data-dependent control flow: every loop has a length fixed by the config.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from stream.errors import IStringsError
from training.checkpoint import register_model
from training.forecast_data import ForecastDataError, horizon_frames
from training.safe_ops import sqrt_plus
from training.stga.ggru import GraphGRUCell
from training.stga.global_attention import GlobalGraphAttention
from training.stga.graph import L_HIP, PELVIS, R_HIP, N, local_adjacency
from training.stga.local_attention import LocalGraphAttention
from training.stga.temporal import TemporalDilatedConv

J_NODES = N // 2


class STGAConfigError(IStringsError, ValueError):
    """STGA-Net hyperparameters that cannot build a model."""


@dataclass(frozen=True)
class STGAConfig:
    """Hyperparameters of STGA-Net (saved in checkpoints and ONNX metadata).

    Attributes:
        past_frames: ``T`` observed frames in the input window (the last one is "now").
        horizons_ms: forecast horizons, milliseconds after the last observed frame.
        fps: frame rate of the input and of the horizon frame counts, Hz.
        hidden: ``C`` channels of every node.
        heads: ``K`` heads of the global attention.
        embed: ``E`` channels of the global attention's similarity embeddings.
        kernel: ``k`` taps of the temporal convolutions.
        dilations: one block per entry, its temporal dilation ``d``.
        dropout: dropout on the encoded node states (before the decoder).
        pos_scale: metres per unit of the position features.
        vel_scale: metres per second per unit of the velocity features.
        canonical_yaw: rotate the duet about y so dancer 0 faces a fixed direction (the model is
            then invariant to the duet's heading).
    """

    past_frames: int = 10
    horizons_ms: tuple[float, ...] = (80.0, 160.0, 320.0, 500.0, 1000.0)
    fps: float = 60.0
    hidden: int = 32
    heads: int = 2
    embed: int = 8
    kernel: int = 2
    dilations: tuple[int, ...] = (1, 2, 4)
    dropout: float = 0.1
    pos_scale: float = 0.5
    vel_scale: float = 1.0
    canonical_yaw: bool = True

    def __post_init__(self) -> None:
        try:
            horizon_frames(self.horizons_ms, self.fps)
        except ForecastDataError as exc:
            raise STGAConfigError(str(exc)) from exc
        if self.past_frames < 3:
            raise STGAConfigError(f"past_frames must be >= 3, got {self.past_frames}")
        if self.hidden < 1 or self.heads < 1 or self.hidden % self.heads:
            raise STGAConfigError(f"hidden ({self.hidden}) must be a positive multiple of heads ({self.heads})")
        if self.kernel < 1 or not self.dilations or min(self.dilations) < 1:
            raise STGAConfigError("kernel and every dilation must be >= 1, with at least one block")
        if self.encoded_frames < 1:
            raise STGAConfigError(
                f"past_frames={self.past_frames} is too short for kernel {self.kernel} and dilations "
                f"{self.dilations}: the blocks need {sum((self.kernel - 1) * d for d in self.dilations) + 2} frames"
            )
        if not 0.0 <= self.dropout < 1.0 or self.pos_scale <= 0 or self.vel_scale <= 0:
            raise STGAConfigError("dropout must be in [0, 1) and the scales positive")

    @property
    def frames(self) -> tuple[int, ...]:
        """Frames ahead of each horizon at :attr:`fps` (see :func:`horizon_frames`)."""
        return horizon_frames(self.horizons_ms, self.fps)

    @property
    def encoded_frames(self) -> int:
        """Frames left after the blocks: ``T − 1 − Σ (k − 1)·d``."""
        return self.past_frames - 1 - sum((self.kernel - 1) * d for d in self.dilations)


class STBlock(nn.Module):
    """Local + global spatial attention, then a temporal dilated convolution, each with a residual.

    Shapes:
        x ``(B, T, N, C)`` → ``(B, T − (k − 1)·d, N, C)``.
    """

    def __init__(self, cfg: STGAConfig, dilation: int) -> None:
        super().__init__()
        C = cfg.hidden
        self.local = LocalGraphAttention(C, local_adjacency())
        self.globl = GlobalGraphAttention(C, N, heads=cfg.heads, embed=cfg.embed)
        self.norm1 = nn.LayerNorm(C)
        self.temporal = TemporalDilatedConv(C, cfg.kernel, dilation)
        self.norm2 = nn.LayerNorm(C)

    def forward(self, x: Tensor) -> Tensor:
        y = nn.functional.gelu(self.norm1(x + self.local(x) + self.globl(x)))  # (B, T, N, C)
        z = self.temporal(y)  # (B, T', N, C)
        return self.norm2(z + x[:, self.temporal.shrink :])  # (B, T', N, C)


class STGANet(nn.Module):
    """STGA-Net (see the module docstring).

    Shapes:
        window ``(B, T, N, 3)`` metres → forecast ``(B, H, N, 3)`` metres, same frame.
    """

    t_ahead: Tensor
    _Rc: Tensor
    _Rs: Tensor
    _Ry: Tensor

    def __init__(self, cfg: STGAConfig) -> None:
        super().__init__()
        self.cfg = cfg
        C, H = cfg.hidden, len(cfg.horizons_ms)
        self.embed = nn.Linear(6, C)
        self.node_embed = nn.Parameter(torch.zeros(N, C))  # (N, C) which joint of which dancer
        self.blocks = nn.ModuleList(STBlock(cfg, d) for d in cfg.dilations)
        self.drop = nn.Dropout(cfg.dropout)
        self.horizon_embed = nn.Parameter(torch.zeros(H, C // 2))  # (H, C/2)
        self.cell = GraphGRUCell(3 + 3 + C // 2, C, local_adjacency())
        self.head = nn.Linear(C, 3)
        self.alpha = nn.Parameter(torch.ones(H))  # (H,) damping of the constant-velocity guess
        seconds = torch.tensor([f / cfg.fps for f in cfg.frames], dtype=torch.float32)
        self.register_buffer("t_ahead", seconds)  # (H,) seconds ahead of each horizon
        # R = c·_Rc + s·_Rs + _Ry for a yaw with cosine c and sine s (constants, not in checkpoints)
        self.register_buffer("_Rc", torch.tensor([[1.0, 0, 0], [0, 0, 0], [0, 0, 1]]), persistent=False)
        self.register_buffer("_Rs", torch.tensor([[0.0, 0, 1], [0, 0, 0], [-1, 0, 0]]), persistent=False)
        self.register_buffer("_Ry", torch.tensor([[0.0, 0, 0], [0, 1, 0], [0, 0, 0]]), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.embed.weight)
        nn.init.zeros_(self.embed.bias)
        nn.init.normal_(self.node_embed, std=0.1)
        nn.init.normal_(self.horizon_embed, std=0.1)
        nn.init.zeros_(self.head.weight)  # start exactly at the constant-velocity guess
        nn.init.zeros_(self.head.bias)
        nn.init.ones_(self.alpha)

    def duet_frame(self, window: Tensor) -> tuple[Tensor, Tensor]:
        """Centre ``(B, 1, 3)`` and rotation ``R`` ``(B, 3, 3)`` (duet frame = R (world − centre)).

        The centre is the mean of both pelvises at the last frame. With ``canonical_yaw``, ``R``
        turns about y so dancer 0's hip axis (l_hip − r_hip) at the last frame points along +x;
        otherwise ``R`` is the identity.
        """
        last = window[:, -1]  # (B, N, 3)
        centre = 0.5 * (last[:, PELVIS] + last[:, J_NODES + PELVIS]).unsqueeze(1)  # (B, 1, 3)
        Bn = window.shape[0]
        if not self.cfg.canonical_yaw:
            return centre, torch.eye(3, dtype=window.dtype, device=window.device).expand(Bn, 3, 3)
        hip = last[:, L_HIP] - last[:, R_HIP]  # (B, 3)
        norm = sqrt_plus(hip[:, 0] ** 2 + hip[:, 2] ** 2, 1e-8)
        c, s = (hip[:, 0] / norm).reshape(Bn, 1, 1), (hip[:, 2] / norm).reshape(Bn, 1, 1)  # cos, sin of the heading
        # x' = c x + s z, z' = −s x + c z: the hip axis lands on +x.
        R = c * self._Rc + s * self._Rs + self._Ry  # (B, 3, 3) rows [c, 0, s], [0, 1, 0], [−s, 0, c]
        return centre, R

    def encode(self, window: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Node states ``(B, N, C)``, the last velocity in the duet frame ``(B, N, 3)`` m/s and ``R``."""
        cfg = self.cfg
        centre, R = self.duet_frame(window)
        x = torch.matmul(window - centre.unsqueeze(1), R.transpose(1, 2).unsqueeze(1))  # (B, T, N, 3) duet frame
        vel = (x[:, 1:] - x[:, :-1]) * cfg.fps  # (B, T-1, N, 3) m/s
        feats = torch.cat([x[:, 1:] / cfg.pos_scale, vel / cfg.vel_scale], dim=-1)  # (B, T-1, N, 6)
        h = self.embed(feats) + self.node_embed  # (B, T-1, N, C)
        for block in self.blocks:
            h = block(h)  # (B, T', N, C)
        return self.drop(h.mean(dim=1)), vel[:, -1], R  # (B, N, C), (B, N, 3), (B, 3, 3)

    def forward(self, window: Tensor) -> Tensor:
        cfg = self.cfg
        state, v_last, R = self.encode(window)  # (B, N, C), (B, N, 3), (B, 3, 3)
        # The cell's input u_k = [disp_{k-1} / pos_scale, v_last / vel_scale, horizon_embed_k] enters
        # only through the linear input gates, so they are computed in parts: the v_last part once,
        # the horizon part as a constant per step, the disp part per step (zero at the first step).
        # Same function as concatenating u; fewer operations in the exported graph.
        gates = self.cell.input_gates
        W_disp = gates.weight[:, :3] / cfg.pos_scale  # (3C, 3)
        W_vel = gates.weight[:, 3:6] / cfg.vel_scale  # (3C, 3)
        W_step = gates.weight[:, 6:]  # (3C, C/2)
        gi_vel = nn.functional.linear(v_last, W_vel, gates.bias)  # (B, N, 3C)
        W_head, b_head = self.head.weight * cfg.pos_scale, self.head.bias * cfg.pos_scale  # metres
        outs: list[Tensor] = []  # (B, N, 3) displacement at each horizon so far, m
        for k in range(len(cfg.horizons_ms)):  # fixed length: unrolled at export
            gi = gi_vel + torch.matmul(W_step, self.horizon_embed[k])  # (B, N, 3C)
            if outs:
                gi = gi + nn.functional.linear(outs[-1], W_disp)
            state = self.cell.step(gi, state)  # (B, N, C)
            outs.append((self.alpha[k] * self.t_ahead[k]) * v_last + nn.functional.linear(state, W_head, b_head))
        d = torch.stack(outs, dim=1)  # (B, H, N, 3) duet frame
        world = torch.matmul(d, R.unsqueeze(1))  # (B, H, N, 3): R⁻¹ = Rᵀ, back to world axes
        return window[:, -1:] + world  # (B, H, N, 3) metres


def build_stga(cfg: STGAConfig) -> STGANet:
    """Factory for the checkpoint registry."""
    return STGANet(cfg)


register_model("stga", STGAConfig, build_stga)
