"""The duet NRI variant: gradient reaches the encoder, no collapse, shapes, training through fit."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stream.skeleton import J
from training.duet_data import CandidateGraph, Normalizer
from training.duet_nri import DuetNRITask, evaluate_duet, synthetic_clips, train_duet
from training.nri.duet import DuetNRI, DuetNRIConfig, edge_strength, strong_edges
from training.nri.gcn import GCNConv, normalized_adjacency
from training.nri.gcn_lstm import edge_slots, typed_operators

# Three joints of dancer 0 (pelvis, spine, neck: a chain) and two of dancer 1 (l_elbow, l_wrist).
TINY = CandidateGraph((0, 1, 2), (5, 6))


def _config(K: int = 2, **kw: object) -> DuetNRIConfig:
    base: dict[str, object] = dict(joints0=TINY.joints0, joints1=TINY.joints1, window=5, hidden=8, edge_types=K)
    base.update(kw)
    return DuetNRIConfig(**base)  # type: ignore[arg-type]


def test_gcn_matches_formula_on_a_path_graph() -> None:
    A = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], np.float32)  # 0 - 1 - 2
    a_hat = normalized_adjacency(A)
    d = np.array([2.0, 3.0, 2.0])  # degrees with self loops
    expected = (A + np.eye(3)) / np.sqrt(d[:, None] * d[None, :])
    np.testing.assert_allclose(a_hat.numpy(), expected, atol=1e-6)
    conv = GCNConv(A, 2, 4, root_weight=True)
    x = torch.randn(5, 3, 2)
    ref = a_hat @ (x @ conv.weight) + x @ conv.root + conv.bias  # type: ignore[operator]
    torch.testing.assert_close(conv(x), ref, atol=1e-6, rtol=1e-5)


def test_typed_operators_place_each_edge_weight() -> None:
    send, recv = TINY.senders_receivers()
    slots = edge_slots(send, recv, TINY.num_nodes)
    z = torch.rand(2, TINY.num_edges, 3)
    A, deg = typed_operators(z, slots, TINY.num_nodes)
    assert A.shape == (2, 3, 5, 5) and deg.shape == (2, 3, 5, 1)
    e = 4  # some edge
    assert A[1, 2, recv[e], send[e]] == z[1, e, 2]
    torch.testing.assert_close(deg[..., 0], A.sum(-1))
    assert A[:, :, :3, :3].abs().sum() == 0  # no edge inside a dancer
    with pytest.raises(ValueError, match="duplicate"):
        edge_slots(np.array([0, 0]), np.array([3, 3]), 5)


@pytest.mark.parametrize("K", [2, 3, 4, 5])
def test_shapes_for_every_k(K: int) -> None:
    torch.manual_seed(0)
    model = DuetNRI(_config(K))
    x = torch.randn(3, 5, TINY.num_nodes, 6)
    out = model(x)
    assert out.logits.shape == (3, TINY.num_edges, K) == (3, 12, K)
    assert out.edges.shape == (3, 12, K)
    torch.testing.assert_close(out.edges.sum(-1), torch.ones(3, 12))
    assert out.pred.shape == (3, 4, 5, 6)
    model.eval()
    assert model(x).pred.shape == (3, 4, 5, 6)
    assert edge_strength(out.logits).shape == (3, 12)
    assert model.decoder.rollout(x, out.edges, burn_in=2, steps=6).shape == (3, 6, 5, 6)


def test_full_skeleton_encoder_gives_648_edges() -> None:
    cfg = DuetNRIConfig(window=4, hidden=8, edge_types=4)
    assert DuetNRI(cfg).encoder(torch.randn(2, 4, 36, 6)).shape == (2, 2 * J * J, 4) == (2, 648, 4)


@pytest.mark.parametrize("hard", [False, True])
def test_encoder_gets_gradient_from_reconstruction_alone(hard: bool) -> None:
    """The seed's fault: with a bare index list of edges, no gradient reached the encoder."""
    torch.manual_seed(1)
    cfg = _config(4, kl_weight=0.0, hard=hard)
    task = DuetNRITask(cfg, Normalizer(1.0, 1.0), data_id="test")
    task.model.train()
    x = torch.randn(4, 5, TINY.num_nodes, 6)
    loss, metrics, _ = task.loss_terms(x, training=True)
    assert metrics["kl"] > 0  # computed and reported, but not in the loss
    loss.backward()
    assert isinstance(task.model, DuetNRI)
    enc = task.model.encoder
    for name, p in enc.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, f"encoder parameter {name} got no gradient"
    assert enc.fc_out.weight.grad is not None and enc.fc_out.weight.grad.norm() > 1e-6


