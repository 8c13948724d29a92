"""STGA-Net: graph, layers on tiny inputs, invariances, the constant-velocity start, one epoch through
the one training loop, and the `istrings train/eval stga` commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from stream.cli import build_app
from stream.clip import Clip
from stream.skeleton import CANONICAL, J
from tests.shared_paths import CMU_DATA
from training.checkpoint import CheckpointError, load_checkpoint
from training.duet_data import rotation_y
from training.forecast_data import (
    BaselineScales,
    ForecastDataError,
    ForecastWindows,
    constant_velocity,
    synthetic_clips,
)
from training.loop import TrainConfig, fit
from training.stga.ggru import GraphGRUCell
from training.stga.global_attention import GlobalGraphAttention
from training.stga.graph import DISTAL, PELVIS, N, local_adjacency
from training.stga.local_attention import LocalGraphAttention
from training.stga.model import STGAConfig, STGAConfigError, STGANet
from training.stga.task import STGAError, STGATask, STGATaskConfig
from training.stga.temporal import TemporalDilatedConv

REPO = Path(__file__).resolve().parents[2]
SHARED = CMU_DATA
TINY = STGAConfig(past_frames=6, horizons_ms=(80.0, 160.0, 320.0), hidden=8, heads=2, embed=4, dilations=(1, 2))
ENV = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}


def windows(B: int, T: int, seed: int = 0) -> torch.Tensor:
    """Two bodies 1 m apart walking smoothly: ``(B, T, N, 3)`` metres."""
    rng = np.random.default_rng(seed)
    body = rng.normal(0.0, 0.3, size=(B, 1, N, 3))
    body[:, :, J:, 0] += 1.0
    vel = rng.normal(0.0, 0.02, size=(B, 1, N, 3))  # metres per frame
    t = np.arange(T)[None, :, None, None]
    return torch.from_numpy((body + vel * t + 0.002 * rng.normal(size=(B, T, N, 3))).astype(np.float32))


# --------------------------------------------------------------------------------------------- the graph


def test_local_adjacency_has_bones_mirror_pairs_distal_links_and_no_inter_dancer_entry() -> None:
    A = local_adjacency()
    assert A.shape == (N, N) == (36, 36) and np.array_equal(A, A.T)
    assert A[:J, J:].sum() == 0 and A[J:, :J].sum() == 0
    assert np.all(np.diag(A) == 1)
    for p, c in CANONICAL.bones:
        assert A[p, c] == A[J + p, J + c] == 1
    for j, m in enumerate(CANONICAL.mirror):
        assert A[j, m] == 1
    for d in DISTAL:
        assert A[d, PELVIS] == 1 and all(A[d, e] == 1 for e in DISTAL)
    lw, rk = CANONICAL.index("l_wrist"), CANONICAL.index("r_knee")
    assert A[lw, rk] == 0  # neither bone, mirror nor distal


def test_local_attention_is_a_softmax_of_the_mask_over_the_adjacency_only() -> None:
    A = np.zeros((4, 4), np.float32)
    A[[0, 0, 1, 1, 2, 3, 3], [0, 1, 0, 1, 2, 2, 3]] = 1
    layer = LocalGraphAttention(3, A)
    with torch.no_grad():
        layer.M.copy_(torch.arange(16.0).reshape(4, 4) / 4)
    P = layer.attention()
    assert torch.all(P[torch.from_numpy(A) == 0] == 0)  # exactly zero off the graph
    torch.testing.assert_close(P.sum(-1), torch.ones(4))
    expected = np.exp(layer.M.detach().numpy()) * A
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(P.detach().numpy(), expected, rtol=1e-6)
    x = torch.randn(2, 5, 4, 3)
    torch.testing.assert_close(layer(x), torch.einsum("nm,btmc->btnc", P, layer.W(x)))
    # node 2 only hears itself: changing node 3 leaves it alone
    y = x.clone()
    y[:, :, 3] += 10
    torch.testing.assert_close(layer(y)[:, :, 2], layer(x)[:, :, 2])
    with pytest.raises(ValueError, match="at least one neighbour"):
        LocalGraphAttention(3, np.zeros((2, 2)))


def test_global_attention_relates_every_pair_adaptively_plus_a_learned_matrix() -> None:
    torch.manual_seed(0)
    layer = GlobalGraphAttention(8, nodes=6, heads=2, embed=4)
    x = torch.randn(3, 5, 6, 8)
    adj = layer.adjacency(x)
    assert adj.shape == (3, 2, 6, 6)
    torch.testing.assert_close(adj.sum(-1), torch.ones(3, 2, 6))  # C starts at zero: rows of B_k
    assert bool((adj > 0).all())  # every node hears every other, the other dancer included
    assert not torch.allclose(adj[0], adj[1])  # computed from the data
    with torch.no_grad():
        layer.C.fill_(0.5)
    torch.testing.assert_close(layer.adjacency(x).sum(-1), torch.full((3, 2, 6), 4.0))
    assert layer(x).shape == (3, 5, 6, 8)
    with pytest.raises(ValueError, match="divisible by heads"):
        GlobalGraphAttention(7, nodes=6, heads=2)


def test_temporal_conv_equals_a_dilated_k_by_1_conv2d() -> None:
    torch.manual_seed(0)
    layer = TemporalDilatedConv(4, kernel=3, dilation=2)
    conv = nn.Conv2d(4, 4, (3, 1), dilation=(2, 1))
    assert conv.bias is not None
    with torch.no_grad():  # linear weight (C_out, k·C_in), taps concatenated on channels
        conv.weight.copy_(layer.linear.weight.reshape(4, 3, 4).permute(0, 2, 1).unsqueeze(-1))
        conv.bias.copy_(layer.linear.bias)
    x = torch.randn(2, 9, 5, 4)  # (B, T, N, C)
    out = layer(x)
    assert out.shape == (2, 9 - 4, 5, 4) and layer.shrink == 4
    ref = conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # (B, C, T, N) → (B, T', N, C)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_ggru_without_graph_mixing_is_a_gru_cell() -> None:
    torch.manual_seed(0)
    cell = GraphGRUCell(3, 5, np.eye(4))
    with torch.no_grad():
        cell.G.zero_()
    gru = nn.GRUCell(3, 5)
    with torch.no_grad():  # torch's gate order is (r, z, n) too
        gru.weight_ih.copy_(cell.input_gates.weight)
        gru.bias_ih.copy_(cell.input_gates.bias)
        gru.weight_hh.copy_(cell.hidden_gates.weight[:, :5])
        gru.bias_hh.copy_(cell.hidden_gates.bias)
    u, h = torch.randn(2, 4, 3), torch.randn(2, 4, 5)
    torch.testing.assert_close(cell(u, h), gru(u.reshape(8, 3), h.reshape(8, 5)).reshape(2, 4, 5))


# --------------------------------------------------------------------------------------------- the model


def test_shapes_and_config_checks() -> None:
    model = STGANet(TINY).eval()
    out = model(windows(3, TINY.past_frames))
    assert out.shape == (3, 3, N, 3)
    assert TINY.frames == (5, 10, 19) and TINY.encoded_frames == 6 - 1 - 1 - 2
    assert STGAConfig().frames == (5, 10, 19, 30, 60)
    with pytest.raises(STGAConfigError, match="too short"):
        STGAConfig(past_frames=5, dilations=(1, 2, 4))
    with pytest.raises(STGAConfigError, match="strictly increasing"):
        STGAConfig(horizons_ms=(160.0, 80.0))


def test_untrained_model_is_exactly_constant_velocity() -> None:
    model = STGANet(TINY).eval()  # head starts at zero, alpha at one
    x = windows(4, TINY.past_frames)
    with torch.no_grad():
        out = model(x).numpy()
    np.testing.assert_allclose(out, constant_velocity(x.numpy(), TINY.frames), atol=2e-5)


def test_forecast_moves_with_the_duet() -> None:
    torch.manual_seed(0)
    model = STGANet(TINY).eval()
    with torch.no_grad():
        nn.init.normal_(model.head.weight, std=0.3)  # a model that does not just continue velocity
        x = windows(2, TINY.past_frames, seed=3)
        out = model(x)
        shift = torch.tensor([2.0, 0.5, -3.0])
        torch.testing.assert_close(model(x + shift), out + shift, atol=2e-5, rtol=0)  # translation
        R = torch.from_numpy(rotation_y(np.array([1.1])))[0]  # yaw about the origin
        torch.testing.assert_close(model(x @ R.T), out @ R.T, atol=5e-5, rtol=0)  # canonical_yaw
        plain = STGANet(STGAConfig(**{**TINY.__dict__, "canonical_yaw": False})).eval()
        plain.load_state_dict(model.state_dict())
        assert not torch.allclose(plain(x @ R.T), plain(x) @ R.T, atol=1e-3)  # not invariant without it


# --------------------------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def tiny_clips() -> list[tuple[str, Clip]]:
    return synthetic_clips(3, seconds=4.0)


def test_one_epoch_through_fit(tiny_clips: list[tuple[str, Clip]], tmp_path: Path) -> None:
    train = ForecastWindows(tiny_clips[:2], TINY.past_frames, TINY.frames, stride=4)
    val = ForecastWindows(tiny_clips[2:], TINY.past_frames, TINY.frames, stride=8)
    task = STGATask(TINY, STGATaskConfig(), BaselineScales.fit(train), "tiny-synthetic")
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    result = fit(task, train, val, TrainConfig(epochs=1, batch_size=32, num_threads=1, out_dir=str(tmp_path)))
    row = result.history[0]
    assert np.isfinite(row["train/loss"]) and 0 < row["val/loss"] < 10
    assert {"val/mpjpe_mm_80ms", "val/constant_velocity_mm_320ms", "val/zero_velocity_mm_160ms"} <= set(row)
    ckpt = load_checkpoint(result.best_path)
    assert ckpt.model_name == "stga" and ckpt.config() == TINY
    assert ckpt.extra["horizon_frames"] == [5, 10, 19] and ckpt.extra["fps"] == 60.0
    moved = [k for k, v in ckpt.state_dict.items() if not torch.equal(v, before[k])]
    assert "head.weight" in moved and "blocks.0.local.M" in moved and "blocks.0.globl.C" in moved


def test_horizon_weights_weigh_each_horizons_scaled_error(tiny_clips: list[tuple[str, Clip]]) -> None:
    train = ForecastWindows(tiny_clips[:1], TINY.past_frames, TINY.frames, stride=8)
    scales = BaselineScales.fit(train)
    past, future = (torch.stack(t) for t in zip(*(train[i] for i in range(8)), strict=True))
    plain = STGATask(TINY, STGATaskConfig(), scales, "w")
    loss, err = plain._loss(plain.model(past), future)
    ratio = err / torch.tensor(scales.mpjpe_m)  # (H,)
    torch.testing.assert_close(loss, ratio.mean())
    first = STGATask(TINY, STGATaskConfig(horizon_weights=(1.0, 0.0, 0.0)), scales, "w")
    first.model.load_state_dict(plain.model.state_dict())
    torch.testing.assert_close(first._loss(first.model(past), future)[0], ratio[0])
    with pytest.raises(STGAError, match="3 horizons"):
        STGATask(TINY, STGATaskConfig(horizon_weights=(1.0, 2.0)), scales, "w")
    for bad in ((0.0, 0.0, 0.0), (1.0, -1.0, 1.0), (float("nan"), 1.0, 1.0)):
        with pytest.raises(STGAError, match="horizon_weights"):
            STGATaskConfig(horizon_weights=bad)


def istrings(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(build_app(), list(args), env=ENV)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, r.output


@pytest.mark.slow
def test_train_and_eval_commands(tiny_clips: list[tuple[str, Clip]], tmp_path: Path) -> None:
    for name, clip in tiny_clips:
        clip.save(tmp_path / "clips" / f"{name}.npz")
    tiny_clips[2][1].save(tmp_path / "val" / "held.npz")
    (tmp_path / "stga.toml").write_text(
        "[model]\npast_frames = 6\nhidden = 8\nembed = 4\ndilations = [1, 2]\nhorizons_ms = [80, 160, 320]\n"
        "[task]\nstride = 6\n", encoding="utf-8")
    code, out = istrings("train", "stga", "--data", str(tmp_path / "clips"), "--val", str(tmp_path / "val"),
                         "--config", str(tmp_path / "stga.toml"), "--epochs", "1", "--threads", "1",
                         "-o", str(tmp_path / "run"))
    assert code == 0, out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["val"]["frames"] == [5, 10, 19]
    assert (tmp_path / "run" / "plots" / "forecast_per_horizon.png").is_file()
    # eval in its own process: stdout is exactly one JSON object of the documented schema
    proc = subprocess.run(
        [sys.executable, "-m", "stream.cli", "eval", "stga", "--checkpoint", str(tmp_path / "run" / "best.pt"),
         "--data", str(tmp_path / "val" / "held.npz"), "--json"],
        capture_output=True, text=True, env=ENV, cwd=REPO, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["horizons_ms"] == [80.0, 160.0, 320.0] and report["frames"] == [5, 10, 19]
    for key in ("model", "gated", "zero_velocity", "constant_velocity"):
        assert set(report[key]) >= {"mpjpe_mm", "mae_mm"}
        assert len(report[key]["mpjpe_mm"]) == len(report[key]["mae_mm"]) == 3
        assert all(np.isfinite(report[key]["mpjpe_mm"]))
    assert report["zero_velocity"]["mpjpe_mm"][0] < report["zero_velocity"]["mpjpe_mm"][2]
    assert list(report["per_take"]) == ["held"] and report["per_take"]["held"]["windows"] == report["windows"]
    # the human-readable form: the overall table, and one row per forecaster and take when there are several
    code, out = istrings("eval", "stga", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--data",
                         str(tmp_path / "clips"))
    assert code == 0 and "gated MPJPE / MAE (mm)" in out and "per take" in out
    assert out.count(" gated ") >= len(tiny_clips)
    # bad input: a named error (the console entry point turns it into one line and exit 2)
    with pytest.raises(CheckpointError, match="does not exist; train one"):
        istrings("eval", "stga", "--checkpoint", str(tmp_path / "nope.pt"), "--data", str(tmp_path / "val"))
    with pytest.raises(ForecastDataError, match="neither a clip file"):
        istrings("eval", "stga", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--data", "nowhere.npz")


CHECKPOINTS = sorted((REPO / "training" / "checkpoints").glob("stga_*.pt"))


@pytest.mark.slow
@pytest.mark.skipif(not CHECKPOINTS or not SHARED.is_dir(), reason="no shipped STGA-Net checkpoint or shared data")
def test_shipped_checkpoint_beats_both_baselines_on_a_held_out_take() -> None:
    """The bundled forecaster on the held-out takes: well below both baselines on salsa at every
    horizon; on squats (motion it never saw) the model is worse, and the online gate brings what is
    sent back to within 10 % of the better baseline."""
    from training.stga.task import evaluate_stga

    path = CHECKPOINTS[-1]
    assert path.stat().st_size < 2_000_000
    report = evaluate_stga(path, "salsa_05,cmu_squats", stride=2)
    for take, factor, key in (("salsa_05", 0.75, "model"), ("salsa_05", 0.75, "gated"), ("cmu_squats", 1.1, "gated")):
        r = report["per_take"][take]
        best = np.minimum(r["zero_velocity"], r["constant_velocity"])
        assert np.all(np.asarray(r[key]) < factor * best), (take, key, r[key], best.tolist())
