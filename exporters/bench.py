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
  and are timed as the live path runs them: every model once per frame, in turn, with the two
  runtimes taking turns in blocks of frames so that a load change on a shared machine affects
  both alike. Reported: median wall time per call in ms, the ratio torch / ORT, and the
  largest absolute difference of their outputs (a check that the two are the same model);
  also, under ``interleaved``, the same with one call of each runtime in turn per model (the
  bench's method until 2026-11-22: torch then evicts ONNX Runtime's data from the caches
  between two of its calls, which the live path never does).

The kinds of the live path (:data:`inference.models_live.MODEL_FILES`) are summed frame by
frame: the median of those sums is the model cost of one frame when every model runs on every
frame. These are wall-clock figures: the machine's load average is reported with them.
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
    """One model timed on both runtimes at batch 1 (ms are wall-clock medians per call).

    ``ort_ms`` / ``torch_ms``: the live path's pattern, every model once per frame in turn
    (:func:`bench_models`); ``*_interleaved``: one call of each runtime in turn, per model.
    """

    kind: str
    ort_ms: float
    torch_ms: float
    ort_ms_interleaved: float
    torch_ms_interleaved: float
    max_abs_diff: float
    checkpoint: Path
    input_shapes: dict[str, tuple[int, ...]]

    @property
    def speedup(self) -> float:
        """torch eager time / ONNX Runtime time (> 1: ONNX Runtime is faster)."""
        return self.torch_ms / self.ort_ms if self.ort_ms > 0 else math.inf

    @property
    def speedup_interleaved(self) -> float:
        return self.torch_ms_interleaved / self.ort_ms_interleaved if self.ort_ms_interleaved > 0 else math.inf

    def as_dict(self) -> dict[str, Any]:
        return {"ort_ms": round(self.ort_ms, 5), "torch_ms": round(self.torch_ms, 5),
                "speedup": round(self.speedup, 3),
                "interleaved": {"ort_ms": round(self.ort_ms_interleaved, 5),
                                "torch_ms": round(self.torch_ms_interleaved, 5),
                                "speedup": round(self.speedup_interleaved, 3)},
                "checkpoint": str(self.checkpoint), "max_abs_diff": float(self.max_abs_diff),
                "inputs": {k: list(v) for k, v in self.input_shapes.items()}}


@dataclass
class _Subject:
    """One model ready on both runtimes: the ORT session with its checked batch-1 feeds, and the
    torch module with the same input."""

    kind: str
    checkpoint: Path
    session: Any
    names: list[str]
    feeds: dict[str, NDArray[Any]]
    module: torch.nn.Module
    args: tuple[torch.Tensor, ...]
    shapes: dict[str, tuple[int, ...]]

    def ort(self) -> Any:
        return self.session.run(self.names, self.feeds)

    def torch(self) -> Any:
        return self.module(*self.args)


