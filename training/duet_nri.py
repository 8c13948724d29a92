"""Training and evaluation of the duet NRI variant on canonical clips (e.g. synthetic duets).

``istrings train nri`` and ``istrings eval nri`` send clip data here (:func:`train_duet`,
:func:`evaluate_duet`); the training itself is the project's one loop, :func:`training.loop.fit`,
driven by :class:`DuetNRITask`.

Data may be a clip ``.npz``, a directory of clips, or
``synthetic:S[:FRAMES[:SEED[:COUPLING[:LAG[:STRENGTH]]]]]`` — ``S`` fresh synthetic duets of
``FRAMES`` frames (default 96) from :func:`stream.synthetic.make_dataset`, each with its own
random planted strings acting with ``COUPLING`` ``local`` (default: on the driven bone's angles
relative to its parent, lag 6 frames = 0.2 s) or ``world`` (on its world direction, lag 1 frame),
``LAG`` in frames overriding that default, ``STRENGTH`` the strings' strength, one value or a
range ``LO-HI`` (default 0.6-1); e.g. ``synthetic:300:96:0:world:1`` or
``synthetic:300:96:0:world:1:1`` (rigid strings: the driven bone points exactly where the
driver's pointed a frame before).

Scores (see ``docs/results.md ("the duet NRI variant")``): the strength of an edge is ``1 − P(type 0)``;
``auroc`` ranks the ``J·J`` forward edges (dancer-0 joint i → dancer-1 joint j) of every clip,
scored by the strength averaged over the clip's windows, against the planted matrix
(``edges[i, j] > 0``), pooled over clips. ``auroc_window`` does the same per single window
(the live path's view); ``auroc_directed`` adds the reverse edges as negatives.
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
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import Tensor
from torch.utils.data import Dataset

from stream.clip import Clip
from training.config_tables import dataclass_from, read_tables
from training.duet_data import (
    CandidateGraph,
    DuetBatchSource,
    DuetDataError,
    Normalizer,
    build_windows,
    rotation_y,
)
from training.loop import TrainConfig, fit
from training.metrics import auroc
from training.nri.duet import DuetNRI, DuetNRIConfig, edge_strength
from training.nri.gumbel import kl_categorical, log_prior, nll_gaussian

log = logging.getLogger(__name__)

MODEL_NAME = "nri_duet"
SYNTHETIC_PREFIX = "synthetic:"


@dataclass(frozen=True)
class DuetDataConfig:
    """How clips become training windows.

    Attributes:
        stride: frames between window starts.
        val_fraction: share of clips held out for validation when no validation data is given.
        augment: random rotation about y of every training window.
        synthetic_frames: frames per synthetic duet of a ``synthetic:S`` spec without FRAMES.
    """

    stride: int = 4
    val_fraction: float = 0.1
    augment: bool = True
    synthetic_frames: int = 96


# ----------------------------------------------------------------------------- data


def load_duet_clips(data: str | Path | Clip | Sequence[Clip], synthetic_frames: int = 96) -> list[Clip]:
    """Clips from a clip file, a directory of clips, a ``synthetic:S[:FRAMES[:SEED]]`` spec, or clips.

    Raises:
        DuetDataError: an unknown spec, an empty directory, or a malformed synthetic spec.
        stream.clip.ClipError: a file that is not a clip.
    """
    if isinstance(data, Clip):
        return [data]
    if isinstance(data, Sequence) and not isinstance(data, str):
        return list(data)
    text = str(data)
    if text.startswith(SYNTHETIC_PREFIX):
        return _synthetic_spec(text, synthetic_frames)
    path = Path(text)
    if path.is_dir():
        files = sorted(path.glob("*.npz"))
        if not files:
            raise DuetDataError(f"no .npz clips in {path}; convert recordings with `istrings convert`")
        return [Clip.load(f) for f in files]
    if not path.exists():
        raise DuetDataError(f"no clip, directory or synthetic spec at {text!r}")
    return [Clip.load(path)]


SYNTHETIC_SPEC = ("synthetic:S[:FRAMES[:SEED[:COUPLING[:LAG[:STRENGTH]]]]] (COUPLING local or world, LAG in "
                  "frames, STRENGTH a value or LO-HI in (0, 1])")
DEFAULT_STRENGTH = (0.6, 1.0)
"""Range of the strings' strengths of a synthetic spec without STRENGTH."""
DEFAULT_LAG_FRAMES = {"local": 6, "world": 1}
"""Lag of a synthetic spec without LAG, frames at 30 fps, per coupling."""


