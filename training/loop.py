"""The one training loop of the project: any model, plain process or ``torchrun`` (DDP).

A model plugs in as a :class:`Task`: it owns the ``nn.Module`` and knows how to turn a batch
into a loss (``training_step``) and into validation metrics (``validation_step``). The loop owns
everything else: device and threads, seeding, data loaders (``DistributedSampler`` under
``torchrun``), Adam + StepLR, gradient clipping, rich progress bars, per-epoch metrics in
``metrics.csv`` / ``metrics.json``, plots of every metric, and ``best.pt`` / ``last.pt``.

Under ``torchrun`` (``WORLD_SIZE > 1``) the process group uses gloo on CPU and nccl on CUDA; the
loop wraps ``task.model`` in :class:`~torch.nn.parallel.DistributedDataParallel` for the
duration of :func:`fit` (so a task must run its forward pass as ``self.model(...)``, never by
calling submodules, for gradients to be synchronised), and only rank 0 writes files.

Optional task hooks (looked up with ``getattr``):

* ``checkpoint_extra() -> dict`` — plain data saved as the checkpoint's ``extra``
  (e.g. normalisation statistics);
* ``collate_fn`` — passed to the ``DataLoader``.

Metrics are averaged over samples (each batch weighted by its first tensor's leading size)
and across ranks.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import random
import time
import tomllib
import typing
from collections.abc import Mapping, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.distributed as dist
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from stream.errors import IStringsError
from training.checkpoint import save_checkpoint
from training.plots import plot_metrics

log = logging.getLogger(__name__)


class TrainError(IStringsError):
    """Training cannot start or went wrong (bad config, empty data, non-finite loss)."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by every model.

    Attributes:
        epochs: passes over the training data.
        batch_size: samples per step *per process*.
        lr: Adam learning rate.
        weight_decay: Adam weight decay (L2).
        lr_step: StepLR period in epochs.
        lr_gamma: StepLR factor.
        grad_clip: max global gradient norm, or None for no clipping.
        seed: seeds python, numpy and torch (same on every rank; the sampler shuffles per epoch).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (cuda when available).
        num_threads: torch intra-op threads (None: torch's default).
        out_dir: run directory for metrics, plots and checkpoints.
        log_every: log a training line every this many steps (0: never).
        val_every: validate every this many epochs (and always after the last).
        monitor: metric that picks ``best.pt`` (``val/<m>``, else ``train/<m>`` without validation).
        monitor_mode: ``"min"`` or ``"max"``.
        num_workers: DataLoader worker processes.
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 5e-4
    weight_decay: float = 0.0
    lr_step: int = 200
    lr_gamma: float = 0.5
    grad_clip: float | None = None
    seed: int = 42
    device: str = "auto"
    num_threads: int | None = None
    out_dir: str = "runs/train"
    log_every: int = 0
    val_every: int = 1
    monitor: str = "loss"
    monitor_mode: str = "min"
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise TrainError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if self.lr <= 0 or self.lr_step < 1 or not 0 < self.lr_gamma <= 1:
            raise TrainError("lr must be > 0, lr_step >= 1 and 0 < lr_gamma <= 1")
        if self.device not in ("cpu", "cuda", "auto"):
            raise TrainError(f"device must be cpu, cuda or auto, got {self.device!r}")
        if self.monitor_mode not in ("min", "max"):
            raise TrainError(f"monitor_mode must be min or max, got {self.monitor_mode!r}")
        if self.val_every < 1:
            raise TrainError("val_every must be >= 1")

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (None values are ignored, so CLI options can pass through)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_file(cls, path: str | Path, section: str | None = None) -> TrainConfig:
        """Read a TOML (``.toml``) or JSON file; ``section`` picks a table (e.g. ``"train"``).

        Unknown keys are an error (a typo must not silently fall back to a default).
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            data: Any = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except FileNotFoundError as exc:
            raise TrainError(f"training config {path} does not exist") from exc
        except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise TrainError(f"training config {path} is not valid TOML/JSON: {exc}") from exc
        if section is not None:
            data = data.get(section, {})
        if not isinstance(data, dict):
            raise TrainError(f"training config {path} must hold a table of settings")
        data = {k.replace("-", "_"): v for k, v in data.items()}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise TrainError(f"unknown training settings {unknown} in {path}; known: {sorted(names)}")
        return cls(**data)


@runtime_checkable
class Task(Protocol):
    """What the loop needs from a model.

    Attributes:
        name: registry name of the model (stored in checkpoints).
        model: the ``nn.Module`` to train (the loop may temporarily replace it by a DDP wrapper).
        model_config: the frozen dataclass that built ``model``.
        data_id: id of the training data (stored in checkpoints).
    """

    name: str
    model: nn.Module
    model_config: Any
    data_id: str

    def training_step(self, batch: Any, epoch: int) -> tuple[Tensor, dict[str, float]]:
        """Loss to back-propagate and scalar metrics for one batch (already on the device)."""
        ...

    def validation_step(self, batch: Any) -> dict[str, float]:
        """Scalar metrics for one validation batch (called under ``torch.no_grad`` in eval mode)."""
        ...


@dataclass(frozen=True)
class FitResult:
    """What :func:`fit` returns (on every rank; paths only exist on rank 0's machine)."""

    history: list[dict[str, float]]
    best_epoch: int
    best_value: float
    best_path: Path
    last_path: Path
    wall_s: float
    out_dir: Path
    plots: list[Path] = field(default_factory=list)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) tuple/list/dict batch to ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple | list):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def batch_size_of(batch: Any) -> int:
    """Leading size of the first tensor in a (nested) batch (the sample count)."""
    if isinstance(batch, Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    items = batch.values() if isinstance(batch, Mapping) else batch
    if isinstance(items, tuple | list) or isinstance(batch, Mapping):
        for v in items:
            n = batch_size_of(v)
            if n:
                return n
    return 0


def _dist_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from the torchrun environment (0, 1, 0 otherwise)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def _pick_device(cfg: TrainConfig, local_rank: int) -> torch.device:
    want_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if want_cuda:
        if not torch.cuda.is_available():
            raise TrainError("device 'cuda' asked for but CUDA is not available; use --device cpu")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class _Meter:
    """Sample-weighted sums of scalar metrics, reducible across ranks."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, metrics: Mapping[str, float], n: int) -> None:
        for k, v in metrics.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v) * n
        self.count += n

    def mean(self, world: int, device: torch.device) -> dict[str, float]:
        keys = sorted(self.sums)
        if world > 1:
            # Every rank runs the same task, so the metric keys agree across ranks.
            t = torch.tensor([self.sums[k] for k in keys] + [float(self.count)], dtype=torch.float64,
                             device=device)
            dist.all_reduce(t)
            vals, count = t[:-1].tolist(), t[-1].item()
        else:
            vals, count = [self.sums[k] for k in keys], float(self.count)
        return {k: v / max(count, 1.0) for k, v in zip(keys, vals, strict=True)}


def _loader(data: Dataset[Any], cfg: TrainConfig, task: Task, *, train: bool, world: int, rank: int
            ) -> tuple[DataLoader[Any], DistributedSampler[Any] | None]:
    sampler: DistributedSampler[Any] | None = None
    if world > 1:
        sampler = DistributedSampler(data, num_replicas=world, rank=rank, shuffle=train, seed=cfg.seed,
                                     drop_last=False)
    loader: DataLoader[Any] = DataLoader(
        data, batch_size=cfg.batch_size, shuffle=train and sampler is None, sampler=sampler,
        num_workers=cfg.num_workers, collate_fn=getattr(task, "collate_fn", None), drop_last=False,
    )
    return loader, sampler


def _write_metrics(out_dir: Path, history: list[dict[str, float]]) -> None:
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    with (out_dir / "metrics.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
    (out_dir / "metrics.json").write_text(json.dumps(history, indent=1), encoding="utf-8")


def fit(task: Task, train_data: Dataset[Any], val_data: Dataset[Any] | None, cfg: TrainConfig) -> FitResult:
    """Train ``task.model`` on ``train_data``; validate on ``val_data``; write the run to ``cfg.out_dir``.

    Writes (rank 0 only): ``metrics.csv``, ``metrics.json`` (one row per epoch: ``epoch``, ``lr``,
    ``time_s``, ``train/<m>``, ``val/<m>``), ``plots/<m>.png``, ``best.pt`` (by ``cfg.monitor``)
    and ``last.pt``, and ``train_config.json``.

    Raises:
        TrainError: empty data, unknown monitor metric, or a non-finite loss.
    """
    rank, world, local_rank = _dist_env()
    device = _pick_device(cfg, local_rank)
    own_group = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        own_group = True
    if world > 1 and rank == 0:
        log.info("distributed training: world size %d, backend %s", world, dist.get_backend())
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    _seed_everything(cfg.seed)
    if len(typing.cast(Sized, train_data)) == 0:
        raise TrainError("training data is empty")
    is_main = rank == 0
    out_dir = Path(cfg.out_dir)
    if is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "train_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1))

    module = task.model.to(device)
    train_model: nn.Module = module
    if world > 1:
        train_model = nn.parallel.DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True,
        )
    task.model = train_model
    optimizer = torch.optim.Adam(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.lr_step, gamma=cfg.lr_gamma)
    train_loader, train_sampler = _loader(train_data, cfg, task, train=True, world=world, rank=rank)
    val_loader = None
    if val_data is not None and len(typing.cast(Sized, val_data)) > 0:
        val_loader, _ = _loader(val_data, cfg, task, train=False, world=world, rank=rank)

    history: list[dict[str, float]] = []
    sign = 1.0 if cfg.monitor_mode == "min" else -1.0
    best_value, best_epoch = math.inf * sign, -1
    best_path, last_path = out_dir / "best.pt", out_dir / "last.pt"
    extra_fn = getattr(task, "checkpoint_extra", None)
    t_start = time.perf_counter()
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), disable=not is_main, transient=False,
    )
    try:
        with progress:
            epoch_bar = progress.add_task(f"{task.name} epochs", total=cfg.epochs, info="")
            for epoch in range(cfg.epochs):
                t_epoch = time.perf_counter()
                if train_sampler is not None:
                    train_sampler.set_epoch(epoch)
                train_model.train()
                meter = _Meter()
                batch_bar = progress.add_task(f"epoch {epoch + 1}", total=len(train_loader), info="")
                for step, raw in enumerate(train_loader):
                    batch = to_device(raw, device)
                    loss, metrics = task.training_step(batch, epoch)
                    if not torch.isfinite(loss):
                        raise TrainError(f"non-finite loss {loss.item()} at epoch {epoch + 1} step {step}; "
                                         "lower the learning rate or check the data normalisation")
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.grad_clip is not None:
                        nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip)
                    optimizer.step()
                    meter.add({"loss": float(loss.detach()), **metrics}, batch_size_of(batch))
                    progress.update(batch_bar, advance=1, info=f"loss {float(loss.detach()):.4g}")
                    if cfg.log_every and step % cfg.log_every == 0 and is_main:
                        log.info("epoch %d step %d loss %.5g", epoch + 1, step, float(loss.detach()))
                progress.remove_task(batch_bar)
                row: dict[str, float] = {"epoch": float(epoch + 1), "lr": optimizer.param_groups[0]["lr"]}
                row.update({f"train/{k}": v for k, v in meter.mean(world, device).items()})
                scheduler.step()
                if val_loader is not None and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
                    train_model.eval()
                    vmeter = _Meter()
                    with torch.no_grad():
                        for raw in val_loader:
                            batch = to_device(raw, device)
                            vmeter.add(task.validation_step(batch), batch_size_of(batch))
                    row.update({f"val/{k}": v for k, v in vmeter.mean(world, device).items()})
                row["time_s"] = time.perf_counter() - t_epoch
                history.append(row)
                validated = any(k.startswith("val/") for k in row)
                # best.pt is judged on validation metrics when there is validation data, and only
                # on the epochs that were validated.
                key = f"val/{cfg.monitor}" if val_loader is not None else f"train/{cfg.monitor}"
                if val_loader is not None and not validated:
                    key = ""
                elif key not in row:
                    raise TrainError(f"monitor metric {key!r} not produced; available: {sorted(row)}")
                summary = "  ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch")
                if is_main:
                    log.info("epoch %d/%d  %s", epoch + 1, cfg.epochs, summary)
                    ckpt_metrics = {k: v for k, v in row.items() if isinstance(v, float)}
                    extra = extra_fn() if callable(extra_fn) else None
                    common = dict(model_name=task.name, model_config=task.model_config,
                                  state_dict=module.state_dict(), data_id=task.data_id,
                                  metrics=ckpt_metrics, extra=extra)
                    if key and sign * row[key] < sign * best_value:
                        best_value, best_epoch = row[key], epoch + 1
                        save_checkpoint(best_path, **common)
                    save_checkpoint(last_path, **common)
                    _write_metrics(out_dir, history)
                progress.update(epoch_bar, advance=1, info=f"{key or 'train/loss'} "
                                f"{row.get(key or 'train/loss', float('nan')):.4g}")
        if own_group:
            # Every rank finishes its last collective and rank 0 its files before any rank tears
            # the group down: a rank destroying gloo's group while its peer still runs aborted it
            # now and then ("terminate called without an active exception", SIGABRT).
            dist.barrier()
    except KeyboardInterrupt:
        # Ctrl-C (SIGINT) ends training early but keeps the run: metrics, checkpoints and plots
        # of the finished epochs are all on disk.
        if is_main:
            log.warning("interrupted after %d epochs; plotting the finished ones", len(history))
            if history:
                plot_metrics(history, out_dir)
        raise
    finally:
        task.model = module
        if own_group:
            dist.destroy_process_group()
    plots: list[Path] = []
    if is_main:
        if best_epoch < 0:  # every monitored value was NaN: keep the last weights as best
            save_checkpoint(best_path, model_name=task.name, model_config=task.model_config,
                            state_dict=module.state_dict(), data_id=task.data_id,
                            metrics={}, extra=extra_fn() if callable(extra_fn) else None)
            best_epoch = cfg.epochs
        plots = plot_metrics(history, out_dir)
    wall = time.perf_counter() - t_start
    if is_main:
        log.info("trained %s for %d epochs in %.1f s; best %s %.5g at epoch %d", task.name, cfg.epochs,
                 wall, cfg.monitor, best_value, best_epoch)
    return FitResult(history=history, best_epoch=best_epoch, best_value=float(best_value),
                     best_path=best_path, last_path=last_path, wall_s=wall, out_dir=out_dir, plots=plots)
