"""Forecasting windows from canonical duet clips: past frames → future frames at fixed horizons.

A window of take ``s`` starting at frame ``a`` holds the observed frames ``a … a + T − 1``
(the last one is "now") and the targets ``a + T − 1 + f_k`` for every horizon ``k`` of
``f_k`` frames (:func:`horizon_frames`). Windows never cross takes (each take is windowed on
its own) and never reach an invalid frame; a split into training and validation data is made
of whole takes (:func:`load_forecast_clips`), never of windows of one take.

Positions stay raw: metres, in the clip's shared world frame, nodes ``N = 2J`` (dancer 0's
joints, then dancer 1's). Normalising the duet (one centre from the last observed frame) is
the model's first step, so the live path and the training path see the same input.

Also here: the two baselines every forecast is judged against (zero velocity and constant
velocity, on the same windows), per-horizon errors in millimetres, and the augmentations
(rotation about the vertical axis through the duet centre, left/right mirroring, swapping
the dancers).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor
from torch.utils.data import Dataset

from stream.clip import Clip, ClipError
from stream.errors import IStringsError
from stream.skeleton import CANONICAL, J
from training.duet_data import rotation_y
from training.metrics import mpjpe_per_horizon

log = logging.getLogger(__name__)

N = 2 * J
"""Nodes of a duet: both dancers' joints."""
FORECAST_FPS = 60.0
"""Frame rate of the forecasting data: every clip is resampled to it (CMU takes are 120 fps)."""
HELDOUT = "heldout"
CORPUS = "corpus"
SYNTHETIC_PREFIX = "synthetic:"


class ForecastDataError(IStringsError, ValueError):
    """Clips cannot be turned into forecasting windows (too short, bad horizons, unknown data)."""


def horizon_frames(horizons_ms: Sequence[float], fps: float) -> tuple[int, ...]:
    """Frames ahead of each horizon: ``round(h · fps / 1000)`` with halves rounded up.

    At 60 fps: 80 ms → 5 (4.8), 160 → 10 (9.6), 320 → 19 (19.2), 500 → 30, 1000 → 60.

    Raises:
        ForecastDataError: a horizon under one frame, or horizons not strictly increasing in frames.
    """
    frames = tuple(math.floor(h * fps / 1000.0 + 0.5) for h in horizons_ms)
    if not frames or min(frames) < 1 or any(b <= a for a, b in itertools.pairwise(frames)):
        raise ForecastDataError(
            f"horizons {tuple(horizons_ms)} ms at {fps:g} fps give frames {frames}; horizons must be at "
            "least one frame and strictly increasing in frames"
        )
    return frames


def clip_nodes(clip: Clip) -> NDArray[np.float32]:
    """``(T, D, J, 3)`` → ``(T, N, 3)`` metres, dancer 0's joints first."""
    return np.ascontiguousarray(clip.joints.reshape(clip.num_frames, N, 3), dtype=np.float32)


def window_starts(valid: NDArray[np.bool_], past: int, ahead: int, stride: int = 1) -> NDArray[np.int64]:
    """First frames of every window of ``past + ahead`` frames that sees only valid frames.

    Args:
        valid: ``(T, D)`` presence of both dancers.
        past: observed frames ``T_p``.
        ahead: frames after the last observed one (the largest horizon).
        stride: frames between window starts.

    Returns:
        ``(B,)`` start frames (empty when the clip is too short).
    """
    if past < 2 or ahead < 1 or stride < 1:
        raise ForecastDataError(f"need past >= 2, ahead >= 1 and stride >= 1, got {past}, {ahead}, {stride}")
    span = past + ahead
    ok = np.asarray(valid).all(axis=1)  # (T,)
    if ok.shape[0] < span:
        return np.zeros(0, dtype=np.int64)
    bad = np.concatenate([[0], np.cumsum(~ok)])  # bad[t] = invalid frames before t
    starts = np.arange(0, ok.shape[0] - span + 1, stride)
    return starts[(bad[starts + span] - bad[starts]) == 0].astype(np.int64)


