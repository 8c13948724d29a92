"""Benchmarks of the live pipeline with real processes on loopback; each returns one JSON-ready dict.

* :func:`bench_pipeline` — ``istrings capture --source replay:REC`` (ZeroMQ) → ``istrings infer``
  → OSC → a UDP listener in this process: end-to-end latency (capture → OSC send, from
  ``/istrings/frame``), the latency ``infer`` adds and its stages, frames/s, frames skipped.
* :func:`bench_soak` — the same at a fixed rate for minutes: RSS of both processes at the start
  and the end, latency p99 per minute, frames lost on the way.
* :func:`bench_service` — the same service in this process, without sockets: what each frame
  costs to decode, process and encode when nothing else runs, to set against the pipeline's
  figures (the difference is transport and two processes sharing the cores).
* :func:`bench_fuzz` — Hypothesis-generated bad messages (random bytes, truncated frames, wrong
  versions, bit flips, wrong magic) interleaved with valid frames at a running ``istrings infer``:
  every one is counted and dropped, the process keeps running and keeps sending frames.

The listener parses only the first two messages of each bundle (``/part``, ``/frame``): it must
not compete with the processes it measures for the two cores of a small machine. Machine load
(``os.getloadavg``) is reported at the start and the end: these figures are wall-clock times.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

import stream
from inference.osc import OscError, decode_message
from stream.errors import IStringsError

DEFAULT_RECORDING = Path(stream.__file__).resolve().parent / "data" / "demo_salsa.isrec"
_START_TIMEOUT_S = 60.0


class BenchError(IStringsError, RuntimeError):
    """A benchmark's processes did not start or did not deliver."""


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A free loopback port (TCP by default)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def retimed_recording(src: Path, fps: float, dst: Path) -> Path:
    """A copy of ``src`` with its records ``1/fps`` apart (payloads unchanged)."""
    from stream.recording import RecordingWriter, read_recording

    rec = read_recording(src, strict=False)
    if not rec.records:
        raise BenchError(f"{src} holds no records")
    period = round(1e9 / fps)
    with RecordingWriter(dst, source=str(src), metadata={"retimed_fps": fps}, overwrite=True) as w:
        for i, r in enumerate(rec.records):
            w.write(r.payload, i * period)
    return dst


def istrings(*args: str) -> list[str]:
    return [sys.executable, "-m", "stream.cli", *args]


@dataclass
class Collector:
    """A UDP listener thread recording, per frame, ``(receive time ns, seq, latency ms)`` of ``/istrings/frame``."""

    port: int
    prefix: str = "/istrings"
    packets: int = 0
    bad: int = 0
    frames: list[tuple[int, int, float]] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    max_packet: int = 0

    def __post_init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self._sock.bind(("127.0.0.1", self.port))
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Collector:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self._sock.close()

    def _run(self) -> None:
        part, frame, status = self.prefix + "/part", self.prefix + "/frame", self.prefix + "/status"
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            t = time.monotonic_ns()
            self.packets += 1
            self.max_packet = max(self.max_packet, len(data))
            try:
                if not data.startswith(b"#bundle"):
                    continue
                (addr, _), pos = _element(data, 16)
                if addr != part:
                    continue
                (addr2, args2), pos = _element(data, pos)
                if addr2 == frame:
                    self.frames.append((t, int(args2[0]), float(args2[1])))
                    (addr3, args3), _ = _element(data, pos)
                    if addr3 == status:
                        self.statuses[args3[0]] = self.statuses.get(args3[0], 0) + 1
                elif addr2 == status:
                    self.statuses[args2[0]] = self.statuses.get(args2[0], 0) + 1
            except (OscError, struct.error, IndexError):
                self.bad += 1