def test_messages_follow_the_edge_sample_and_bones_are_always_there() -> None:
    torch.manual_seed(2)
    cfg = _config(2)
    dec = DuetNRI(cfg).decoder
    x = torch.randn(1, 2, TINY.num_nodes, 6, requires_grad=True)
    E = TINY.num_edges
    none = F.one_hot(torch.zeros(1, E, dtype=torch.long), 2).float()  # every edge "no string"
    pred = dec(x, none)  # (1, 1, N, C)
    grad = torch.autograd.grad(pred[0, 0, 3].sum(), x)[0]  # dancer-1 node 3 (l_elbow)
    assert grad[0, 0, :3].abs().sum() == 0  # nothing from dancer 0 without strings
    assert grad[0, 0, 4].abs().sum() > 0  # but its own bone neighbour (l_wrist) counts
    one = none.clone()
    send, recv = TINY.senders_receivers()
    e = int(np.flatnonzero((send == 1) & (recv == 3))[0])  # dancer-0 spine → dancer-1 l_elbow
    one[0, e] = torch.tensor([0.0, 1.0])
    grad = torch.autograd.grad(dec(x, one)[0, 0, 3].sum(), x)[0]
    assert grad[0, 0, 1].abs().sum() > 0  # the string's sender now drives the receiver
    assert grad[0, 0, 0].abs().sum() == 0 and grad[0, 0, 2].abs().sum() == 0


def test_joint_without_incoming_edge_does_not_collapse_to_a_constant() -> None:
    """Residual prediction: x_{t+1} = x_t + Δ, so an unconnected joint tracks its own input."""
    torch.manual_seed(3)
    dec = DuetNRI(_config(2)).decoder
    none = F.one_hot(torch.zeros(8, TINY.num_edges, dtype=torch.long), 2).float()
    x = torch.randn(8, 2, TINY.num_nodes, 6)
    with torch.no_grad():
        pred = dec(x, none)[:, 0]  # (8, N, C) one-step predictions
    delta = pred - x[:, 0]
    assert delta.abs().mean() < 0.3 * x[:, 0].abs().mean()  # a small step from x_t
    spread = pred[:, 3].std(dim=0)  # across different inputs, the prediction varies like the input
    assert (spread > 0.5 * x[:, 0, 3].std(dim=0)).all()
    corr = np.corrcoef(pred[:, 3].flatten().numpy(), x[:, 0, 3].flatten().numpy())[0, 1]
    assert corr > 0.9


def test_strong_edge_readout() -> None:
    logits = torch.log(torch.tensor([[[0.1, 0.85, 0.05], [0.4, 0.3, 0.3], [0.05, 0.15, 0.8]]]))
    assert strong_edges(logits, 0.8).tolist() == [[True, False, True]]
    torch.testing.assert_close(edge_strength(logits), torch.tensor([[0.9, 0.6, 0.95]]))


def test_config_rejects_a_prior_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match="prior must have 3 probabilities"):
        DuetNRIConfig(edge_types=3, prior=(0.5, 0.5))
    with pytest.raises(ValueError, match="recon"):
        DuetNRIConfig(recon="l1")
    assert DuetNRIConfig(edge_types=4).type_prior == (0.35, 0.25, 0.15, 0.25)


