"""Training and evaluation of MKFF-ST-GCN on the project's one loop (:func:`training.loop.fit`).

Data: clean canonical clips — the real corpus (:mod:`training.corpus`: salsa + CMU takes,
:data:`training.corpus.VAL_TAKES` held out whole) or given clip files — brought to **30 fps**
(the live camera's rate) by decimation, every phase kept for training (a 60 fps take gives two
30 fps sequences, a 120 fps take four), phase 0 only for validation and evaluation. Each
training epoch set holds ``realizations`` noisy copies of every sequence, each with a random
yaw about the vertical axis, a random dancer order and fresh noise from
:func:`training.noise.apply_noise`, cut into windows of ``T`` frames every ``stride`` frames:

    (noisy (T, N, 3) m, clean target (T, N, 3) m, loss weights (T, N))    N = D·J = 36

Loss (the paper's): a visibility-weighted L1 over every keypoint plus a term on the ``k``
worst keypoints of each pose::

    e_n    = |ŷ_n − y_n|_1                                         (per joint, metres)
    loss   = Σ w_n e_n / Σ w_n  +  λ_top · mean of the k largest w_n e_n per pose

at the output frame, plus ``all_frames_weight`` × the same over every frame of the window
(:meth:`training.mkff.model.MKFFSTGCN.forward_all`; causal frames only see their past).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor
from torch.utils.data import TensorDataset

from stream.clip import Clip
from stream.errors import IStringsError
from stream.skeleton import J
from training.loop import TrainConfig, fit
from training.mkff.evaluate import (
    OneEuroParams,
    dct_offline,
    one_euro,
    pose_metrics,
    refine_sequence,
    tune_one_euro,
)
from training.mkff.model import MKFFSTGCN, MKFFConfig
from training.noise import NoiseConfig, apply_noise

log = logging.getLogger(__name__)

D = 2
N = D * J
DEFAULT_FPS = 30.0
DEFAULT_WINDOWS: dict[str, int] = {"causal": 12, "centred": 13}
"""Window per mode: 0.4 s of past (causal), ±6 frames (centred), at 30 fps."""


class MKFFError(IStringsError, ValueError):
    """MKFF data or settings are unusable (too-short clips, unknown data, mismatched checkpoints)."""


@dataclass(frozen=True)
class MKFFTaskConfig:
    """Training-time settings of the refiner (not part of the model).

    Attributes:
        realizations: noisy, augmented copies of every training sequence.
        stride: frames between training windows.
        val_stride: frames between validation windows.
        topk: worst keypoints per pose in the top-k term.
        topk_weight: ``λ_top``.
        all_frames_weight: weight of the every-frame loss.
        seed: seed of augmentation and noise (validation noise uses ``seed + 1``).
        noise: the noise model.
    """

    realizations: int = 6
    stride: int = 2
    val_stride: int = 2
    topk: int = 6
    topk_weight: float = 0.5
    all_frames_weight: float = 0.5
    seed: int = 0
    noise: NoiseConfig = field(default_factory=NoiseConfig)


# --------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Sequence30:
    """One clean sequence at the training frame rate: ``joints (T, D, J, 3)`` m, ``valid (T, D)``."""

    name: str
    joints: NDArray[np.float32]
    valid: NDArray[np.bool_]


def clip_sequences(name: str, clip: Clip, fps: float, all_phases: bool) -> list[Sequence30]:
    """A clip at ``fps``: decimated when its rate is a multiple (every phase if ``all_phases``),
    else linearly resampled."""
    from training.corpus import resample

    ratio = clip.fps / fps
    m = round(ratio)
    if m >= 1 and abs(ratio - m) < 1e-3:
        phases = range(m) if all_phases else range(1)
        return [Sequence30(f"{name}/{p}", clip.joints[p::m], clip.valid[p::m]) for p in phases]
    c = resample(clip, fps)
    return [Sequence30(name, c.joints, c.valid)]


def load_clips(data: str | Path) -> list[tuple[str, Clip]]:
    """Named clips from a clip ``.npz`` or a directory of them.

    Raises:
        MKFFError: nothing loadable there.
    """
    path = Path(data)
    files = sorted(path.glob("*.npz")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise MKFFError(f"no clip at {data}: give a clip .npz, a directory of clips, or 'corpus'/'heldout'")
    return [(f.stem, Clip.load(f)) for f in files]


def corpus_split() -> tuple[list[tuple[str, Clip]], list[tuple[str, Clip]]]:
    """The real takes as (training, held-out) named clips."""
    from training.corpus import real_takes, split_takes

    train, val = split_takes(real_takes())
    return [(t.name, t.clip) for t in train], [(t.name, t.clip) for t in val]


def rotate_yaw(joints: NDArray[np.floating], angle: float) -> NDArray[np.float32]:
    """Rotate ``(T, D, J, 3)`` about the vertical (y) axis through the mean pelvis by ``angle`` rad."""
    x = np.asarray(joints, dtype=np.float64)
    c, s = np.cos(angle), np.sin(angle)
    R = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    centre = x[:, :, 0].mean(axis=(0, 1))  # (3,) mean pelvis
    centre[1] = 0.0
    return ((x - centre) @ R.T + centre).astype(np.float32)


def make_windows(seqs: Sequence[Sequence30], window: int, stride: int, noise: NoiseConfig, rng: np.random.Generator,
                 realizations: int = 1, augment: bool = False) -> TensorDataset:
    """Noisy windows with their clean targets and loss weights.

    Returns:
        ``TensorDataset`` of ``(noisy (S, T, N, 3), target (S, T, N, 3), weights (S, T, N))`` float32.

    Raises:
        MKFFError: no sequence is as long as a window.
    """
    noisy_w, target_w, weight_w = [], [], []
    for _ in range(realizations):
        for seq in seqs:
            T = seq.joints.shape[0]
            if window > T:
                continue
            clean, valid = seq.joints, seq.valid
            if augment:
                clean = rotate_yaw(clean, float(rng.uniform(0, 2 * np.pi)))
                if rng.random() < 0.5:
                    clean, valid = clean[:, ::-1], valid[:, ::-1]
            ns = apply_noise(clean, rng, noise, valid)
            idx = np.arange(0, T - window + 1, stride)[:, None] + np.arange(window)[None, :]  # (S, T)
            noisy_w.append(ns.noisy.reshape(T, N, 3)[idx])
            target_w.append(np.ascontiguousarray(clean, dtype=np.float32).reshape(T, N, 3)[idx])
            weight_w.append(ns.weights.reshape(T, N)[idx])
    if not noisy_w:
        raise MKFFError(f"no sequence has {window} frames; use longer clips or a shorter window")
    return TensorDataset(*(torch.from_numpy(np.concatenate(a)) for a in (noisy_w, target_w, weight_w)))


# --------------------------------------------------------------------------------------------- loss and task


def refine_loss(pred: Tensor, target: Tensor, weights: Tensor, topk: int, topk_weight: float
                ) -> tuple[Tensor, Tensor, Tensor]:
    """Visibility-weighted L1 plus the mean of the ``topk`` worst weighted keypoints of each pose.

    Shapes:
        ``pred, target (..., N, 3)`` metres, ``weights (..., N)`` → three scalars
        ``(loss, weighted_l1, topk_term)`` in metres.
    """
    err = (pred - target).abs().sum(dim=-1) * weights  # (..., N) m
    l1 = err.sum() / weights.sum().clamp_min(1e-6)
    k = min(topk, err.shape[-1])
    top = err.topk(k, dim=-1).values.mean() if k > 0 else err.new_zeros(())
    return l1 + topk_weight * top, l1, top


class MKFFTask:
    """:class:`training.loop.Task` of the refiner: batches ``(noisy, target, weights)``."""

    name = "mkff"

    def __init__(self, model_config: MKFFConfig, task_config: MKFFTaskConfig, data_id: str,
                 extra: Mapping[str, Any] | None = None) -> None:
        self.model_config = model_config
        self.task_config = task_config
        self.data_id = data_id
        self.extra = dict(extra or {})
        self.model: torch.nn.Module = MKFFSTGCN(model_config)

    def _losses(self, batch: Any) -> tuple[Tensor, Tensor, dict[str, float]]:
        noisy, target, weights = batch
        tc, o = self.task_config, self.model_config.output_frame
        pred_all = self.model(noisy, all_frames=True)  # (B, T, N, 3)
        loss_o, l1, top = refine_loss(pred_all[:, o], target[:, o], weights[:, o], tc.topk, tc.topk_weight)
        loss_all, _, _ = refine_loss(pred_all, target, weights, tc.topk, tc.topk_weight)
        loss = loss_o + tc.all_frames_weight * loss_all
        return loss, pred_all[:, o], {"l1_mm": float(l1.detach()) * 1000, "topk_mm": float(top.detach()) * 1000}

    def training_step(self, batch: Any, epoch: int) -> tuple[Tensor, dict[str, float]]:
        loss, _, metrics = self._losses(batch)
        return loss, metrics

    def validation_step(self, batch: Any) -> dict[str, float]:
        loss, pred, metrics = self._losses(batch)
        o = self.model_config.output_frame
        target, weights = batch[1][:, o], batch[2][:, o]
        B = pred.shape[0]
        m = pose_metrics(pred.cpu().numpy().reshape(B, D, J, 3), target.cpu().numpy().reshape(B, D, J, 3),
                         weights.cpu().numpy().reshape(B, D, J)[..., 0] > 0)
        return {"loss": float(loss), **metrics, "mpjpe_mm": m["mpjpe_mm"], "pck05": m["pck@0.05"],
                "pck10": m["pck@0.1"], "pck20": m["pck@0.2"]}

    def checkpoint_extra(self) -> dict[str, Any]:
        tc = dataclasses.asdict(self.task_config)
        tc["noise"]["swap_frames"] = list(tc["noise"]["swap_frames"])
        return {"fps": self.model_config.fps, "task": tc, **self.extra}


# --------------------------------------------------------------------------------------------- train


def _data_id(clips: Sequence[tuple[str, Clip]]) -> str:
    h = hashlib.sha256()
    for name, clip in clips:
        h.update(name.encode())
        h.update(clip.data_id.encode())
    return h.hexdigest()[:12]


def _noisy_copies(seqs: Sequence[Sequence30], noise: NoiseConfig, seed: int) -> list[NDArray[np.float32]]:
    """One noisy copy of every sequence, sequence ``i`` from ``default_rng(seed + i)``."""
    return [apply_noise(s.joints, np.random.default_rng(seed + i), noise, s.valid).noisy for i, s in enumerate(seqs)]


def train_mkff(*, out: str | Path, mode: str = "causal", data: str | Path = "corpus", val: str | Path | None = None,
               train: Mapping[str, Any] | None = None, model: Mapping[str, Any] | None = None,
               task: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Train MKFF-ST-GCN (``mode`` causal or centred) through :func:`training.loop.fit`.

    Args:
        out: run directory (metrics, plots, ``best.pt``, ``last.pt``).
        mode: ``"causal"`` or ``"centred"``.
        data: ``"corpus"`` (the real takes, :data:`training.corpus.VAL_TAKES` held out) or a clip
            ``.npz`` / directory of clips.
        val: validation clips (required with a path ``data``; ignored with ``"corpus"``).
        train: :class:`training.loop.TrainConfig` overrides (None values ignored).
        model: :class:`MKFFConfig` overrides.
        task: :class:`MKFFTaskConfig` overrides.

    Returns:
        A JSON-able summary (best epoch and metrics, One Euro parameters, wall time, paths).
    """
    t0 = time.perf_counter()
    model_kw = {k: v for k, v in (model or {}).items() if v is not None}
    model_kw.setdefault("window", DEFAULT_WINDOWS.get(mode, 12))
    model_cfg = MKFFConfig(mode=mode, **model_kw)
    task_cfg = dataclasses.replace(MKFFTaskConfig(), **{k: v for k, v in (task or {}).items() if v is not None})
    defaults = TrainConfig(epochs=7, batch_size=128, lr=1e-3, lr_step=3, lr_gamma=0.5, grad_clip=1.0,
                           num_threads=1, log_every=50, monitor="mpjpe_mm", monitor_mode="min", out_dir=str(out))
    train_cfg = defaults.replace(**dict(train or {}), out_dir=str(out))
    if str(data) == "corpus":
        train_clips, val_clips = corpus_split()
    else:
        if val is None:
            raise MKFFError("training on clip files needs --val clips (whole held-out takes)")
        train_clips, val_clips = load_clips(data), load_clips(val)
    fps = model_cfg.fps
    train_seqs = [s for n, c in train_clips for s in clip_sequences(n, c, fps, all_phases=True)]
    val_seqs = [s for n, c in val_clips for s in clip_sequences(n, c, fps, all_phases=False)]
    noise = task_cfg.noise
    tune_seqs = [s for n, c in train_clips for s in clip_sequences(n, c, fps, all_phases=False)]
    log.info("tuning One Euro on %d training sequences", len(tune_seqs))
    params = tune_one_euro(_noisy_copies(tune_seqs, noise, task_cfg.seed + 1000), [s.joints for s in tune_seqs], fps)
    rng = np.random.default_rng(task_cfg.seed)
    train_ds = make_windows(train_seqs, model_cfg.window, task_cfg.stride, noise, rng, task_cfg.realizations,
                            augment=True)
    val_ds = make_windows(val_seqs, model_cfg.window, task_cfg.val_stride, noise,
                          np.random.default_rng(task_cfg.seed + 1))
    log.info("%d training windows, %d validation windows", len(train_ds), len(val_ds))
    extra = {"one_euro": params.to_dict(), "train_takes": [n for n, _ in train_clips],
             "val_takes": [n for n, _ in val_clips]}
    mkff_task = MKFFTask(model_cfg, task_cfg, _data_id(train_clips), extra)
    result = fit(mkff_task, train_ds, val_ds, train_cfg)
    best = result.history[result.best_epoch - 1] if result.history else {}
    return {
        "mode": mode, "out": str(result.out_dir), "best": str(result.best_path), "best_epoch": result.best_epoch,
        "val": {k.removeprefix("val/"): v for k, v in best.items() if k.startswith("val/")},
        "train_windows": len(train_ds), "val_windows": len(val_ds), "one_euro": params.to_dict(),
        "parameters": sum(p.numel() for p in mkff_task.model.parameters()),
        "fit_wall_s": round(result.wall_s, 1), "wall_s": round(time.perf_counter() - t0, 1),
    }


