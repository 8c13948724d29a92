"""``istrings demo``: the bundled salsa duet through the live pipeline, watched from a terminal dashboard.

The demo is a patch like any other: it runs ``istrings live`` (capture replaying
``stream/data/demo_salsa.isrec`` in a loop, and inference) as child processes, asks inference to
send its OSC stream to this process too (besides any ``--osc`` targets), and shows what arrives:

* frame rate, end-to-end latency, and the p50/p99 of every stage (``/istrings/stats``);
* the strongest strings by joint name (``/istrings/edges/top``, names from ``/istrings/names``);
* the forecast error so far per horizon (``/istrings/forecast/error``: each forecast compared with
  the frame that arrived at its horizon);
* the status (``ok``, ``no-model`` …) and its reason.

The dashboard is a ``rich`` live display on a terminal; without one (or ``--no-dashboard``) the
demo runs the same and prints only its final summary. ``--preview FILE.mp4`` also writes every
received frame as video (:mod:`inference.preview`).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import tempfile
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console, Group
from rich.table import Table

from inference.osc import STAGES, FrameAssembler, OscError, ReceivedFrame, decode_packet
from stream.errors import IStringsError
from stream.skeleton import CANONICAL, J

log = logging.getLogger(__name__)

D = 2


class DemoError(IStringsError, RuntimeError):
    """The demo cannot run (missing recording, no frame ever arrived)."""


@dataclass
class MonitorState:
    """What the demo has received so far."""

    frames: int = 0
    last: ReceivedFrame | None = None
    names: tuple[str, ...] = CANONICAL.joint_names
    horizons: tuple[int, ...] = ()
    stats: tuple[Any, ...] = ()
    errors: tuple[Any, ...] = ()
    status: tuple[str, str] = ("starting", "waiting for the first frame")
    states: dict[str, int] = field(default_factory=dict)
    latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=600))
    first_t: float | None = None
    last_t: float | None = None
    incomplete: int = 0

    def top(self, prefix: str = "/istrings") -> list[tuple[str, str, float]]:
        """The strongest strings of the last frame by joint name: ``(dancer-0 joint, dancer-1 joint, strength)``."""
        if self.last is None:
            return []
        vals = self.last.messages.get(prefix + "/edges/top", ())
        return [(self.names[int(vals[k])], self.names[int(vals[k + 1])], float(vals[k + 2]))
                for k in range(0, len(vals) - 2, 3)]

    def stages_ms(self) -> dict[str, tuple[float, float]]:
        """``stage → (p50, p99)`` from the last ``/stats``."""
        if len(self.stats) < 3 + 2 * len(STAGES):
            return {}
        return {s: (float(self.stats[3 + 2 * k]), float(self.stats[4 + 2 * k])) for k, s in enumerate(STAGES)}

    def forecast_errors(self) -> list[tuple[int, float, int]]:
        e = self.errors
        return [(int(e[k]), float(e[k + 1]), int(e[k + 2])) for k in range(0, len(e) - 2, 3)]


class OscMonitor:
    """A UDP socket receiving the service's OSC stream and keeping :class:`MonitorState`.

    Args:
        port: UDP port on loopback (0: a free one, see :attr:`port`).
    """

    def __init__(self, port: int = 0, prefix: str = "/istrings") -> None:
        self.prefix = prefix
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind(("127.0.0.1", port))
        self.port = int(self.sock.getsockname()[1])
        self.state = MonitorState()
        self.assembler = FrameAssembler(prefix)
        self.bad = 0

    def close(self) -> None:
        self.sock.close()

    def poll(self, timeout_s: float) -> list[ReceivedFrame]:
        """Read every packet that arrives within ``timeout_s``; the frames completed."""
        self.sock.settimeout(timeout_s)
        out: list[ReceivedFrame] = []
        p = self.prefix
        while True:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return out
            except OSError:
                return out
            self.sock.settimeout(0.0)
            try:
                frame = self.assembler.feed(decode_packet(data))
            except OscError:
                self.bad += 1
                continue
            st = self.state
            other = self.assembler.other
            if p + "/names" in other:
                st.names = tuple(str(n) for n in other.pop(p + "/names"))
            if p + "/horizons" in other:
                st.horizons = tuple(int(h) for h in other.pop(p + "/horizons"))
            if p + "/stats" in other:
                st.stats = other.pop(p + "/stats")
            if p + "/forecast/error" in other:
                st.errors = other.pop(p + "/forecast/error")
            if p + "/status" in other:
                state = other.pop(p + "/status")
                st.status = (str(state[0]), str(state[1]))
                st.states[st.status[0]] = st.states.get(st.status[0], 0) + 1
            if frame is not None:
                now = time.monotonic()
                st.frames += 1
                st.last = frame
                st.first_t = st.first_t or now
                st.last_t = now
                fr = frame.messages.get(p + "/frame")
                if fr:
                    st.latency_ms.append(float(fr[1]))
                s = frame.messages.get(p + "/status", ("?", ""))
                st.status = (str(s[0]), str(s[1]))
                st.states[st.status[0]] = st.states.get(st.status[0], 0) + 1
                st.incomplete = self.assembler.incomplete
                out.append(frame)

    def arrays(self, frame: ReceivedFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``joints (D, J, 3)`` m, ``strengths (J, J)``, ``present (D,)`` of a received frame."""
        p = self.prefix
        joints = np.stack([frame.floats(f"{p}/dancer/{d}/joints").reshape(J, 3) for d in range(D)])
        strengths = np.stack([frame.floats(f"{p}/edges/{i}") for i in range(J)])
        present = np.asarray(frame.messages.get(p + "/presence", (1, 1)), dtype=bool)
        return joints, strengths, present


