"""The one training loop: any Task, metrics files, plots, checkpoints; metrics; the NRI CLIs."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from training.checkpoint import CheckpointError, load_checkpoint, register_model, save_checkpoint
from training.loop import Task, TrainConfig, TrainError, fit
from training.metrics import auroc, best_labeling, edge_accuracy, mae, mpjpe, mpjpe_per_horizon
from training.nri.mlp import NRI, NRIConfig
from training.nri.task import Normalizer, NRIParticleTask, NRITaskConfig, particle_dataset
from training.simulate import save_particles, simulate

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class LineConfig:
    n_in: int = 3


def _build_line(cfg: LineConfig) -> nn.Module:
    return nn.Linear(cfg.n_in, 1)


register_model("test_line", LineConfig, _build_line)


class LineTask:
    """Least squares on y = x·w: the loop must drive the loss down for any model."""

    name = "test_line"
    data_id = "line-data"

    def __init__(self) -> None:
        self.model_config = LineConfig()
        self.model: nn.Module = _build_line(self.model_config)

    def training_step(self, batch: Any, epoch: int) -> tuple[Tensor, dict[str, float]]:
        x, y = batch
        loss = ((self.model(x).squeeze(-1) - y) ** 2).mean()
        return loss, {"mse": float(loss.detach())}

    def validation_step(self, batch: Any) -> dict[str, float]:
        x, y = batch
        return {"mse": float(((self.model(x).squeeze(-1) - y) ** 2).mean())}


def _line_data(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    return TensorDataset(x, x @ torch.tensor([1.0, -2.0, 0.5]))


def test_fit_generic_task_learns_and_writes_run(tmp_path: Path) -> None:
    task = LineTask()
    assert isinstance(task, Task)
    cfg = TrainConfig(epochs=4, batch_size=16, lr=0.2, lr_step=3, lr_gamma=0.5, device="cpu",
                      out_dir=str(tmp_path / "run"), monitor="mse", seed=0)
    result = fit(task, _line_data(128, 0), _line_data(32, 1), cfg)
    h = result.history
    assert [r["epoch"] for r in h] == [1.0, 2.0, 3.0, 4.0]
    assert h[-1]["val/mse"] < 0.05 * h[0]["train/mse"]
    assert [r["lr"] for r in h] == pytest.approx([0.2, 0.2, 0.2, 0.1])
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert len(rows) == 4 and {"train/loss", "train/mse", "val/mse", "time_s"} <= set(rows[0])
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())[-1]["epoch"] == 4.0
    assert {p.name for p in result.plots} >= {"loss.png", "mse.png"}
    assert all(p.stat().st_size > 1000 for p in result.plots)
    best = load_checkpoint(result.best_path)  # weights_only=True inside
    assert best.metrics["val/mse"] == min(r["val/mse"] for r in h)
    model = best.build_model()
    x = torch.randn(5, 3)
    assert isinstance(model, nn.Linear)
    # last.pt holds the final weights, which the task's model also has after fit.
    last = load_checkpoint(result.last_path).build_model()
    torch.testing.assert_close(last(x), task.model(x))


def test_fit_rejects_non_finite_loss(tmp_path: Path) -> None:
    task = LineTask()
    data = TensorDataset(torch.full((8, 3), float("nan")), torch.zeros(8))
    with pytest.raises(TrainError, match="non-finite loss"):
        fit(task, data, None, TrainConfig(epochs=1, batch_size=4, out_dir=str(tmp_path), device="cpu"))
    with pytest.raises(TrainError, match="monitor metric"):
        fit(LineTask(), _line_data(8, 0), None,
            TrainConfig(epochs=1, batch_size=4, out_dir=str(tmp_path), device="cpu", monitor="nope"))


def test_train_config_files(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text("[train]\nepochs = 3\nlr = 0.01\ngrad-clip = 1.0\n")
    cfg = TrainConfig.from_file(tmp_path / "a.toml", section="train")
    assert (cfg.epochs, cfg.lr, cfg.grad_clip) == (3, 0.01, 1.0)
    (tmp_path / "b.json").write_text(json.dumps({"batch_size": 7}))
    assert TrainConfig.from_file(tmp_path / "b.json").batch_size == 7
    assert cfg.replace(epochs=9, lr=None).epochs == 9 and cfg.replace(lr=None).lr == 0.01
    (tmp_path / "c.toml").write_text("epoch = 3\n")
    with pytest.raises(TrainError, match="unknown training settings"):
        TrainConfig.from_file(tmp_path / "c.toml")
    with pytest.raises(TrainError, match="device"):
        TrainConfig(device="tpu")


def test_nri_particle_task_two_epochs(tmp_path: Path) -> None:
    data = simulate("springs", 24, 3, seed=0, length=1000, sample_freq=100)  # T = 9
    norm = Normalizer.fit(data)
    cfg = NRIConfig(num_nodes=3, num_timesteps=9, encoder_hidden=8, decoder_hidden=8)
    task = NRIParticleTask(cfg, NRITaskConfig(prediction_steps=3), norm, data.data_id())
    ds = particle_dataset(data, norm)
    x, y = ds[0]
    assert x.shape == (3, 9, 4) and y.shape == (6,)
    assert float(ds.tensors[0][..., :2].min()) == pytest.approx(-1.0)
    assert float(ds.tensors[0][..., :2].max()) == pytest.approx(1.0)
    result = fit(task, ds, ds, TrainConfig(epochs=2, batch_size=8, out_dir=str(tmp_path), device="cpu"))
    assert {"val/edge_acc", "val/edge_acc_best", "val/kl", "val/nll", "train/mse"} <= set(result.history[-1])
    ckpt = load_checkpoint(result.best_path)
    assert ckpt.model_name == "nri_mlp" and ckpt.data_id == data.data_id()
    assert ckpt.extra["normalizer"] == norm.to_dict()
    assert isinstance(ckpt.build_model(), NRI)


def test_nri_particle_task_supervised_trains_the_encoder_alone(tmp_path: Path) -> None:
    data = simulate("springs", 64, 3, seed=1, length=1000, sample_freq=100)  # T = 9
    norm = Normalizer.fit(data)
    cfg = NRIConfig(num_nodes=3, num_timesteps=9, encoder_hidden=16, decoder_hidden=8)
    task = NRIParticleTask(cfg, NRITaskConfig(supervised=True), norm, data.data_id())
    ds = particle_dataset(data, norm)
    decoder_before = {k: v.clone() for k, v in task.model.state_dict().items() if k.startswith("decoder.")}
    x, y = ds.tensors[0][:8], ds.tensors[1][:8]
    loss, metrics = task.training_step((x, y), 0)
    with torch.no_grad():
        want = torch.nn.functional.cross_entropy(task.model.encode(x).reshape(-1, 2), y.reshape(-1))  # type: ignore[operator]
    assert float(loss.detach()) == pytest.approx(float(want))
    assert set(metrics) == {"ce", "edge_acc", "edge_acc_best"}
    result = fit(task, ds, ds, TrainConfig(epochs=3, batch_size=16, lr=5e-3, out_dir=str(tmp_path), device="cpu"))
    assert result.history[-1]["train/ce"] < result.history[0]["train/ce"]  # the encoder learns the labels
    after = task.model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in decoder_before.items())  # the decoder is not trained
    assert load_checkpoint(result.best_path).extra["task"]["supervised"] is True


def test_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    torch.save({"a": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an istrings checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    save_checkpoint(tmp_path / "u.pt", model_name="no_such_model", model_config={"a": 1}, state_dict={},
                    data_id="x", metrics={})
    with pytest.raises(CheckpointError, match="unknown model 'no_such_model'"):
        load_checkpoint(tmp_path / "u.pt").build_model()
    with pytest.raises(TypeError, match="weights_only"):
        save_checkpoint(tmp_path / "v.pt", model_name="m", model_config={}, state_dict={}, data_id="x",
                        metrics={}, extra={"bad": object()})


def test_metrics() -> None:
    assert edge_accuracy([0, 1, 1, 0], [0, 1, 0, 0]) == 0.75
    acc, perm = best_labeling(np.array([1, 1, 0, 0]), np.array([0, 0, 1, 0]), 2)
    assert (acc, perm) == (0.75, (1, 0))
    # AUROC against brute-force pair counting, with ties.
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 200).astype(float)
    y = rng.random(200) < 0.4
    pos, neg = s[y], s[~y]
    brute = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    assert auroc(s, y) == pytest.approx(brute, abs=1e-12)
    assert auroc([0.1, 0.9], [0, 1]) == 1.0 and auroc([0.9, 0.1], [0, 1]) == 0.0
    assert np.isnan(auroc([0.1, 0.2], [1, 1]))
    p = np.zeros((2, 3, 4, 3))
    t = p.copy()
    t[..., 0] = 3.0
    t[:, 1, :, 1] = 4.0
    assert mpjpe(p, t) == pytest.approx((3 + 5 + 3) / 3)
    np.testing.assert_allclose(mpjpe_per_horizon(p, t), [3.0, 5.0, 3.0])
    assert mae([1.0, -1.0], [0.0, 0.0]) == 1.0
    with pytest.raises(ValueError, match="differ in shape"):
        edge_accuracy([1, 2], [1])


def _istrings(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "stream.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_simulate_train_eval_cli(tmp_path: Path) -> None:
    r = _istrings("simulate", "springs", "--sims", "40", "--balls", "3", "--seed", "1",
                  "--length", "1100", "-o", str(tmp_path / "train.npz"), cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["timesteps"] == 10
    test = simulate("springs", 20, 3, seed=2, length=1100, sample_freq=100)
    save_particles(tmp_path / "test.npz", test, seed=2, length=1100, sample_freq=100)
    r = _istrings("train", "nri", "--data", str(tmp_path / "train.npz"), "--val", str(tmp_path / "test.npz"),
                  "--epochs", "1", "--batch-size", "8", "--encoder-hidden", "8", "--decoder-hidden", "8",
                  "--threads", "1", "-o", str(tmp_path / "run"), cwd=REPO)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["train_sims"] == 40 and Path(summary["best"]).is_file()
    r = _istrings("eval", "nri", "--checkpoint", summary["best"], "--data", str(tmp_path / "test.npz"),
                  "--json", "--prediction-steps", "5", cwd=REPO)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert 0.0 <= out["edge_accuracy"] <= 1.0 and out["edge_accuracy_best_labeling"] >= out["edge_accuracy"]
    assert 0.0 <= out["auroc"] <= 1.0 and out["num_sims"] == 20 and out["num_edges"] == 6
    assert out["mse_1"] > 0 and len(out["mse_by_horizon"]) == 5 and out["mse_5"] == out["mse_by_horizon"][-1]
    # Non-particle data is refused with one line and exit 2.
    np.savez(tmp_path / "junk.npz", x=np.zeros(2))
    r = _istrings("eval", "nri", "--checkpoint", summary["best"], "--data", str(tmp_path / "junk.npz"), cwd=REPO)
    assert r.returncode == 2 and "istrings: error:" in r.stderr and "Traceback" not in r.stderr


def test_save_particles_feeds_task(tmp_path: Path) -> None:
    data = simulate("charged", 4, 3, seed=0, length=400, sample_freq=100)
    save_particles(tmp_path / "c.npz", data, seed=0, length=400, sample_freq=100)
    ds = particle_dataset(data, Normalizer.fit(data))
    _x, labels = ds[0]
    # Label of edge (i -> j) is edges[i, j] in row-major off-diagonal order.
    off = data.edges[0][~np.eye(3, dtype=bool)]
    np.testing.assert_array_equal(labels.numpy(), off)


def test_train_particles_init_continues_from_checkpoint(tmp_path: Path) -> None:
    from training.checkpoint import CheckpointError as CkptError
    from training.nri.task import train_particles

    data = simulate("springs", 16, 3, seed=0, length=800, sample_freq=100)  # T = 7
    save_particles(tmp_path / "s.npz", data, seed=0, length=800, sample_freq=100)
    small = {"encoder_hidden": 8, "decoder_hidden": 8}
    first = train_particles(data=tmp_path / "s.npz", out=tmp_path / "a", model=small,
                            train={"epochs": 1, "batch_size": 8, "device": "cpu"}, task={"prediction_steps": 2})
    # A vanishing learning rate: the continued run's weights are the initial checkpoint's.
    second = train_particles(data=tmp_path / "s.npz", out=tmp_path / "b", model=small, init=first["last"],
                             train={"epochs": 1, "batch_size": 8, "device": "cpu", "lr": 1e-12},
                             task={"prediction_steps": 2})
    a, b = load_checkpoint(first["last"]).state_dict, load_checkpoint(second["last"]).state_dict
    for k in a:
        if "bn." not in k:  # batch-norm running statistics keep moving in train mode
            torch.testing.assert_close(a[k], b[k], atol=1e-8, rtol=0)
    with pytest.raises(CkptError, match="not the model configured here"):
        train_particles(data=tmp_path / "s.npz", out=tmp_path / "c", init=first["last"],
                        model={"encoder_hidden": 16, "decoder_hidden": 8}, train={"epochs": 1})


def test_shipped_supervised_charged_encoder_on_fresh_simulations() -> None:
    """The card's figure (92.0 % on 2,000 fresh sims), on 300 sims of another seed."""
    from training.nri.task import evaluate_particles

    path = Path(__file__).resolve().parents[2] / "training" / "checkpoints" / "nri_charged5_supervised.pt"
    if not path.is_file():
        pytest.skip(f"no shipped checkpoint at {path}")
    ckpt = load_checkpoint(path)
    model = ckpt.build_model()
    assert isinstance(model, NRI) and ckpt.extra["task"]["supervised"] is True
    data = simulate("charged", 300, 5, seed=4242)
    res = evaluate_particles(model, Normalizer(**ckpt.extra["normalizer"]), data)
    assert res["edge_accuracy"] > 0.88 and res["auroc"] > 0.96
