"""Recording files: round trip, damage of every kind, and the playback schedule."""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from stream.protocol import PoseFrame, decode, encode
from stream.recording import (
    MAGIC,
    RECORD_SYNC,
    Recording,
    RecordingError,
    RecordingWriter,
    loop_period_ns,
    play,
    read_recording,
)
from stream.skeleton import LAYOUT_SIZES, Layout

STEP_NS = 16_666_667  # 60 fps


def make_frame(seq: int, people: int = 2) -> PoseFrame:
    """MEDIAPIPE33 frame with random landmarks: image (P, 33, 4), world (P, 33, 3) metres."""
    rng = np.random.default_rng(seq)
    L = LAYOUT_SIZES[Layout.MEDIAPIPE33]
    return PoseFrame(
        seq=seq, t_capture_ns=STEP_NS * seq, layout=Layout.MEDIAPIPE33,
        scores=rng.random(people, dtype=np.float32),
        image=rng.random((people, L, 4), dtype=np.float32),
        world=rng.normal(0, 0.5, (people, L, 3)).astype(np.float32),
        source_id="cam", image_size=(640, 480), t_publish_ns=STEP_NS * seq + 500,
    )


def write(path: Path, payloads: list[bytes], times: list[int] | None = None) -> list[int]:
    """Write a recording; returns the byte offset of every record."""
    times = times if times is not None else [1_000_000_000 + i * STEP_NS for i in range(len(payloads))]
    offsets = []
    with RecordingWriter(path, source="tcp://127.0.0.1:5555", metadata={"note": "rehearsal 3"}) as w:
        for p, t in zip(payloads, times, strict=True):
            offsets.append(w.bytes_written)
            w.write(p, t)
    assert path.stat().st_size == w.bytes_written
    return offsets


@pytest.fixture
def frames() -> list[PoseFrame]:
    return [make_frame(i, people=(i + 1) % 3) for i in range(10)]  # 0, 1 and 2 people; the last has 1


def test_round_trip_keeps_bytes_times_and_metadata(tmp_path: Path, frames: list[PoseFrame]) -> None:
    payloads = [encode(f) for f in frames]
    times = [5 + 17 * i * i for i in range(len(frames))]
    path = tmp_path / "a.isrec"
    write(path, payloads, times)
    rec = read_recording(path)
    assert rec.damage is None and rec.version == 1 and len(rec) == 10
    assert [r.payload for r in rec.records] == payloads
    assert rec.receive_ns.tolist() == times
    assert [decode(r.payload) for r in rec.records] == frames
    assert rec.metadata["format"] == "istrings-recording"
    assert rec.metadata["source"] == "tcp://127.0.0.1:5555" and rec.metadata["note"] == "rehearsal 3"
    assert rec.metadata["writer"].startswith("invisible-strings ")
    assert abs(rec.metadata["created_unix_s"] - time.time()) < 60
    assert rec.duration_s == pytest.approx((times[-1] - times[0]) / 1e9)


def test_any_bytes_are_stored_verbatim(tmp_path: Path) -> None:
    payloads = [b"", b"garbage", RECORD_SYNC * 3, bytes(range(256)) * 10]
    write(tmp_path / "g.isrec", payloads)
    assert [r.payload for r in read_recording(tmp_path / "g.isrec").records] == payloads


def test_empty_recording_is_valid(tmp_path: Path) -> None:
    write(tmp_path / "e.isrec", [])
    rec = read_recording(tmp_path / "e.isrec")
    assert len(rec) == 0 and rec.damage is None and rec.duration_s == 0.0


@pytest.mark.parametrize("cut", [7, 19, 20, 25, 500])
def test_file_cut_inside_the_last_record_keeps_all_complete_ones(
    tmp_path: Path, frames: list[PoseFrame], cut: int
) -> None:
    path = tmp_path / "cut.isrec"
    offsets = write(path, [encode(f) for f in frames])
    data = path.read_bytes()
    path.write_bytes(data[: offsets[-1] + cut])  # cut `cut` bytes into the last record
    with pytest.raises(RecordingError, match=r"cut off inside its last record .*9 readable records") as info:
        read_recording(path)
    assert info.value.partial is not None and len(info.value.partial) == 9
    rec = read_recording(path, strict=False)
    assert [decode(r.payload) for r in rec.records] == frames[:9]
    assert rec.damage is not None and rec.damage.cut_off and rec.damage.tail_bytes == cut
    assert rec.damage.bad_records == 0


