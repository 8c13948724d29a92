"""The inference process: PoseFrames in over ZeroMQ, strings and forecasts out over OSC.

One loop, one frame at a time, never a backlog::

    ZMQ SUB ─ recv_latest (newest message, older ones skipped and counted) ─ decode (bad: counted, dropped)
      → OnlineCleaner (tracking, hold, One Euro filter or the MKFF refiner)        canonical (D, J, 3) m
      → FrameBuffer (ring of the last frames) → window resampled at the model's fps
      → NRI encoder → (J, J) pair strengths → EMA over time                      strings
      → STGA-Net → (H, D, J, 3) m → forecast gate (blend with the better baseline)  forecasts
      → OSC bundles (≤ 1472 bytes each) over UDP to every target

Stages are timed (``receive`` = taking the newest message and decoding it, ``clean``,
``window``, ``nri``, ``stga``, ``send`` = encoding and sending; ``total`` = the latency this
process adds, from taking the message to the end of the send). ``/istrings/frame`` carries the
end-to-end latency from the frame's capture (``t_capture_ns``, the capture host's monotonic
clock: meaningful when capture runs on this machine) to just before encoding.

Strength smoothing: ``s ← s + α (s_new − s)`` with ``α = 1 − exp(−Δt / τ)``, ``Δt`` the time
between frames (capture clock, capped at 1 s) and ``τ`` = ``edge_tau_s`` (default 0.25 s): the
same smoothing at any frame rate. The NRI encoder runs at most once per model frame period
(``nri_interval_s``, default ``1 / fps`` of the model: its window is sampled at that spacing, so a
faster input would give it nearly the same window again); in between, the EMA keeps moving towards
its last output. STGA-Net likewise runs at most once per frame period of its model
(``stga_interval_s``, default ``1 / fps``: 1/60 s for the bundled one); in between, every frame
sends its last forecast, made less than a model frame earlier. Below the model's rate (a 30 or
60 fps camera) both run on every frame. Above it, with ``background_models`` (``infer``'s
default), both run on a worker thread (ONNX Runtime releases the GIL): the frame that starts a
run does not wait for it, and its result goes out with the first frame after it is done, so no
frame's latency carries the two models. When the NRI model does not run (no model, fewer than two
dancers over the window, warm-up) ``s_new`` is 0, so strings fade out with the same ``τ``.

Forecast gate (:mod:`stream.forecast_gate`, ``gate_tau_s``, default 3 s): every frame resolves
the forecasts whose target time has passed, and each horizon's output is the model blended with
the better of zero and constant velocity, weighted by how both did over the last few seconds, so
a motion the model never learnt falls back to the baseline instead of a confident wrong forecast.
``forecast_errors`` (``/forecast/error``, the run summary) is the error of what was sent.

Without frames for ``input_timeout_s`` the state is ``no-input``, sent 4 times a second; the
cleaner and the window restart when frames come back. A missing or refused model gives
``no-model`` and the rest keeps flowing. Model failures at run time are counted and logged once.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zmq
from numpy.typing import NDArray

from inference.cleaning import CleanedFrame, CleanerConfig, OnlineCleaner
from inference.models_live import COMBINE, LoadedModels, load_models
from inference.osc import (
    DEFAULT_LISTEN,
    DEFAULT_OSC,
    DEFAULT_PREFIX,
    DEFAULT_TOP_K,
    MAX_PACKET_BYTES,
    STAGES,
    FrameOutput,
    OscError,
    OscSender,
    RequestListener,
    encode_frame,
    encode_names,
    encode_stats,
    encode_status,
    parse_hostport,
)
from inference.stats import RateMeter, RollingTimings, percentiles_ms
from inference.window import FrameBuffer, model_window
from stream.forecast_gate import ForecastGate, GateConfig
from stream.protocol import PoseFrame
from stream.skeleton import CANONICAL, J
from stream.transport import DEFAULT_ADDRESS, DropCounter, Subscriber, decode_or_count

log = logging.getLogger(__name__)

D = 2
_MAX_DT_S = 1.0
_KEEP_LATENCY = 65_536  # frames whose latencies the run summary covers (the last ones)


@dataclass(frozen=True)
class ServiceConfig:
    """Settings of the inference process (the ``istrings infer`` options).

    Attributes:
        sub: ZeroMQ address of the capture's publisher.
        osc: OSC targets ``HOST:PORT`` (every packet goes to each).
        listen: ``HOST:PORT`` where requests (``/istrings/names``) are received; ``""`` for none.
        prefix: OSC address prefix.
        models_dir: folder of ``nri.onnx``, ``stga.onnx``, ``mkff.onnx`` (None: the bundled ones).
        device: ONNX Runtime device: ``auto``, ``cuda``, ``tensorrt`` or ``cpu``.
        combine: how the two directions of a pair combine (``max``, ``noisy-or``, ``forward``).
        top_k: strings in ``/edges/top``.
        edge_tau_s: time constant of the strength EMA, seconds (0: no smoothing).
        input_timeout_s: seconds without a frame before the state is ``no-input``.
        idle_status_hz: how often ``no-input`` is sent.
        stats_every_s: how often ``/stats`` is sent.
        log_every_s: how often a timing line is logged (INFO).
        max_packet: largest OSC packet, bytes.
        smoothing: the cleaner's filter when no refiner is loaded (``one_euro``, ``dct``, ``none``).
        nri_interval_s: least time between two NRI runs (capture clock); ``None``: one frame period of
            the model (``1 / fps``, the spacing of its window), 0: every frame. Between runs the EMA
            keeps moving towards the last output.
        stga_interval_s: least time between two STGA-Net runs (capture clock); ``None``: one frame
            period of the model, 0: every frame. Between runs the last forecast is sent again.
        background_models: above a model's frame rate, run the NRI and STGA-Net on a worker
            thread instead of inside the frame (each result is used from the next frame on);
            at or below it they run inside the frame.
        gate_tau_s: forgetting time (s) of the forecast gate (:mod:`stream.forecast_gate`), which
            blends STGA-Net with the better simple baseline by how each did over the recent past;
            ``None``: no gate, the model's forecasts are sent as they are.
    """

    sub: str = DEFAULT_ADDRESS
    osc: tuple[str, ...] = (DEFAULT_OSC,)
    listen: str = DEFAULT_LISTEN
    prefix: str = DEFAULT_PREFIX
    models_dir: Path | None = None
    device: str = "auto"
    combine: str = "max"
    top_k: int = DEFAULT_TOP_K
    edge_tau_s: float = 0.25
    input_timeout_s: float = 0.5
    idle_status_hz: float = 4.0
    stats_every_s: float = 1.0
    log_every_s: float = 10.0
    max_packet: int = MAX_PACKET_BYTES
    smoothing: str = "one_euro"
    nri_interval_s: float | None = None
    stga_interval_s: float | None = None
    background_models: bool = False
    gate_tau_s: float | None = 3.0

    def __post_init__(self) -> None:
        if not self.prefix.startswith("/") or self.prefix.endswith("/"):
            raise OscError(f"the OSC prefix must start with '/' and not end with one, got {self.prefix!r}")
        if self.combine not in COMBINE:
            raise OscError(f"--combine must be one of {', '.join(COMBINE)}, got {self.combine!r}")
        if self.top_k < 0 or self.top_k > J * J:
            raise OscError(f"--top-k must be in 0..{J * J}, got {self.top_k}")
        if self.edge_tau_s < 0 or not self.input_timeout_s > 0 or not self.idle_status_hz > 0:
            raise OscError("edge_tau_s must be >= 0, input_timeout_s and idle_status_hz > 0")
        if self.gate_tau_s is not None and not (math.isfinite(self.gate_tau_s) and self.gate_tau_s > 0):
            raise OscError(f"gate_tau_s must be a positive number of seconds (None: no gate), got {self.gate_tau_s}")
        if not 200 <= self.max_packet <= 65507:
            raise OscError(f"max_packet must be in 200..65507 bytes, got {self.max_packet}")
        for target in self.osc:
            parse_hostport(target)
        if self.listen:
            parse_hostport(self.listen)


@dataclass
class _Counters:
    frames: int = 0
    received: int = 0
    skipped: int = 0
    model_errors: dict[str, int] = field(default_factory=dict)
    states: dict[str, int] = field(default_factory=dict)
    names_requests: int = 0
    input_losses: int = 0


class InferenceService:
    """The per-frame pipeline (:meth:`process`) and the process loop (:meth:`run`).

    Args:
        config: settings.
        models: loaded models (default: :func:`load_models` from ``config.models_dir``).
    """

    def __init__(self, config: ServiceConfig, models: LoadedModels | None = None) -> None:
        self.config = config
        self.models = models if models is not None else load_models(
            config.models_dir, device=config.device, combine=config.combine)
        self.timings = RollingTimings(STAGES)
        self.rate = RateMeter()
        self.drops = DropCounter()
        self.counters = _Counters()
        forecast = self.models.forecast
        self.horizons_ms: tuple[int, ...] = forecast.horizons_ms if forecast else ()
        self.gate = (ForecastGate(forecast.lead_s, GateConfig(tau_s=config.gate_tau_s or 3.0))
                     if forecast is not None else None)
        # the run summary's figures: the last _KEEP_LATENCY frames, preallocated (constant memory)
        self.run_timings = RollingTimings(("latency", "added", "added_cpu"), size=_KEEP_LATENCY)
        self._worker: ThreadPoolExecutor | None = None  # started on the first background run
        self._pending: dict[str, tuple[Future[Any], tuple[Any, ...]]] = {}  # kind → (run, its context)
        self._reset_pipeline()

    # ----------------------------------------------------------------------------- per frame

    def _reset_pipeline(self) -> None:
        """A fresh cleaner, window and strengths (at start and when input comes back)."""
        refiner = self.models.refiner
        cfg = CleanerConfig(smoothing=self.config.smoothing,  # type: ignore[arg-type]
                            refiner_window=refiner.frames if refiner is not None else 16,
                            refiner_fps=refiner.fps if refiner is not None else None)
        self.cleaner = OnlineCleaner(cfg, refiner=refiner)
        self.buffer = FrameBuffer()
        self.strengths = np.zeros((J, J), dtype=np.float32)  # (J, J) smoothed
        self._raw: NDArray[np.float32] | None = None  # (J, J) the last NRI output
        self._nri_t = -math.inf  # capture time of the last NRI run, s
        self._forecast: dict[int, NDArray[np.float32]] = {}  # the last forecasts sent, by horizon ms
        self._stga_t = -math.inf  # capture time of the last STGA-Net run, s
        self._pending.clear()  # a background run still going belongs to the old input: ignored
        self._last_t: float | None = None
        self._warm = False
        if self.gate is not None:
            self.gate.reset()  # its frames stop here; what it learnt about the model stays

    def _model_failed(self, kind: str, exc: BaseException | None = None) -> None:
        n = self.counters.model_errors.get(kind, 0)
        if n == 0:
            log.error("the %s model failed on a frame; it keeps being tried, failures are counted", kind,
                      exc_info=exc if exc is not None else True)
        self.counters.model_errors[kind] = n + 1

    def _background(self, t_s: float, interval: float) -> bool:
        """Whether a model run due now goes to the worker thread: frames come faster than the model's."""
        return self.config.background_models and self._last_t is not None and t_s - self._last_t < interval

    def _submit(self, kind: str, fn: Any, arg: Any, context: tuple[Any, ...]) -> None:
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="istrings-models")
        self._pending[kind] = (self._worker.submit(fn, arg), context)

    def _harvest(self, kind: str) -> tuple[Any, tuple[Any, ...]] | None:
        """The finished background run of ``kind`` as ``(result, context)``, or None (none, or
        still running). A failed run gives ``(None, context)`` and is counted and logged once,
        like one inside a frame."""
        entry = self._pending.get(kind)
        if entry is None or not entry[0].done():
            return None
        del self._pending[kind]
        future, context = entry
        exc = future.exception()
        if exc is not None:
            self._model_failed(kind, exc)
            return None, context
        return future.result(), context

    def close(self) -> None:
        """Stop the worker thread (after the run in progress, if any)."""
        if self._worker is not None:
            self._worker.shutdown(wait=True, cancel_futures=True)
            self._worker = None
        self._pending.clear()

    def _checked_strengths(self, new: NDArray[np.float32]) -> NDArray[np.float32]:
        bad = int(np.size(new) - np.count_nonzero(np.isfinite(new)))
        if bad:  # one NaN would stay in the EMA for good
            raise FloatingPointError(f"the NRI model returned {bad} non-finite strengths; dropped")
        return new

    def _run_strings(self, cleaned: CleanedFrame) -> None:
        """Update :attr:`strengths` (EMA) from the NRI model, or fade them out."""
        model = self.models.strings
        raw: NDArray[np.float32] | None = None
        if model is not None:
            span = model.spec.span_s
            self._warm = self.buffer.covers(span)
            done = self._harvest("nri")
            if done is not None and done[0] is None:
                self._raw = None  # the run failed: nothing usable, the strings fade out
            elif done is not None:
                try:
                    self._raw = self._checked_strengths(done[0])
                except FloatingPointError as exc:
                    self._model_failed("nri", exc)
                    self._raw = None
            if self._warm and self.buffer.both_present_over(span):
                interval = self.config.nri_interval_s
                interval = 1.0 / model.spec.fps if interval is None else interval
                due = self._raw is None or cleaned.t_s - self._nri_t >= interval - 1e-6
                if due and self._background(cleaned.t_s, interval):
                    if "nri" not in self._pending:
                        self._submit("nri", model.strengths, model_window(self.buffer, model.spec), ())
                        self._nri_t = cleaned.t_s
                elif due and "nri" not in self._pending:
                    try:
                        self._raw = self._checked_strengths(model.strengths(model_window(self.buffer, model.spec)))
                        self._nri_t = cleaned.t_s
                    except Exception as exc:  # an ONNX Runtime failure must not stop the live process
                        self._model_failed("nri", exc)
                        self._raw = None  # nothing usable: the strings fade out
                raw = self._raw  # ran less than a model frame ago (its window has barely moved), or just now
            else:
                self._raw = None
        dt = 0.0 if self._last_t is None else min(max(cleaned.t_s - self._last_t, 0.0), _MAX_DT_S)
        tau = self.config.edge_tau_s
        alpha = 1.0 if tau == 0 else (1.0 - math.exp(-dt / tau) if self._last_t is not None else 1.0)
        target = raw if raw is not None else np.zeros_like(self.strengths)
        self.strengths += np.float32(alpha) * (target - self.strengths)

    def _run_forecast(self, cleaned: CleanedFrame, both: bool) -> dict[int, NDArray[np.float32]]:
        model, gate = self.models.forecast, self.gate
        if model is None or gate is None:
            return {}
        gate.observe(cleaned.t_s, cleaned.joints, both)
        done = self._harvest("stga")
        if done is not None and done[0] is None:
            self._forecast = {}  # the run failed: no forecast rather than an ever older one
        elif done is not None:  # a background run finished: its forecast, as of the frame it started on
            self._publish_forecast(done[0], *done[1])
        if not cleaned.present.any():
            self._forecast = {}
            return {}
        interval = self.config.stga_interval_s
        interval = 1.0 / model.spec.fps if interval is None else interval
        if (self._forecast or "stga" in self._pending) and cleaned.t_s - self._stga_t < interval - 1e-6:
            return dict(self._forecast)  # made less than a model frame ago: its window has barely moved
        window = self.buffer.resampled(model.spec.frames, model.spec.fps)  # (T, D, J, 3) m
        context = (cleaned.t_s, window[-1], (window[-1] - window[-2]) * model.spec.fps)
        self._stga_t = cleaned.t_s
        if self._background(cleaned.t_s, interval):
            if "stga" not in self._pending:
                self._submit("stga", model, window, context)
            return dict(self._forecast)
        if "stga" in self._pending:
            return dict(self._forecast)
        try:
            fc = model(window)  # (H, D, J, 3) m
        except Exception as exc:
            self._model_failed("stga", exc)
            self._forecast = {}
            return {}
        self._publish_forecast(fc, *context)
        return dict(self._forecast)

    def _publish_forecast(self, fc: NDArray[np.float32], t_s: float, last: NDArray[np.float32],
                          velocity: NDArray[np.float32]) -> None:
        """Gate the model's forecasts ``(H, D, J, 3)`` m made at ``t_s`` and keep them as the ones to send."""
        model, gate = self.models.forecast, self.gate
        assert model is not None and gate is not None
        gated = gate.forecast(t_s, fc, last, velocity)
        if self.config.gate_tau_s is not None:
            fc = gated
        self._forecast = {h: fc[k] for k, h in enumerate(model.horizons_ms)}

    def forecast_errors(self) -> list[tuple[int, float, int]]:
        """``(horizon ms, mean per-joint error m, forecasts scored)`` of what was sent so far:
        the gated forecasts, or the model's own without a gate (none without a forecaster)."""
        if self.gate is None:
            return []
        errs = self.gate.errors()
        sent = errs["gated" if self.config.gate_tau_s is not None else "model"]
        return [(h, e, int(n)) for h, e, n in zip(self.horizons_ms, sent, errs["resolved"], strict=True)]

    def status(self, present: NDArray[np.bool_]) -> tuple[str, str]:
        """``(state, detail)`` of a frame with input (see :data:`inference.osc.STATES`)."""
        missing = self.models.missing
        if missing:
            return "no-model", "; ".join(f"{k}: {self.models.problems.get(k, 'not loaded')}" for k in missing)
        n = int(np.count_nonzero(present))
        if n == 0:
            return "no-dancers", "nobody tracked"
        if n == 1:
            return "one-dancer", f"dancer {int(np.flatnonzero(present)[0])} only"
        return "ok", "" if self._warm else "warming up"

    def process(self, frame: PoseFrame, skipped: int = 0) -> FrameOutput:
        """Clean, window, strings and forecasts of one frame; stage times go to :attr:`timings`."""
        clock = time.perf_counter_ns
        t0 = clock()
        cleaned = self.cleaner.step(frame)
        both = bool(cleaned.present.all())
        t1 = clock()
        self.buffer.push(cleaned.t_s, cleaned.joints, both)
        t2 = clock()
        self._run_strings(cleaned)
        t3 = clock()
        forecasts = self._run_forecast(cleaned, both)
        t4 = clock()
        self._last_t = cleaned.t_s
        state, detail = self.status(cleaned.present)
        self.timings.add("clean", t1 - t0)
        self.timings.add("window", t2 - t1)
        self.timings.add("nri", t3 - t2)
        self.timings.add("stga", t4 - t3)
        return FrameOutput(
            seq=frame.seq, latency_ms=(time.monotonic_ns() - frame.t_capture_ns) / 1e6, present=cleaned.present,
            skipped=skipped, status=state, detail=detail, joints=cleaned.joints, strengths=self.strengths.copy(),
            forecasts=forecasts)

    def encode(self, out: FrameOutput) -> list[bytes]:
        return encode_frame(out, self.config.prefix, self.config.top_k, self.config.max_packet)

    # ----------------------------------------------------------------------------- the process

    def names_packet(self) -> bytes:
        return encode_names(CANONICAL.joint_names, self.horizons_ms, self.config.prefix)

    def _answer(self, listener: RequestListener, osc: OscSender) -> None:
        for address, args, sender in listener.poll():
            if address != self.config.prefix + "/names":
                continue
            port = int(args[0]) if args and isinstance(args[0], int) and 0 < int(args[0]) < 65536 else sender[1]
            osc.send_to(self.names_packet(), (sender[0], port))
            self.counters.names_requests += 1

    def _count_state(self, state: str) -> None:
        self.counters.states[state] = self.counters.states.get(state, 0) + 1

    def run(self, stop: threading.Event | None = None, *, max_frames: int | None = None,
            duration_s: float | None = None) -> dict[str, Any]:
        """Run until ``stop`` is set, ``max_frames`` frames were sent, or ``duration_s`` passed.

        Returns:
            the run summary (:meth:`summary`).
        """
        stop = stop or threading.Event()
        cfg = self.config
        targets = [parse_hostport(t) for t in cfg.osc]
        listen = parse_hostport(cfg.listen) if cfg.listen else None
        start = time.monotonic()
        deadline = start + duration_s if duration_s is not None else math.inf
        with Subscriber(cfg.sub) as sub, OscSender(targets) as osc:
            listener = RequestListener(*listen).__enter__() if listen else None
            try:
                self.listen_port = listener.port if listener is not None else None
                poller = zmq.Poller()
                poller.register(sub.socket, zmq.POLLIN)
                if listener is not None:
                    poller.register(listener.fileno(), zmq.POLLIN)
                osc.send([self.names_packet()])
                log.info("inference: %s → OSC %s%s; models: %s", cfg.sub, ", ".join(cfg.osc),
                         f", requests on {cfg.listen}" if listener else "", self.models.device)
                self._loop(stop, sub, osc, listener, poller, max_frames, deadline)
            finally:
                self.close()
                if listener is not None:
                    listener.__exit__(None, None, None)
                self.elapsed_s = time.monotonic() - start
                self.osc_stats = {"packets": osc.packets, "bytes": osc.bytes, "errors": dict(osc.errors)}
                self.received = sub.received
        return self.summary()

    def _loop(self, stop: threading.Event, sub: Subscriber, osc: OscSender, listener: RequestListener | None,
              poller: zmq.Poller, max_frames: int | None, deadline: float) -> None:
        cfg = self.config
        idle_period = 1.0 / cfg.idle_status_hz
        last_input = time.monotonic()
        next_idle = last_input + cfg.input_timeout_s
        next_stats = last_input + cfg.stats_every_s
        next_log = last_input + cfg.log_every_s
        idle = False
        pending_skipped = 0
        seq_idle = 0
        while not stop.is_set() and time.monotonic() < deadline:
            if max_frames is not None and self.counters.frames >= max_frames:
                break
            now = time.monotonic()
            wait_s = max(0.0, min(next_idle, next_stats, now + 0.05) - now)
            events = dict(poller.poll(int(wait_s * 1000) + 1))
            if listener is not None and listener.fileno() in events:
                self._answer(listener, osc)
            ns = time.perf_counter_ns
            t_take = ns()
            c_take = time.thread_time_ns()
            latest = sub.recv_latest(0)
            now = time.monotonic()
            if latest is None:
                if now - last_input >= cfg.input_timeout_s and now >= next_idle:
                    if not idle:
                        log.warning("no input for %.1f s from %s: sending status no-input", now - last_input, cfg.sub)
                        self.counters.input_losses += 1
                        idle = True
                    osc.send([encode_status(seq_idle, "no-input",
                                            f"no frame for {now - last_input:.1f} s from {cfg.sub}", cfg.prefix)])
                    self._count_state("no-input")
                    next_idle = now + idle_period
            else:
                self.counters.received += 1 + latest.skipped
                self.counters.skipped += latest.skipped
                frame = decode_or_count(latest.message, self.drops)
                if frame is None:
                    pending_skipped += 1 + latest.skipped
                else:
                    if idle:
                        log.warning("input is back after %.1f s", now - last_input)
                        self._reset_pipeline()
                        idle = False
                    last_input = now
                    next_idle = now + cfg.input_timeout_s
                    t_dec = ns()
                    skipped = pending_skipped + latest.skipped
                    pending_skipped = 0
                    out = self.process(frame, skipped)
                    t_enc = ns()
                    osc.send(self.encode(out))
                    t_end = ns()
                    self.timings.add("receive", t_dec - t_take)
                    self.timings.add("send", t_end - t_enc)
                    self.timings.add("total", t_end - t_take)
                    self.counters.frames += 1
                    seq_idle = frame.seq
                    self._count_state(out.status)
                    self.rate.tick(now)
                    self.run_timings.add("latency", int(out.latency_ms * 1e6))
                    self.run_timings.add("added", t_end - t_take)
                    self.run_timings.add("added_cpu", time.thread_time_ns() - c_take)  # robust to a busy machine
            if now >= next_stats:
                osc.send([encode_stats(self.rate.rate(now), self.counters.skipped, self.drops.total,
                                       self.timings.quantiles_ms(), self.forecast_errors(), cfg.prefix)])
                next_stats = now + cfg.stats_every_s
            if now >= next_log:
                log.info("infer: %.1f frames/s, %d skipped, %s dropped; %s", self.rate.rate(now),
                         self.counters.skipped, self.drops.summary(), self.timings.line())
                next_log = now + cfg.log_every_s

    def _gate_summary(self) -> dict[str, Any] | None:
        """The gate's state and every forecaster's error so far (m), per horizon."""
        if self.gate is None:
            return None
        errs = self.gate.errors()
        return {"tau_s": self.config.gate_tau_s, "weights": [round(w, 4) for w in self.gate.weights()],
                "baselines": self.gate.baselines(), "nonfinite_forecasts": self.gate.nonfinite,
                **{k: [None if math.isnan(e) else round(e, 5) for e in v] for k, v in errs.items()}}

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures of the run (counts, stage timings, latencies, forecast errors)."""
        elapsed = getattr(self, "elapsed_s", 0.0)
        return {
            "frames": self.counters.frames,
            "received": self.counters.received,
            "skipped": self.counters.skipped,
            "dropped": self.drops.total,
            "dropped_by_kind": dict(self.drops.by_kind),
            "elapsed_s": round(elapsed, 3),
            "fps": round(self.counters.frames / elapsed, 2) if elapsed > 0 else 0.0,
            "latency_ms": percentiles_ms(self.run_timings.samples_ms("latency") * 1e6),
            "added_ms": percentiles_ms(self.run_timings.samples_ms("added") * 1e6),
            "added_cpu_ms": {**percentiles_ms(cpu := self.run_timings.samples_ms("added_cpu") * 1e6),
                             "mean": round(float(cpu.mean()) / 1e6 if cpu.size else 0.0, 4)},
            "stages_ms": self.timings.summary(),
            "states": dict(self.counters.states),
            "input_losses": self.counters.input_losses,
            "names_requests": self.counters.names_requests,
            "model_errors": dict(self.counters.model_errors),
            "models": {k: self.models.problems.get(k, "loaded") for k in ("nri", "stga", "mkff")},
            "device": self.models.device,
            "forecast_error_m": {str(h): (None if math.isnan(e) else round(e, 5))
                                 for h, e, _ in self.forecast_errors()},
            "forecast_gate": self._gate_summary(),
            "osc": getattr(self, "osc_stats", {}),
            "cleaner": self.cleaner.counters(),
        }


def run_service(config: ServiceConfig, stop: threading.Event | None = None, *,
                max_frames: int | None = None, duration_s: float | None = None) -> dict[str, Any]:
    """Load the models and run the service (see :class:`InferenceService`)."""
    return InferenceService(config).run(stop, max_frames=max_frames, duration_s=duration_s)


def osc_targets(values: Sequence[str]) -> tuple[str, ...]:
    """Validated ``--osc`` values (at least the default)."""
    out = tuple(values) or (DEFAULT_OSC,)
    for v in out:
        parse_hostport(v)
    return out
