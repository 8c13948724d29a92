"""Element-wise guards written so that an ONNX export keeps them.

``torch.onnx.export(dynamo=True, optimize=True)`` runs onnxscript's optimizer, whose no-op
rules (onnxscript 0.7, ``rewriter/rules/common/_no_op.py``) match a constant against 0 with an
absolute tolerance of 1e-8: ``x + 1e-12`` is rewritten to ``x``. The guard of
``sqrt(x + ε)`` then disappears from the exported graph, and a still window (every motion 0)
gives 0/0 = NaN on ONNX Runtime where torch gives 0. :func:`sqrt_plus` computes the same
value in a form no such rule matches; ``exporters.validate`` runs every export on a still and
an all-zero window to catch any other guard that goes missing.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def sqrt_plus(x: Tensor, eps: float) -> Tensor:
    """``sqrt(x + eps)`` for ``x ≥ 0``, computed as ``sqrt(x / eps + 1) · sqrt(eps)``.

    The same function (float32 rounding aside: a relative 1e-7); the constants in the graph are
    ``1/eps``, ``1`` and ``sqrt(eps)``, none of which an optimizer mistakes for a no-op.
    Shapes: any; element-wise.
    """
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    return torch.sqrt(x * (1.0 / eps) + 1.0) * math.sqrt(eps)