def test_bad_checksum_in_the_middle_skips_only_that_record(tmp_path: Path, frames: list[PoseFrame]) -> None:
    path = tmp_path / "crc.isrec"
    offsets = write(path, [encode(f) for f in frames])
    data = bytearray(path.read_bytes())
    data[offsets[4] + 100] ^= 0xFF  # a payload byte of record 4
    path.write_bytes(bytes(data))
    rec = read_recording(path, strict=False)
    assert [decode(r.payload).seq for r in rec.records] == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    assert rec.damage is not None and rec.damage.bad_records == 1
    assert rec.damage.first_offset == offsets[4] and rec.damage.skipped_bytes == offsets[5] - offsets[4]
    assert not rec.damage.cut_off and rec.damage.tail_bytes == 0
    assert "1 corrupt record skipped" in rec.damage.describe()
    with pytest.raises(RecordingError, match=r"1 corrupt record skipped.*9 readable records"):
        read_recording(path)


@pytest.mark.parametrize("field_offset", [0, 4, 12])  # the sync word, the length, the receive time
def test_damaged_record_header_resyncs_at_the_next_record(
    tmp_path: Path, frames: list[PoseFrame], field_offset: int
) -> None:
    path = tmp_path / "hdr.isrec"
    offsets = write(path, [encode(f) for f in frames])
    data = bytearray(path.read_bytes())
    data[offsets[2] + field_offset + 1] ^= 0x5A
    data[offsets[6] + field_offset + 1] ^= 0x5A
    path.write_bytes(bytes(data))
    rec = read_recording(path, strict=False)
    assert [decode(r.payload).seq for r in rec.records] == [0, 1, 3, 4, 5, 7, 8, 9]
    assert rec.damage is not None and rec.damage.bad_records == 2
    assert "2 corrupt records skipped" in rec.damage.describe()


def test_garbage_at_the_end_is_reported_not_as_a_cut(tmp_path: Path, frames: list[PoseFrame]) -> None:
    path = tmp_path / "tail.isrec"
    write(path, [encode(f) for f in frames])
    path.write_bytes(path.read_bytes() + b"\x00" * 33)
    rec = read_recording(path, strict=False)
    assert len(rec) == 10
    assert rec.damage is not None and not rec.damage.cut_off and rec.damage.tail_bytes == 33
    assert rec.damage.describe() == "33 unreadable bytes at the end"


