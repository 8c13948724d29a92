"""Training throughput of the duet NRI: the seed's best configuration, then every joint pair.

The seed's best configuration: window 8, hidden 64, K = 4 (its prior), full encoder, graph
recurrent (GCN-LSTM) decoder, on 3 randomly chosen joints per dancer — the nodes are those
6 joints only (``N = 6``, ``E = 2·3·3 = 18``), as in the seed. ``all_pairs`` is the same model
on the whole canonical skeleton (``N = 36``, ``E = 648``).

One training step = forward (encoder, Gumbel-softmax sample, decoder rollout), the ELBO, backward
and an Adam step, on random normalised windows (data loading is not timed). Throughput is
``windows / s`` (wall clock) over ``steps`` steps after ``warmup`` steps; ``windows_per_cpu_s``
divides by the process's CPU time instead and ``cpu_share`` = CPU time / wall time, so a figure
taken while other processes load the machine can be told apart from a quiet one. FLOPs per window are counted with
:class:`torch.utils.flop_counter.FlopCounterMode` (matmuls only: elementwise work is not
counted, so the figure is a lower bound on the work).
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from training.duet_data import CandidateGraph, Normalizer
from training.duet_nri import DuetNRITask
from training.nri.duet import DuetNRIConfig


@dataclass(frozen=True)
class BenchConfig:
    """What :func:`bench_train` measures.

    Attributes:
        steps: timed training steps per configuration.
        warmup: untimed steps first.
        batch_size: windows per step (throughput grows with it up to the cache limits).
        threads: torch intra-op threads.
        sample_seed: seed of the seed configuration's 3 random joints per dancer.
    """

    steps: int = 20
    warmup: int = 3
    batch_size: int = 128
    threads: int = 2
    sample_seed: int = 0


def seed_config(sample_seed: int = 0) -> DuetNRIConfig:
    """The seed's best configuration on its 6 sampled joints."""
    g = CandidateGraph.sampled(3, seed=sample_seed)
    return DuetNRIConfig(joints0=g.joints0, joints1=g.joints1, window=8, hidden=64, edge_types=4)


def all_pairs_config() -> DuetNRIConfig:
    """The same model on every inter-dancer joint pair of the canonical skeleton."""
    return DuetNRIConfig(window=8, hidden=64, edge_types=4)


def flops_per_window(config: DuetNRIConfig, batch_size: int = 16) -> dict[str, float]:
    """Forward FLOPs per window of the whole model and of the encoder alone (matmul FLOPs)."""
    task = DuetNRITask(config, Normalizer(1.0, 1.0), data_id="bench")
    model = task.model
    x = torch.randn(batch_size, config.window, config.graph.num_nodes, config.in_channels)
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as total:
        model(x)
    with torch.no_grad(), FlopCounterMode(display=False) as enc:
        model.encoder(x)  # type: ignore[operator]
    task.model.train()
    with FlopCounterMode(display=False) as train:
        loss, _, _ = task.loss_terms(x, training=True)
        loss.backward()
    return {
        "forward": total.get_total_flops() / batch_size,
        "encoder": enc.get_total_flops() / batch_size,
        "train_step": train.get_total_flops() / batch_size,
    }


def time_training(config: DuetNRIConfig, bench: BenchConfig) -> dict[str, float]:
    """Windows per second of full training steps (see the module docstring)."""
    torch.manual_seed(0)
    task = DuetNRITask(config, Normalizer(1.0, 1.0), data_id="bench")
    task.model.train()
    opt = torch.optim.Adam(task.model.parameters(), lr=1e-4)
    x = torch.randn(bench.batch_size, config.window, config.graph.num_nodes, config.in_channels) * 0.5

    def step() -> None:
        loss, _, _ = task.loss_terms(x, training=True)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(bench.warmup):
        step()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(bench.steps):
        step()
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "windows_per_s": bench.steps * bench.batch_size / dt,
        # Per second of this process's CPU time (all threads): less sensitive to other load.
        "windows_per_cpu_s": bench.steps * bench.batch_size / max(cpu, 1e-9),
        "cpu_share": cpu / dt,
        "ms_per_step": 1000.0 * dt / bench.steps,
        "nodes": float(config.graph.num_nodes),
        "edges": float(config.graph.num_edges),
    }


def bench_train(bench: BenchConfig) -> dict[str, Any]:
    """The JSON object printed by ``istrings bench train``."""
    torch.set_num_threads(bench.threads)
    seed_cfg, all_cfg = seed_config(bench.sample_seed), all_pairs_config()
    return {
        "seed_config": {**time_training(seed_cfg, bench), "joints0": list(seed_cfg.joints0),
                        "joints1": list(seed_cfg.joints1)},
        "all_pairs": time_training(all_cfg, bench),
        "flops_per_window": {"seed_config": flops_per_window(seed_cfg), "all_pairs": flops_per_window(all_cfg)},
        "batch_size": bench.batch_size,
        "steps": bench.steps,
        "warmup": bench.warmup,
        "threads": torch.get_num_threads(),
        "device": f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "model": "window 8, hidden 64, K=4 (seed prior), full encoder, GCN-LSTM decoder, teacher every 8",
    }
