"""The original NRI model: shapes, graph order, teacher forcing, and gradient reaching the encoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.checkpoint import load_checkpoint, save_checkpoint
from training.nri.gumbel import (
    gumbel_softmax,
    kl_categorical,
    kl_categorical_uniform,
    log_prior,
    nll_gaussian,
    seed_prior,
)
from training.nri.mlp import NRI, NRIConfig, fully_connected_edges, relation_matrices

B, N, T, C = 3, 4, 12, 4


def _model(**kw: object) -> NRI:
    torch.manual_seed(0)
    cfg = NRIConfig(num_nodes=N, num_channels=C, num_timesteps=T, encoder_hidden=16, decoder_hidden=16,
                    **kw)  # type: ignore[arg-type]
    return NRI(cfg)


def test_edge_order_matches_row_major_off_diagonal() -> None:
    send, recv = fully_connected_edges(3)
    assert send.tolist() == [0, 0, 1, 1, 2, 2]
    assert recv.tolist() == [1, 2, 0, 2, 0, 1]
    rel_rec, rel_send = relation_matrices(send, recv, 3)
    assert rel_rec.shape == (6, 3)
    assert torch.equal(rel_rec.argmax(1), recv) and torch.equal(rel_send.argmax(1), send)


@pytest.mark.parametrize("decoder", ["mlp", "rnn"])
@pytest.mark.parametrize(("k", "skip_first"), [(2, False), (3, True)])
def test_shapes(decoder: str, k: int, skip_first: bool) -> None:
    model = _model(decoder=decoder, edge_types=k, skip_first=skip_first)
    x = torch.randn(B, N, T, C)
    logits, z, preds = model(x, tau=0.5, hard=False, pred_steps=4)
    E = N * (N - 1)
    assert logits.shape == (B, E, k) and z.shape == (B, E, k)
    assert preds.shape == (B, N, T - 1, C)
    torch.testing.assert_close(z.sum(-1), torch.ones(B, E), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"expected x of shape"):
        model(torch.randn(B, N + 1, T, C))


@pytest.mark.parametrize("decoder", ["mlp", "rnn"])
def test_encoder_gets_gradient_from_reconstruction_alone(decoder: str) -> None:
    """The seed's bug: sampled edges as a bare index list gave the encoder no gradient. Here the
    decoder's messages are weighted by the relaxed samples, so the NLL alone (no KL) reaches it."""
    model = _model(decoder=decoder)
    x = torch.randn(B, N, T, C)
    _, _, preds = model(x, tau=0.5, hard=False, pred_steps=3)
    nll_gaussian(preds, x[:, :, 1:], variance=5e-5).backward()
    for name, p in model.encoder.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name
    # Straight-through hard samples still carry gradient to the encoder.
    model.zero_grad()
    _, _, preds = model(x, tau=0.5, hard=True, pred_steps=3)
    nll_gaussian(preds, x[:, :, 1:], variance=5e-5).backward()
    assert model.encoder.fc_out.weight.grad is not None
    assert model.encoder.fc_out.weight.grad.abs().sum() > 0


def test_mlp_decoder_teacher_forcing_every_pred_steps() -> None:
    model = _model().eval()
    x = torch.randn(1, N, T, C)
    z = torch.softmax(torch.randn(1, N * (N - 1), 2), -1)
    base = model.decode(x, z, pred_steps=4)
    x2 = x.clone()
    x2[:, :, 3] += 1.0  # frame 3 is not a teacher frame for pred_steps=4 (teacher frames 0, 4, 8)
    torch.testing.assert_close(model.decode(x2, z, pred_steps=4), base)
    x3 = x.clone()
    x3[:, :, 4] += 1.0  # frame 4 is: predictions of frames 5..8 (indices 4..7) change, others do not
    diff = (model.decode(x3, z, pred_steps=4) - base).abs().sum(dim=(0, 1, 3))
    assert (diff[4:8] > 0).all() and (diff[:4] == 0).all() and (diff[8:] == 0).all()
    # pred_steps=1: every prediction starts from the true previous frame.
    one = model.decode(x, z, pred_steps=1)
    torch.testing.assert_close(one[:, :, 4], model.decode(x[:, :, 4:6], z, 1)[:, :, 0])


def test_skip_first_type_zero_sends_no_message() -> None:
    model = _model(edge_types=2, skip_first=True).eval()
    x = torch.randn(1, N, T, C)
    z = torch.zeros(1, N * (N - 1), 2)
    z[..., 0] = 1.0  # every edge "no interaction": node 0's prediction ignores the others
    base = model.decode(x, z, 1)
    x2 = x.clone()
    x2[:, 1:] += 1.0
    torch.testing.assert_close(model.decode(x2, z, 1)[:, 0], base[:, 0])
    z[..., 0], z[..., 1] = 0.0, 1.0
    assert not torch.allclose(model.decode(x2, z, 1)[:, 0], model.decode(x, z, 1)[:, 0])


def test_gumbel_softmax_soft_and_hard() -> None:
    torch.manual_seed(1)
    logits = torch.randn(5, 7, 3, requires_grad=True)
    soft = gumbel_softmax(logits, tau=0.5)
    torch.testing.assert_close(soft.sum(-1), torch.ones(5, 7), atol=1e-5, rtol=0)
    hard = gumbel_softmax(logits, tau=0.5, hard=True)
    assert set(hard.detach().unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(hard.sum(-1), torch.ones(5, 7))
    (hard * torch.arange(3.0)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="tau"):
        gumbel_softmax(logits, tau=0.0)
    # Low temperature with very confident logits gives the argmax almost surely.
    sharp = gumbel_softmax(torch.tensor([[20.0, 0.0, 0.0]]), tau=0.1)
    assert sharp[0, 0] > 0.99


def test_kl_terms() -> None:
    probs = torch.tensor([[[0.7, 0.3], [0.7, 0.3]]])  # (B=1, E=2, K=2)
    assert abs(float(kl_categorical(probs, log_prior(seed_prior(2)), num_nodes=2))) < 1e-6
    uniform = torch.full((2, 6, 3), 1.0 / 3.0)
    assert abs(float(kl_categorical_uniform(uniform, num_nodes=3, add_const=True))) < 1e-5
    # Without the constant it is the negative entropy: -log K per edge, over B*N.
    expected = -torch.log(torch.tensor(3.0)) * 6 / 3
    torch.testing.assert_close(kl_categorical_uniform(uniform, num_nodes=3), expected)
    assert seed_prior(4) == (0.35, 0.25, 0.15, 0.25)
    with pytest.raises(ValueError, match="no seed prior"):
        seed_prior(7)
    with pytest.raises(ValueError, match="sum to 1"):
        log_prior([0.5, 0.6])


def test_checkpoint_rebuilds_same_model(tmp_path: Path) -> None:
    model = _model(decoder="rnn", edge_types=3, skip_first=True).eval()
    path = save_checkpoint(tmp_path / "m.pt", model_name="nri_mlp", model_config=model.cfg,
                           state_dict=model.state_dict(), data_id="test", metrics={"acc": 0.5},
                           extra={"normalizer": {"loc_min": -1.0}})
    raw = torch.load(path, weights_only=True)  # plain data only
    assert raw["model_name"] == "nri_mlp"
    ckpt = load_checkpoint(path)
    again = ckpt.build_model()
    assert isinstance(again, NRI) and again.cfg == model.cfg
    x = torch.randn(2, N, T, C)
    torch.testing.assert_close(again.encode(x), model.encode(x))
    assert ckpt.metrics == {"acc": 0.5} and ckpt.extra["normalizer"]["loc_min"] == -1.0