def test_corrupt_metadata_still_reads_every_record(tmp_path: Path, frames: list[PoseFrame]) -> None:
    path = tmp_path / "meta.isrec"
    write(path, [encode(f) for f in frames])
    data = bytearray(path.read_bytes())
    data[20] ^= 0x01  # inside the JSON block
    path.write_bytes(bytes(data))
    rec = read_recording(path, strict=False)
    assert len(rec) == 10 and rec.metadata == {}
    assert rec.damage is not None and rec.damage.header
    data[12:16] = struct.pack("<I", 999_999)  # a wrong metadata length too: found by scanning
    path.write_bytes(bytes(data))
    assert len(read_recording(path, strict=False)) == 10


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", r"not an Invisible Strings recording \(empty"),
        (b"PK\x03\x04 a zip file, not a recording", "not an Invisible Strings recording"),
        (json.dumps({"a": 1}).encode(), "not an Invisible Strings recording"),
        (MAGIC[:6], "cut off inside its file header"),
        (MAGIC + struct.pack("<HHI", 2, 0, 2) + b"{}", "format version 2; this build reads version 1"),
    ],
)
def test_not_a_recording_is_a_named_error(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "x.isrec"
    path.write_bytes(content)
    with pytest.raises(RecordingError, match=match):
        read_recording(path, strict=False)


def test_writer_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "o.isrec"
    write(path, [b"one"])
    with pytest.raises(RecordingError, match="exists: pass --overwrite"), RecordingWriter(path):
        pass
    with RecordingWriter(path, overwrite=True) as w:
        w.write(b"two", 3)
    assert [r.payload for r in read_recording(path).records] == [b"two"]


def test_writer_rejects_bad_metadata_and_use_when_closed(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="JSON-serialisable"), RecordingWriter(
        tmp_path / "m.isrec", metadata={"x": object()}
    ):
        pass
    w = RecordingWriter(tmp_path / "c.isrec")
    with pytest.raises(RecordingError, match="not open"):
        w.write(b"x", 0)


def test_every_record_is_on_disk_before_close(tmp_path: Path) -> None:
    """A crashed recorder loses nothing written so far: each record is flushed."""
    path = tmp_path / "live.isrec"
    with RecordingWriter(path) as w:
        w.write(b"first", 1)
        w.write(b"second", 2)
        assert [r.payload for r in read_recording(path).records] == [b"first", b"second"]


# --------------------------------------------------------------------------- playback


def recording(times_ms: Sequence[float], tmp_path: Path) -> Recording:
    path = tmp_path / f"p{len(list(tmp_path.iterdir()))}.isrec"
    write(path, [i.to_bytes(2, "little") for i in range(len(times_ms))], [int(t * 1e6) for t in times_ms])
    return read_recording(path)


def test_loop_period_is_span_plus_median_gap() -> None:
    assert loop_period_ns([0, 10, 30, 40]) == 40 + 10
    assert loop_period_ns([5]) == 0


def test_play_sends_every_payload_in_order_never_early(tmp_path: Path) -> None:
    times_ms = [0, 20, 25, 60, 61, 100]
    rec = recording(times_ms, tmp_path)
    sent: list[tuple[int, bytes]] = []
    t0 = time.monotonic_ns()
    stats = play(rec, lambda p: sent.append((time.monotonic_ns(), p)), speed=2.0)
    assert [p for _, p in sent] == [r.payload for r in rec.records]
    for (t, _), target_ms in zip(sent, times_ms, strict=True):
        assert t - t0 >= target_ms / 2 * 1e6  # at speed 2, never before its time
    assert stats.sent == 6 and stats.loops == 1 and len(stats.lateness_ns) == 6
    assert 0.05 <= stats.elapsed_s < 5.0
    assert 0 <= stats.lateness_ms(0.5) <= stats.lateness_ms(1.0)


def test_play_fast_and_loop_until_stopped(tmp_path: Path) -> None:
    rec = recording([0, 10, 20], tmp_path)
    sent: list[bytes] = []
    stats = play(rec, sent.append, fast=True, loop=True, should_stop=lambda: len(sent) >= 7)
    assert sent == [r.payload for r in rec.records] * 2 + [rec.records[0].payload]
    assert stats.loops == 2 and stats.lateness_ns == []


def test_play_loops_on_the_recorded_period(tmp_path: Path) -> None:
    rec = recording([0, 10, 20], tmp_path)  # period 30 ms
    sent: list[int] = []
    t0 = time.monotonic_ns()
    play(rec, lambda p: sent.append(time.monotonic_ns()), loop=True, should_stop=lambda: len(sent) >= 7)
    assert len(sent) == 7
    assert sent[6] - t0 >= 60e6  # first message of the third pass: 2 periods later


def test_a_stall_resyncs_instead_of_bursting(tmp_path: Path) -> None:
    rec = recording([0, 10, 20, 30, 40, 50], tmp_path)
    sent: list[int] = []

    def send(p: bytes) -> None:
        sent.append(time.monotonic_ns())
        if len(sent) == 2:
            time.sleep(0.3)  # the machine stalls for 300 ms

    stats = play(rec, send, max_lag_s=0.1)
    assert stats.resyncs == 1
    # Re-anchored at message 2: the others keep their 10 ms spacing from it (a burst would send them at once).
    for i in range(3, 6):
        assert sent[i] - sent[2] >= (i - 2) * 10e6 - 5e6


def test_play_rejects_empty_recordings_and_bad_speed(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="no readable records"):
        play(recording([], tmp_path), lambda p: None)
    with pytest.raises(RecordingError, match="speed must be positive"):
        play(recording([0.0], tmp_path), lambda p: None, speed=0.0)
