"""``istrings record`` and ``istrings replay`` as real processes over loopback ZeroMQ."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stream.protocol import PoseFrame, decode, encode
from stream.recording import RecordingWriter, read_recording
from stream.skeleton import LAYOUT_SIZES, Layout
from stream.transport import Publisher

pytestmark = pytest.mark.slow
TIMEOUT_S = 120


def istrings(*args: str) -> list[str]:
    return [sys.executable, "-m", "stream.cli", *args]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.pop("ISTRINGS_CONFIG", None)
    return e


def popen(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(args, cwd=cwd, env=env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env(), text=True, capture_output=True, timeout=TIMEOUT_S)


def read_line_with(proc: subprocess.Popen[str], prefix: str) -> str:
    """Read the process's stderr until a line starting with ``prefix``."""
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        if line.startswith(prefix):
            return line
        seen.append(line)
    raise AssertionError(f"no line starting {prefix!r}; stderr: {''.join(seen)}")


def duet_messages(n: int, seed: int = 1) -> list[bytes]:
    """``n`` MEDIAPIPE33 PoseFrames of 2 people with random landmarks, encoded."""
    rng = np.random.default_rng(seed)
    L = LAYOUT_SIZES[Layout.MEDIAPIPE33]
    out = []
    for i in range(n):
        frame = PoseFrame(
            seq=1000 + i, t_capture_ns=int(i * 1e9 / 60), layout=Layout.MEDIAPIPE33,
            scores=rng.random(2, dtype=np.float32),
            image=rng.random((2, L, 4), dtype=np.float32),  # (P, L, 4) x, y, z, visibility
            world=rng.normal(0, 0.5, (2, L, 3)).astype(np.float32),  # (P, L, 3) metres
            source_id="camera:0", image_size=(1280, 720),
        )
        out.append(encode(frame, t_publish_ns=frame.t_capture_ns + 2_000_000))
    return out


def write_recording(path: Path, messages: list[bytes], seed: int = 2) -> None:
    """60 fps with ±2 ms of jitter, as a real capture would have."""
    rng = np.random.default_rng(seed)
    times = (np.arange(len(messages)) * 1e9 / 60 + rng.uniform(-2e6, 2e6, len(messages))).astype(np.int64)
    with RecordingWriter(path, source="tcp://127.0.0.1:5555") as w:
        for m, t in zip(messages, times.tolist(), strict=True):
            w.write(m, t)


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err


def test_replay_process_to_record_process_is_bit_exact_and_in_order(tmp_path: Path) -> None:
    messages = duet_messages(50)
    source = tmp_path / "rehearsal.isrec"
    write_recording(source, messages)
    replay = popen(istrings("replay", str(source), "--pub", "tcp://127.0.0.1:*", "--speed", "4",
                            "--wait-subscribers", "1", "--wait-timeout-s", str(TIMEOUT_S), "--warmup-s", "0"),
                   tmp_path)
    recorder = None
    try:
        address = read_line_with(replay, "replaying ").rsplit(" on ", 1)[1].strip()
        assert address.startswith("tcp://127.0.0.1:") and not address.endswith("*")
        out_path = tmp_path / "copy.isrec"
        recorder = popen(istrings("record", "--sub", address, "-o", str(out_path), "--frames", "50"), tmp_path)
        rc_rec, rec_out, rec_err = finish(recorder)
        rc_rep, rep_out, rep_err = finish(replay)
    finally:
        for p in (replay, recorder):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    assert rc_rep == 0, rep_err
    assert rc_rec == 0, rec_err
    assert "replayed 50 messages" in rep_out and "at speed 4" in rep_out
    assert "recorded 50 messages" in rec_out and "50 PoseFrames" in rec_out and "undecodable 0" in rec_out
    copy = read_recording(out_path)
    assert copy.damage is None and len(copy) == 50
    assert [r.payload for r in copy.records] == messages  # bit-exact, in order, not re-stamped
    assert [decode(r.payload).seq for r in copy.records] == list(range(1000, 1050))
    assert copy.metadata["source"] == address
    # Timed, not a burst: 49 gaps of ~16.7 ms at speed 4 span ~0.2 s (a burst takes a few ms). The
    # bound allows for the first message arriving late under load.
    assert copy.duration_s >= 0.1