def render(state: MonitorState, elapsed_s: float) -> Group:
    """The dashboard: status and rates, stage timings, strongest strings, forecast error."""
    head = Table.grid(padding=(0, 2))
    lat = np.asarray(state.latency_ms)
    fps = float(state.stats[0]) if state.stats else 0.0
    head.add_row("[b]Invisible Strings — demo[/b]", f"{elapsed_s:6.1f} s", f"status [b]{state.status[0]}[/b]",
                 state.status[1][:70])
    head.add_row(f"frames {state.frames}", f"{fps:.1f} fps",
                 f"latency p50 {np.median(lat):.2f} ms" if lat.size else "latency –",
                 f"skipped {state.stats[1] if state.stats else 0}, dropped {state.stats[2] if state.stats else 0}")
    stages = Table(title="stages (ms)", show_edge=False)
    for col in ("stage", "p50", "p99"):
        stages.add_column(col, justify="right" if col != "stage" else "left")
    for s, (p50, p99) in state.stages_ms().items():
        stages.add_row(s, f"{p50:.3f}", f"{p99:.3f}")
    strings = Table(title="strongest strings", show_edge=False)
    for col in ("dancer 0", "dancer 1", "strength"):
        strings.add_column(col)
    for a, b, strength in state.top():
        strings.add_row(a, b, f"{strength:.2f} " + "█" * round(10 * strength))
    fc = Table(title="forecast error so far", show_edge=False)
    for col in ("horizon", "mean joint error", "scored"):
        fc.add_column(col, justify="right")
    errs = state.forecast_errors()
    for h, e, n in errs:
        fc.add_row(f"{h} ms", "–" if not np.isfinite(e) else f"{100 * e:.1f} cm", str(n))
    if not errs:
        fc.add_row("–", "no forecaster loaded" if not state.horizons else "waiting", "")
    body = Table.grid(padding=(0, 4))
    body.add_row(stages, strings, fc)
    return Group(head, body)