def _synthetic_spec(text: str, synthetic_frames: int) -> list[Clip]:
    """Clips of a ``synthetic:S[:FRAMES[:SEED[:COUPLING[:LAG[:STRENGTH]]]]]`` spec."""
    parts = text[len(SYNTHETIC_PREFIX) :].split(":")
    try:
        if len(parts) > 6:
            raise ValueError("too many fields")
        n = int(parts[0])
        frames = int(parts[1]) if len(parts) > 1 and parts[1] else synthetic_frames
        seed = int(parts[2]) if len(parts) > 2 and parts[2] else 0
        coupling = parts[3] if len(parts) > 3 and parts[3] else "local"
        if coupling not in DEFAULT_LAG_FRAMES:
            raise ValueError(f"unknown coupling {coupling!r}")
        lag = int(parts[4]) if len(parts) > 4 and parts[4] else None
        strength = DEFAULT_STRENGTH
        if len(parts) > 5 and parts[5]:
            lo, _, hi = parts[5].partition("-")
            strength = (float(lo), float(hi or lo))
    except ValueError as exc:
        raise DuetDataError(f"bad synthetic spec {text!r} ({exc}); write {SYNTHETIC_SPEC}") from exc
    return synthetic_clips(n, frames, seed, coupling=coupling, lag_frames=lag, strength=strength)


def synthetic_clips(
    n_clips: int, frames: int, seed: int = 0, *, coupling: str = "local", lag_frames: int | None = None,
    strength: tuple[float, float] = DEFAULT_STRENGTH,
) -> list[Clip]:
    """``n_clips`` independent synthetic duets with planted strings (1–4 each).

    Args:
        coupling: ``"local"`` or ``"world"`` (see :mod:`stream.synthetic`).
        lag_frames: delay of the strings in frames at 30 fps; default :data:`DEFAULT_LAG_FRAMES`.
        strength: range of each string's strength (uniform), within (0, 1].

    Raises:
        DuetDataError: an unknown coupling, a lag or a strength out of range.
    """
    from stream.synthetic import SyntheticError, make_dataset

    fps = 30.0
    lag = DEFAULT_LAG_FRAMES.get(coupling, 0) if lag_frames is None else lag_frames
    try:
        ds = make_dataset(n_clips, frames, seed=seed, fps=fps, lag_s=lag / fps, coupling=coupling,  # type: ignore[arg-type]
                          strength=strength)
    except SyntheticError as exc:
        raise DuetDataError(f"cannot make synthetic duets: {exc}") from exc
    prov = {"source": "stream.synthetic.make_dataset", "seed": seed, "frames": frames, "coupling": coupling,
            "lag_frames": lag, "strength": list(strength)}
    return [
        Clip(joints=ds.joints[s], fps=ds.fps, edges=ds.edges[s], edge_lag=ds.lag, provenance={**prov, "index": s})
        for s in range(n_clips)
    ]


def data_id_of(clips: Sequence[Clip]) -> str:
    """Short id of a clip set (hash of the clips' own ids)."""
    import hashlib

    h = hashlib.sha256()
    for c in clips:
        h.update(c.data_id.encode())
    return h.hexdigest()[:12]


