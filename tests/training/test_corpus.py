"""The real-duet corpus: conversion, caching, held-out split, resampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stream.clip import Clip
from training.corpus import VAL_TAKES, CorpusError, Take, load_take, resample, split_takes, take_names


def test_take_loads_and_caches(tmp_path: Path) -> None:
    take = load_take("cmu_walk", cache_dir=tmp_path)
    assert take.group == "cmu" and take.clip.joints.shape[1:] == (2, 18, 3)
    assert take.clip.fps == pytest.approx(120.0, rel=1e-4)  # the files' frame time 0.0083333 s
    cached = list(tmp_path.glob("cmu_walk-*.npz"))
    assert len(cached) == 1
    again = load_take("cmu_walk", cache_dir=tmp_path)
    np.testing.assert_array_equal(again.clip.joints, take.clip.joints)
    with pytest.raises(CorpusError, match="unknown take 'salsa_9'"):
        load_take("salsa_9", cache_dir=tmp_path)


def test_split_holds_out_whole_takes() -> None:
    clip = Clip(joints=np.zeros((3, 2, 18, 3), np.float32), fps=60)
    takes = [Take(n, "salsa" if n.startswith("salsa") else "cmu", clip) for n in take_names()]
    train, val = split_takes(takes)
    assert {t.name for t in val} == set(VAL_TAKES)
    assert not {t.name for t in train} & set(VAL_TAKES) and len(train) + len(val) == len(takes)
    with pytest.raises(CorpusError, match="held-out takes"):
        split_takes(takes[:2], val=("cmu_squats",))


def test_resample_is_exact_on_linear_motion() -> None:
    t = np.arange(121) / 120.0
    joints = np.zeros((121, 2, 18, 3), np.float32)
    joints[..., 0] = (1.5 * t)[:, None, None]  # x moves at 1.5 m/s
    out = resample(Clip(joints=joints, fps=120.0), 60.0)
    assert out.num_frames == 61 and out.fps == 60.0
    np.testing.assert_allclose(out.joints[:, 0, 0, 0], 1.5 * np.arange(61) / 60.0, atol=1e-6)
    assert out.provenance["resampled"] == {"from_fps": 120.0, "to_fps": 60.0}