# --------------------------------------------------------------------------------------------- evaluate


def _noise_from(extra: Mapping[str, Any]) -> NoiseConfig:
    raw = dict(extra.get("task", {}).get("noise", {}))
    if "swap_frames" in raw:
        raw["swap_frames"] = tuple(raw["swap_frames"])
    return NoiseConfig(**raw)


def evaluate_mkff(checkpoints: Sequence[str | Path], data: str | Path = "heldout", seed: int = 2024,
                  threads: int | None = None) -> dict[str, Any]:
    """PCK@0.2/0.1/0.05 and MPJPE of raw input, One Euro, the offline DCT and every checkpoint.

    All methods see the same noisy sequences: sequence ``i`` corrupted with
    ``default_rng(seed + i)`` by the noise model stored in the first checkpoint. One Euro uses
    the parameters tuned on the training split at training time (stored in the checkpoint).

    Args:
        checkpoints: ``mkff`` checkpoints (causal and/or centred, same frame rate).
        data: ``"heldout"`` (the corpus's :data:`training.corpus.VAL_TAKES`) or a clip / directory.
        seed: noise seed.
        threads: torch threads.

    Raises:
        MKFFError: no checkpoint, or checkpoints of other models or frame rates.
    """
    from training.checkpoint import load_checkpoint

    if threads:
        torch.set_num_threads(threads)
    if not checkpoints:
        raise MKFFError("give at least one --checkpoint of `istrings train mkff`")
    loaded = [load_checkpoint(c) for c in checkpoints]
    for path, ck in zip(checkpoints, loaded, strict=True):
        if ck.model_name != "mkff":
            raise MKFFError(f"{path} holds a {ck.model_name!r} model, not an 'mkff' refiner")
    configs: list[MKFFConfig] = [ck.config() for ck in loaded]
    fps = configs[0].fps
    if any(c.fps != fps for c in configs):
        raise MKFFError("the checkpoints were trained at different frame rates; evaluate them separately")
    clips = corpus_split()[1] if str(data) == "heldout" else load_clips(data)
    seqs = [s for n, c in clips for s in clip_sequences(n, c, fps, all_phases=False)]
    noise = _noise_from(loaded[0].extra)
    noisy = _noisy_copies(seqs, noise, seed)
    clean = np.concatenate([s.joints for s in seqs])
    mask = np.concatenate([s.valid for s in seqs])
    oe = loaded[0].extra.get("one_euro")
    params = OneEuroParams(**oe) if oe else tune_one_euro(
        _noisy_copies(seqs, noise, seed + 1000), [s.joints for s in seqs], fps)
    preds: dict[str, NDArray[np.floating]] = {
        "raw": np.concatenate(noisy),
        "one_euro": np.concatenate([one_euro(n, fps, params.min_cutoff, params.beta, params.d_cutoff) for n in noisy]),
        "dct_offline": np.concatenate([dct_offline(n) for n in noisy]),
    }
    for cfg, ck in zip(configs, loaded, strict=True):
        net = ck.build_model()
        name = f"mkff_{cfg.mode}"
        preds[name if name not in preds else f"{name}_{len(preds)}"] = np.concatenate(
            [refine_sequence(net, n, cfg.window, cfg.output_frame) for n in noisy])
    methods = {k: {m: round(v, 4) for m, v in pose_metrics(p, clean, mask).items()} for k, p in preds.items()}
    return {
        "data": str(data), "sequences": [s.name for s in seqs], "frames": int(clean.shape[0]), "fps": fps,
        "seed": seed, "checkpoints": [str(c) for c in checkpoints],
        "torso": "clean neck-pelvis distance per dancer and frame",
        "one_euro": params.to_dict(), "methods": methods,
    }