@pytest.mark.slow
def test_one_epoch_through_fit_then_evaluate(tmp_path: Path) -> None:
    summary = train_duet(
        "synthetic:6:30:3", tmp_path / "run", val="synthetic:2:30:4", epochs=1,
        model={"window": 6, "hidden": 8, "edge_types": 3},
        train={"batch_size": 16, "num_threads": 1},
    )
    best = Path(summary["best"])
    assert best.is_file() and (tmp_path / "run" / "metrics.csv").is_file()
    val = summary["val"]
    assert 0.0 <= val["auroc"] <= 1.0 and 0.0 <= val["edge_accuracy"] <= 1.0
    assert val["edges"] == 648 and val["clips"] == 2
    assert math.isfinite(val["mse_1"]) and math.isfinite(val["mse_10"])
    # A clip file works too (the `istrings eval nri --data CLIP.npz` path).
    clip_path = synthetic_clips(1, 40, seed=9)[0].save(tmp_path / "duet.npz")
    res = evaluate_duet(best, clip_path)
    assert res["clips"] == 1 and res["planted_edges"] >= 1 and res["windows"] > 0


def test_burn_in_feeds_ground_truth_then_rolls_out() -> None:
    torch.manual_seed(4)
    x = torch.randn(2, 5, TINY.num_nodes, 6, requires_grad=True)
    z = F.one_hot(torch.ones(2, TINY.num_edges, dtype=torch.long), 2).float()
    free = DuetNRI(_config(2, burn_in=0, teacher_every=8)).decoder
    burned = DuetNRI(_config(2, burn_in=3, teacher_every=8)).decoder
    burned.load_state_dict(free.state_dict())
    # Prediction of frame 3 (index 2) given truth through frame 2 only with burn-in.
    g_free = torch.autograd.grad(free(x, z)[:, 2].sum(), x)[0]
    g_burn = torch.autograd.grad(burned(x, z)[:, 2].sum(), x)[0]
    assert g_free[:, 2].abs().sum() == 0 and g_free[:, 1].abs().sum() == 0
    assert g_burn[:, 2].abs().sum() > 0
    with pytest.raises(ValueError, match="burn_in"):
        _config(2, burn_in=5)


def test_encoder_exports_to_onnx_and_matches_at_another_batch_size(tmp_path: Path) -> None:
    """The live path runs the encoder in ONNX Runtime: no data-dependent control flow."""
    import warnings

    import onnxruntime as ort

    torch.manual_seed(5)
    enc = DuetNRI(_config(3)).encoder.eval()
    onnx_path = tmp_path / "encoder.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(enc, (torch.randn(2, 5, TINY.num_nodes, 6),), onnx_path, input_names=["x"],
                          output_names=["logits"], dynamic_axes={"x": {0: "B"}, "logits": {0: "B"}},
                          dynamo=False, opset_version=17)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 5, TINY.num_nodes, 6)
    (got,) = session.run(None, {"x": x.numpy()})
    with torch.no_grad():
        want = enc(x).numpy()
    assert got.shape == (3, TINY.num_edges, 3)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-4)


def test_shipped_checkpoint_rebuilds_and_scores_a_clip(tmp_path: Path) -> None:
    ckpt = Path(__file__).resolve().parents[2] / "training" / "checkpoints" / "nri_duet_synthetic.pt"
    if not ckpt.is_file():
        pytest.skip(f"no shipped checkpoint at {ckpt}")
    assert ckpt.stat().st_size < 2_000_000
    res = evaluate_duet(ckpt, synthetic_clips(1, 40, seed=11), horizon=4)
    assert res["edges"] == 648 and res["window"] == 16 and res["windows"] >= 1
    assert res["mse_4"] is not None and res["mse_4"] < res["mse_4_static"]  # forecasting beats holding still


# ----------------------------------------------------------------------------- pair features, no-leak options


def _pair_features(x: torch.Tensor, lags: int, graph: CandidateGraph = TINY) -> torch.Tensor:
    from training.nri.duet import PairFeatures

    send, recv = (torch.as_tensor(a) for a in graph.senders_receivers())
    bone_op = torch.eye(graph.num_nodes) - torch.as_tensor(graph.parent_matrix())
    return PairFeatures(bone_op, send, recv, lags)(x)


