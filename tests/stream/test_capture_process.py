"""The capture process end to end: a real ``istrings capture`` subprocess on a video of the real
photographs, a subscriber on loopback, clean errors, an absent camera, no torch."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from stream.commands.capture import FIXTURE_IMAGES, fixtures_dir, write_fixture_video
from stream.protocol import FLAG_WORLD_PLACED, PoseFrame, decode
from stream.skeleton import MEDIAPIPE33_NAMES, Layout
from stream.transport import Subscriber

L_HIP, R_HIP = MEDIAPIPE33_NAMES.index("left_hip"), MEDIAPIPE33_NAMES.index("right_hip")
REPEAT = 4  # frames per photograph


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    images = [fixtures_dir() / n for n in FIXTURE_IMAGES]
    if not all(p.is_file() for p in images):
        pytest.skip(f"test photographs missing in {fixtures_dir()}")
    path = tmp_path_factory.mktemp("video") / "fixtures.mp4"
    assert write_fixture_video(path, images, repeat=REPEAT) == 3 * REPEAT
    return path


class Capture:
    """``python -X importtime -m stream.cli capture ...`` with its stderr drained by a thread."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-X", "importtime", "-m", "stream.cli", "capture", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: list[str] = []
        self.address: str | None = None
        self._started = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("capturing ") and "→ " in line:
                self.address = line.split("→ ")[1].split(" ")[0]
                self._started.set()
        self._started.set()

    def wait_started(self, timeout: float = 60.0) -> str:
        assert self._started.wait(timeout), "capture did not start"
        assert self.address is not None, "\n".join(self.lines[-20:])
        return self.address

    def finish(self, timeout: float = 60.0) -> tuple[int, str]:
        out, _ = self.proc.communicate(timeout=timeout)
        self._reader.join(5.0)
        return self.proc.returncode, out

    @property
    def imported_torch(self) -> bool:
        return any(line.startswith("import time:") and line.rstrip().endswith((" torch", "| torch"))
                   for line in self.lines)

    @property
    def errors(self) -> list[str]:
        return [line for line in self.lines if line.startswith("istrings: error:")]


def test_video_of_real_photographs_end_to_end(video: Path, tmp_path: Path) -> None:
    preview = tmp_path / "preview.mp4"
    cap = Capture("--source", f"video:{video}", "--fast", "--pub", "tcp://127.0.0.1:*", "--wait-subscribers", "1",
                  "--json", "--preview", str(preview), "--no-window")
    try:
        address = cap.wait_started()
        frames: list[PoseFrame] = []
        with Subscriber(address, rcvhwm=100_000) as sub:
            while (msg := sub.recv(20_000)) is not None:
                frames.append(decode(msg))
                if frames[-1].seq == 3 * REPEAT - 1:
                    break
        code, out = cap.finish()
    finally:
        cap.proc.kill()
    assert code == 0, "\n".join(cap.lines[-20:])
    summary = json.loads(out)
    assert summary["published"] == 3 * REPEAT == len(frames)
    assert [f.seq for f in frames] == list(range(3 * REPEAT))
    assert not cap.imported_torch

    # The two basketball photographs come first. (After the cut to messi5.jpg the tracker may carry a
    # low-scored ghost for a frame: the cleaning downstream drops it, so it is not judged here.)
    two = [f for f in frames[: 2 * REPEAT] if f.num_people >= 2]
    assert len(two) >= 2 * REPEAT - 1
    assert all(f.num_people >= 1 for f in frames[2 * REPEAT :])  # messi5.jpg
    for f in frames:
        assert f.layout == Layout.MEDIAPIPE33 and f.flags & FLAG_WORLD_PLACED and f.image_size == (640, 480)
        assert np.isfinite(f.image).all() and np.isfinite(f.world).all()
        vis = f.image[..., 3]
        assert ((vis >= 0) & (vis <= 1)).all() and ((f.scores >= 0) & (f.scores <= 1)).all()
        xy = f.image[..., :2][vis > 0.5]
        assert ((xy > -0.05) & (xy < 1.05)).all()  # visible landmarks lie on the image
        assert (f.t_capture_ns < f.t_publish_ns) and f.source_id == "video:fixtures.mp4"
    for f in two:
        roots = 0.5 * (f.world[:, L_HIP] + f.world[:, R_HIP])  # (P, 3) stage metres
        assert (roots[:, 2] < -0.5).all(), roots  # both in front of the camera
        assert np.linalg.norm(roots[0] - roots[1]) > 0.3, roots  # two people, really apart
        assert (np.abs(roots[:, 1] - 1.0) < 1.0).all(), roots  # hips plausibly above the floor
        # each person's skeleton stays a body: shoulder-to-hip ~0.4-0.7 m
        torso = np.linalg.norm(f.world[:, MEDIAPIPE33_NAMES.index("left_shoulder")] - f.world[:, L_HIP], axis=-1)
        assert ((torso > 0.3) & (torso < 0.8)).all(), torso

    import cv2

    reader = cv2.VideoCapture(str(preview))
    assert reader.isOpened() and int(reader.get(cv2.CAP_PROP_FRAME_COUNT)) == 3 * REPEAT
    reader.release()