@contextlib.contextmanager
def _process(args: list[str], log: IO[Any], stdout: IO[Any] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(args, stdout=stdout or log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_for_text(path: Path, text: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise BenchError(f"{' '.join(map(str, proc.args))} did not start (no {text!r}); its log:\n"  # type: ignore[arg-type]
                     + path.read_text(errors="replace")[-3000:])


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process, MB (None when unknown)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _infer_args(sub: str, osc_port: int, models: Path | None, device: str, summary: Path,
                nri_interval_s: float | None = None) -> list[str]:
    args = ["-v", "infer", "--sub", sub, "--osc", f"127.0.0.1:{osc_port}", "--listen", "", "--device", device,
            "--summary-json", str(summary), "--log-every-s", "5"]
    if nri_interval_s is not None:
        args += ["--nri-interval-s", str(nri_interval_s)]
    if models is not None:
        args += ["--models", str(models)]
    return istrings(*args)


def _q(x: np.ndarray, q: float) -> float:
    return round(float(np.quantile(x, q)), 3) if x.size else float("nan")


def _closed_loop(
    rec: Path, frames: int, addr_osc: int, tmp: Path, models: Path | None, device: str, nri_interval_s: float | None,
) -> tuple[list[tuple[int, int, float]], list[int], int, dict[str, Any]]:
    """Publish one frame, wait for its ``/istrings/frame``, publish the next: the fastest rate with no backlog.

    Returns ``(frames (t_recv_ns, seq, latency_ms), round trips ns, lost, infer summary)``.
    """
    from stream.protocol import PoseFrame, decode, encode
    from stream.recording import read_recording
    from stream.transport import Publisher

    base = [decode(r.payload) for r in read_recording(rec, strict=False).records]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", addr_osc))
    sock.setblocking(False)  # read only when select() says a bundle is there: no CPU spent polling
    got: list[tuple[int, int, float]] = []
    trips: list[int] = []
    lost = 0
    inf_log = tmp / "infer.log"
    part, frame_addr = "/istrings/part", "/istrings/frame"
    try:
        with Publisher("tcp://127.0.0.1:*", sndhwm=1000) as pub, open(inf_log, "w") as il, \
                _process(_infer_args(pub.address, addr_osc, models, device, tmp / "s.json", nri_interval_s),
                         il) as inf:
            _wait_for_text(inf_log, "inferring", inf, _START_TIMEOUT_S)
            if not pub.wait_for_subscribers(1, 30.0):
                raise BenchError("istrings infer did not subscribe")
            for i in range(frames):
                f = base[i % len(base)]
                t_send = time.monotonic_ns()
                pub.send_raw(encode(PoseFrame(seq=i, t_capture_ns=t_send, layout=f.layout, scores=f.scores,
                                              image=f.image, world=f.world, source_id="bench",
                                              image_size=f.image_size), t_publish_ns=t_send))
                deadline = t_send + 1_000_000_000
                while True:
                    left = (deadline - time.monotonic_ns()) / 1e9
                    if left <= 0 or not select.select([sock], [], [], left)[0]:
                        lost += 1
                        break
                    data = sock.recv(65536)
                    if not data.startswith(b"#bundle"):
                        continue
                    try:
                        (a1, _), pos = _element(data, 16)
                        (a2, args2), _ = _element(data, pos)
                    except (OscError, struct.error):
                        continue
                    if a1 == part and a2 == frame_addr and int(args2[0]) == i:
                        t = time.monotonic_ns()  # the first bundle of the frame (the rest follow at once)
                        got.append((t, i, float(args2[1])))
                        trips.append(t - t_send)
                        break
            time.sleep(0.2)
            inf.send_signal(signal.SIGTERM)
            inf.wait(30.0)
    finally:
        sock.close()
    return got, trips, lost, json.loads((tmp / "s.json").read_text())


def _element(data: bytes, pos: int) -> tuple[tuple[str, tuple[Any, ...]], int]:
    (size,) = struct.unpack_from(">i", data, pos)
    return decode_message(data[pos + 4 : pos + 4 + size]), pos + 4 + size


def bench_pipeline(recording: Path | None = None, *, frames: int = 5000, fps: float = 0.0,
                   models: Path | None = None, device: str = "auto",
                   nri_interval_s: float | None = None, flood: bool = False) -> dict[str, Any]:
    """Replay ``frames`` frames of a recording through ZeroMQ → ``istrings infer`` → OSC → a listener here.

    ``fps`` 0 (as fast as possible): closed loop — this process publishes a frame, waits for its
    ``/istrings/frame``, then publishes the next, so the rate is the fastest the pipeline sustains
    with no backlog and no CPU taken by a producer racing ahead. ``fps`` > 0: the real capture process
    (``istrings capture --source replay:…``) paces the recording at that rate. ``flood``: the
    capture process publishes as fast as it can (``capture --fast``, ``fps`` ignored); inference
    takes the newest frame and skips the rest, while the producer takes a core of its own.
    """
    rec = Path(recording or DEFAULT_RECORDING)
    if not rec.is_file():
        raise BenchError(f"recording {rec} does not exist")
    load_start = _load()
    captured: dict[str, Any] = {}
    closed = fps <= 0 and not flood
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        osc_port = free_port(socket.SOCK_DGRAM)
        if closed:
            got, trips, lost, summary = _closed_loop(rec, frames, osc_port, tmp, models, device, nri_interval_s)
        else:
            src = rec if flood else retimed_recording(rec, fps, tmp / "paced.isrec")
            addr = f"tcp://127.0.0.1:{free_port()}"
            inf_log, cap_log, cap_out = tmp / "infer.log", tmp / "capture.log", tmp / "capture.json"
            cap_args = ["capture", "--source", f"replay:{src}", "--pub", addr, "--no-window", "--loop",
                        "--max-frames", str(frames), "--wait-subscribers", "1", "--json",
                        *(["--fast"] if flood else [])]
            with Collector(osc_port) as col, open(inf_log, "w") as il, open(cap_log, "w") as cl, \
                    open(cap_out, "w") as co, \
                    _process(_infer_args(addr, osc_port, models, device, tmp / "s.json", nri_interval_s), il) as inf:
                _wait_for_text(inf_log, "inferring", inf, _START_TIMEOUT_S)
                with _process(istrings(*cap_args), cl, co) as cap:
                    cap.wait(timeout=120.0 if flood else max(120.0, 2 * frames / fps))
                time.sleep(1.0)  # the last frames reach the listener
                inf.send_signal(signal.SIGTERM)
                inf.wait(30.0)
            summary = json.loads((tmp / "s.json").read_text())
            text = cap_out.read_text().strip()
            captured = json.loads(text.splitlines()[-1]) if text else {}
            got, trips, lost = col.frames, [], 0
    lat = np.array([f[2] for f in got])
    t = np.array([f[0] for f in got], dtype=np.float64) / 1e9
    active = float(t[-1] - t[0]) if t.size > 1 else 0.0
    rt = np.array(trips, dtype=np.float64) / 1e6
    stages = {k: {"p50": v["p50"], "p99": v["p99"]} for k, v in summary["stages_ms"].items()}
    return {
        "benchmark": "pipeline", "recording": rec.name,
        "mode": ("capture process as fast as it can (--fast)" if flood else "closed loop, as fast as possible"
                 if fps <= 0 else f"capture process paced at {fps:g} fps"),
        "published": frames if closed else captured.get("published"), "frames_sent_by_infer": summary["frames"],
        "frames_at_listener": len(got), "lost": lost if closed else None,
        "latency_ms": {"p50": _q(lat, 0.5), "p99": _q(lat, 0.99), "max": _q(lat, 1.0)},
        "round_trip_ms": {"p50": _q(rt, 0.5), "p99": _q(rt, 0.99)} if rt.size else None,
        "added_latency_ms": summary["added_ms"], "stages_ms": stages,
        "added_cpu_ms": summary["added_cpu_ms"],
        "fps_cpu_bound": round(1000.0 / cpu_mean, 1) if (cpu_mean := summary["added_cpu_ms"]["mean"]) else None,
        "fps": round((len(got) - 1) / active, 1) if active > 0 else 0.0,
        "skipped": summary["skipped"], "dropped_invalid": summary["dropped"],
        "states": summary["states"], "models": summary["models"], "device": summary["device"],
        "nri_interval_s": "1/model fps" if nri_interval_s is None else nri_interval_s,
        "stga_interval_s": "1/model fps",
        "cpus": os.cpu_count(), "load_avg_start": load_start, "load_avg_end": _load(),
        "goal": {"added_p99_ms_at_most": 2.0, "fps_at_least": 1000.0},
    }


def bench_service(recording: Path | None = None, *, frames: int = 5000, fps: float = 1000.0,
                  models: Path | None = None, device: str = "auto", gap_ms: float = 0.0) -> dict[str, Any]:
    """Frames of a recording, re-timed to ``fps``, through :class:`InferenceService` in this process:
    decode (the wire bytes), process (clean, window, NRI, STGA-Net) and OSC encode, timed per frame.

    The service is set up as ``istrings infer`` sets it up (models on a worker thread above their
    frame rate). The first 300 frames warm up and are not timed. ``gap_ms`` > 0 sleeps that long
    before each frame, as ``infer`` waits for the next frame: the cost of a thread that idles
    between frames (caches, an idle CPU) shows up against ``gap_ms`` 0.
    """
    from inference.service import InferenceService, ServiceConfig
    from stream.protocol import PoseFrame, decode, encode
    from stream.recording import read_recording

    rec = Path(recording or DEFAULT_RECORDING)
    if not rec.is_file():
        raise BenchError(f"recording {rec} does not exist")
    if not fps > 0 or gap_ms < 0:
        raise BenchError(f"fps must be > 0 and gap_ms >= 0, got {fps} and {gap_ms}")
    base = [decode(r.payload) for r in read_recording(rec, strict=False).records]
    warm = 300
    payloads = []
    for i in range(warm + frames):
        f = base[i % len(base)]
        t = int(i * 1e9 / fps)
        payloads.append(encode(PoseFrame(seq=i, t_capture_ns=t, layout=f.layout, scores=f.scores, image=f.image,
                                         world=f.world, source_id="bench", image_size=f.image_size),
                               t_publish_ns=t))
    load_start = _load()
    svc = InferenceService(ServiceConfig(models_dir=models, device=device, background_models=True))
    times = np.zeros((3, frames), dtype=np.int64)  # decode, process, encode (ns)
    clock = time.perf_counter_ns
    try:
        for i, data in enumerate(payloads):
            if gap_ms > 0:
                time.sleep(gap_ms / 1000.0)
            t0 = clock()
            frame = decode(data)
            t1 = clock()
            out = svc.process(frame)
            t2 = clock()
            svc.encode(out)
            t3 = clock()
            if i >= warm:
                times[:, i - warm] = (t1 - t0, t2 - t1, t3 - t2)
        stages = svc.timings.summary()
    finally:
        svc.close()
    ms = times / 1e6
    total = ms.sum(0)

    def q(x: np.ndarray) -> dict[str, float]:
        return {"p50": _q(x, 0.5), "p99": _q(x, 0.99), "mean": round(float(x.mean()), 4)}

    return {
        "benchmark": "service", "recording": rec.name, "frames": frames, "input_fps": fps, "gap_ms": gap_ms,
        "per_frame_ms": {"decode": q(ms[0]), "process": q(ms[1]), "encode": q(ms[2]), "total": q(total)},
        "process_stages_ms": {k: {"p50": v["p50"], "p99": v["p99"]} for k, v in stages.items()},
        "fps_in_process": round(1000.0 / float(total.mean()), 1),  # frames/s of work, gaps not counted
        "models": {k: svc.models.problems.get(k, "loaded") for k in ("nri", "stga", "mkff")},
        "device": svc.models.device, "cpus": os.cpu_count(), "load_avg_start": load_start, "load_avg_end": _load(),
    }


def bench_cache(*, sizes_kb: Sequence[int] = (256, 2048), gaps_ms: Sequence[float] = (0.0, 1.0, 4.0, 16.0),
                repeats: int = 50) -> dict[str, Any]:
    """How long this machine's caches keep a frame's working set while the process waits for the next frame.

    For each array size, the time to read (sum) the whole array right after the previous read
    (gap 0) and after a gap spent *busy* (spinning, so the CPU stays this thread's and never
    idles): what the gap costs is data other processes, or other tenants of a shared machine,
    pushed out of the caches meanwhile. ``slowdown`` is each median over the first gap's (0 by
    default).
    A frame's work in ``istrings infer`` touches about a megabyte (the three bundled models'
    weights alone are 1.0 MB; their buffers, the windows); at 60 fps a frame waits 16 ms.
    """
    if not sizes_kb or not gaps_ms or repeats < 1 or min(sizes_kb) < 1 or min(gaps_ms) < 0:
        raise BenchError(f"need sizes ≥ 1 KB, gaps ≥ 0 ms and repeats ≥ 1, got {sizes_kb}, {gaps_ms}, {repeats}")
    load_start = _load()
    clock = time.perf_counter_ns
    read_us: dict[str, dict[str, float]] = {}
    slowdown: dict[str, dict[str, float]] = {}
    for kb in sizes_kb:
        data = np.random.default_rng(0).random(kb * 1024 // 8)  # float64
        data.sum()  # in the caches (as far as they hold it) before the first timed read
        med: dict[str, float] = {}
        for gap in gaps_ms:
            times = np.empty(repeats)
            for k in range(repeats):
                end = clock() + int(gap * 1e6)
                while clock() < end:  # busy: the thread keeps its CPU through the gap
                    pass
                t0 = clock()
                data.sum()
                times[k] = clock() - t0
            med[f"{gap:g}"] = round(float(np.median(times)) / 1e3, 2)
        read_us[str(kb)] = med
        base = med[f"{gaps_ms[0]:g}"]
        slowdown[str(kb)] = {g: round(v / base, 2) for g, v in med.items()}
    return {
        "benchmark": "cache", "sizes_kb": list(sizes_kb), "gaps_ms": list(gaps_ms), "repeats": repeats,
        "read_us_p50": read_us, "slowdown": slowdown, "gap": "busy (spinning), not sleeping",
        "cpus": os.cpu_count(), "load_avg_start": load_start, "load_avg_end": _load(),
    }


def bench_soak(*, minutes: float = 10.0, fps: float = 60.0, recording: Path | None = None,
               models: Path | None = None, device: str = "auto") -> dict[str, Any]:
    """Loop a recording at ``fps`` through capture → infer → OSC for ``minutes``."""
    rec = Path(recording or DEFAULT_RECORDING)
    if not rec.is_file():
        raise BenchError(f"recording {rec} does not exist")
    load_start = _load()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        src = retimed_recording(rec, fps, tmp / "paced.isrec")
        addr = f"tcp://127.0.0.1:{free_port()}"
        osc_port = free_port(socket.SOCK_DGRAM)
        inf_log, cap_log, cap_out = tmp / "infer.log", tmp / "capture.log", tmp / "capture.json"
        cap_args = ["capture", "--source", f"replay:{src}", "--pub", addr, "--no-window", "--loop",
                    "--wait-subscribers", "1", "--json"]
        with Collector(osc_port) as col, open(inf_log, "w") as il, open(cap_log, "w") as cl, \
                open(cap_out, "w") as co, \
                _process(_infer_args(addr, osc_port, models, device, tmp / "s.json"), il) as inf:
            _wait_for_text(inf_log, "inferring", inf, _START_TIMEOUT_S)
            with _process(istrings(*cap_args), cl, co) as cap:
                t0 = time.monotonic()
                time.sleep(min(5.0, minutes * 60 / 4))  # warm-up before the first memory sample
                rss0 = {"infer": rss_mb(inf.pid), "capture": rss_mb(cap.pid)}
                while time.monotonic() - t0 < minutes * 60:
                    if inf.poll() is not None or cap.poll() is not None:
                        raise BenchError("a process died during the soak; logs:\n" + inf_log.read_text()[-2000:]
                                         + cap_log.read_text()[-2000:])
                    time.sleep(0.5)
                rss1 = {"infer": rss_mb(inf.pid), "capture": rss_mb(cap.pid)}
                cap.send_signal(signal.SIGTERM)
                cap.wait(30.0)
            time.sleep(1.0)
            inf.send_signal(signal.SIGTERM)
            inf.wait(30.0)
        summary = json.loads((tmp / "s.json").read_text())
        text = cap_out.read_text().strip()
        captured = json.loads(text.splitlines()[-1]) if text else {}
    t = np.array([f[0] for f in col.frames], dtype=np.float64) / 1e9
    lat = np.array([f[2] for f in col.frames])
    per_minute = []
    if t.size:
        minute = ((t - t[0]) // 60).astype(int)
        for m in range(int(minute.max()) + 1):
            sel = lat[minute == m]
            if sel.size:
                per_minute.append({"minute": m, "frames": int(sel.size), "p50_ms": _q(sel, 0.5),
                                   "p99_ms": _q(sel, 0.99)})
    published = captured.get("published")
    return {
        "benchmark": "soak", "minutes": minutes, "fps": fps, "recording": rec.name,
        "rss_mb_start": rss0, "rss_mb_end": rss1,
        "latency_ms_per_minute": per_minute,
        "published": published, "frames_sent_by_infer": summary["frames"], "frames_at_listener": len(col.frames),
        "frames_dropped": (published - len(col.frames)) if published is not None else None,
        "skipped_by_infer": summary["skipped"], "dropped_invalid": summary["dropped"],
        "added_latency_ms": summary["added_ms"], "states": summary["states"], "device": summary["device"],
        "cpus": os.cpu_count(), "load_avg_start": load_start, "load_avg_end": _load(),
    }


def bench_fuzz(*, messages: int = 100_000, seed: int = 0, valid_every: int = 10) -> dict[str, Any]:
    """Send ``messages`` Hypothesis-generated messages (every ``valid_every``-th a valid frame) to a
    running ``istrings infer``; check it counts and drops the bad ones and keeps sending frames."""
    try:
        from hypothesis import HealthCheck, Phase, given, seed as hseed, settings  # noqa: I001
        from hypothesis import strategies as st
    except ImportError as exc:
        raise BenchError("bench fuzz needs hypothesis: pip install 'invisible-strings[dev]'") from exc
    from stream.protocol import HEADER_SIZE, PoseFrame, encode
    from stream.skeleton import Layout
    from stream.transport import Publisher

    rng = np.random.default_rng(seed)

    def valid(seq: int) -> bytes:
        world = rng.normal(0, 0.3, (2, 18, 3)).astype(np.float32) + np.array([[[-0.6, 1, -4]], [[0.6, 1, -4]]],
                                                                              np.float32)
        image = np.concatenate([rng.uniform(0, 1, (2, 18, 3)), np.ones((2, 18, 1))], -1).astype(np.float32)
        return encode(PoseFrame(seq=seq, t_capture_ns=time.monotonic_ns(), layout=Layout.CANONICAL18,
                                scores=np.ones(2, np.float32), image=image, world=world))

    template = valid(0)
    mutations = st.one_of(
        st.binary(max_size=2 * len(template)).map(lambda b: ("random bytes", b)),
        st.integers(0, len(template) - 1).map(lambda n: ("truncated", template[:n])),
        st.integers(2, 65535).map(lambda v: ("wrong version", template[:4] + struct.pack("<H", v) + template[6:])),
        st.tuples(st.integers(0, len(template) - 1), st.integers(0, 7)).map(
            lambda p: ("bit flip", template[: p[0]] + bytes([template[p[0]] ^ (1 << p[1])]) + template[p[0] + 1 :])),
        st.binary(min_size=4, max_size=4).map(lambda m: ("wrong magic", m + template[4:])),
        st.binary(min_size=1, max_size=64).map(lambda b: ("extra bytes", template + b)),
        st.integers(0, 255).map(lambda p: ("people count", template[:38] + bytes([p]) + template[39:])),
        st.binary(min_size=HEADER_SIZE, max_size=HEADER_SIZE).map(
            lambda h: ("random header", h + template[HEADER_SIZE:])),
    )
    sent: dict[str, int] = {}
    load_start = _load()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        osc_port = free_port(socket.SOCK_DGRAM)
        inf_log = tmp / "infer.log"
        with Collector(osc_port) as col, Publisher("tcp://127.0.0.1:*", sndhwm=1_000_000) as pub, \
                open(inf_log, "w") as il, _process(_infer_args(pub.address, osc_port, tmp / "no-models", "cpu",
                                                                tmp / "s.json"), il) as inf:
            _wait_for_text(inf_log, "inferring", inf, _START_TIMEOUT_S)
            if not pub.wait_for_subscribers(1, 30.0):
                raise BenchError("istrings infer did not subscribe")
            count = [0]
            t0 = time.monotonic()

            @hseed(seed)
            @settings(max_examples=messages, database=None, deadline=None, phases=[Phase.generate],
                      suppress_health_check=list(HealthCheck), derandomize=False)
            @given(mutations)
            def send(kind_msg: tuple[str, bytes]) -> None:
                kind, msg = kind_msg
                count[0] += 1
                if count[0] % valid_every == 0:
                    kind, msg = "valid", valid(count[0])
                pub.send_raw(msg)
                sent[kind] = sent.get(kind, 0) + 1
                if count[0] % 2000 == 0:
                    time.sleep(0.01)  # let the subscriber keep up: every message should be inspected

            send()
            fuzz_s = time.monotonic() - t0
            frames_during = len(col.frames)
            time.sleep(0.5)
            for i in range(30):  # after the fuzz: valid frames must still flow
                pub.send_raw(valid(10_000_000 + i))
                time.sleep(1 / 30)
            time.sleep(1.0)
            alive = inf.poll() is None
            frames_after = len(col.frames) - frames_during
            inf.send_signal(signal.SIGTERM)
            rc = inf.wait(30.0)
        summary = json.loads((tmp / "s.json").read_text())
    total = sum(sent.values())
    return {
        "benchmark": "fuzz", "messages": total, "sent_by_kind": sent, "seconds": round(fuzz_s, 2),
        "infer_received": summary["received"], "infer_skipped": summary["skipped"],
        "infer_dropped_invalid": summary["dropped"], "dropped_by_kind": summary["dropped_by_kind"],
        "frames_sent_by_infer": summary["frames"], "frames_after_fuzz": frames_after,
        "alive_after_fuzz": alive, "exit_code": rc,
        "accounted": summary["received"] == summary["frames"] + summary["dropped"] + summary["skipped"],
        "load_avg_start": load_start, "load_avg_end": _load(),
    }