class ForecastWindows(Dataset[tuple[Tensor, Tensor]]):
    """Every window of every clip, sliced on demand: items ``(past (T, N, 3), future (H, N, 3))``.

    Args:
        clips: ``(name, clip)`` pairs; all at the same frame rate.
        past: observed frames ``T``.
        frames: frames ahead of each horizon (increasing).
        stride: frames between window starts.

    Attributes:
        names: take names; ``take[i]`` indexes them for window ``i``; ``start[i]`` its first frame.
    """

    def __init__(self, clips: Sequence[tuple[str, Clip]], past: int, frames: Sequence[int], stride: int = 1
                 ) -> None:
        if not clips:
            raise ForecastDataError("no clips to window")
        fps = {round(c.fps, 6) for _, c in clips}
        if len(fps) != 1:
            raise ForecastDataError(f"clips have several frame rates {sorted(fps)}; resample them to one first")
        self.fps = float(clips[0][1].fps)
        self.past, self.frames = past, tuple(int(f) for f in frames)
        self.names = tuple(n for n, _ in clips)
        self.nodes = [torch.from_numpy(clip_nodes(c)) for _, c in clips]  # per take (T_s, N, 3)
        takes, starts = [], []
        for s, (_, clip) in enumerate(clips):
            st = window_starts(clip.valid, past, max(self.frames), stride)
            takes.append(np.full(st.shape, s, dtype=np.int64))
            starts.append(st)
        self.take = np.concatenate(takes)  # (B,)
        self.start = np.concatenate(starts)  # (B,)
        self._ahead = torch.tensor(self.frames, dtype=torch.long) + (past - 1)  # (H,) offsets from start

    def __len__(self) -> int:
        return int(self.take.shape[0])

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        x = self.nodes[int(self.take[i])]
        a = int(self.start[i])
        return x[a : a + self.past], x[a + self._ahead]  # (T, N, 3), (H, N, 3)

    def arrays(self) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Every window at once: ``(B, T, N, 3)`` past and ``(B, H, N, 3)`` future."""
        if len(self) == 0:
            return np.zeros((0, self.past, N, 3), np.float32), np.zeros((0, len(self.frames), N, 3), np.float32)
        past, fut = zip(*(self[i] for i in range(len(self))), strict=True)
        return torch.stack(past).numpy(), torch.stack(fut).numpy()


# --------------------------------------------------------------------------------------------- baselines


def zero_velocity(past: NDArray[np.floating], frames: Sequence[int]) -> NDArray[np.float32]:
    """Every horizon repeats the last observed frame: ``(B, T, N, 3)`` → ``(B, H, N, 3)``."""
    p = np.asarray(past, dtype=np.float32)
    return np.repeat(p[:, -1:], len(frames), axis=1)


def constant_velocity(past: NDArray[np.floating], frames: Sequence[int]) -> NDArray[np.float32]:
    """The last frame-to-frame displacement continued: ``x_T + f_k (x_T − x_{T−1})``, ``(B, H, N, 3)``."""
    p = np.asarray(past, dtype=np.float32)
    step = p[:, -1] - p[:, -2]  # (B, N, 3) metres per frame
    f = np.asarray(frames, dtype=np.float32)[None, :, None, None]  # (1, H, 1, 1)
    return p[:, -1:] + f * step[:, None]


def horizon_errors_mm(pred: NDArray[np.floating], target: NDArray[np.floating]) -> dict[str, list[float]]:
    """MPJPE (mean Euclidean error per joint) and MAE (mean absolute coordinate error), mm per horizon.

    Shapes:
        pred, target ``(B, H, N, 3)`` metres → lists of ``H`` floats.
    """
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if p.shape != t.shape or p.ndim != 4:
        raise ForecastDataError(f"pred and target must both be (B, H, N, 3), got {p.shape} and {t.shape}")
    mae = np.abs(p - t).mean(axis=(0, 2, 3))  # (H,)
    return {"mpjpe_mm": [float(v) * 1000 for v in mpjpe_per_horizon(p, t)],
            "mae_mm": [float(v) * 1000 for v in mae]}


# --------------------------------------------------------------------------------------------- augmentation


def duet_centre(past: Tensor) -> Tensor:
    """Mean of both pelvises at the last observed frame: ``(B, T, N, 3)`` → ``(B, 3)`` metres."""
    pelvis = CANONICAL.index("pelvis")
    return 0.5 * (past[:, -1, pelvis] + past[:, -1, J + pelvis])


def rotate_about_centre(points: Tensor, centre: Tensor, angles: NDArray[np.floating]) -> Tensor:
    """Rotate ``(B, ..., 3)`` points about the vertical axis through ``centre`` ``(B, 3)`` by ``angles`` (rad).

    Distances between any two points are preserved.
    """
    R = torch.from_numpy(rotation_y(np.asarray(angles))).to(points)  # (B, 3, 3)
    shape = points.shape
    flat = points.reshape(shape[0], -1, 3) - centre[:, None]  # (B, M, 3)
    return (torch.einsum("bij,bmj->bmi", R, flat) + centre[:, None]).reshape(shape)


def node_mirror() -> Tensor:
    """``(N,)`` node permutation swapping every joint with its left/right counterpart, per dancer."""
    m = torch.tensor(CANONICAL.mirror, dtype=torch.long)
    return torch.cat([m, m + J])


def node_swap() -> Tensor:
    """``(N,)`` node permutation exchanging the two dancers."""
    return torch.cat([torch.arange(J, N), torch.arange(J)])


def augment(past: Tensor, future: Tensor, rng: np.random.Generator, *, mirror_p: float = 0.5,
            swap_p: float = 0.0) -> tuple[Tensor, Tensor]:
    """Random yaw about the duet centre, left/right mirroring and dancer swapping, per window.

    Mirroring reflects x about the duet centre and swaps every joint with its counterpart (a
    mirrored body is still a body); swapping exchanges the dancers' roles.

    Shapes:
        past ``(B, T, N, 3)``, future ``(B, H, N, 3)`` metres → the same.
    """
    Bn = past.shape[0]
    centre = duet_centre(past)  # (B, 3)
    angles = rng.uniform(0.0, 2.0 * np.pi, size=Bn)
    both = torch.cat([past, future], dim=1)  # (B, T + H, N, 3)
    both = rotate_about_centre(both, centre, angles)
    if mirror_p > 0:
        flip = torch.from_numpy(rng.random(Bn) < mirror_p).to(past.device)  # (B,)
        mirrored = both[:, :, node_mirror().to(past.device)].clone()
        mirrored[..., 0] = 2.0 * centre[:, None, None, 0] - mirrored[..., 0]
        both = torch.where(flip[:, None, None, None], mirrored, both)
    if swap_p > 0:
        swap = torch.from_numpy(rng.random(Bn) < swap_p).to(past.device)
        both = torch.where(swap[:, None, None, None], both[:, :, node_swap().to(past.device)], both)
    T = past.shape[1]
    return both[:, :T], both[:, T:]


# --------------------------------------------------------------------------------------------- data sources


def _to_fps(name: str, clip: Clip, fps: float) -> Clip:
    from training.corpus import resample

    if not np.isclose(clip.fps, fps, rtol=1e-4):
        log.info("%s: resampling %.6g fps → %g fps", name, clip.fps, fps)
        return resample(clip, fps)
    return clip


def synthetic_clips(n: int, seconds: float = 20.0, fps: float = FORECAST_FPS, seed: int = 0
                    ) -> list[tuple[str, Clip]]:
    """``n`` synthetic duets (:func:`stream.synthetic.make_dataset`) of ``seconds`` each."""
    from stream.synthetic import make_dataset

    ds = make_dataset(n, round(seconds * fps), fps=fps, seed=seed)
    return [(f"synthetic_{i:03d}", Clip(joints=ds.joints[i], fps=fps, edges=ds.edges[i], edge_lag=ds.lag))
            for i in range(n)]


def load_forecast_clips(data: str | Path | None, fps: float = FORECAST_FPS, *, split: str = "train",
                        cache_dir: Path | None = None) -> list[tuple[str, Clip]]:
    """Named clips at ``fps`` from a data description.

    ``data`` is one of:

    * ``None`` or ``"corpus"`` — the real takes of :mod:`training.corpus`, ``split`` ``"train"``
      (every take but :data:`training.corpus.VAL_TAKES`) or ``"val"`` (those held out whole);
    * ``"heldout"`` — the held-out takes (``VAL_TAKES``);
    * comma-separated take names (``"salsa_05,cmu_squats"``);
    * ``"synthetic:S"`` — ``S`` synthetic duets of 20 s;
    * a clip ``.npz`` file or a directory of them.

    Raises:
        ForecastDataError: nothing matches, or a clip file is unreadable.
    """
    from training.corpus import real_takes, split_takes, take_names

    spec = str(data) if data is not None else CORPUS
    if spec in (CORPUS, HELDOUT):
        train, val = split_takes(real_takes(cache_dir))
        chosen = val if spec == HELDOUT or split == "val" else train
        return [(t.name, _to_fps(t.name, t.clip, fps)) for t in chosen]
    if spec.startswith(SYNTHETIC_PREFIX):
        try:
            n = int(spec[len(SYNTHETIC_PREFIX):])
        except ValueError as exc:
            raise ForecastDataError(f"{spec!r}: write synthetic:S with a number of duets S") from exc
        return synthetic_clips(n, fps=fps, seed=0 if split == "train" else 1)
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if names and all(n in take_names() for n in names):
        return [(t.name, _to_fps(t.name, t.clip, fps)) for t in real_takes(cache_dir, names)]
    path = Path(spec)
    files = sorted(path.glob("*.npz")) if path.is_dir() else [path]
    if path.is_dir() and not files:
        raise ForecastDataError(f"no clip files (*.npz) in {path}")
    if not path.exists():
        raise ForecastDataError(
            f"{spec!r} is neither a clip file, a directory of clips, 'corpus', 'heldout', 'synthetic:S' nor "
            f"take names ({', '.join(take_names())})"
        )
    out = []
    for f in files:
        try:
            out.append((f.stem, _to_fps(f.stem, Clip.load(f), fps)))
        except ClipError as exc:
            raise ForecastDataError(f"cannot read clip {f}: {exc}") from exc
    return out


@dataclass(frozen=True)
class BaselineScales:
    """Mean per-joint error of the better baseline at every horizon on some windows, metres.

    The training loss divides each horizon's error by it, so every horizon counts alike
    (a 1 s error is ~50× an 80 ms one).
    """

    mpjpe_m: tuple[float, ...]

    @classmethod
    def fit(cls, data: ForecastWindows, max_windows: int = 4000, seed: int = 0) -> BaselineScales:
        """Measure on up to ``max_windows`` windows of ``data``."""
        if len(data) == 0:
            raise ForecastDataError("no windows to measure the baselines on; use longer clips")
        rng = np.random.default_rng(seed)
        idx = rng.choice(len(data), size=min(max_windows, len(data)), replace=False)
        past = torch.stack([data[int(i)][0] for i in idx]).numpy()
        fut = torch.stack([data[int(i)][1] for i in idx]).numpy()
        zv = mpjpe_per_horizon(zero_velocity(past, data.frames), fut)
        cv = mpjpe_per_horizon(constant_velocity(past, data.frames), fut)
        return cls(tuple(float(max(v, 1e-4)) for v in np.minimum(zv, cv)))
