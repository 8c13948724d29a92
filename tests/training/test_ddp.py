"""DistributedDataParallel through torchrun: two gloo processes on CPU train a tiny NRI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training.checkpoint import load_checkpoint
from training.simulate import save_particles, simulate

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_torchrun_two_processes_gloo(tmp_path: Path) -> None:
    data = simulate("springs", 24, 3, seed=0, length=1000, sample_freq=100)  # T = 9
    save_particles(tmp_path / "s.npz", data, seed=0, length=1000, sample_freq=100)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "stream.cli", "-v", "train", "nri", "--data", str(tmp_path / "s.npz"),
        "--val", str(tmp_path / "s.npz"), "--epochs", "2", "--batch-size", "6", "--encoder-hidden", "8",
        "--decoder-hidden", "8", "--prediction-steps", "3", "--threads", "1", "--device", "cpu",
        "-o", str(tmp_path / "run"),
    ]
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "world size 2, backend gloo" in r.stderr
    # Only rank 0 prints the summary and writes files.
    summaries = [line for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [row["epoch"] for row in history] == [1.0, 2.0]
    assert 0.0 <= history[-1]["val/edge_acc"] <= 1.0
    ckpt = load_checkpoint(tmp_path / "run" / "best.pt")
    assert not any(k.startswith("module.") for k in ckpt.state_dict)  # unwrapped weights
    model = ckpt.build_model()
    assert torch.isfinite(torch.cat([p.flatten() for p in model.parameters()])).all()
    assert (tmp_path / "run" / "plots" / "edge_acc.png").is_file()