class DuetWindowDataset(Dataset[dict[str, Tensor]]):
    """Windows of a :class:`DuetBatchSource` as samples ``{"x": (T, N, 6)[, "labels": (E,)]}``.

    With ``augment`` every sample is rotated by a fresh random angle about y.
    """

    def __init__(self, source: DuetBatchSource, augment: bool, seed: int = 0) -> None:
        self.source = source
        self.augment = augment
        self.rng = np.random.default_rng(seed)
        self.scale = np.array([source.normalizer.pos_scale] * 3 + [source.normalizer.vel_scale] * 3,
                              dtype=np.float32)
        self.nodes = source.graph.node_index()

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        w = self.source.windows[i]  # (T, D, J, 6)
        if self.augment:
            R = rotation_y(self.rng.uniform(0.0, 2 * np.pi, size=1))[0]  # (3, 3)
            w = np.concatenate([w[..., :3] @ R.T, w[..., 3:] @ R.T], axis=-1)
        x = (w / self.scale)[:, self.nodes[0], self.nodes[1], :]  # (T, N, 6)
        out = {"x": torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))}
        if self.source.labels is not None:
            out["labels"] = torch.from_numpy(self.source.labels[i])
        return out


# ----------------------------------------------------------------------------- task


def forward_edge_auroc(logits: Tensor, labels: Tensor) -> float:
    """AUROC of ``1 − P(type 0)`` on the forward half of the edges, ``(B, E, K)`` vs ``(B, E)``."""
    P = labels.shape[1] // 2
    s = edge_strength(logits)[:, :P]
    return auroc(s.detach().cpu().numpy(), labels[:, :P].cpu().numpy())


class DuetNRITask:
    """The duet NRI as a :class:`training.loop.Task`: ELBO = reconstruction + KL to the prior."""

    name = MODEL_NAME

    def __init__(self, config: DuetNRIConfig, normalizer: Normalizer, data_id: str,
                 extra: Mapping[str, Any] | None = None) -> None:
        self.model_config = config
        self.model: torch.nn.Module = DuetNRI(config)
        self.normalizer = normalizer
        self.data_id = data_id
        self.extra = dict(extra or {})
        self.log_prior = log_prior(config.type_prior)

    def loss_terms(self, x: Tensor, training: bool, labels: Tensor | None = None
                   ) -> tuple[Tensor, dict[str, float], Tensor]:
        cfg = self.model_config
        if cfg.supervised:
            if labels is None:
                raise DuetDataError("supervised training needs clips with planted strings (labels)")
            model = self.model
            assert isinstance(model, DuetNRI)
            logits = model.encoder(x[:, : cfg.window])  # (B, E, K)
            ce = F.cross_entropy(logits.reshape(-1, cfg.edge_types), labels.reshape(-1).long())
            return ce, {"ce": float(ce.detach())}, logits
        out = self.model(x)
        first = cfg.window - 1 if cfg.future else 0  # with `future`, only the forecast frames count
        pred = out.pred[:, first:]  # (B, T-1-first, N, C)
        target = x[:, 1 + first :]
        if cfg.rigid_bones:  # its velocities are differences of its positions: the positions carry the loss
            pred, target = pred[..., :3], target[..., :3]
        if cfg.recon == "gaussian":
            recon = nll_gaussian(pred.transpose(1, 2), target.transpose(1, 2), cfg.output_var)  # (B, N, T, C)
        elif cfg.recon == "log_bone":
            assert isinstance(self.model, DuetNRI)
            bones = self.model.decoder.bone_op  # (N, N): positions → bone vectors
            err = (bones @ (pred[..., :3] - target[..., :3])).square().mean(dim=(1, 3))  # (B, N)
            recon = torch.log(err + LOG_BONE_EPS).mean()
        else:
            recon = F.mse_loss(pred, target)
        probs = F.softmax(out.logits, dim=-1)  # (B, E, K)
        kl = kl_categorical(probs, self.log_prior.to(x.device), x.shape[2])
        loss = recon + cfg.kl_weight * kl if cfg.kl_weight > 0 else recon
        metrics = {"recon": float(recon.detach()), "kl": float(kl.detach()),
                   "mse": float(F.mse_loss(pred.detach(), target))}
        return loss, metrics, out.logits

    def training_step(self, batch: Mapping[str, Tensor], epoch: int) -> tuple[Tensor, dict[str, float]]:
        loss, metrics, logits = self.loss_terms(batch["x"], training=True, labels=batch.get("labels"))
        if "labels" in batch:
            metrics["auroc"] = forward_edge_auroc(logits, batch["labels"])
        return loss, metrics

    def validation_step(self, batch: Mapping[str, Tensor]) -> dict[str, float]:
        loss, metrics, logits = self.loss_terms(batch["x"], training=False, labels=batch.get("labels"))
        metrics["loss"] = float(loss)
        if "labels" in batch:
            metrics["auroc"] = forward_edge_auroc(logits, batch["labels"])
        return metrics

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"normalizer": self.normalizer.as_dict(), **self.extra}