def test_help_does_not_import_torch() -> None:
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "stream.cli", "capture", "--help"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--source" in r.stdout
    modules = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert "typer" in modules and "torch" not in modules and "mediapipe" not in modules


@pytest.mark.parametrize(("args", "message"), [
    (["--source", "webcam:1"], "unknown source 'webcam:1'"),
    (["--source", "video:/nonexistent/clip.mp4"], "video file /nonexistent/clip.mp4 does not exist"),
    (["--source", "images:/nonexistent/*.png"], "no image files match"),
    (["--source", "synthetic", "--pub", "udp://x"], "bad ZeroMQ address"),
    (["--source", "synthetic", "--placement", "magic"], "--placement must be lsq or bones"),
    (["--source", "synthetic", "--running-mode", "bogus"], "running mode must be 'video' or 'live_stream'"),
    (["--source", "synthetic", "--calibration", "/nonexistent/cam.toml"], "cannot read camera calibration"),
])
def test_bad_arguments_give_one_error_line(args: list[str], message: str) -> None:
    r = subprocess.run([sys.executable, "-m", "stream.cli", "capture", *args], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("istrings: error:") and message in lines[0], r.stderr


def test_unreadable_video_and_missing_model(tmp_path: Path, video: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00not a video" * 200)
    r = subprocess.run([sys.executable, "-m", "stream.cli", "capture", "--source", f"video:{junk}"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"istrings: error: cannot decode video {junk}: not a video file OpenCV can read"]
    r = subprocess.run([sys.executable, "-m", "stream.cli", "capture", "--source", f"video:{video}",
                        "--pose-model", str(tmp_path / "none.task")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"istrings: error: pose model {tmp_path / 'none.task'} does not exist; pass --pose-model PATH to a "
        "PoseLandmarker .task bundle (the bundled one is rebuilt with tools/build_pose_bundle.py)"]
    bad = tmp_path / "bad.task"
    bad.write_text("not a model")
    r = subprocess.run([sys.executable, "-m", "stream.cli", "capture", "--source", f"video:{video}",
                        "--pose-model", str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("istrings: error:")]
    assert len(errors) == 1 and "cannot load" in errors[0]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_absent_camera_keeps_retrying_then_stops_cleanly(sig: signal.Signals) -> None:
    cap = Capture("--source", "camera:97", "--pub", "tcp://127.0.0.1:*", "--no-window")
    try:
        address = cap.wait_started()
        with Subscriber(address) as sub:  # the publisher is up while the camera is missing
            time.sleep(3.0)
            assert cap.proc.poll() is None, "\n".join(cap.lines[-20:])
            assert sub.recv(0) is None
        waiting = [line for line in cap.lines if "camera not available; retrying" in line]
        assert len(waiting) == 1, waiting  # said once, not once per retry
        cap.proc.send_signal(sig)
        t0 = time.monotonic()
        code, _ = cap.finish(timeout=15)
        assert time.monotonic() - t0 < 10
    finally:
        cap.proc.kill()
    assert code == 0, "\n".join(cap.lines[-20:])
    assert not cap.errors and not any("Traceback" in line for line in cap.lines)
    assert not cap.imported_torch


@pytest.mark.slow
def test_bench_capture_prints_json(video: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "stream.cli", "bench", "capture", "--video", str(video), "--fast"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout)
    assert result["published"] == result["received"] == 3 * REPEAT
    assert result["frames_with_two"] >= 2 * REPEAT - 1
    for key in ("pose_ms", "publish_ms", "capture_to_publish_ms", "added_over_pose_ms"):
        assert 0 < result[key]["p50"] <= result[key]["p99"]
    assert result["capture_to_publish_ms"]["p50"] > result["pose_ms"]["p50"]
