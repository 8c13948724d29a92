"""``istrings bench models``: every bundled ONNX model on ONNX Runtime (CPU) against torch eager.

For each ``.onnx`` in the models folder (the bundled ``inference/models`` by default):

* the model is opened with the project's session factory (:class:`inference.runtime.OnnxModel`:
  device ``cpu``, one intra-op and one inter-op thread, warm-up runs), its istrings metadata
  read from the file;
* the checkpoint it was exported from is found in the checkpoints folder
  (``training/checkpoints``): same ``model_name`` and ``data_id`` as the metadata, and — when
  several share them (MKFF causal and centred) — the same model config; ``KIND=PATH``
  overrides skip the search;
* the same model is rebuilt from that checkpoint exactly as the exporter exports it
  (:func:`exporters.export.export_module`: the spec's submodule and head, eval mode) and run in
  torch eager with one thread under :func:`torch.inference_mode`;
* both get the same input, the spec's dummy input at batch 1 (:meth:`ExportSpec.dummy_inputs`),
  and are timed alternately, one run of each per round, so a load change on a shared machine
  affects both alike. Reported: median wall time per call in ms, the ratio torch / ORT, and the
  largest absolute difference of their outputs (a check that the two are the same model).

The kinds of the live path (:data:`inference.models_live.MODEL_FILES`) are summed: their ORT
medians together are the model cost of one frame when every model runs on every frame.
These are wall-clock figures: the machine's load average is reported with them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from exporters.export import export_module
from exporters.registry import get_spec
from exporters.spec import ExportError, ExportSpec
from inference.models_live import DEFAULT_MODELS_DIR, MODEL_FILES
from inference.runtime import OnnxModel
from stream.errors import IStringsError

log = logging.getLogger(__name__)

DEFAULT_CHECKPOINTS_DIR = Path(__file__).resolve().parents[1] / "training" / "checkpoints"
"""Where the checkpoints of the bundled models live."""

SPEEDUP_GOAL = 3.0
"""Goal: ONNX Runtime at least this many times faster than torch eager, per model."""

LIVE_TOTAL_GOAL_MS = 1.0
"""Goal: all live models together at most this many ms per frame on the CPU."""


class BenchModelsError(IStringsError):
    """The models cannot be benchmarked: no models, no matching checkpoint, a bad override."""


def parse_overrides(items: Sequence[str]) -> dict[str, Path]:
    """``["stga=path.pt", ...]`` → ``{"stga": Path("path.pt")}``.

    Raises:
        BenchModelsError: an item is not ``KIND=PATH``, names a kind twice, or the file is missing.
    """
    out: dict[str, Path] = {}
    for item in items:
        kind, sep, path = item.partition("=")
        kind, path = kind.strip(), path.strip()
        if not sep or not kind or not path:
            raise BenchModelsError(
                f"--checkpoint takes KIND=PATH (e.g. stga=training/checkpoints/stga_duet60.pt), got {item!r}")
        if kind in out:
            raise BenchModelsError(f"--checkpoint names {kind!r} twice; give one checkpoint per kind")
        if not Path(path).is_file():
            raise BenchModelsError(f"--checkpoint {kind}={path}: no such file")
        out[kind] = Path(path)
    return out


def find_checkpoint(model_name: str, data_id: str, config: Mapping[str, Any], directory: Path) -> Path:
    """The checkpoint in ``directory`` that a model with this metadata was exported from.

    Candidates have the same ``model_name`` and ``data_id``; several are told apart by their
    model config (it must then equal ``config``).

    Raises:
        BenchModelsError: none matches, or several match and the config does not decide.
    """
    from training.checkpoint import CheckpointError, load_checkpoint

    matches: list[Path] = []
    exact: list[Path] = []
    for path in sorted(directory.glob("*.pt")):
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError as exc:
            log.info("skipping %s: %s", path, exc)
            continue
        if ckpt.model_name == model_name and ckpt.data_id == data_id:
            matches.append(path)
            if json.loads(json.dumps(ckpt.model_config)) == json.loads(json.dumps(dict(config))):
                exact.append(path)
    hint = "pass --checkpoint KIND=PATH"
    if not matches:
        raise BenchModelsError(
            f"no checkpoint in {directory} has model_name {model_name!r} and data_id {data_id!r}; {hint}")
    if len(matches) == 1:
        return matches[0]
    if len(exact) == 1:
        return exact[0]
    names = ", ".join(p.name for p in (exact or matches))
    raise BenchModelsError(f"several checkpoints in {directory} fit model_name {model_name!r}, data_id "
                           f"{data_id!r} and the config: {names}; {hint}")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass(frozen=True)
class ModelTiming:
    """One model timed on both runtimes at batch 1 (ms are wall-clock medians per call)."""

    kind: str
    ort_ms: float
    torch_ms: float
    max_abs_diff: float
    checkpoint: Path
    input_shapes: dict[str, tuple[int, ...]]

    @property
    def speedup(self) -> float:
        """torch eager time / ONNX Runtime time (> 1: ONNX Runtime is faster)."""
        return self.torch_ms / self.ort_ms if self.ort_ms > 0 else math.inf

    def as_dict(self) -> dict[str, Any]:
        return {"ort_ms": round(self.ort_ms, 5), "torch_ms": round(self.torch_ms, 5),
                "speedup": round(self.speedup, 3), "checkpoint": str(self.checkpoint),
                "max_abs_diff": float(self.max_abs_diff),
                "inputs": {k: list(v) for k, v in self.input_shapes.items()}}


def time_model(
    onnx_path: Path,
    checkpoint: Path | None,
    *,
    checkpoints_dir: Path,
    runs: int,
    warmup: int,
    seed: int = 0,
) -> ModelTiming:
    """Time one ``.onnx`` on ONNX Runtime (CPU, 1 thread) and its checkpoint's model in torch eager.

    Args:
        onnx_path: the exported model (its metadata names kind, model_name, data_id, config).
        checkpoint: the checkpoint it came from, or ``None`` to find it in ``checkpoints_dir``.
        checkpoints_dir: where to look for the checkpoint.
        runs: timed calls per runtime (alternating).
        warmup: untimed calls per runtime first.
        seed: seed of the dummy input.

    Raises:
        BenchModelsError: no checkpoint fits, or it holds another model than the ``.onnx``.
        inference.runtime.ModelError: the ``.onnx`` cannot be loaded.
        exporters.spec.ExportError: no export spec for its kind.
    """
    from training.checkpoint import load_checkpoint

    model = OnnxModel(onnx_path, device="cpu", intra_op_threads=1, inter_op_threads=1, warmup=warmup)
    meta = model.metadata
    spec: ExportSpec = get_spec(meta.kind)
    if checkpoint is None:
        checkpoint = find_checkpoint(meta.model_name, meta.data_id, meta.config, checkpoints_dir)
    ckpt = load_checkpoint(checkpoint)
    if ckpt.model_name != spec.model_name:
        raise BenchModelsError(f"{checkpoint} holds a {ckpt.model_name!r} model; {onnx_path.name} is "
                               f"{spec.model_name!r} ({spec.name})")
    if ckpt.data_id != meta.data_id:
        log.warning("%s was trained on data %s, %s on %s", checkpoint, ckpt.data_id, onnx_path.name, meta.data_id)
    module = export_module(ckpt.build_model(), spec)
    sizes = {axis: 1 if axis == "B" else spec.export_sizes[axis] for axis in spec.dynamic}  # batch 1
    feeds: dict[str, NDArray[Any]] = spec.dummy_inputs(ckpt.model_config, sizes, seed=seed)
    checked = model.check_inputs(feeds)
    names = [o.name for o in model.outputs]
    args = tuple(torch.from_numpy(feeds[name]) for name in spec.input_names)
    session = model.session

    with torch.inference_mode():
        for _ in range(warmup):
            session.run(names, checked)
            module(*args)
        ort_ns = np.empty(runs, dtype=np.int64)
        torch_ns = np.empty(runs, dtype=np.int64)
        clock = time.perf_counter_ns
        for i in range(runs):  # alternate: a load change hits both runtimes alike
            t0 = clock()
            session.run(names, checked)
            t1 = clock()
            module(*args)
            t2 = clock()
            ort_ns[i] = t1 - t0
            torch_ns[i] = t2 - t1
        ort_out = session.run(names, checked)
        torch_out = module(*args)
    torch_outs = (torch_out,) if isinstance(torch_out, torch.Tensor) else tuple(torch_out)
    diff = max(float(np.max(np.abs(o - t.numpy()))) for o, t in zip(ort_out, torch_outs, strict=True))
    return ModelTiming(kind=spec.name, ort_ms=float(np.median(ort_ns)) / 1e6, torch_ms=float(np.median(torch_ns)) / 1e6,
                       max_abs_diff=diff, checkpoint=Path(checkpoint),
                       input_shapes={k: tuple(v.shape) for k, v in feeds.items()})


def bench_models(
    models_dir: Path | None = None,
    *,
    checkpoints_dir: Path | None = None,
    overrides: Mapping[str, Path] | None = None,
    runs: int = 2000,
    warmup: int = 50,
    seed: int = 0,
) -> dict[str, Any]:
    """Time every ``.onnx`` in ``models_dir`` against torch eager; one JSON-ready dict.

    Raises:
        BenchModelsError: no models, an override for a kind that is not there, no checkpoint fits.
    """
    models_dir = DEFAULT_MODELS_DIR if models_dir is None else Path(models_dir)
    checkpoints_dir = DEFAULT_CHECKPOINTS_DIR if checkpoints_dir is None else Path(checkpoints_dir)
    overrides = dict(overrides or {})
    if runs < 1 or warmup < 0:
        raise BenchModelsError(f"--runs must be >= 1 and --warmup >= 0, got {runs} and {warmup}")
    paths = sorted(models_dir.glob("*.onnx"))
    if not paths:
        raise BenchModelsError(f"no .onnx models in {models_dir}; export them with `istrings export`")
    unknown = sorted(set(overrides) - {p.stem for p in paths})
    if unknown:
        raise BenchModelsError(f"--checkpoint for {', '.join(unknown)}, but {models_dir} has no such model "
                               f"(it has {', '.join(p.stem for p in paths)})")
    torch.set_num_threads(1)
    with contextlib.suppress(RuntimeError):  # raised when already set once in this process
        torch.set_num_interop_threads(1)
    load_start = os.getloadavg()
    results: dict[str, ModelTiming] = {}
    for path in paths:
        try:
            timing = time_model(path, overrides.get(path.stem), checkpoints_dir=checkpoints_dir,
                                runs=runs, warmup=warmup, seed=seed)
        except ExportError as exc:
            raise BenchModelsError(f"{path}: {exc}") from exc
        results[timing.kind] = timing
        log.info("%s: ORT %.4f ms, torch %.4f ms (%.1fx)", timing.kind, timing.ort_ms, timing.torch_ms, timing.speedup)
    live = [k for k in results if k in MODEL_FILES]
    total = sum(results[k].ort_ms for k in live)
    return {
        "device": f"cpu ({_cpu_name()}, {os.cpu_count()} logical cores), ORT CPUExecutionProvider vs torch "
                  f"{torch.__version__} eager",
        "threads": 1,
        "batch": 1,
        "runs": runs,
        "warmup": warmup,
        "models": {k: t.as_dict() for k, t in results.items()},
        "live_models": live,
        "live_models_missing": sorted(set(MODEL_FILES) - set(live)),
        "live_total_ort_ms": round(total, 5),
        "goals": {
            "speedup_min": SPEEDUP_GOAL,
            "speedup_met": {k: t.speedup >= SPEEDUP_GOAL for k, t in results.items()},
            "live_total_ort_ms_max": LIVE_TOTAL_GOAL_MS,
            "live_total_met": total <= LIVE_TOTAL_GOAL_MS,
        },
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "load_avg_start": [round(x, 2) for x in load_start],
    }
