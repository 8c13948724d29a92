"""Frame sources: parsing, video/images pacing and drops, replay, synthetic, a camera that is absent."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from stream.protocol import FLAG_WORLD_PLACED, PoseFrame, encode
from stream.recording import RecordingWriter
from stream.skeleton import Layout
from stream.sources import (
    CameraSource,
    ImageFrame,
    ImagesSource,
    ReplaySource,
    SourceError,
    SourceOptions,
    SourceSpec,
    SyntheticSource,
    VideoSource,
    open_source,
    parse_source,
)
from tests.shared_paths import FIXTURE_IMAGES

IMAGES = FIXTURE_IMAGES


def _video(path: Path, frames: int, fps: float = 30.0) -> Path:
    """A tiny MJPG video whose frame ``i`` is filled with grey level ``8 i`` (to check the order)."""
    import cv2

    w = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (64, 48))
    assert w.isOpened()
    for i in range(frames):
        w.write(np.full((48, 64, 3), 8 * i, np.uint8))
    w.release()
    return path


def _level(frame: ImageFrame) -> int:
    return round(float(frame.image.mean()) / 8)


def _drain(source: VideoSource | ImagesSource | ReplaySource | SyntheticSource, limit: int = 1000) -> list:
    stop = threading.Event()
    out = []
    while len(out) < limit and (item := source.read(stop)) is not None:
        out.append(item)
    return out


@pytest.mark.parametrize(("text", "spec"), [
    ("camera:0", SourceSpec("camera", "0")), ("camera:/dev/video2", SourceSpec("camera", "/dev/video2")),
    ("video:a/b.mp4", SourceSpec("video", "a/b.mp4")), ("images:x/*.png", SourceSpec("images", "x/*.png")),
    ("replay:r.isrec", SourceSpec("replay", "r.isrec")), ("synthetic", SourceSpec("synthetic")),
])
def test_parse_source(text: str, spec: SourceSpec) -> None:
    assert parse_source(text) == spec


@pytest.mark.parametrize(("text", "match"), [
    ("webcam:0", "unknown source"), ("video:", "lacks its argument"), ("camera", "lacks its argument"),
    ("camera:front", "give an index"), ("synthetic:3", "takes no argument"),
])
def test_parse_source_errors(text: str, match: str) -> None:
    with pytest.raises(SourceError, match=match):
        parse_source(text)


def test_video_fast_reads_every_frame_in_order(tmp_path: Path) -> None:
    path = _video(tmp_path / "v.avi", 12)
    with VideoSource(str(path), SourceOptions(fast=True)) as src:
        frames = _drain(src)
    assert [_level(f) for f in frames] == list(range(12))
    assert src.stats.delivered == 12 and src.stats.dropped == 0
    assert all(a.t_capture_ns < b.t_capture_ns for a, b in itertools.pairwise(frames))


def test_video_loop(tmp_path: Path) -> None:
    path = _video(tmp_path / "v.avi", 5)
    with VideoSource(str(path), SourceOptions(fast=True, loop=True)) as src:
        frames = _drain(src, limit=13)
    assert [_level(f) for f in frames] == [i % 5 for i in range(13)]
    assert [f.index for f in frames] == list(range(13))


def test_video_real_time_pacing_and_drops(tmp_path: Path) -> None:
    """30 frames at 30 fps last ~1 s; a reader taking 100 ms per frame skips to the due frame, as a camera."""
    path = _video(tmp_path / "v.avi", 30)
    with VideoSource(str(path)) as src:
        time.sleep(0.3)  # e.g. the pose model loading: the clock starts at the first read, not at opening
        t0 = time.monotonic()
        frames = _drain(src)
        elapsed = time.monotonic() - t0
    assert len(frames) == 30 and 0.9 < elapsed < 2.0, elapsed
    with VideoSource(str(path)) as src:
        slow = []
        stop = threading.Event()
        while (f := src.read(stop)) is not None:
            slow.append(f)
            time.sleep(0.1)
    assert src.stats.dropped >= 15, src.stats
    assert len(slow) + src.stats.dropped == 30
    levels = [_level(f) for f in slow]
    assert levels == sorted(levels) and levels[-1] >= 25


def test_video_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"), VideoSource(str(tmp_path / "none.mp4")):
        pass
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(SourceError, match="cannot decode video"), VideoSource(str(junk)):
        pass


def test_images_in_sorted_order(tmp_path: Path) -> None:
    import cv2

    for i in (2, 0, 1):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), np.full((8, 8, 3), 8 * i, np.uint8))
    with ImagesSource(str(tmp_path / "*.png"), SourceOptions(fast=True)) as src:
        frames = _drain(src)
    assert [_level(f) for f in frames] == [0, 1, 2]
    with ImagesSource(str(tmp_path / "*.png"), SourceOptions(fast=True, loop=True)) as src:
        assert len(_drain(src, limit=7)) == 7


def test_images_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no image files match"), ImagesSource(str(tmp_path / "*.png")):
        pass
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(SourceError, match="not an image OpenCV can read"), ImagesSource(str(tmp_path / "*.png")):
        pass


def test_images_of_the_fixtures() -> None:
    if not IMAGES.is_dir():
        pytest.skip("shared/fixtures/images is missing")
    with open_source(f"images:{IMAGES}/*[0-9].*g", SourceOptions(fast=True)) as src:
        frames = _drain(src)
    assert [f.image.shape[1] for f in frames] == [640, 640, 548]


def _pose_frame(seq: int) -> PoseFrame:
    P, L = 2, 33
    image = np.full((P, L, 4), 0.5, np.float32)
    return PoseFrame(seq=seq, t_capture_ns=123 + seq, layout=Layout.MEDIAPIPE33, scores=np.ones(P, np.float32),
                     image=image, world=np.full((P, L, 3), seq, np.float32), source_id="camera:0",
                     image_size=(640, 480))


def test_replay_restamps_and_skips_undecodable(tmp_path: Path) -> None:
    path = tmp_path / "r.isrec"
    with RecordingWriter(path, source="test") as w:
        for i in range(5):
            w.write(encode(_pose_frame(100 + i)), 1_000_000_000 + i * 20_000_000)  # 50 Hz
        w.write(b"garbage", 1_000_000_000 + 5 * 20_000_000)
    t0 = time.monotonic_ns()
    with ReplaySource(str(path)) as src:
        frames = _drain(src)
        elapsed = (time.monotonic_ns() - t0) / 1e9
    assert [f.seq for f in frames] == [0, 1, 2, 3, 4]
    assert [float(f.world[0, 0, 0]) for f in frames] == [100.0, 101.0, 102.0, 103.0, 104.0]
    assert all(f.t_capture_ns >= t0 for f in frames) and frames[0].source_id == "replay:r.isrec"
    assert src.stats.bad == 1
    assert 0.07 < elapsed < 1.0  # four 20 ms gaps
    with ReplaySource(str(path), SourceOptions(fast=True, loop=True)) as src:
        assert len(_drain(src, limit=12)) == 12


def test_replay_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"), ReplaySource(str(tmp_path / "none.isrec")):
        pass
    path = tmp_path / "bad.isrec"
    with RecordingWriter(path) as w:
        w.write(b"not a frame", 1)
    with pytest.raises(SourceError, match="no decodable PoseFrame"), ReplaySource(str(path)):
        pass


def test_synthetic_frames() -> None:
    with SyntheticSource(SourceOptions(fast=True)) as src:
        frames = _drain(src, limit=30)
    assert len(frames) == 30 and [f.seq for f in frames] == list(range(30))
    for f in frames:
        encode(f)  # valid on the wire
        assert f.layout == Layout.CANONICAL18 and f.flags & FLAG_WORLD_PLACED and f.num_people == 2
        assert (f.world[..., 2] < -2.0).all()  # in front of the camera
        assert f.world[..., 1].min() > -0.05  # on or above the floor
        vis = f.image[..., 3] > 0
        assert ((f.image[..., :2][vis] >= 0) & (f.image[..., :2][vis] <= 1)).all()
    with SyntheticSource(SourceOptions(fps=50)) as src:
        t0 = time.monotonic()
        _drain(src, limit=11)
        assert 0.15 < time.monotonic() - t0 < 1.0  # paced at 50 fps


def test_absent_camera_is_retried_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="stream.sources")
    src = CameraSource(97, backoff_s=(0.05, 0.2))
    stop = threading.Event()
    with src:
        threading.Timer(1.5, stop.set).start()
        t0 = time.monotonic()
        assert src.read(stop) is None  # waits, retrying, until stopped
        assert time.monotonic() - t0 >= 1.4
        assert src.state == "waiting"
    msgs = [r.getMessage() for r in caplog.records if "camera not available" in r.getMessage()]
    assert len(msgs) == 1, msgs
    assert "camera:97" in msgs[0]
