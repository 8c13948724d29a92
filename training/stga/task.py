"""Training and evaluation of STGA-Net on the one loop (:func:`training.loop.fit`).

Data: whole takes (default: the real corpus, :data:`training.corpus.VAL_TAKES` held out),
resampled to the model's frame rate (:data:`training.forecast_data.FORECAST_FPS`, 60 fps;
the CMU takes are 120 fps), windowed by :class:`~training.forecast_data.ForecastWindows`.

Loss: the mean over horizons of ``MPJPE_k / s_k`` where ``s_k`` is the better baseline's MPJPE
at horizon ``k`` on the training windows (:class:`~training.forecast_data.BaselineScales`), so a
loss of 0.75 means "25 % below the better baseline" on average and every horizon counts alike.

Augmentation (training only): a random yaw about the duet centre, left/right mirroring and,
optionally, swapping the dancers (:func:`training.forecast_data.augment`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stream.clip import Clip
from stream.errors import IStringsError
from stream.forecast_gate import ForecastGate, GateConfig
from training.checkpoint import CheckpointError, load_checkpoint
from training.config_tables import dataclass_from, read_tables
from training.forecast_data import (
    BaselineScales,
    ForecastWindows,
    augment,
    clip_nodes,
    constant_velocity,
    horizon_errors_mm,
    load_forecast_clips,
    zero_velocity,
)
from training.loop import TrainConfig, fit
from training.stga.model import STGAConfig, STGANet

log = logging.getLogger(__name__)

MODEL_NAME = "stga"


class STGAError(IStringsError):
    """STGA-Net cannot be trained or evaluated with the given settings or data."""


@dataclass(frozen=True)
class STGATaskConfig:
    """Training-time settings (not part of the model).

    Attributes:
        stride: frames between training window starts.
        val_stride: frames between validation window starts.
        mirror_p: probability of a left/right mirrored training window.
        swap_p: probability of swapping the dancers in a training window.
        rotate: random yaw about the duet centre for every training window.
        synthetic: synthetic duets (20 s each) added to the training takes.
        horizon_weights: loss weight of each horizon (``None``: all 1); the loss is
            ``Σ_k w_k MPJPE_k / s_k / Σ_k w_k``.
    """

    stride: int = 1
    val_stride: int = 2
    mirror_p: float = 0.5
    swap_p: float = 0.5
    rotate: bool = True
    synthetic: int = 0
    horizon_weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        w = self.horizon_weights
        if w is not None and (not w or any(not np.isfinite(x) or x < 0 for x in w) or sum(w) <= 0):
            raise STGAError(f"horizon_weights must be finite, non-negative and not all zero, got {w}")


def clips_id(clips: Sequence[tuple[str, Clip]]) -> str:
    """Data id of named clips: the take names and each clip's content hash."""
    import hashlib

    h = hashlib.sha256()
    for name, clip in clips:
        h.update(name.encode())
        h.update(clip.data_id.encode())
    return h.hexdigest()[:12]