def _prepare(onnx_path: Path, checkpoint: Path | None, *, checkpoints_dir: Path, warmup: int,
             seed: int) -> _Subject:
    """Open one ``.onnx`` (CPU, 1 thread) and rebuild its checkpoint's model as it was exported.

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
    subject = _Subject(kind=spec.name, checkpoint=Path(checkpoint), session=model.session,
                       names=[o.name for o in model.outputs], feeds=model.check_inputs(feeds), module=module,
                       args=tuple(torch.from_numpy(feeds[name]) for name in spec.input_names),
                       shapes={k: tuple(v.shape) for k, v in feeds.items()})
    with torch.inference_mode():
        for _ in range(warmup):
            subject.torch()
    return subject


def _time_frames(subjects: Sequence[_Subject], runs: int, block: int
                 ) -> tuple[dict[str, NDArray[np.int64]], dict[str, NDArray[np.int64]]]:
    """Every model once per frame, in turn, ``runs`` frames per runtime: ns per call ``(runs,)`` per kind.

    The runtimes take turns in blocks of ``block`` frames, so a load change on a shared machine
    affects both alike while each runs as it would alone: the live path never runs torch, so
    torch never evicts ONNX Runtime's data from the caches between two of its calls.
    """
    ort_ns = {s.kind: np.empty(runs, dtype=np.int64) for s in subjects}
    torch_ns = {s.kind: np.empty(runs, dtype=np.int64) for s in subjects}
    clock = time.perf_counter_ns
    with torch.inference_mode():
        for start in range(0, runs, block):
            for out, call in ((ort_ns, _Subject.ort), (torch_ns, _Subject.torch)):
                for i in range(start, min(start + block, runs)):
                    for s in subjects:
                        t0 = clock()
                        call(s)
                        out[s.kind][i] = clock() - t0
    return ort_ns, torch_ns


def _time_interleaved(subject: _Subject, runs: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """One ORT call, then one torch call, ``runs`` times: ns per call ``(runs,)`` for each runtime."""
    ort_ns = np.empty(runs, dtype=np.int64)
    torch_ns = np.empty(runs, dtype=np.int64)
    clock = time.perf_counter_ns
    with torch.inference_mode():
        for i in range(runs):
            t0 = clock()
            subject.ort()
            t1 = clock()
            subject.torch()
            ort_ns[i], torch_ns[i] = t1 - t0, clock() - t1
    return ort_ns, torch_ns


def _max_diff(subject: _Subject) -> float:
    with torch.inference_mode():
        ort_out = subject.ort()
        torch_out = subject.torch()
    torch_outs = (torch_out,) if isinstance(torch_out, torch.Tensor) else tuple(torch_out)
    return max(float(np.max(np.abs(o - t.numpy()))) for o, t in zip(ort_out, torch_outs, strict=True))


def bench_models(
    models_dir: Path | None = None,
    *,
    checkpoints_dir: Path | None = None,
    overrides: Mapping[str, Path] | None = None,
    runs: int = 2000,
    warmup: int = 50,
    seed: int = 0,
    block: int = 100,
) -> dict[str, Any]:
    """Time every ``.onnx`` in ``models_dir`` against torch eager; one JSON-ready dict.

    Two timings of the same calls: as the live path runs them (every model once per frame in
    turn, each runtime in blocks of ``block`` frames; the headline figures and the goals) and
    one call of each runtime in turn per model (``interleaved``; torch's allocations then
    evict ONNX Runtime's data from the caches between its calls, which costs it 10–40 %).

    Raises:
        BenchModelsError: no models, an override for a kind that is not there, no checkpoint fits.
    """
    models_dir = DEFAULT_MODELS_DIR if models_dir is None else Path(models_dir)
    checkpoints_dir = DEFAULT_CHECKPOINTS_DIR if checkpoints_dir is None else Path(checkpoints_dir)
    overrides = dict(overrides or {})
    if runs < 1 or warmup < 0 or block < 1:
        raise BenchModelsError(f"--runs and --block must be >= 1 and --warmup >= 0, got {runs}, {block} and {warmup}")
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
    subjects: list[_Subject] = []
    for path in paths:
        try:
            subjects.append(_prepare(path, overrides.get(path.stem), checkpoints_dir=checkpoints_dir,
                                     warmup=warmup, seed=seed))
        except ExportError as exc:
            raise BenchModelsError(f"{path}: {exc}") from exc
    ort_ns, torch_ns = _time_frames(subjects, runs, block)
    results: dict[str, ModelTiming] = {}
    for s in subjects:
        ort_i, torch_i = _time_interleaved(s, runs)
        ms = {name: float(np.median(ns)) / 1e6 for name, ns in
              (("ort", ort_ns[s.kind]), ("torch", torch_ns[s.kind]), ("ort_i", ort_i), ("torch_i", torch_i))}
        timing = ModelTiming(
            kind=s.kind, ort_ms=ms["ort"], torch_ms=ms["torch"], ort_ms_interleaved=ms["ort_i"],
            torch_ms_interleaved=ms["torch_i"], max_abs_diff=_max_diff(s), checkpoint=s.checkpoint,
            input_shapes=s.shapes)
        results[timing.kind] = timing
        log.info("%s: ORT %.4f ms, torch %.4f ms (%.1fx; interleaved %.1fx)", timing.kind, timing.ort_ms,
                 timing.torch_ms, timing.speedup, timing.speedup_interleaved)
    live = [k for k in results if k in MODEL_FILES]
    frame_ns = sum((ort_ns[k] for k in live), np.zeros(runs, dtype=np.int64))
    total = float(np.median(frame_ns)) / 1e6 if live else 0.0
    return {
        "device": f"cpu ({_cpu_name()}, {os.cpu_count()} logical cores), ORT CPUExecutionProvider vs torch "
                  f"{torch.__version__} eager",
        "threads": 1,
        "batch": 1,
        "runs": runs,
        "warmup": warmup,
        "block": block,
        "method": "every model once per frame in turn, ONNX Runtime and torch in alternating blocks of "
                  f"{block} frames; 'interleaved': one call of each runtime in turn, per model",
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
