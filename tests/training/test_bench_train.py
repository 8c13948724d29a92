"""``istrings bench train`` runs end to end (a real subprocess) and prints one JSON object."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from training.bench import BenchConfig, all_pairs_config, flops_per_window, seed_config, time_training


def test_configs_are_the_seeds_and_all_pairs() -> None:
    s, a = seed_config(), all_pairs_config()
    assert (s.window, s.hidden, s.edge_types, s.compact_encoder) == (8, 64, 4, False)
    assert s.graph.num_nodes == 6 and s.graph.num_edges == 18
    assert a.graph.num_nodes == 36 and a.graph.num_edges == 648
    assert seed_config(1).joints0 != seed_config(0).joints0 or seed_config(1).joints1 != seed_config(0).joints1


def test_flops_grow_with_the_graph() -> None:
    s, a = flops_per_window(seed_config(), batch_size=2), flops_per_window(all_pairs_config(), batch_size=2)
    assert 0 < s["encoder"] < s["forward"] < s["train_step"]
    assert a["forward"] > 5 * s["forward"]  # 36 nodes and 648 edges against 6 and 18


def test_time_training_reports_positive_throughput() -> None:
    r = time_training(seed_config(), BenchConfig(steps=1, warmup=0, batch_size=4, threads=1))
    assert r["windows_per_s"] > 0 and r["edges"] == 18


@pytest.mark.slow
def test_cli_prints_one_json_object() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "stream.cli", "bench", "train", "--json", "--steps", "1", "--warmup", "0",
         "--batch-size", "4", "--threads", "1"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["seed_config"]["windows_per_s"] > 0 and out["all_pairs"]["windows_per_s"] > 0
    assert out["all_pairs"]["edges"] == 648
    assert out["flops_per_window"]["all_pairs"]["forward"] > 0
    assert "cpu" in out["device"] and out["batch_size"] == 4
