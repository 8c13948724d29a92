"""The variational pieces of NRI: Gumbel-softmax edge samples, KL terms, priors, Gaussian NLL.

Edge types are a categorical latent per edge, ``q(z_e | x) = softmax(logits_e)``. Training uses
the Gumbel-softmax relaxation so that the decoder's messages are *weighted by differentiable
samples* and the reconstruction loss sends gradient back to the encoder (Jang et al. 2017,
Maddison et al. 2017; Kipf et al. 2018). The ELBO is

    L = NLL(x | z) + KL(q(z | x) || p(z)),

with a Gaussian likelihood of fixed variance and a categorical (or uniform) prior.

Shapes: ``B`` batch, ``N`` nodes, ``E`` edges, ``K`` edge types, ``T`` frames, ``C`` channels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

# The seed project's priors over K edge types (type 0 = "no edge" / the most likely one).
SEED_PRIORS: dict[int, tuple[float, ...]] = {
    2: (0.7, 0.3),
    3: (0.4, 0.3, 0.3),
    4: (0.35, 0.25, 0.15, 0.25),
    5: (0.3, 0.2, 0.2, 0.1, 0.2),
}


def seed_prior(k: int) -> tuple[float, ...]:
    """The seed's prior for ``k`` edge types (k in 2..5).

    Raises:
        ValueError: no seed prior for ``k``; pass explicit probabilities to :func:`log_prior` instead.
    """
    try:
        return SEED_PRIORS[k]
    except KeyError as exc:
        raise ValueError(f"no seed prior for K={k} edge types; known K: {sorted(SEED_PRIORS)}") from exc


def log_prior(probs: Sequence[float], device: torch.device | None = None) -> Tensor:
    """``(K,)`` log-probabilities of a categorical prior (checked to be positive and sum to 1)."""
    p = torch.as_tensor(list(probs), dtype=torch.float32, device=device)
    if p.dim() != 1 or (p <= 0).any() or abs(float(p.sum()) - 1.0) > 1e-4:
        raise ValueError(f"prior must be positive and sum to 1, got {list(probs)}")
    return p.log()


def sample_gumbel(shape: torch.Size | Sequence[int], device: torch.device | None = None,
                  eps: float = 1e-10) -> Tensor:
    """Standard Gumbel noise ``-log(-log(U))``, ``U ~ Uniform(0, 1)``."""
    u = torch.rand(tuple(shape), device=device)
    return -torch.log(eps - torch.log(u + eps))


def gumbel_softmax(logits: Tensor, tau: float = 0.5, hard: bool = False, dim: int = -1) -> Tensor:
    """Relaxed one-hot sample ``softmax((logits + g) / tau)`` along ``dim``.

    Args:
        logits: ``(..., K)`` unnormalised log-probabilities.
        tau: temperature (> 0); lower is closer to one-hot.
        hard: if True, the forward value is the one-hot argmax and the gradient is the soft
            sample's (straight-through estimator).
        dim: the categorical axis.

    Shapes:
        logits ``(..., K)`` → sample ``(..., K)``, rows summing to 1.
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    y = F.softmax((logits + sample_gumbel(logits.shape, logits.device)) / tau, dim=dim)
    if not hard:
        return y
    index = y.argmax(dim=dim, keepdim=True)
    y_hard = torch.zeros_like(y).scatter_(dim, index, 1.0)
    return (y_hard - y).detach() + y


def kl_categorical(probs: Tensor, log_prior_k: Tensor, num_nodes: int, eps: float = 1e-16) -> Tensor:
    """``KL(q || p)`` summed over edges and types, divided by ``B * N`` (NRI's normalisation).

    Args:
        probs: ``(B, E, K)`` posterior probabilities ``softmax(logits)``.
        log_prior_k: ``(K,)`` log prior.
        num_nodes: ``N`` (the divisor, so the KL is per node like the NLL).
    """
    kl = probs * (torch.log(probs + eps) - log_prior_k)
    return kl.sum() / (num_nodes * probs.size(0))


def kl_categorical_uniform(probs: Tensor, num_nodes: int, add_const: bool = False,
                           eps: float = 1e-16) -> Tensor:
    """``KL(q || uniform)`` = negative entropy (+ ``log K`` per edge with ``add_const``), over ``B * N``.

    Args:
        probs: ``(B, E, K)`` posterior probabilities.
        num_nodes: ``N``.
        add_const: add ``log K`` per edge so the value is the true (non-negative) KL.
    """
    kl = probs * torch.log(probs + eps)
    total = kl.sum()
    if add_const:
        total = total + math.log(probs.size(-1)) * probs.size(0) * probs.size(1)
    return total / (num_nodes * probs.size(0))


def nll_gaussian(preds: Tensor, target: Tensor, variance: float, add_const: bool = False) -> Tensor:
    """Gaussian negative log-likelihood of fixed ``variance``, summed over ``T, C``, mean over ``B, N``.

    Shapes:
        preds, target ``(B, N, T, C)`` → scalar.
    """
    nll = (preds - target).pow(2) / (2.0 * variance)
    if add_const:
        nll = nll + 0.5 * math.log(2.0 * math.pi * variance)
    return nll.sum() / (target.size(0) * target.size(1))
