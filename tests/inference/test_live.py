"""The inference process for real: subprocesses, ZeroMQ and UDP on loopback, hand-built ONNX models.

Covers: no torch anywhere on the live path; bad messages counted and dropped; a capture killed and
restarted three times (no-input, then frames again within 1 s); no OSC listener; a missing or
incompatible model (no-model, skeletons still flow); ``istrings live`` restarting a crashed child
and stopping both; ``istrings demo`` ending by itself with a preview video.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inference.osc import FrameAssembler, OscError, ReceivedFrame, decode_packet, encode_message
from stream.protocol import encode
from stream.skeleton import J
from stream.transport import Publisher
from tests.inference.test_service import STRONG_FWD, duet_frame, write_mkff, write_nri, write_stga

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]

BLOCK_TORCH = """
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked: the live path must not import it")
        return None
sys.meta_path.insert(0, _NoTorch())
"""


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.pop("ISTRINGS_CONFIG", None)
    return e


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def istrings(*args: str, block_torch: bool = False) -> list[str]:
    if block_torch:
        code = BLOCK_TORCH + f"sys.argv = ['istrings', *{list(args)!r}]\nfrom stream.cli import main\nmain()\n"
        return [sys.executable, "-c", code]
    return [sys.executable, "-m", "stream.cli", *args]


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    f = open(log, "wb")  # noqa: SIM115  (closed with the process by stop())
    return subprocess.Popen(args, cwd=ROOT, env=env(), stdout=f, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def wait_for_text(log: Path, text: str, timeout: float = 60.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return time.monotonic()
        time.sleep(0.02)
    raise AssertionError(f"no {text!r} in {log}:\n{log.read_text(errors='replace')[-3000:]}")


class Listener:
    """A UDP OSC listener thread: every completed frame with its arrival time, and idle statuses."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.05)
        self.asm = FrameAssembler()
        self.frames: list[tuple[float, ReceivedFrame]] = []
        self.statuses: list[tuple[float, str]] = []
        self.others: list[tuple[str, tuple[Any, ...]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            t = time.monotonic()
            try:
                msgs = decode_packet(data)
            except OscError:
                continue
            frame = self.asm.feed(msgs)
            if frame is not None:
                self.frames.append((t, frame))
                self.statuses.append((t, str(frame.messages["/istrings/status"][0])))
            elif msgs[0][0] == "/istrings/part" and msgs[1][0] == "/istrings/status":
                self.statuses.append((t, str(msgs[1][1][0])))
            else:
                self.others.extend(msgs)

    def wait(self, predicate: Any, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def listener() -> Any:
    lst = Listener()
    yield lst
    lst.close()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    write_nri(folder)
    write_stga(folder)
    write_mkff(folder)
    return folder


def publish_duet(pub: Publisher, n: int, fps: float = 60.0, start: int = 0) -> None:
    for k in range(start, start + n):
        f = duet_frame(k, 0.0)
        pub.send_raw(encode(type(f)(seq=k, t_capture_ns=time.monotonic_ns(), layout=f.layout, scores=f.scores,
                                    image=f.image, world=f.world)))
        time.sleep(1 / fps)


def test_inference_modules_import_without_torch() -> None:
    code = BLOCK_TORCH + (
        "import importlib, pkgutil, inference\n"
        "mods = [m.name for m in pkgutil.iter_modules(inference.__path__, 'inference.')]\n"
        "for m in mods: importlib.import_module(m)\n"
        "assert 'torch' not in sys.modules\n"
        "print(len(mods))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) >= 10


def test_infer_runs_the_full_pipeline_with_torch_blocked(tmp_path: Path, listener: Listener, models: Path) -> None:
    listen = free_port()
    summary = tmp_path / "summary.json"
    with Publisher("tcp://127.0.0.1:*") as pub:
        proc = start(istrings("infer", "--sub", pub.address, "--osc", f"127.0.0.1:{listener.port}", "--models",
                              str(models), "--device", "cpu", "--listen", f"127.0.0.1:{listen}", "--summary-json",
                              str(summary), block_torch=True), tmp_path / "infer.log")
        try:
            assert pub.wait_for_subscribers(1, 60.0), (tmp_path / "infer.log").read_text()
            publish_duet(pub, 90)
            assert listener.wait(lambda: len(listener.frames) >= 60)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as req:  # a names request, answered to us
                req.bind(("127.0.0.1", 0))
                req.settimeout(5.0)
                req.sendto(encode_message("/istrings/names", "", ()), ("127.0.0.1", listen))
                reply = decode_packet(req.recv(65536))
        finally:
            rc = stop(proc)
    log = (tmp_path / "infer.log").read_text()
    assert rc == 0, log
    assert "torch is blocked" not in log and "Traceback" not in log
    assert reply[0][0] == "/istrings/names" and len(reply[0][1]) == J and reply[1] == ("/istrings/horizons", (80, 160))
    assert any(a == "/istrings/names" for a, _ in listener.others)  # also sent once at start
    _, last = listener.frames[-1]
    assert last.messages["/istrings/status"] == ("ok", "")
    assert last.floats(f"/istrings/edges/{STRONG_FWD[0]}")[STRONG_FWD[1]] > 0.5
    assert {"/istrings/forecast/80/dancer/0", "/istrings/forecast/160/dancer/1"} <= set(last.messages)
    result = json.loads(summary.read_text())
    assert result["models"] == {"nri": "loaded", "stga": "loaded", "mkff": "loaded"}
    assert result["frames"] == len(listener.frames) + listener.asm.incomplete or result["frames"] >= 60
    assert result["names_requests"] == 1


def test_bad_messages_are_counted_and_dropped() -> None:
    pytest.importorskip("hypothesis")
    from inference.bench import bench_fuzz

    r = bench_fuzz(messages=400, valid_every=5)
    assert r["alive_after_fuzz"] and r["exit_code"] == 0
    assert r["accounted"], r
    assert r["infer_dropped_invalid"] >= 0.5 * (r["messages"] - r["sent_by_kind"]["valid"]), r
    assert {"bad magic", "unsupported version", "shorter than a header"} & set(r["dropped_by_kind"])
    assert r["frames_after_fuzz"] >= 20


def test_capture_killed_three_times_gives_no_input_then_resumes(tmp_path: Path, listener: Listener) -> None:
    addr = f"tcp://127.0.0.1:{free_port(socket.SOCK_STREAM)}"
    infer = start(istrings("infer", "--sub", addr, "--osc", f"127.0.0.1:{listener.port}", "--listen", "",
                           "--models", str(tmp_path / "none"), "--device", "cpu", "--summary-json",
                           str(tmp_path / "s.json")), tmp_path / "infer.log")
    resumes = []
    try:
        wait_for_text(tmp_path / "infer.log", "inferring")
        for k in range(3):
            log = tmp_path / f"capture{k}.log"
            n0 = len(listener.frames)
            cap = start(istrings("capture", "--source", "synthetic", "--pub", addr, "--no-window"), log)
            t_started = wait_for_text(log, "capturing")
            assert listener.wait(lambda n0=n0: len(listener.frames) > n0), log.read_text()
            resumes.append(listener.frames[n0][0] - t_started)
            time.sleep(0.5)
            t_kill = time.monotonic()
            stop(cap, signal.SIGKILL)
            assert listener.wait(lambda t=t_kill: any(s == "no-input" and ts > t for ts, s in listener.statuses), 5.0)
        assert infer.poll() is None
    finally:
        rc = stop(infer)
    assert rc == 0
    assert all(r < 1.0 for r in resumes), resumes
    result = json.loads((tmp_path / "s.json").read_text())
    assert result["input_losses"] >= 3 and result["states"]["no-input"] >= 3
    assert result["states"]["no-model"] == result["frames"] > 0


def test_no_listener_and_a_broken_model(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "nri.onnx").write_bytes(b"\x08\x07broken onnx")
    dead = free_port()  # nobody listens there
    with Publisher("tcp://127.0.0.1:*") as pub:
        proc = start(istrings("infer", "--sub", pub.address, "--osc", f"127.0.0.1:{dead}", "--models",
                              str(tmp_path / "models"), "--device", "cpu", "--listen", "", "--summary-json",
                              str(tmp_path / "s.json")), tmp_path / "infer.log")
        try:
            assert pub.wait_for_subscribers(1, 60.0)
            publish_duet(pub, 40)
            time.sleep(0.3)
            assert proc.poll() is None
        finally:
            rc = stop(proc)
    log = (tmp_path / "infer.log").read_text()
    assert rc == 0 and "Traceback" not in log
    assert "nri model not used" in log and "cannot load" in log
    result = json.loads((tmp_path / "s.json").read_text())
    assert result["frames"] >= 30 and result["states"] == {"no-model": result["frames"]} | (
        {"no-input": result["states"]["no-input"]} if "no-input" in result["states"] else {})


def test_live_restarts_a_crashed_child_and_stops_both(tmp_path: Path, listener: Listener) -> None:
    from inference.live import live_children, supervise

    children = live_children("synthetic", pub=f"tcp://127.0.0.1:{free_port(socket.SOCK_STREAM)}",
                             osc=[f"127.0.0.1:{listener.port}"], models=tmp_path / "none", device="cpu", listen="")
    pids: list[tuple[str, int]] = []
    stop_ev = threading.Event()
    result: dict[str, Any] = {}
    with open(tmp_path / "children.log", "wb") as out:
        th = threading.Thread(target=lambda: result.update(supervise(
            children, stop_ev, output=out, backoff_s=0.2, on_start=lambda n, p: pids.append((n, p)))))
        th.start()
        try:
            assert listener.wait(lambda: len(listener.frames) > 10, 60.0), (tmp_path / "children.log").read_text()
            infer_pid = next(p for n, p in pids if n == "infer")
            os.kill(infer_pid, signal.SIGKILL)
            assert listener.wait(lambda: sum(n == "infer" for n, _ in pids) == 2, 30.0)
            n = len(listener.frames)
            assert listener.wait(lambda: len(listener.frames) > n + 10, 60.0)
        finally:
            stop_ev.set()
            th.join(60)
    assert result["children"]["infer"]["starts"] == 2 and result["children"]["infer"]["exits"][0] == -signal.SIGKILL
    assert result["children"]["capture"]["starts"] == 1
    for _, pid in pids:  # every child is gone
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_demo_stops_by_itself_and_writes_a_preview(tmp_path: Path, models: Path) -> None:
    video = tmp_path / "demo.mp4"
    out = subprocess.run(istrings("demo", "--duration", "8", "--json", "--no-dashboard", "--models", str(models),
                                  "--device", "cpu", "--preview", str(video)),
                         cwd=ROOT, env=env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout)
    assert r["frames_received"] > 60 and r["status"] == "ok", r
    assert r["fps"] == pytest.approx(30.0, rel=0.2)
    assert (r["top_strings"][0]["dancer0"], r["top_strings"][0]["dancer1"]) == ("l_wrist", "r_wrist")
    assert r["forecast_error_m"]["160"] is not None and r["forecast_error_m"]["160"] > r["forecast_error_m"]["80"]
    assert r["supervisor"]["ended_by"] == "stop"
    import cv2

    cap = cv2.VideoCapture(str(video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == r["preview_frames"] > 60
    ok, img = cap.read()
    cap.release()
    assert ok and img.shape == (540, 960, 3) and np.asarray(img).max() > 100


@pytest.mark.parametrize("mode", ["closed", "paced", "flood"])
def test_bench_pipeline_accounts_for_every_frame(mode: str) -> None:
    """``istrings bench pipeline`` in its three modes: real capture/infer processes, bundled models."""
    from inference.bench import bench_pipeline

    frames = {"closed": 150, "paced": 300, "flood": 3000}[mode]
    r = bench_pipeline(frames=frames, fps=200.0 if mode == "paced" else 0.0, device="cpu", flood=mode == "flood")
    assert r["published"] == frames, r
    assert r["mode"].startswith({"closed": "closed loop", "paced": "capture process paced at 200",
                                 "flood": "capture process as fast as it can"}[mode])
    assert r["frames_at_listener"] == r["frames_sent_by_infer"] >= {"closed": frames, "paced": 20, "flood": 5}[mode], r
    # every published frame was either sent on or skipped as stale (none is silently lost)
    assert r["frames_sent_by_infer"] + r["skipped"] + r["dropped_invalid"] <= frames
    if mode == "closed":
        assert r["lost"] == 0 and r["skipped"] == 0 and r["round_trip_ms"]["p50"] > 0
    if mode == "flood":
        assert r["skipped"] > 0, r  # a producer far faster than inference: the newest frame wins
    assert 0 < r["latency_ms"]["p50"] <= r["latency_ms"]["p99"] and r["fps"] > 0
    assert set(r["stages_ms"]) >= {"receive", "clean", "nri", "stga", "send", "total"}
    assert r["models"] == {"nri": "loaded", "stga": "loaded", "mkff": "loaded"}