def test_record_stores_garbage_verbatim_and_counts_it(tmp_path: Path) -> None:
    messages = duet_messages(2)
    garbage = b"\x00not a pose frame, but longer than a PoseFrame header\xff"
    out_path = tmp_path / "g.isrec"
    with Publisher("tcp://127.0.0.1:*") as pub:
        recorder = popen(istrings("record", "--sub", pub.address, "-o", str(out_path), "--frames", "3"), tmp_path)
        try:
            assert pub.wait_for_subscribers(1, timeout_s=TIMEOUT_S)
            for m in (messages[0], garbage, messages[1]):
                pub.send_raw(m)
            rc, out, err = finish(recorder)
        finally:
            if recorder.poll() is None:
                recorder.kill()
                recorder.wait()
    assert rc == 0, err
    assert [r.payload for r in read_recording(out_path).records] == [messages[0], garbage, messages[1]]
    assert "2 PoseFrames, undecodable 1 (bad magic: 1)" in out
    assert err.count("not a valid PoseFrame (bad magic)") == 1


def test_record_stops_cleanly_on_ctrl_c_and_on_duration(tmp_path: Path) -> None:
    out_path = tmp_path / "int.isrec"
    recorder = popen(istrings("record", "--sub", "tcp://127.0.0.1:9", "-o", str(out_path)), tmp_path)
    read_line_with(recorder, "recording ")
    recorder.send_signal(signal.SIGINT)
    rc, out, err = finish(recorder)
    assert rc == 0, err
    assert out.startswith("recorded 0 messages")
    assert len(read_recording(out_path)) == 0

    done = run(istrings("record", "--sub", "tcp://127.0.0.1:9", "-o", "d.isrec", "--duration", "0.3"), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("recorded 0 messages in 0.3")


def test_replay_of_a_truncated_file_warns_in_one_line_and_plays_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "cut.isrec"
    messages = duet_messages(5)
    write_recording(path, messages)
    path.write_bytes(path.read_bytes()[:-100])
    lost = 20 + len(messages[-1]) - 100  # record header + payload, less the 100 bytes cut
    done = run(istrings("replay", str(path), "--pub", "tcp://127.0.0.1:*", "--fast", "--warmup-s", "0"), tmp_path)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "warning" in line]
    assert warnings == [
        f"istrings: warning: {path}: file is cut off inside its last record ({lost:,} bytes lost); "
        "replaying its 4 readable records"
    ]
    assert "replayed 4 messages" in done.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"this is not a recording at all", "is not an Invisible Strings recording"),
        (None, "No such file or directory"),
    ],
)
def test_replay_of_a_non_recording_exits_2_with_one_line(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "notes.txt"
    if content is not None:
        path.write_bytes(content)
    done = run(istrings("replay", str(path), "--pub", "tcp://127.0.0.1:*"), tmp_path)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("istrings: error: ") and message in lines[0]


def test_record_refuses_to_overwrite_and_replay_reports_a_port_in_use(tmp_path: Path) -> None:
    (tmp_path / "x.isrec").write_bytes(b"precious")
    done = run(istrings("record", "-o", "x.isrec", "--duration", "0.1"), tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "istrings: error: x.isrec exists: pass --overwrite or choose another file name"
    ]
    assert (tmp_path / "x.isrec").read_bytes() == b"precious"

    write_recording(tmp_path / "r.isrec", duet_messages(2))
    with Publisher("tcp://127.0.0.1:*") as pub:
        done = run(istrings("replay", "r.isrec", "--pub", pub.address), tmp_path)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("istrings: error:")]
    assert len(errors) == 1 and "already uses it" in errors[0]


def test_bench_replay_prints_one_json_object(tmp_path: Path) -> None:
    done = run(istrings("bench", "replay", "--fps", "100", "--seconds", "0.3", "--speed", "2"), tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["sent"] == result["received"] == 30
    assert result["interval_abs_error_ms"]["median"] >= 0 and result["sender_lateness_ms"]["median"] >= 0


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--wait-subscribers", "1"], "replay stopped before 1 subscribers connected"),
        (["--loop", "--speed", "8"], "full passes"),
    ],
)
def test_replay_stops_cleanly_on_ctrl_c(tmp_path: Path, extra: list[str], expected: str) -> None:
    write_recording(tmp_path / "r.isrec", duet_messages(3))
    replay = popen(istrings("replay", "r.isrec", "--pub", "tcp://127.0.0.1:*", "--warmup-s", "0", *extra), tmp_path)
    read_line_with(replay, "replaying ")
    replay.send_signal(signal.SIGINT)
    rc, out, err = finish(replay)
    assert rc == 0, err
    assert expected in out + err
