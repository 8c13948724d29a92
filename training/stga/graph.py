"""The duet graph STGA-Net attends over: ``N = 2J = 36`` nodes, dancer 0's joints then dancer 1's.

The **local** adjacency ``A`` (:func:`local_adjacency`) joins, within each dancer only:

* every joint to itself (self loop);
* the two ends of every bone of :data:`stream.skeleton.CANONICAL`;
* every joint to its left/right counterpart (``CANONICAL.mirror``; midline joints map to
  themselves, already covered by the self loop);
* the distal joints — the end effectors head, both wrists and both feet — to each other and
  to the pelvis (:data:`DISTAL`), which move together in whole-body motion but are many bones apart.

No entry joins the two dancers: relations between dancers (and between any unconnected joints)
are the global attention's job (:class:`training.stga.layers.GlobalGraphAttention`).
"""

from __future__ import annotations

import itertools

import numpy as np
from numpy.typing import NDArray

from stream.skeleton import CANONICAL, J

D = 2
"""Dancers in a duet."""
N = D * J
"""Graph nodes: both dancers' joints (36)."""
PELVIS = CANONICAL.index("pelvis")
L_HIP = CANONICAL.index("l_hip")
R_HIP = CANONICAL.index("r_hip")
DISTAL: tuple[int, ...] = tuple(CANONICAL.index(n) for n in ("head", "l_wrist", "r_wrist", "l_foot", "r_foot"))
"""End effectors: joined to each other and to the pelvis in the local graph."""


def body_adjacency() -> NDArray[np.float32]:
    """``(J, J)`` symmetric 0/1 adjacency of one body: self loops, bones, mirror pairs, distal links."""
    A = CANONICAL.adjacency(self_loops=True)  # (J, J) bones + identity
    for j, m in enumerate(CANONICAL.mirror):
        A[j, m] = A[m, j] = 1.0
    for a, b in itertools.combinations((PELVIS, *DISTAL), 2):
        A[a, b] = A[b, a] = 1.0
    return A


def local_adjacency() -> NDArray[np.float32]:
    """``(N, N)`` block-diagonal local adjacency of the duet (no inter-dancer entries)."""
    A = np.zeros((N, N), dtype=np.float32)
    B = body_adjacency()
    A[:J, :J] = B
    A[J:, J:] = B
    return A