def run_demo(
    stop: threading.Event,
    *,
    duration_s: float | None = None,
    osc: Sequence[str] = (),
    preview: Path | None = None,
    models: Path | None = None,
    device: str = "auto",
    recording: Path | None = None,
    dashboard: bool = True,
) -> dict[str, Any]:
    """Run the demo until ``stop`` or ``duration_s``; returns the final figures (and a ``text`` line)."""
    from inference.bench import DEFAULT_RECORDING, free_port
    from inference.live import live_children, supervise
    from inference.preview import PreviewWriter

    rec = Path(recording or DEFAULT_RECORDING)
    if not rec.is_file():
        raise DemoError(f"the demo recording {rec} does not exist (reinstall, or build it with "
                        "tools/make_demo_recording.py)")
    monitor = OscMonitor(0)
    inner = threading.Event()
    console = Console(stderr=True)
    live_display = dashboard and console.is_terminal
    sup_result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        log_path = Path(tmp) / "children.log"
        log_file = stack.enter_context(open(log_path, "w"))
        pub = f"tcp://127.0.0.1:{free_port()}"
        children = live_children(f"replay:{rec}", pub=pub, osc=[*osc, f"127.0.0.1:{monitor.port}"], models=models,
                                 device=device, listen="127.0.0.1:0", loop=True, verbose=True)

        def supervisor() -> None:
            sup_result.update(supervise(children, inner, output=log_file))

        thread = threading.Thread(target=supervisor, name="live-supervisor", daemon=True)
        thread.start()
        writer = stack.enter_context(PreviewWriter(preview, fps=30.0)) if preview is not None else None
        t0 = time.monotonic()
        display: Any = None
        if live_display:
            from rich.live import Live

            display = stack.enter_context(Live(render(monitor.state, 0.0), console=console, refresh_per_second=4,
                                               transient=False))
        next_draw = t0
        try:
            while not stop.is_set() and thread.is_alive():
                now = time.monotonic()
                if duration_s is not None and now - t0 >= duration_s:
                    break
                for frame in monitor.poll(0.05):
                    if writer is not None:
                        joints, strengths, present = monitor.arrays(frame)
                        writer.add(joints, strengths, present, label=f"{monitor.state.status[0]}  seq {frame.seq}")
                if display is not None and now >= next_draw:
                    display.update(render(monitor.state, now - t0))
                    next_draw = now + 0.25
        finally:
            inner.set()
            thread.join(30.0)
            monitor.close()
            log_file.flush()
            child_log = log_path.read_text(errors="replace")
    st = monitor.state
    elapsed = time.monotonic() - t0
    lat = np.asarray(st.latency_ms)
    span = (st.last_t - st.first_t) if st.first_t is not None and st.last_t is not None else 0.0
    result: dict[str, Any] = {
        "elapsed_s": round(elapsed, 2), "frames_received": st.frames,
        "fps": round((st.frames - 1) / span, 2) if span > 0 else 0.0,
        "latency_ms_p50": round(float(np.median(lat)), 3) if lat.size else None,
        "status": st.status[0], "status_detail": st.status[1], "states": st.states,
        "top_strings": [{"dancer0": a, "dancer1": b, "strength": round(s, 4)} for a, b, s in st.top()],
        "stages_ms": {k: {"p50": round(v[0], 4), "p99": round(v[1], 4)} for k, v in st.stages_ms().items()},
        "forecast_error_m": {str(h): (round(e, 5) if np.isfinite(e) else None) for h, e, _ in st.forecast_errors()},
        "preview": str(preview) if preview is not None else None,
        "preview_frames": writer.frames if writer is not None else 0,
        "incomplete_frames": st.incomplete, "supervisor": sup_result,
    }
    if st.frames == 0:
        log.error("no frame arrived; the children's log:\n%s", child_log[-4000:])
    top = ", ".join(f"{a}↔{b} {s:.2f}" for a, b, s in st.top()[:3]) or "none"
    result["text"] = (f"demo: {st.frames} frames in {elapsed:.1f} s ({result['fps']} fps), status {st.status[0]}"
                      f"{' (' + st.status[1] + ')' if st.status[1] else ''}; strongest strings: {top}"
                      + (f"; preview: {preview} ({result['preview_frames']} frames)" if preview else ""))
    return result
