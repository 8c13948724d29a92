"""Canonical clip files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stream.clip import Clip, ClipError


def _clip(T: int = 12) -> Clip:
    rng = np.random.default_rng(0)
    return Clip(joints=rng.normal(size=(T, 2, 18, 3)).astype(np.float32), fps=30.0, provenance={"src": "test"})


def test_save_load_round_trip(tmp_path: Path) -> None:
    c = _clip()
    edges = np.zeros((18, 18), np.float32)
    edges[6, 9] = 1.0
    c2 = Clip(joints=c.joints, fps=60.0, edges=edges, edge_lag=5, provenance={"a": [1, 2]})
    p = c2.save(tmp_path / "x")
    assert p.name == "x.npz"
    back = Clip.load(p)
    np.testing.assert_array_equal(back.joints, c2.joints)
    np.testing.assert_allclose(back.timestamps, np.arange(12) / 60.0)
    assert back.valid.all() and back.fps == 60.0 and back.edge_lag == 5
    assert back.provenance == {"a": [1, 2]} and back.edges is not None and back.edges[6, 9] == 1
    assert back.data_id == c2.data_id and len(back.data_id) == 12
    assert _clip().data_id != Clip(joints=c.joints[::-1].copy(), fps=30.0).data_id


def test_invalid_clips_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ClipError, match=r"shape \(T, 2, 18, 3\)"):
        Clip(joints=np.zeros((4, 3, 18, 3), np.float32), fps=30)
    j = np.zeros((4, 2, 18, 3), np.float32)
    j[1, 0, 0, 0] = np.nan
    with pytest.raises(ClipError, match="finite"):
        Clip(joints=j, fps=30)
    with pytest.raises(ClipError, match="fps must be positive"):
        Clip(joints=np.zeros((4, 2, 18, 3), np.float32), fps=0)
    with pytest.raises(ClipError, match="no clip file"):
        Clip.load(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ClipError, match="not a readable"):
        Clip.load(bad)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    with pytest.raises(ClipError, match="not an Invisible Strings clip"):
        Clip.load(other)