class STGATask:
    """:class:`training.loop.Task` for STGA-Net: batches ``(past (B, T, N, 3), future (B, H, N, 3))`` metres."""

    name = MODEL_NAME

    def __init__(self, config: STGAConfig, task_config: STGATaskConfig, scales: BaselineScales, data_id: str,
                 seed: int = 0) -> None:
        if len(scales.mpjpe_m) != len(config.horizons_ms):
            raise STGAError(f"{len(scales.mpjpe_m)} baseline scales for {len(config.horizons_ms)} horizons")
        self.model_config = config
        self.task_config = task_config
        self.scales = scales
        self.data_id = data_id
        self.model: torch.nn.Module = STGANet(config)
        self._scale = torch.tensor(scales.mpjpe_m, dtype=torch.float32)  # (H,) metres
        w = task_config.horizon_weights or (1.0,) * len(config.horizons_ms)
        if len(w) != len(config.horizons_ms):
            raise STGAError(f"{len(w)} horizon weights for {len(config.horizons_ms)} horizons")
        self._weight = torch.tensor(w, dtype=torch.float32) / sum(w)  # (H,) sums to 1
        self._rng = np.random.default_rng(seed)

    def _loss(self, pred: Tensor, future: Tensor) -> tuple[Tensor, Tensor]:
        """Weighted loss and per-horizon MPJPE ``(H,)`` metres."""
        err = torch.linalg.vector_norm(pred - future, dim=-1).mean(dim=(0, 2))  # (B, H, N) → (H,)
        return (self._weight.to(err.device) * err / self._scale.to(err.device)).sum(), err

    def training_step(self, batch: Any, epoch: int) -> tuple[Tensor, dict[str, float]]:
        past, future = batch
        tc = self.task_config
        if tc.rotate or tc.mirror_p > 0 or tc.swap_p > 0:
            past, future = augment(past, future, self._rng, mirror_p=tc.mirror_p, swap_p=tc.swap_p)
        loss, err = self._loss(self.model(past), future)
        return loss, {f"mpjpe_mm_{int(h)}ms": float(e) * 1000 for h, e in
                      zip(self.model_config.horizons_ms, err.detach(), strict=True)}

    def validation_step(self, batch: Any) -> dict[str, float]:
        past, future = batch
        loss, err = self._loss(self.model(past), future)
        frames = self.model_config.frames
        p, f = past.cpu().numpy(), future.cpu().numpy()
        zv = horizon_errors_mm(zero_velocity(p, frames), f)["mpjpe_mm"]
        cv = horizon_errors_mm(constant_velocity(p, frames), f)["mpjpe_mm"]
        out = {"loss": float(loss)}
        for k, h in enumerate(self.model_config.horizons_ms):
            out[f"mpjpe_mm_{int(h)}ms"] = float(err[k]) * 1000
            out[f"zero_velocity_mm_{int(h)}ms"] = zv[k]
            out[f"constant_velocity_mm_{int(h)}ms"] = cv[k]
        return out

    def checkpoint_extra(self) -> dict[str, Any]:
        cfg = self.model_config
        return {
            "fps": float(cfg.fps),
            "horizons_s": [h / 1000.0 for h in cfg.horizons_ms],
            "horizon_frames": list(cfg.frames),
            "baseline_scales_m": list(self.scales.mpjpe_m),
            "task": dataclasses.asdict(self.task_config),
        }


# --------------------------------------------------------------------------------------------- train