# ----------------------------------------------------------------------------- train


LOG_BONE_EPS = 1e-8
"""Floor of a node's squared bone error in the ``log_bone`` loss (normalised units)."""


def train_duet(
    data: str | Path | Sequence[Clip],
    out: str | Path,
    val: str | Path | Sequence[Clip] | None = None,
    config: Path | None = None,
    epochs: int | None = None,
    *,
    model: Mapping[str, Any] | None = None,
    train: Mapping[str, Any] | None = None,
    data_config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train the duet NRI on clips and evaluate the best checkpoint on the validation clips.

    Args:
        data: training clips (see :func:`load_duet_clips`).
        out: run directory (metrics, plots, ``best.pt``, ``last.pt``).
        val: validation clips; default: ``val_fraction`` of ``data``'s clips.
        config: TOML with ``[train]`` (:class:`TrainConfig`), ``[model]`` and ``[task]``
            (both :class:`DuetNRIConfig` fields) and ``[data]`` (:class:`DuetDataConfig`) tables;
            keyword mappings win over it.
        epochs: overrides ``train.epochs``.

    Returns:
        A JSON-able summary: paths, wall time, and :func:`evaluate_duet` on the validation clips.
    """
    tables = read_tables(config, {"train", "model", "task", "data"})
    dcfg: DuetDataConfig = dataclass_from(DuetDataConfig, {**tables.get("data", {}), **(data_config or {})},
                                           "data")
    # [task] (tau, hard, teacher_every, ... as `train nri` names them) is part of the model config here.
    mvals = {**tables.get("model", {}), **tables.get("task", {}), **(model or {})}
    mcfg: DuetNRIConfig = dataclass_from(DuetNRIConfig, mvals, "model")
    tvals = {"monitor": "auroc", "monitor_mode": "max", "out_dir": str(out),
             **tables.get("train", {}), **{k: v for k, v in (train or {}).items() if v is not None}}
    if epochs is not None:
        tvals["epochs"] = epochs
    tcfg: TrainConfig = dataclass_from(TrainConfig, tvals, "train")

    clips = load_duet_clips(data, dcfg.synthetic_frames)
    if val is None:
        n_val = max(1, round(len(clips) * dcfg.val_fraction)) if len(clips) > 1 else 0
        val_clips, clips = clips[:n_val], clips[n_val:]
    else:
        val_clips = load_duet_clips(val, dcfg.synthetic_frames)
    graph = mcfg.graph
    # Centred at the encoder's newest frame, as on the live path (not on a frame to forecast).
    train_src = build_windows(clips, graph, mcfg.frames, dcfg.stride, centre_at=mcfg.window - 1)
    if mcfg.rigid_bones and not mcfg.velocity_step:  # a normalised velocity's step in normalised positions
        norm = train_src.normalizer
        mcfg = dataclasses.replace(mcfg, velocity_step=norm.vel_scale / (float(clips[0].fps) * norm.pos_scale))
    if train_src.labels is None and tcfg.monitor == "auroc":
        tcfg = dataclasses.replace(tcfg, monitor="loss", monitor_mode="min")
    val_src = (build_windows(val_clips, graph, mcfg.frames, dcfg.stride, train_src.normalizer,
                             centre_at=mcfg.window - 1) if val_clips else None)
    if val_src is not None and val_src.labels is None and tcfg.monitor == "auroc":
        tcfg = dataclasses.replace(tcfg, monitor="loss", monitor_mode="min")
    log.info("duet NRI: %d training windows from %d clips, %d validation windows", len(train_src), len(clips),
             0 if val_src is None else len(val_src))
    task = DuetNRITask(mcfg, train_src.normalizer, data_id_of(clips),
                       extra={"fps": float(clips[0].fps), "stride": dcfg.stride, "data": str(data)[:200]})
    train_ds = DuetWindowDataset(train_src, augment=dcfg.augment, seed=tcfg.seed)
    val_ds = DuetWindowDataset(val_src, augment=False) if val_src is not None else None
    t0 = time.perf_counter()
    result = fit(task, train_ds, val_ds, tcfg)
    summary: dict[str, Any] = {
        "best": str(result.best_path), "last": str(result.last_path), "best_epoch": result.best_epoch,
        "wall_s": round(time.perf_counter() - t0, 1), "train_windows": len(train_src),
        "train_clips": len(clips),
    }
    if val_clips:
        summary["val"] = evaluate_duet(result.best_path, val_clips)
    return summary


# ----------------------------------------------------------------------------- evaluate


def load_duet_model(checkpoint: str | Path) -> tuple[DuetNRI, Normalizer, dict[str, Any]]:
    """The model, its normaliser and the checkpoint's extra data.

    Raises:
        CheckpointError: not a duet NRI checkpoint.
    """
    from training.checkpoint import CheckpointError, load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    if ckpt.model_name != MODEL_NAME or "normalizer" not in ckpt.extra:
        raise CheckpointError(f"{checkpoint} holds {ckpt.model_name!r}, not a duet NRI checkpoint ({MODEL_NAME})")
    model = ckpt.build_model()
    if not isinstance(model, DuetNRI):
        raise CheckpointError(f"{checkpoint} did not rebuild a DuetNRI")
    norm = Normalizer(**{k: float(v) for k, v in ckpt.extra["normalizer"].items()})
    return model, norm, dict(ckpt.extra)


def _batches(x: NDArray[np.float32], size: int) -> list[Tensor]:
    return [torch.from_numpy(x[i : i + size]) for i in range(0, x.shape[0], size)]


@torch.no_grad()
def evaluate_duet(
    checkpoint: str | Path,
    data: str | Path | Clip | Sequence[Clip],
    *,
    horizon: int = 10,
    stride: int | None = None,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Edge scores against planted strings and ``horizon``-step forecast error of a checkpoint.

    Returns:
        ``auroc`` (clip-averaged strengths, forward edges, pooled over clips), ``auroc_window``,
        ``auroc_directed``, ``auroc_per_clip`` (mean), ``edge_accuracy`` (argmax type ≠ 0 vs
        planted, forward edges, per window), ``strong_precision`` / ``strong_recall`` (the
        0.8-confidence readout), ``mse_1`` and ``mse_<horizon>`` (position error m², encoder
        on ``window`` frames, decoder teacher-forced through them then rolled out), the
        constant-position baseline ``mse_<horizon>_static``, and counts. AUROC-type values are
        ``None`` when the data carries no planted strings.
    """
    model, norm, extra = load_duet_model(checkpoint)
    model.eval()
    cfg = model.config
    graph: CandidateGraph = cfg.graph
    clips = load_duet_clips(data)
    T = cfg.window
    step = stride or int(extra.get("stride", 4))
    P = graph.num_pairs
    strengths, labels_clip, win_strength, win_labels, win_argmax = [], [], [], [], []
    mse_h: list[NDArray[np.float64]] = []
    mse_static: list[NDArray[np.float64]] = []
    have_labels = all(c.edges is not None for c in clips)
    strong_tp = strong_fp = strong_fn = 0
    n_windows = 0
    for clip in clips:
        src = build_windows([clip], graph, T, step, norm)
        xs = _source_nodes(src)  # (B, T, N, C)
        logits = torch.cat([model.encoder(b) for b in _batches(xs, batch_size)])  # (B, E, K)
        s = edge_strength(logits).numpy()  # (B, E)
        n_windows += s.shape[0]
        strengths.append(s.mean(axis=0))
        if have_labels and src.labels is not None:
            lab = src.labels[0]
            labels_clip.append(lab)
            win_strength.append(s[:, :P])
            win_labels.append(np.repeat(lab[None, :P], s.shape[0], axis=0))
            win_argmax.append(logits.argmax(-1).numpy()[:, :P] != 0)
            strong = (F.softmax(logits, -1)[..., 1:].amax(-1) >= cfg.strong_threshold).numpy()[:, :P]
            strong_tp += int((strong & lab[None, :P]).sum())
            strong_fp += int((strong & ~lab[None, :P]).sum())
            strong_fn += int((~strong & lab[None, :P]).sum())
        if clip.num_frames >= T + horizon:
            long_src = build_windows([clip], graph, T + horizon, step, norm, centre_at=T - 1)
            xl = _source_nodes(long_src)  # (B, T + horizon, N, C)
            errs, errs0 = [], []
            for b in _batches(xl, batch_size):
                z = F.softmax(model.encoder(b[:, :T]), dim=-1)
                pred = model.decoder.rollout(b, z, burn_in=T, steps=horizon)  # (B, horizon, N, C)
                truth = b[:, T : T + horizon]
                scale = norm.pos_scale
                errs.append(((pred[..., :3] - truth[..., :3]) * scale).pow(2).mean(dim=(2, 3)).numpy())
                errs0.append(((b[:, T - 1 : T, :, :3] - truth[..., :3]) * scale).pow(2).mean(dim=(2, 3)).numpy())
            mse_h.append(np.concatenate(errs))  # (B, horizon)
            mse_static.append(np.concatenate(errs0))
    result: dict[str, Any] = {"clips": len(clips), "windows": n_windows, "window": T,
                              "edges": graph.num_edges, "edge_types": cfg.edge_types}
    if have_labels and labels_clip:
        S = np.stack(strengths)  # (clips, E)
        Y = np.stack(labels_clip)  # (clips, E)
        result["auroc"] = _nan_to_none(auroc(S[:, :P], Y[:, :P]))
        result["auroc_directed"] = _nan_to_none(auroc(S, Y))
        per_clip = [auroc(s[:P], y[:P]) for s, y in zip(S, Y, strict=True)]
        result["auroc_per_clip"] = _nan_to_none(float(np.nanmean(per_clip)) if per_clip else float("nan"))
        result["auroc_window"] = _nan_to_none(auroc(np.concatenate(win_strength), np.concatenate(win_labels)))
        result["edge_accuracy"] = float((np.concatenate(win_argmax) == np.concatenate(win_labels)).mean())
        result["strong_precision"] = strong_tp / max(strong_tp + strong_fp, 1)
        result["strong_recall"] = strong_tp / max(strong_tp + strong_fn, 1)
        result["planted_edges"] = int(Y[:, :P].sum())
    else:
        for k in ("auroc", "auroc_directed", "auroc_per_clip", "auroc_window", "edge_accuracy"):
            result[k] = None
    if mse_h:
        E_h = np.concatenate(mse_h)  # (B, horizon) m²
        result["mse_1"] = float(E_h[:, 0].mean())
        result[f"mse_{horizon}"] = float(E_h[:, -1].mean())
        result[f"mse_{horizon}_static"] = float(np.concatenate(mse_static)[:, -1].mean())
    else:
        result["mse_1"] = result[f"mse_{horizon}"] = None
    return result


def _source_nodes(src: DuetBatchSource) -> NDArray[np.float32]:
    """All windows of a source as normalised model input ``(B, T, N, C)`` (no augmentation)."""
    return src.batch(slice(None))["x"].numpy()


def _nan_to_none(v: float) -> float | None:
    return None if not np.isfinite(v) else float(v)


def summary_json(result: Mapping[str, Any]) -> str:
    return json.dumps(result, default=str)