def test_pair_features_see_a_bone_that_copies_another_one_frame_later() -> None:
    torch.manual_seed(6)
    T, N = 12, TINY.num_nodes
    x = torch.randn(1, T, N, 6) * 0.3
    # Dancer-1 l_wrist (node 4) = l_elbow (node 3) + the bone spine→neck (nodes 1→2) of dancer 0 one frame earlier.
    bone = x[0, :, 2, :3] - x[0, :, 1, :3]  # (T, 3)
    x[0, 1:, 4, :3] = x[0, 1:, 3, :3] + bone[:-1]
    f = _pair_features(x, lags=3)  # (1, E, 6): [corr_0, cos_0, corr_1, cos_1, corr_2, cos_2]
    send, recv = TINY.senders_receivers()
    e = int(np.flatnonzero((send == 2) & (recv == 4))[0])  # neck → l_wrist
    assert f.shape == (1, TINY.num_edges, 6)
    assert f[0, e, 2].item() == pytest.approx(1.0, abs=1e-4) and f[0, e, 3].item() == pytest.approx(1.0, abs=1e-4)
    assert f[0, e, 0].abs().item() < 0.9  # at lag 0 the copy is not exact
    # A common rotation about y changes nothing (the features are dot products).
    c, s = math.cos(0.7), math.sin(0.7)
    R = torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    xr = torch.cat([x[..., :3] @ R.T, x[..., 3:] @ R.T], dim=-1)
    torch.testing.assert_close(_pair_features(xr, lags=3), f, atol=1e-5, rtol=1e-4)


def test_pair_features_equal_the_per_lag_sums_of_their_definition() -> None:
    """The batched form (zero-padded, shifted series) gives the docstring's sums, lag by lag."""
    torch.manual_seed(8)
    T, N, L = 9, TINY.num_nodes, 4
    x = torch.randn(2, T, N, 6)
    bone_op = torch.eye(N) - torch.as_tensor(TINY.parent_matrix())
    bones = torch.matmul(bone_op, x[..., :3])
    u = bones / (bones.norm(dim=-1, keepdim=True) + 1e-6)  # (B, T, N, 3)
    du = u[:, 1:] - u[:, :-1]
    send, recv = TINY.senders_receivers()
    want = []
    for lag in range(L):
        a, b = du[:, : T - 1 - lag], du[:, lag:]
        num = torch.einsum("btnc,btmc->bnm", a, b)
        na, nb = (a * a).sum(dim=(1, 3)), (b * b).sum(dim=(1, 3))
        corr = num / torch.sqrt(na[:, :, None] * nb[:, None, :] + 1e-12)
        cos = torch.einsum("btnc,btmc->bnm", u[:, : T - lag], u[:, lag:]) / (T - lag)
        want += [corr[:, send, recv], cos[:, send, recv]]
    torch.testing.assert_close(_pair_features(x, lags=L), torch.stack(want, dim=-1), atol=1e-6, rtol=1e-5)


def test_pair_features_of_a_still_window_are_zero_correlations_not_nan() -> None:
    """Nothing moves: every ``Δu`` is 0, and the guarded division gives 0 (on ONNX Runtime too,
    see ``training.safe_ops``)."""
    x = torch.randn(1, 1, TINY.num_nodes, 6).repeat(1, 10, 1, 1)
    f = _pair_features(x, lags=3)
    assert torch.isfinite(f).all() and f[..., 0::2].abs().max() == 0  # corr_l
    assert f[..., 1::2].abs().max() > 0.1  # cos_l: the bones still point somewhere


@pytest.mark.parametrize("graph", [TINY, CandidateGraph(tuple(range(J)), tuple(range(J)))], ids=["3+2", "18+18"])
def test_the_incoming_mean_equals_the_receiver_matrix_product(graph: CandidateGraph) -> None:
    model = DuetNRI(_config(2, joints0=graph.joints0, joints1=graph.joints1)).eval()
    e = torch.randn(3, graph.num_edges, 8)
    torch.testing.assert_close(model.encoder.incoming_mean(e), model.encoder.rec_mean @ e, atol=1e-6, rtol=1e-5)


