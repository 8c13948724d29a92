"""The particle NRI task: normalised springs/charged trajectories → NRI's ELBO, for the one loop.

Data (NRI's recipe): positions and velocities are scaled to ``[-1, 1]`` with the *training set's*
global min/max (one pair for positions, one for velocities), concatenated per node to ``C = 4``
channels ``(x, y, vx, vy)`` and laid out ``(S, N, T, C)``. Labels are the ordered off-diagonal
pairs ``(S, E)`` in :func:`training.nri.mlp.fully_connected_edges` order.

Loss (per batch): ``NLL_gauss(preds, x[:, :, 1:], var) + kl_weight * KL(q || prior)``, the decoder
teacher-forced every ``prediction_steps`` frames (or burnt in on ``T - prediction_steps`` true
frames for the RNN decoder, as NRI does). Training samples edges with soft Gumbel-softmax
(``hard`` optional); validation uses hard samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from training.metrics import best_labeling
from training.nri.gumbel import kl_categorical, kl_categorical_uniform, log_prior, nll_gaussian
from training.nri.mlp import NRI, NRIConfig, fully_connected_edges
from training.simulate import ParticleData, SimulationError


@dataclass(frozen=True)
class Normalizer:
    """Train-set min/max of positions and velocities; maps each to ``[-1, 1]``."""

    loc_min: float
    loc_max: float
    vel_min: float
    vel_max: float

    @classmethod
    def fit(cls, data: ParticleData) -> Normalizer:
        return cls(float(data.loc.min()), float(data.loc.max()), float(data.vel.min()), float(data.vel.max()))

    def features(self, data: ParticleData) -> Tensor:
        """``(S, N, T, 4)`` float32 normalised ``(x, y, vx, vy)``."""
        loc = (data.loc - self.loc_min) * 2.0 / (self.loc_max - self.loc_min) - 1.0  # (S, T, 2, N)
        vel = (data.vel - self.vel_min) * 2.0 / (self.vel_max - self.vel_min) - 1.0
        feats = np.concatenate([loc, vel], axis=2)  # (S, T, 4, N)
        return torch.from_numpy(np.ascontiguousarray(feats.transpose(0, 3, 1, 2), dtype=np.float32))

    def to_dict(self) -> dict[str, float]:
        return {"loc_min": self.loc_min, "loc_max": self.loc_max, "vel_min": self.vel_min, "vel_max": self.vel_max}


def edge_labels(data: ParticleData) -> Tensor:
    """``(S, E)`` int64 labels of the ordered off-diagonal pairs (sender i, receiver j)."""
    send, recv = fully_connected_edges(data.num_balls)
    return torch.from_numpy(data.edges)[:, send, recv]


def particle_dataset(data: ParticleData, norm: Normalizer) -> TensorDataset:
    """``TensorDataset`` of ``(x (N, T, 4) float32, labels (E,) int64)`` samples."""
    return TensorDataset(norm.features(data), edge_labels(data))


@dataclass(frozen=True)
class NRITaskConfig:
    """Training-time settings of the particle task (not part of the model).

    Attributes:
        tau: Gumbel-softmax temperature.
        hard: straight-through hard samples during training.
        prediction_steps: teacher forcing period (NRI: 10).
        variance: fixed variance of the Gaussian likelihood (NRI: 5e-5).
        prior: categorical prior over ``K`` types; None uses the uniform prior (NRI's default).
        kl_weight: weight of the KL term (0 turns it off).
        supervised: train the encoder alone with cross-entropy against the true edges (NRI's
            supervised baseline: type k = the simulation's edge class k) instead of the ELBO;
            the decoder stays untrained.
    """

    tau: float = 0.5
    hard: bool = False
    prediction_steps: int = 10
    variance: float = 5e-5
    prior: tuple[float, ...] | None = None
    kl_weight: float = 1.0
    supervised: bool = False


class NRIParticleTask:
    """:class:`training.loop.Task` for NRI on particle simulations."""

    name = "nri_mlp"

    def __init__(self, model_config: NRIConfig, task_config: NRITaskConfig, norm: Normalizer, data_id: str
                 ) -> None:
        self.model_config = model_config
        self.task_config = task_config
        self.norm = norm
        self.data_id = data_id
        self.model: torch.nn.Module = NRI(model_config)
        if task_config.prior is not None and len(task_config.prior) != model_config.edge_types:
            raise SimulationError(f"prior has {len(task_config.prior)} entries for "
                                  f"{model_config.edge_types} edge types")
        self._log_prior = log_prior(task_config.prior) if task_config.prior is not None else None

    def _burn_in(self, T: int) -> int | None:
        return T - self.task_config.prediction_steps if self.model_config.decoder == "rnn" else None

    def _supervised(self, x: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, float]]:
        model = self.model
        assert isinstance(model, NRI)
        logits = model.encode(x)  # (B, E, K)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        acc = float((logits.argmax(-1) == labels).float().mean())
        return loss, {"ce": float(loss.detach()), "edge_acc": acc, "edge_acc_best": acc}

    def _elbo(self, x: Tensor, labels: Tensor, hard: bool) -> tuple[Tensor, dict[str, float]]:
        tc = self.task_config
        if tc.supervised:
            return self._supervised(x, labels)
        logits, _z, preds = self.model(x, tc.tau, hard, tc.prediction_steps, self._burn_in(x.shape[2]))
        target = x[:, :, 1:]  # (B, N, T-1, C)
        nll = nll_gaussian(preds, target, tc.variance)
        probs = torch.softmax(logits, dim=-1)  # (B, E, K)
        N = x.shape[1]
        if self._log_prior is not None:
            kl = kl_categorical(probs, self._log_prior.to(probs.device), N)
        else:
            kl = kl_categorical_uniform(probs, N)
        loss = nll + tc.kl_weight * kl
        pred_types = logits.argmax(-1)  # (B, E)
        metrics = {
            "nll": float(nll.detach()),
            "kl": float(kl.detach()),
            "mse": float(torch.nn.functional.mse_loss(preds.detach(), target)),
            "edge_acc": float((pred_types == labels).float().mean()),
        }
        if self.model_config.edge_types == 2:
            metrics["edge_acc_best"] = best_labeling(pred_types.cpu().numpy(), labels.cpu().numpy(), 2)[0]
        return loss, metrics

    def training_step(self, batch: Any, epoch: int) -> tuple[Tensor, dict[str, float]]:
        x, labels = batch
        return self._elbo(x, labels, self.task_config.hard)

    def validation_step(self, batch: Any) -> dict[str, float]:
        x, labels = batch
        loss, metrics = self._elbo(x, labels, True)
        return {"loss": float(loss), **metrics}

    def checkpoint_extra(self) -> dict[str, Any]:
        tc = self.task_config
        return {
            "normalizer": self.norm.to_dict(),
            "task": {"tau": tc.tau, "hard": tc.hard, "prediction_steps": tc.prediction_steps,
                     "variance": tc.variance, "prior": list(tc.prior) if tc.prior else None,
                     "kl_weight": tc.kl_weight, "supervised": tc.supervised},
        }


def evaluate_particles(model: NRI, norm: Normalizer, data: ParticleData, *, prediction_steps: int = 10,
                       batch_size: int = 256, device: str = "cpu") -> dict[str, Any]:
    """Edge recovery and reconstruction error of a trained NRI on particle data.

    Edge scores come from the encoder's posterior ``softmax(logits)``; predicted types are the
    argmax. For ``K = 2`` the AUROC score is ``P(type 1)`` when type 1 matches label 1 under the
    best labelling, else ``P(type 0)`` (unsupervised types have no names; the labelling is chosen
    by accuracy over the whole set). For ``K > 2`` AUROC scores "any interaction" with
    ``1 - P(type 0)`` against ``label > 0``. The decoder is driven by the one-hot argmax types.

    Returns:
        ``edge_accuracy``, ``edge_accuracy_best_labeling``, ``auroc``, ``mse_1`` (one-step MSE over
        all predicted frames), ``mse_10`` (MSE of the predictions made exactly ``prediction_steps``
        steps after the last true frame), ``mse_by_horizon`` (list, horizons 1..p), all MSEs in
        normalised ``[-1, 1]`` units over the 4 channels (NRI's convention); ``num_sims``, ``num_edges``.
    """
    from training.metrics import auroc, edge_accuracy

    feats, labels = norm.features(data), edge_labels(data)  # (S, N, T, 4), (S, E)
    if feats.shape[1] != model.cfg.num_nodes:
        raise SimulationError(f"data has {feats.shape[1]} balls; the model was trained on {model.cfg.num_nodes}")
    model = model.to(device).eval()
    probs_all, sq1, sqp = [], [], []
    p = prediction_steps
    with torch.no_grad():
        for start in range(0, feats.shape[0], batch_size):
            x = feats[start:start + batch_size].to(device)  # (B, N, T, C)
            logits = model.encode(x[:, :, : model.cfg.num_timesteps])  # (B, E, K)
            probs = torch.softmax(logits, -1)
            z = torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()
            target = x[:, :, 1:]
            burn = x.shape[2] - p if model.cfg.decoder == "rnn" else None
            out1 = model.decode(x, z, 1, None)
            outp = model.decode(x, z, p, burn)  # (B, N, T-1, C)
            sq1.append(((out1 - target) ** 2).mean(dim=(1, 3)).cpu())  # (B, T-1)
            sqp.append(((outp - target) ** 2).mean(dim=(1, 3)).cpu())
            probs_all.append(probs.cpu())
    probs_np = torch.cat(probs_all).numpy()  # (S, E, K)
    y = labels.numpy()
    pred = probs_np.argmax(-1)
    K = probs_np.shape[-1]
    err1, errp = torch.cat(sq1).numpy(), torch.cat(sqp).numpy()  # (S, T-1)
    T1 = errp.shape[1]
    t = np.arange(T1)
    # Steps since the last true input frame: RNN burn-in feeds true frames up to T-p-1.
    horizon = np.maximum(t - (T1 - p) + 1, 1) if model.cfg.decoder == "rnn" else t % p + 1
    by_h = [float(errp[:, horizon == h].mean()) for h in range(1, p + 1) if (horizon == h).any()]
    acc_best, perm = best_labeling(pred, y, K) if K <= 6 else (float("nan"), tuple(range(K)))
    if K == 2:
        score = probs_np[..., 1] if perm == (0, 1) else probs_np[..., 0]
        roc = auroc(score, y)
    else:
        roc = auroc(1.0 - probs_np[..., 0], y > 0)
    return {
        "edge_accuracy": edge_accuracy(pred, y),
        "edge_accuracy_best_labeling": acc_best,
        "auroc": roc,
        "mse_1": float(err1.mean()),
        f"mse_{p}": by_h[-1] if by_h else float("nan"),
        "mse_by_horizon": by_h,
        "num_sims": int(y.shape[0]),
        "num_edges": int(y.shape[1]),
    }


def _parse_prior(prior: str | None, k: int) -> tuple[float, ...] | None:
    from training.nri.gumbel import seed_prior

    if prior is None or prior == "uniform":
        return None
    if prior == "seed":
        return seed_prior(k)
    try:
        probs = tuple(float(v) for v in prior.split(","))
    except ValueError as exc:
        raise SimulationError(f"--prior must be uniform, seed or comma-separated floats, got {prior!r}") from exc
    if len(probs) != k:
        raise SimulationError(f"--prior has {len(probs)} probabilities for K={k} edge types")
    return probs


def train_particles(*, data: str | Path, out: str | Path, val: str | Path | None = None,
                    config: str | Path | None = None, max_sims: int | None = None,
                    train: dict[str, Any] | None = None, model: dict[str, Any] | None = None,
                    task: dict[str, Any] | None = None, prior: str | None = None,
                    init: str | Path | None = None) -> dict[str, Any]:
    """Train NRI on particle data with :func:`training.loop.fit`; returns a JSON-able summary.

    Settings come from ``config`` (TOML tables ``[train]`` → :class:`TrainConfig`, ``[model]`` →
    :class:`NRIConfig`, ``[task]`` → :class:`NRITaskConfig`) overridden by the non-None entries of
    ``train``/``model``/``task``. ``num_nodes`` and ``num_timesteps`` come from the data.
    ``init`` starts from a checkpoint's weights and normaliser (fine-tuning or continuing a run;
    the optimiser starts afresh), whose model config must equal the one built here.
    """
    import dataclasses
    import tomllib

    from training.loop import TrainConfig, TrainError, fit
    from training.simulate import load_particles

    tables: dict[str, Any] = {}
    if config is not None:
        try:
            tables = tomllib.loads(Path(config).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise TrainError(f"cannot read training config {config}: {exc}") from exc

    def merged(name: str, overrides: dict[str, Any] | None) -> dict[str, Any]:
        d = {k.replace("-", "_"): v for k, v in dict(tables.get(name, {})).items()}
        d.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return d

    train_d = merged("train", train)
    train_d["out_dir"] = str(out)
    train_d.setdefault("monitor", "loss")
    train_d.setdefault("num_threads", 1)
    try:
        cfg = TrainConfig(**train_d)
    except TypeError as exc:
        raise TrainError(f"bad [train] settings: {exc}") from exc
    train_data = load_particles(data, "train")
    if max_sims is not None:
        train_data = ParticleData(train_data.loc[:max_sims], train_data.vel[:max_sims],
                                  train_data.edges[:max_sims], train_data.sim)
    val_data = load_particles(val if val is not None else data, "valid") if (
        val is not None or (Path(data).is_dir() and (Path(data) / "loc_valid.npy").is_file())) else None
    model_d = merged("model", model)
    model_d.update(num_nodes=train_data.num_balls, num_timesteps=train_data.num_timesteps, num_channels=4)
    task_d = merged("task", task)
    try:
        model_cfg = NRIConfig(**model_d)
        if prior is not None or "prior" not in task_d or isinstance(task_d.get("prior"), str):
            task_d["prior"] = _parse_prior(prior or task_d.get("prior"), model_cfg.edge_types)
        elif task_d["prior"] is not None:
            task_d["prior"] = tuple(float(v) for v in task_d["prior"])
        task_cfg = NRITaskConfig(**task_d)
    except (TypeError, ValueError) as exc:
        raise TrainError(f"bad [model]/[task] settings: {exc}") from exc
    norm = Normalizer.fit(train_data)
    init_state = None
    if init is not None:
        from training.checkpoint import CheckpointError, load_checkpoint

        ckpt = load_checkpoint(init)
        if ckpt.model_name != NRIParticleTask.name or ckpt.config() != model_cfg:
            raise CheckpointError(f"--init {init} holds {ckpt.model_name} {ckpt.model_config}, "
                                  f"not the model configured here ({model_cfg})")
        norm = Normalizer(**{k: float(v) for k, v in ckpt.extra["normalizer"].items()})
        init_state = ckpt.state_dict
    nri_task = NRIParticleTask(model_cfg, task_cfg, norm, train_data.data_id())
    if init_state is not None:
        nri_task.model.load_state_dict(init_state)
    result = fit(nri_task, particle_dataset(train_data, norm),
                 particle_dataset(val_data, norm) if val_data is not None else None, cfg)
    last = result.history[-1] if result.history else {}
    return {
        "out_dir": str(result.out_dir), "best": str(result.best_path), "last": str(result.last_path),
        "best_epoch": result.best_epoch, "best_value": result.best_value, "wall_s": round(result.wall_s, 1),
        "train_sims": train_data.num_sims, "model": dataclasses.asdict(model_cfg),
        "final": {k: v for k, v in last.items()},
    }