def train_stga(
    *,
    out: str | Path,
    data: str | Path | None = None,
    val: str | Path | None = None,
    config: Path | None = None,
    model: Mapping[str, Any] | None = None,
    train: Mapping[str, Any] | None = None,
    task: Mapping[str, Any] | None = None,
    evaluate: bool = True,
    init: str | Path | None = None,
) -> dict[str, Any]:
    """Train STGA-Net with :func:`training.loop.fit`; evaluate and plot the best checkpoint.

    Args:
        out: run directory (``best.pt``, ``last.pt``, metrics, plots, ``eval.json``).
        data: training data (see :func:`training.forecast_data.load_forecast_clips`); default
            the corpus' training takes.
        val: validation data; default the held-out takes when ``data`` is the corpus, else none.
        config: TOML with ``[model]``, ``[task]``, ``[train]`` tables; keyword mappings win.
        model, train, task: overrides of :class:`STGAConfig`, :class:`TrainConfig`,
            :class:`STGATaskConfig` (``None`` values are ignored).
        evaluate: evaluate the best checkpoint on the validation takes and write plots.
        init: an STGA-Net checkpoint of the same config to start from (fine-tuning).

    Returns:
        A JSON-able summary (paths, wall time, windows, validation figures).
    """
    tables = read_tables(config, {"train", "model", "task"})

    def merged(name: str, over: Mapping[str, Any] | None) -> dict[str, Any]:
        return {**tables.get(name, {}), **{k: v for k, v in (over or {}).items() if v is not None}}

    mcfg: STGAConfig = dataclass_from(STGAConfig, merged("model", model), "model")
    tcfg_task: STGATaskConfig = dataclass_from(STGATaskConfig, merged("task", task), "task")
    tvals = {"monitor": "loss", "num_threads": 2, "lr": 1e-3, "weight_decay": 1e-4, "grad_clip": 1.0,
             "batch_size": 64, "epochs": 40, "lr_step": 12, "lr_gamma": 0.5, **merged("train", train),
             "out_dir": str(out)}
    tcfg: TrainConfig = dataclass_from(TrainConfig, tvals, "train")

    clips = load_forecast_clips(data, mcfg.fps, split="train")
    if tcfg_task.synthetic:
        clips += load_forecast_clips(f"synthetic:{tcfg_task.synthetic}", mcfg.fps, split="train")
    is_corpus = data is None or str(data) == "corpus"
    val_clips = (load_forecast_clips(val, mcfg.fps, split="val") if val is not None
                 else load_forecast_clips("heldout", mcfg.fps) if is_corpus else [])
    overlap = {n for n, _ in clips} & {n for n, _ in val_clips}
    if overlap:
        raise STGAError(f"takes {sorted(overlap)} are in both the training and the validation data; "
                        "hold out whole takes")
    train_ds = ForecastWindows(clips, mcfg.past_frames, mcfg.frames, tcfg_task.stride)
    if len(train_ds) == 0:
        raise STGAError(f"no training window of {mcfg.past_frames} + {max(mcfg.frames)} frames in the data")
    val_ds = ForecastWindows(val_clips, mcfg.past_frames, mcfg.frames, tcfg_task.val_stride) if val_clips else None
    scales = BaselineScales.fit(train_ds)
    log.info("STGA-Net: %d training windows from %s; %d validation windows; baseline scales %s mm",
             len(train_ds), [n for n, _ in clips], len(val_ds) if val_ds else 0,
             [round(s * 1000, 1) for s in scales.mpjpe_m])
    stga = STGATask(mcfg, tcfg_task, scales, clips_id(clips), seed=tcfg.seed)
    if init is not None:
        start = load_checkpoint(init)
        if start.model_name != MODEL_NAME or start.config() != mcfg:
            raise STGAError(f"--init {init} holds a {start.model_name!r} model with another config; "
                            "start from an STGA-Net checkpoint with the same [model] settings")
        stga.model.load_state_dict(start.state_dict)
        log.info("starting from the weights of %s", init)
    t0 = time.perf_counter()
    result = fit(stga, train_ds, val_ds, tcfg)
    summary: dict[str, Any] = {
        "best": str(result.best_path), "last": str(result.last_path), "best_epoch": result.best_epoch,
        "wall_s": round(time.perf_counter() - t0, 1), "train_windows": len(train_ds),
        "train_takes": [n for n, _ in clips if not n.startswith("synthetic_")],
        "synthetic_takes": sum(n.startswith("synthetic_") for n, _ in clips),
        "val_takes": [n for n, _ in val_clips],
        "parameters": sum(p.numel() for p in stga.model.parameters()),
    }
    if evaluate and val_clips:
        from training.stga.plots import plot_evaluation

        report = evaluate_stga(result.best_path, val_clips)
        (Path(out) / "eval.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
        summary["val"] = {k: report[k] for k in ("horizons_ms", "frames", "model", "gated", "zero_velocity",
                                                 "constant_velocity", "windows")}
        summary["plots"] = [str(p) for p in plot_evaluation(report, Path(out) / "plots")]
    return summary


# --------------------------------------------------------------------------------------------- evaluate


def load_stga(checkpoint: str | Path) -> STGANet:
    """The trained model of a checkpoint, in eval mode.

    Raises:
        CheckpointError: not an STGA-Net checkpoint.
    """
    ckpt = load_checkpoint(checkpoint)
    if ckpt.model_name != MODEL_NAME:
        raise CheckpointError(f"{checkpoint} holds a {ckpt.model_name!r} model, not STGA-Net ({MODEL_NAME!r}); "
                              "train one with `istrings train stga`")
    model = ckpt.build_model()
    if not isinstance(model, STGANet):
        raise CheckpointError(f"{checkpoint} did not rebuild an STGANet")
    return model.eval()


def predict(model: STGANet, past: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Forecasts ``(B, H, N, 3)`` metres for windows ``(B, T, N, 3)`` metres, in batches."""
    outs = []
    with torch.no_grad():
        for i in range(0, past.shape[0], batch_size):
            outs.append(model(torch.from_numpy(past[i : i + batch_size])).numpy())
    return np.concatenate(outs, axis=0)


def gated_forecasts(clips: Sequence[tuple[str, Clip]], ds: ForecastWindows, pred: np.ndarray, cfg: STGAConfig,
                    gate: GateConfig | None = None) -> np.ndarray:
    """The model's forecasts passed through the online gate (:mod:`stream.forecast_gate`) as the
    live process does: each take replayed frame by frame in time order, every frame observed,
    a forecast made at each window's last frame.

    Shapes:
        ``pred (B, H, N, 3)`` metres for the windows of ``ds`` (made from ``clips``) → the same.
    """
    out = np.empty_like(pred)
    horizons_s = [f / cfg.fps for f in cfg.frames]
    for s, (_, clip) in enumerate(clips):
        idx = np.flatnonzero(ds.take == s)
        if not idx.size:
            continue
        x = clip_nodes(clip)  # (T, N, 3)
        complete = np.all(np.asarray(clip.valid, dtype=bool), axis=1).tolist()  # (T,) both dancers present
        ends = {int(ds.start[i]) + cfg.past_frames - 1: int(i) for i in idx}  # newest frame → window
        g = ForecastGate(horizons_s, gate)
        for t in range(min(ends), max(ends) + 1):
            g.observe(t / cfg.fps, x[t], complete[t])
            i = ends.get(t)
            if i is not None:
                out[i] = g.forecast(t / cfg.fps, pred[i], x[t], (x[t] - x[t - 1]) * cfg.fps)
    return out


def evaluate_stga(checkpoint: str | Path, data: str | Path | Sequence[tuple[str, Clip]] | None = "heldout",
                  stride: int = 1, batch_size: int = 512, gate: GateConfig | None = None) -> dict[str, Any]:
    """MPJPE and MAE (mm) per horizon of a checkpoint, of it behind the online gate, and of both
    baselines, on the same windows.

    Args:
        checkpoint: an STGA-Net checkpoint.
        data: named clips, or a description for :func:`training.forecast_data.load_forecast_clips`
            (``"heldout"``: the held-out real takes; a clip file; a directory of clips).
        stride: frames between window starts.
        gate: settings of the online gate (:class:`stream.forecast_gate.GateConfig`).

    Returns:
        ``{"horizons_ms", "frames", "model": {"mpjpe_mm", "mae_mm"}, "gated": {…},
        "zero_velocity": {…}, "constant_velocity": {…}, "windows", "takes", "fps", "gate",
        "per_take", "per_joint_mm"}``. ``gated`` is what the live process sends: the model
        blended online with the better baseline (:mod:`stream.forecast_gate`); ``per_take`` maps
        each take to its ``windows`` and the ``mpjpe_mm`` of the four; ``per_joint_mm`` is the
        model's error ``(H, J)`` per canonical joint, averaged over both dancers.

    Raises:
        STGAError: the data has no complete window.
    """
    model = load_stga(checkpoint)
    cfg = model.cfg
    clips = list(data) if isinstance(data, Sequence) and not isinstance(data, str) else (
        load_forecast_clips(data, cfg.fps, split="val"))
    ds = ForecastWindows(clips, cfg.past_frames, cfg.frames, stride)
    if len(ds) == 0:
        raise STGAError(f"no window of {cfg.past_frames} + {max(cfg.frames)} frames "
                        f"({(cfg.past_frames + max(cfg.frames)) / cfg.fps:.2f} s) in the data; use longer clips")
    past, future = ds.arrays()
    gate = gate or GateConfig()
    pred = predict(model, past, batch_size)
    forecasts = {"model": pred, "gated": gated_forecasts(clips, ds, pred, cfg, gate),
                 "zero_velocity": zero_velocity(past, cfg.frames),
                 "constant_velocity": constant_velocity(past, cfg.frames)}
    per_node = np.linalg.norm(pred - future, axis=-1).mean(axis=0) * 1000  # (H, N) mm
    J = per_node.shape[1] // 2
    per_take = {}
    for s, name in enumerate(ds.names):
        sel = ds.take == s
        if sel.any():
            per_take[name] = {"windows": int(sel.sum()), **{
                k: horizon_errors_mm(f[sel], future[sel])["mpjpe_mm"] for k, f in forecasts.items()}}
    return {
        "horizons_ms": [float(h) for h in cfg.horizons_ms],
        "frames": list(cfg.frames),
        **{k: horizon_errors_mm(f, future) for k, f in forecasts.items()},
        "windows": len(ds),
        "takes": [n for n in ds.names],
        "fps": cfg.fps,
        "gate": dataclasses.asdict(gate),
        "per_take": per_take,
        "per_joint_mm": (0.5 * (per_node[:, :J] + per_node[:, J:])).round(2).tolist(),
    }