def test_future_keeps_the_frames_to_forecast_from_the_encoder() -> None:
    """With ``future`` the edges cannot carry the answer: the encoder never sees the forecast frames."""
    torch.manual_seed(7)
    cfg = _config(2, window=5, future=3)
    model = DuetNRI(cfg).eval()
    x = torch.randn(2, cfg.frames, TINY.num_nodes, 6, requires_grad=True)
    out = model(x)
    grad = torch.autograd.grad(out.logits.sum(), x)[0]
    assert grad[:, cfg.window :].abs().sum() == 0 and grad[:, : cfg.window].abs().sum() > 0
    assert out.pred.shape == (2, cfg.frames - 1, TINY.num_nodes, 6)
    # The loss counts the forecast frames only: predictions of frames window .. window+future-1.
    task = DuetNRITask(dataclasses.replace(cfg, recon="mse", kl_weight=0.0), Normalizer(1.0, 1.0), "test")
    task.model.load_state_dict(model.state_dict())
    task.model.eval()
    xd = x.detach()
    loss, metrics, _ = task.loss_terms(xd, training=False)
    with torch.no_grad():
        pred = task.model(xd).pred
    want = F.mse_loss(pred[:, cfg.window - 1 :], xd[:, cfg.window :])
    assert float(loss.detach()) == pytest.approx(float(want), rel=1e-5)
    assert metrics["mse"] == pytest.approx(float(want), rel=1e-5)


@pytest.mark.parametrize("kinematic", [False, True])
def test_kinematic_messages_carry_no_hidden_state(kinematic: bool) -> None:
    """A string's message carries its sender's own frame only, not what the sender's memory gathered."""
    torch.manual_seed(9)
    dec = DuetNRI(_config(2, kinematic_messages=kinematic)).decoder
    x = torch.randn(1, 3, TINY.num_nodes, 6, requires_grad=True)
    send, recv = TINY.senders_receivers()
    z = F.one_hot(torch.zeros(1, TINY.num_edges, dtype=torch.long), 2).float()
    e = int(np.flatnonzero((send == 0) & (recv == 3))[0])  # dancer-0 pelvis → dancer-1 l_elbow
    z[0, e] = torch.tensor([0.0, 1.0])
    pred = dec(x, z, teacher_every=1)  # (1, 2, N, C)
    grad = torch.autograd.grad(pred[0, 1, 3].sum(), x)[0]
    assert grad[0, 1, 0].abs().sum() > 0  # the sender's frame reaches the receiver
    # Dancer-0 spine (node 1) has no string; it reaches the pelvis's hidden state over their bone,
    # and from there the receiver only when messages carry hidden states.
    assert (grad[0, :, 1].abs().sum() == 0) == kinematic


def test_supervised_training_fits_the_planted_strings(tmp_path: Path) -> None:
    summary = train_duet(
        "synthetic:8:30:3:world:1", tmp_path / "run", val="synthetic:2:30:4:world:1", epochs=1,
        model={"window": 6, "hidden": 8, "edge_types": 2, "pair_lags": 2, "supervised": True},
        train={"batch_size": 16, "num_threads": 1},
    )
    val = summary["val"]
    assert 0.0 <= val["auroc"] <= 1.0 and val["edges"] == 648
    task = DuetNRITask(_config(2, supervised=True), Normalizer(1.0, 1.0), "test")
    with pytest.raises(Exception, match="planted strings"):
        task.loss_terms(torch.randn(2, 5, TINY.num_nodes, 6), training=True)


def test_shipped_supervised_encoder_finds_planted_strings_in_fresh_duets() -> None:
    """The bundled strings model's card figure, on a few fresh duets (AUROC 0.9997 on 100)."""
    ckpt = Path(__file__).resolve().parents[2] / "training" / "checkpoints" / "nri_duet_supervised.pt"
    if not ckpt.is_file():
        pytest.skip(f"no shipped checkpoint at {ckpt}")
    assert ckpt.stat().st_size < 2_000_000
    res = evaluate_duet(ckpt, synthetic_clips(6, 64, seed=31337, coupling="world", lag_frames=1), horizon=2)
    assert res["window"] == 12 and res["edges"] == 648
    assert res["auroc"] > 0.98 and res["auroc_window"] > 0.97


