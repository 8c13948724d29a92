"""MKFF-ST-GCN: features against the formulas, causality of features and model, the loss, PCK,
a 1-epoch training through the one loop, and ``istrings eval mkff --json``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from stream.cli import build_app
from stream.skeleton import CANONICAL, J
from stream.synthetic import SyntheticConfig, generate_clip
from training.checkpoint import CheckpointError, load_checkpoint
from training.mkff.evaluate import pck, pose_metrics, sliding_windows, torso_length
from training.mkff.features import FeatureError, acceleration, keypoint_flow, motion_features, velocity
from training.mkff.model import MKFFSTGCN, MKFFConfig, feature_operator
from training.mkff.task import refine_loss, train_mkff

TOL = 1e-5


def ramp(T: int, power: int = 2) -> torch.Tensor:
    """``P_t = t^power`` in every coordinate of one node: ``(B=1, T, N=1, 3)``."""
    t = torch.arange(T, dtype=torch.float64) ** power
    return t.reshape(1, T, 1, 1).expand(1, T, 1, 3).clone()


# --------------------------------------------------------------------------------------------- features


@pytest.mark.parametrize("d", [1, 2])
def test_causal_features_match_the_formulas(d: int) -> None:
    T = 14
    P = ramp(T)
    p = [float(t * t) for t in range(T)]

    def at(seq: list[float], t: int) -> float:  # frames before the window repeat the first
        return seq[max(t, 0)]

    flow = [(at(p, t - 2 * d) + at(p, t - d) + p[t]) / 3 for t in range(T)]
    vel = [(flow[t] - at(flow, t - d)) / d for t in range(T)]
    acc = [(vel[t] - at(vel, t - d)) / d for t in range(T)]
    f, v, a = motion_features(P, d, "causal")
    for got, want in ((f, flow), (v, vel), (a, acc)):
        np.testing.assert_allclose(got[0, :, 0, 0].numpy(), want, atol=TOL)
        np.testing.assert_allclose(got[0, :, 0, 2].numpy(), want, atol=TOL)
    # on a parabola t², once the window has enough past, acceleration is exactly 2
    np.testing.assert_allclose(a[0, 4 * d :, 0, 0].numpy(), 2.0, atol=TOL)
    np.testing.assert_allclose(v[0, 3 * d :, 0, 0].numpy(), [2 * t - 3 * d for t in range(3 * d, T)], atol=TOL)


def test_centred_features_match_the_paper() -> None:
    T, d = 12, 1
    P = ramp(T)
    p = [float(t * t) for t in range(T)]

    def at(seq: list[float], t: int) -> float:
        return seq[min(max(t, 0), T - 1)]

    flow = [(at(p, t - d) + p[t] + at(p, t + d)) / 3 for t in range(T)]
    vel = [(at(flow, t + d) - flow[t]) / d for t in range(T)]
    acc = [(at(vel, t + d) - vel[t]) / d for t in range(T)]
    np.testing.assert_allclose(keypoint_flow(P, d, "centred")[0, :, 0, 1].numpy(), flow, atol=TOL)
    np.testing.assert_allclose(velocity(keypoint_flow(P, d, "centred"), d, "centred")[0, :, 0, 1].numpy(), vel,
                               atol=TOL)
    _, _, a = motion_features(P, d, "centred")
    np.testing.assert_allclose(a[0, :, 0, 1].numpy(), acc, atol=TOL)
    np.testing.assert_allclose(a[0, 1 : T - 4, 0, 1].numpy(), 2.0, atol=TOL)  # interior of a parabola


def test_causal_features_never_read_a_future_frame() -> None:
    x = torch.randn(2, 16, 5, 3)
    y = x.clone()
    y[:, 9:] += torch.randn(2, 7, 5, 3)
    for fa, fb in zip(motion_features(x, 1, "causal"), motion_features(y, 1, "causal"), strict=True):
        torch.testing.assert_close(fa[:, :9], fb[:, :9], rtol=0, atol=0)
    centred = motion_features(x, 1, "centred")[1], motion_features(y, 1, "centred")[1]
    assert not torch.equal(centred[0][:, :9], centred[1][:, :9])  # the centred ones do (so the test can fail)


def test_feature_errors_are_named() -> None:
    with pytest.raises(FeatureError, match="causal, centred"):
        keypoint_flow(torch.zeros(1, 4, 1, 3), 1, "forward")
    with pytest.raises(FeatureError, match="d must be >= 1"):
        acceleration(torch.zeros(1, 4, 1, 3), 0)
    with pytest.raises(FeatureError, match="receptive field"):
        MKFFConfig(window=4, gcn_blocks=2, temporal_kernel=3)


def test_the_model_computes_exactly_the_feature_functions() -> None:
    cfg = MKFFConfig(window=10, step=2)
    F = feature_operator(cfg)  # (4, T, T)
    x = torch.randn(3, 10, 7, 3)
    flow, vel, acc = motion_features(x, 2, "causal")
    apply = lambda g: torch.einsum("ts,bsnc->btnc", F[g], x)  # noqa: E731
    torch.testing.assert_close(apply(1) * cfg.pos_scale_m, flow, atol=TOL, rtol=0)
    torch.testing.assert_close(apply(2) * cfg.vel_scale_m, vel, atol=TOL, rtol=0)
    torch.testing.assert_close(apply(3) * cfg.acc_scale_m, acc, atol=TOL, rtol=0)


# --------------------------------------------------------------------------------------------- the model


def trained_like(cfg: MKFFConfig, seed: int = 0) -> MKFFSTGCN:
    """A model with a non-zero head (an untrained one returns its input unchanged)."""
    torch.manual_seed(seed)
    model = MKFFSTGCN(cfg)
    torch.nn.init.normal_(model.head.weight, std=0.2)
    return model.eval()


def test_causal_model_output_is_unchanged_by_future_frames() -> None:
    model = trained_like(MKFFConfig(mode="causal", window=12))
    x = torch.randn(2, 12, 36, 3)
    y = x.clone()
    y[:, 7:] += torch.randn(2, 5, 36, 3)
    with torch.no_grad():
        a, b = model.forward_all(x), model.forward_all(y)
        torch.testing.assert_close(a[:, :7], b[:, :7], rtol=0, atol=1e-6)
        assert (a[:, 7:] - b[:, 7:]).abs().max() > 1e-3
        # the exported forward refines the last frame and equals forward_all there
        torch.testing.assert_close(model(x), a[:, -1], rtol=0, atol=1e-5)


def test_centred_model_sees_the_future_and_outputs_the_centre() -> None:
    model = trained_like(MKFFConfig(mode="centred", window=13))
    x = torch.randn(2, 13, 36, 3)
    y = x.clone()
    y[:, 9:] += 1.0
    with torch.no_grad():
        assert (model(x) - model(y)).abs().max() > 1e-4  # a future frame changes the centre's refinement
        torch.testing.assert_close(model(x), model.forward_all(x)[:, 6], rtol=0, atol=1e-5)
    assert model.config.output_frame == 6 and model.config.latency_frames == 6


@pytest.mark.parametrize("mode,heads,blocks", [("causal", 2, 3), ("centred", 4, 2), ("causal", 1, 1)])
def test_output_frame_only_equals_every_frame(mode: str, heads: int, blocks: int) -> None:
    """forward computes the last attention block and the ST-GCN on the receptive field only."""
    model = trained_like(MKFFConfig(mode=mode, window=11, heads=heads, fusion_blocks=blocks))
    x = torch.randn(3, 11, 36, 3)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.forward_all(x)[:, model.config.output_frame], rtol=0, atol=1e-5)


def test_untrained_model_is_the_identity_and_translation_equivariant() -> None:
    model = MKFFSTGCN(MKFFConfig()).eval()
    x = torch.randn(4, 12, 36, 3)
    with torch.no_grad():
        torch.testing.assert_close(model(x), x[:, -1])
        trained = trained_like(MKFFConfig())
        shift = torch.tensor([3.0, -1.0, 2.0])
        torch.testing.assert_close(trained(x + shift), trained(x) + shift, atol=1e-4, rtol=0)


# --------------------------------------------------------------------------------------------- loss and metrics


def test_loss_weights_visibility_and_topk() -> None:
    target = torch.zeros(1, 4, 3)
    pred = target.clone()
    pred[0, 2] = torch.tensor([0.1, 0.0, 0.0])  # one joint 10 cm off
    w = torch.ones(1, 4)
    loss, l1, top = refine_loss(pred, target, w, topk=1, topk_weight=0.5)
    assert l1.item() == pytest.approx(0.1 / 4) and top.item() == pytest.approx(0.1)
    assert loss.item() == pytest.approx(0.1 / 4 + 0.05)
    w[0, 2] = 0.0  # the joint is invisible: it costs nothing
    loss, l1, top = refine_loss(pred, target, w, topk=1, topk_weight=0.5)
    assert loss.item() == 0.0 and l1.item() == 0.0 and top.item() == 0.0
    w[0, 2] = 0.5  # half weight, and the normaliser counts it half
    _, l1, _ = refine_loss(pred, target, w, topk=1, topk_weight=0.5)
    assert l1.item() == pytest.approx(0.05 / 3.5)


def test_pck_on_hand_built_poses() -> None:
    target = np.zeros((2, J, 3))
    neck, pelvis = CANONICAL.index("neck"), CANONICAL.index("pelvis")
    target[:, neck] = [0.0, 0.5, 0.0]  # torso 0.5 m: PCK@0.05 threshold 2.5 cm
    np.testing.assert_allclose(torso_length(target), [0.5, 0.5])
    pred = target.copy()
    others = [j for j in range(J) if j not in (neck, pelvis)]
    pred[0, others[:8], 0] += 0.02  # inside 2.5 cm
    pred[0, others[8:], 0] += 0.03  # outside 2.5 cm, inside 5 cm
    pred[1, :, 2] += 0.2  # everything 20 cm off: outside even PCK@0.2 (10 cm)
    assert pck(pred, target, 0.05) == pytest.approx((2 + 8) / (2 * J))
    assert pck(pred, target, 0.1) == pytest.approx(J / (2 * J))
    assert pck(pred, target, 0.05, mask=np.array([True, False])) == pytest.approx(10 / J)
    m = pose_metrics(pred, target)
    assert m["pck@0.2"] == pytest.approx(0.5)
    assert m["mpjpe_mm"] == pytest.approx((8 * 20 + 8 * 30 + J * 200) / (2 * J))
    with pytest.raises(ValueError, match="must both be"):
        pck(pred[..., :2], target[..., :2], 0.1)


def test_sliding_windows_clamp_at_the_ends() -> None:
    seq = np.arange(5, dtype=np.float32).reshape(5, 1, 1, 1) * np.ones((5, 2, J, 3), np.float32)
    causal = sliding_windows(seq, 3, 2)
    np.testing.assert_array_equal(causal[:, :, 0, 0], [[0, 0, 0], [0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4]])
    centred = sliding_windows(seq, 3, 1)
    np.testing.assert_array_equal(centred[:, :, 0, 0], [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 4]])


# --------------------------------------------------------------------------------------------- training and CLI


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("clips")
    train = generate_clip(SyntheticConfig(duration_s=4.0, fps=60.0, seed=1)).save(tmp / "train" / "a.npz")
    val = generate_clip(SyntheticConfig(duration_s=2.0, fps=30.0, seed=2)).save(tmp / "val" / "b.npz")
    return train, val


@pytest.fixture(scope="module")
def trained(clips: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("run")
    return train_mkff(out=out, mode="causal", data=clips[0], val=clips[1],
                      train={"epochs": 1, "batch_size": 64, "num_threads": 1},
                      model={"hidden": 8, "fusion_blocks": 1, "gcn_blocks": 1},
                      task={"realizations": 1, "stride": 4})


@pytest.mark.slow
def test_one_epoch_through_the_loop_writes_a_loadable_checkpoint(trained: dict[str, object]) -> None:
    assert trained["best_epoch"] == 1 and trained["train_windows"] == 2 * ((120 - 12) // 4 + 1)
    val = trained["val"]
    assert isinstance(val, dict) and {"loss", "mpjpe_mm", "pck05", "pck10", "pck20"} <= set(val)
    ckpt = load_checkpoint(str(trained["best"]))
    assert ckpt.model_name == "mkff" and ckpt.extra["fps"] == 30.0
    assert set(ckpt.extra["one_euro"]) >= {"min_cutoff", "beta"} and ckpt.extra["task"]["noise"]["depth_factor"] == 2
    model = ckpt.build_model()
    assert isinstance(model, MKFFSTGCN) and model.config.mode == "causal"
    rows = json.loads((Path(str(trained["out"])) / "metrics.json").read_text())
    assert len(rows) == 1 and "val/pck05" in rows[0]


@pytest.mark.slow
def test_istrings_eval_mkff_prints_json(trained: dict[str, object], clips: tuple[Path, Path]) -> None:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    r = CliRunner().invoke(build_app(), ["eval", "mkff", "--checkpoint", str(trained["best"]), "--data",
                                         str(clips[1]), "--json", "--threads", "1"], env=env)
    assert r.exit_code == 0, r.output
    out = json.loads(r.output.strip().splitlines()[-1])
    assert set(out["methods"]) == {"raw", "one_euro", "dct_offline", "mkff_causal"}
    for m in out["methods"].values():
        assert set(m) == {"pck@0.2", "pck@0.1", "pck@0.05", "mpjpe_mm"}
        assert 0.0 <= m["pck@0.05"] <= m["pck@0.1"] <= m["pck@0.2"] <= 1.0 and m["mpjpe_mm"] > 0
    assert out["frames"] == 60 and out["fps"] == 30.0
    # the same seed gives the same noisy input, so the same raw figures
    r2 = CliRunner().invoke(build_app(), ["eval", "mkff", "--checkpoint", str(trained["best"]), "--data",
                                          str(clips[1]), "--json"], env=env)
    assert json.loads(r2.output.strip().splitlines()[-1])["methods"]["raw"] == out["methods"]["raw"]
    bad = CliRunner().invoke(build_app(), ["eval", "mkff", "--checkpoint", str(clips[1]), "--data", str(clips[1])],
                             env=env)
    assert isinstance(bad.exception, CheckpointError) and "could not be read" in str(bad.exception)