def _rigid_windows(n: int = 6) -> tuple[DuetNRIConfig, torch.Tensor, torch.Tensor]:
    """Windows of rigid world strings (strength 1, lag 1 frame) and their labels, normalised."""
    from training.duet_data import build_windows

    clips = synthetic_clips(n, 40, seed=11, coupling="world", lag_frames=1, strength=(1.0, 1.0))
    cfg = DuetNRIConfig(window=6, hidden=8, edge_types=2, kinematic_messages=True, rigid_bones=True,
                        velocity_step=1.0)
    src = build_windows(clips, cfg.graph, cfg.frames, 5)
    cfg = dataclasses.replace(cfg, velocity_step=src.normalizer.vel_scale / (30.0 * src.normalizer.pos_scale))
    batch = src.batch(slice(0, len(src)))
    return cfg, batch["x"], batch["labels"]


def test_rigid_bones_keep_bone_lengths_and_follow_a_string_exactly() -> None:
    """With the true strings and a pull gain of 1, a driven bone turns to where its driver pointed a
    frame before (what a rigid world string does); without them it coasts and misses."""
    torch.manual_seed(3)
    cfg, x, labels = _rigid_windows()
    dec = DuetNRI(cfg).decoder
    assert dec.pull_gain is not None and not dec.pull_gain.requires_grad  # fixed unless learn_pull_gain
    assert DuetNRI(dataclasses.replace(cfg, learn_pull_gain=True)).decoder.pull_gain.requires_grad  # type: ignore[union-attr]
    with torch.no_grad():
        dec.pull_gain.fill_(1.0)
        ops = dec.bone_op
        true = F.one_hot(labels.long(), 2).float()
        none = F.one_hot(torch.zeros_like(labels).long(), 2).float()
        pred = dec(x, true, teacher_every=1)  # (B, T-1, N, 6): one step ahead from the truth
        bones = ~dec.is_root[:, 0]  # (N,) a root's "bone" is its position
        torch.testing.assert_close((ops @ pred[..., :3]).norm(dim=-1)[..., bones],
                                   (ops @ x[:, 1:, :, :3]).norm(dim=-1)[..., bones], rtol=1e-4, atol=1e-5)
        _, recv = cfg.graph.senders_receivers()
        b, e = torch.nonzero(labels[:, : labels.shape[1] // 2], as_tuple=True)  # planted (window, edge)
        r = torch.as_tensor(recv)[e]
        err_true = (ops @ pred[..., :3] - ops @ x[:, 1:, :, :3])[b, 1:, r].norm(dim=-1).max()
        err_none = (ops @ dec(x, none, teacher_every=1)[..., :3] - ops @ x[:, 1:, :, :3])[b, 1:, r].norm(dim=-1)
    assert float(err_true) < 1e-4 < float(err_none.mean())


def test_rigid_bones_give_the_encoder_gradient_from_reconstruction_alone() -> None:
    torch.manual_seed(4)
    cfg, x, _ = _rigid_windows(3)
    task = DuetNRITask(dataclasses.replace(cfg, kl_weight=0.0, future=0, recon="log_bone"), Normalizer(1.0, 1.0),
                       data_id="test")
    task.model.train()
    loss, _, _ = task.loss_terms(x[:8, : cfg.window], training=True)
    loss.backward()
    assert isinstance(task.model, DuetNRI)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in task.model.encoder.parameters())
    with pytest.raises(ValueError, match="velocity_step"):
        DuetNRI(dataclasses.replace(cfg, velocity_step=0.0))


def test_shipped_reconstruction_trained_nri_finds_rigid_strings_in_fresh_duets() -> None:
    """The unsupervised duet NRI's card figure (AUROC 0.964 on 100 fresh duets), on a few: learned
    from reconstruction alone, it ranks the planted world strings far above the other pairs and
    does not see local (joint-angle) strings, which it was not built for."""
    ckpt = Path(__file__).resolve().parents[2] / "training" / "checkpoints" / "nri_duet_rigid.pt"
    if not ckpt.is_file():
        pytest.skip(f"no shipped checkpoint at {ckpt}")
    assert ckpt.stat().st_size < 2_000_000
    rigid = synthetic_clips(6, 64, seed=31337, coupling="world", lag_frames=1, strength=(1.0, 1.0))
    res = evaluate_duet(ckpt, rigid, horizon=2)
    assert res["edges"] == 648 and res["auroc"] > 0.93 and res["auroc_window"] > 0.91
    assert evaluate_duet(ckpt, synthetic_clips(6, 64, seed=31337, coupling="local"), horizon=2)["auroc"] < 0.7
