"""Raw capture recordings (``.isrec``): the messages exactly as they went over the wire, timed.

A recording keeps every message a subscriber received, byte for byte, with the monotonic
time at which it arrived, so a rehearsal replays with its real timing, misses, identity
swaps and jitter. Messages are stored even when they do not decode as PoseFrames (the
recorder counts those); a replay sends them back unchanged.

File format, version 1 (little-endian; also in ``docs/recording-format.md``)::

    file header
    offset size  field
    0      8     magic        b"ISREC\\x00\\r\\n"  (the NUL and CRLF catch text-mode mangling)
    8      2     version      u16 (= 1)
    10     2     flags        u16 (= 0, reserved)
    12     4     meta_len     u32, M = bytes of the metadata block (at most 1 MiB)
    16     M     metadata     UTF-8 JSON object (see below)
    16+M   4     meta_crc     u32, CRC-32 of the metadata bytes

    then records, back to back, until the end of the file
    0      4     sync         b"ISRC"
    4      4     length       u32, n = payload bytes (at most 16 MiB)
    8      4     crc          u32, CRC-32 (zlib) of the 8 receive_ns bytes followed by the payload
    12     8     receive_ns   i64, monotonic clock of the recording host when it arrived (ns)
    20     n     payload      the message as received (normally one PoseFrame)

Metadata keys: ``format`` (``"istrings-recording"``), ``created_unix_s`` (wall clock, s),
``created_monotonic_ns`` (the same clock as ``receive_ns``: wall time of a record is
``created_unix_s + (receive_ns - created_monotonic_ns) / 1e9``), ``source`` (the address
recorded from), ``writer`` (``"invisible-strings <version>"``), plus any keys the caller adds.

Writing: every record is written with one ``write`` and flushed, so a crashed recorder
loses at most the record it was writing; the file is fsynced on close.

Reading (:func:`read_recording`) never loses a readable record. A record whose checksum
fails is skipped and counted; reading resumes at the next ``sync`` word that starts a
record with a valid checksum. A file cut off inside a record yields every complete record
before the cut. Damage is described in :class:`Damage`; ``strict=True`` raises
:class:`RecordingError` (which still carries the readable part), ``strict=False`` returns it.

Playback (:func:`play`) sends the payloads unchanged — PoseFrames keep the
``t_publish_ns`` and ``t_capture_ns`` they were recorded with, so a consumer sees the
original stamps — at the recorded inter-arrival times divided by ``speed``. Target times
are computed from one start instant (no drift accumulates).
"""

from __future__ import annotations

import json
import logging
import os
import struct
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import NDArray

from stream import __version__
from stream.errors import IStringsError

log = logging.getLogger(__name__)

MAGIC = b"ISREC\x00\r\n"
VERSION = 1
FORMAT_NAME = "istrings-recording"
SUFFIX = ".isrec"
RECORD_SYNC = b"ISRC"
MAX_META_BYTES = 1 << 20
MAX_RECORD_BYTES = 16 << 20

_FILE_HEADER = struct.Struct("<8sHHI")  # magic, version, flags, meta_len: 16 bytes
_META_CRC = struct.Struct("<I")
_RECORD_HEADER = struct.Struct("<4sIIq")  # sync, length, crc, receive_ns: 20 bytes
_NS = struct.Struct("<q")


class RecordingError(IStringsError, ValueError):
    """A recording cannot be written, or is not a recording, or is damaged.

    Attributes:
        partial: for a damaged file, everything that was readable (None when nothing was).
    """

    def __init__(self, message: str, partial: Recording | None = None) -> None:
        super().__init__(message)
        self.partial = partial


@dataclass(frozen=True)
class Record:
    """One received message: ``receive_ns`` (monotonic ns) and the bytes as received."""

    receive_ns: int
    payload: bytes


@dataclass(frozen=True)
class Damage:
    """What could not be read from a recording.

    Attributes:
        bad_records: damaged stretches skipped between readable records (usually one record
            each, with a bad checksum).
        skipped_bytes: bytes inside those stretches.
        first_offset: file offset of the first damage.
        tail_bytes: unreadable bytes at the end of the file.
        cut_off: the file ends inside a record (the recorder stopped mid-write).
        header: the metadata block is unreadable (records are still read).
    """

    bad_records: int = 0
    skipped_bytes: int = 0
    first_offset: int | None = None
    tail_bytes: int = 0
    cut_off: bool = False
    header: bool = False

    def describe(self) -> str:
        """One line, e.g. ``"1 corrupt record skipped (1,061 bytes from offset 4,096)"``."""
        parts: list[str] = []
        if self.header:
            parts.append("metadata block is corrupt")
        if self.bad_records:
            s = "s" if self.bad_records > 1 else ""
            parts.append(f"{self.bad_records} corrupt record{s} skipped ({self.skipped_bytes:,} bytes "
                         f"from offset {self.first_offset:,})")
        if self.cut_off:
            parts.append(f"file is cut off inside its last record ({self.tail_bytes:,} bytes lost)")
        elif self.tail_bytes:
            parts.append(f"{self.tail_bytes:,} unreadable bytes at the end")
        return "; ".join(parts)


@dataclass(frozen=True, eq=False)
class Recording:
    """A recording read back: its metadata, every readable record in order, and any damage."""

    path: Path
    version: int
    metadata: dict[str, Any]
    records: list[Record]
    damage: Damage | None = None

    def __len__(self) -> int:
        return len(self.records)

    @property
    def receive_ns(self) -> NDArray[np.int64]:
        """``(T,)`` receive times, monotonic ns."""
        return np.array([r.receive_ns for r in self.records], dtype=np.int64)

    @property
    def duration_s(self) -> float:
        """Seconds from the first to the last record (0 for fewer than two)."""
        return (self.records[-1].receive_ns - self.records[0].receive_ns) / 1e9 if len(self) > 1 else 0.0


def _record_bytes(payload: bytes, receive_ns: int) -> bytes:
    ns = _NS.pack(receive_ns)
    crc = zlib.crc32(payload, zlib.crc32(ns))
    return b"".join([_RECORD_HEADER.pack(RECORD_SYNC, len(payload), crc, receive_ns), payload])


class RecordingWriter:
    """Write a recording, one flushed record per received message.

    Args:
        path: the file to create (``.isrec`` by convention).
        source: the address recorded from (stored in the metadata).
        metadata: extra JSON-serialisable keys for the metadata block.
        overwrite: replace an existing file instead of refusing.

    Use as ``with RecordingWriter(path, source=addr) as w: w.write(message, receive_ns)``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        source: str = "",
        metadata: Mapping[str, Any] | None = None,
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        self.metadata: dict[str, Any] = {
            "format": FORMAT_NAME,
            "created_unix_s": time.time(),
            "created_monotonic_ns": time.monotonic_ns(),
            "source": source,
            "writer": f"invisible-strings {__version__}",
            **(metadata or {}),
        }
        self._overwrite = overwrite
        self._file: BinaryIO | None = None
        self.records = 0
        self.bytes_written = 0

    def __enter__(self) -> RecordingWriter:
        try:
            meta = json.dumps(self.metadata, sort_keys=True).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise RecordingError(f"recording metadata must be JSON-serialisable: {exc}") from exc
        if len(meta) > MAX_META_BYTES:
            raise RecordingError(f"recording metadata is {len(meta)} bytes, at most {MAX_META_BYTES} allowed")
        try:
            self._file = open(self.path, "wb" if self._overwrite else "xb")
        except FileExistsError as exc:
            raise RecordingError(f"{self.path} exists: pass --overwrite or choose another file name") from exc
        except OSError as exc:
            raise RecordingError(f"cannot create {self.path}: {exc.strerror}") from exc
        head = _FILE_HEADER.pack(MAGIC, VERSION, 0, len(meta)) + meta + _META_CRC.pack(zlib.crc32(meta))
        try:
            self._write(head)
        except RecordingError:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _write(self, data: bytes) -> None:
        if self._file is None:
            raise RecordingError("the recording is not open: use `with RecordingWriter(...) as w:`")
        try:
            self._file.write(data)
            self._file.flush()
        except OSError as exc:
            raise RecordingError(f"cannot write {self.path}: {exc.strerror}") from exc
        self.bytes_written += len(data)

    def write(self, payload: bytes, receive_ns: int) -> None:
        """Append one message received at ``receive_ns`` (monotonic ns) and flush it.

        Raises:
            RecordingError: the message is over :data:`MAX_RECORD_BYTES`, or the disk fails.
        """
        if len(payload) > MAX_RECORD_BYTES:
            raise RecordingError(f"a message of {len(payload)} bytes exceeds the {MAX_RECORD_BYTES}-byte limit")
        self._write(_record_bytes(bytes(payload), receive_ns))
        self.records += 1

    def close(self) -> None:
        """Flush, fsync and close (idempotent)."""
        if self._file is not None:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
            finally:
                self._file.close()
                self._file = None


def _valid_record_at(buf: bytes, pos: int) -> Record | None:
    """The record starting at ``pos`` when its sync, length and checksum all check out."""
    if len(buf) - pos < _RECORD_HEADER.size:
        return None
    sync, length, crc, receive_ns = _RECORD_HEADER.unpack_from(buf, pos)
    start = pos + _RECORD_HEADER.size
    if sync != RECORD_SYNC or length > MAX_RECORD_BYTES or start + length > len(buf):
        return None
    payload = buf[start : start + length]
    if zlib.crc32(payload, zlib.crc32(buf[pos + 12 : pos + 20])) != crc:
        return None
    return Record(receive_ns, payload)


def _next_record_start(buf: bytes, pos: int) -> int | None:
    """Offset of the first valid record after ``pos`` (scanning for the sync word)."""
    while (pos := buf.find(RECORD_SYNC, pos + 1)) >= 0:
        if _valid_record_at(buf, pos) is not None:
            return pos
    return None


def _read_header(buf: bytes, path: Path) -> tuple[int, dict[str, Any], int, bool]:
    """``(version, metadata, offset of the first record, metadata damaged)``."""
    if len(buf) < _FILE_HEADER.size and buf and MAGIC.startswith(buf[: len(MAGIC)]):
        raise RecordingError(f"{path} is cut off inside its file header ({len(buf)} bytes): no records to read")
    if len(buf) < _FILE_HEADER.size or buf[: len(MAGIC)] != MAGIC:
        what = "empty" if not buf else f"starts with {buf[:8]!r}"
        raise RecordingError(f"{path} is not an Invisible Strings recording ({what}; expected {MAGIC!r})")
    _, version, _flags, meta_len = _FILE_HEADER.unpack_from(buf)
    if version != VERSION:
        raise RecordingError(
            f"{path} is recording format version {version}; this build reads version {VERSION} "
            "(use a matching invisible-strings release)"
        )
    start = _FILE_HEADER.size
    end = start + meta_len
    if meta_len <= MAX_META_BYTES and end + _META_CRC.size <= len(buf):
        meta = buf[start:end]
        (crc,) = _META_CRC.unpack_from(buf, end)
        if zlib.crc32(meta) == crc:
            try:
                metadata = json.loads(meta.decode("utf-8"))
                if isinstance(metadata, dict):
                    return version, metadata, end + _META_CRC.size, False
            except (UnicodeDecodeError, json.JSONDecodeError):
                pass  # a valid checksum over invalid JSON: treated as damage below
        first = end + _META_CRC.size if _valid_record_at(buf, end + _META_CRC.size) else None
    else:
        first = None
    if first is None:  # the length itself may be wrong: look for the first record
        first = _next_record_start(buf, start - 1)
    return version, {}, len(buf) if first is None else first, True


def read_recording(path: str | os.PathLike[str], *, strict: bool = True) -> Recording:
    """Read every readable record of a recording.

    Args:
        path: the ``.isrec`` file.
        strict: raise on damage (the error's ``partial`` holds what was readable); when False
            the damage is returned in :attr:`Recording.damage` instead.

    Raises:
        RecordingError: the file is not a recording, is of another format version, or (with
            ``strict``) is damaged.
        FileNotFoundError, PermissionError: the file cannot be opened.
    """
    p = Path(path)
    buf = p.read_bytes()
    version, metadata, pos, header_damaged = _read_header(buf, p)
    records: list[Record] = []
    bad = skipped = tail = 0
    first_bad: int | None = None
    cut_off = False
    while pos < len(buf):
        rec = _valid_record_at(buf, pos)
        if rec is not None:
            records.append(rec)
            pos += _RECORD_HEADER.size + len(rec.payload)
            continue
        nxt = _next_record_start(buf, pos)
        if nxt is None:  # nothing readable follows: the tail is lost
            tail = len(buf) - pos
            cut_off = _looks_cut_off(buf, pos)
            break
        bad += 1
        skipped += nxt - pos
        first_bad = pos if first_bad is None else first_bad
        pos = nxt
    damage = None
    if bad or tail or header_damaged:
        damage = Damage(bad, skipped, first_bad, tail, cut_off, header_damaged)
    recording = Recording(p, version, metadata, records, damage)
    if damage is not None:
        log.info("%s: %s; %d readable records", p, damage.describe(), len(records))
        if strict:
            raise RecordingError(
                f"{p} is damaged: {damage.describe()}; its {len(records)} readable records are kept "
                "(read with strict=False to use them)",
                partial=recording,
            )
    return recording


def _looks_cut_off(buf: bytes, pos: int) -> bool:
    """True when the bytes at ``pos`` are the start of a record that runs past the end."""
    tail = buf[pos:]
    if len(tail) < _RECORD_HEADER.size:
        return RECORD_SYNC.startswith(tail[:4])
    sync, length, _, _ = _RECORD_HEADER.unpack_from(tail)
    return sync == RECORD_SYNC and length <= MAX_RECORD_BYTES and _RECORD_HEADER.size + length > len(tail)


# --------------------------------------------------------------------------- playback


@dataclass
class PlaybackStats:
    """What a playback did.

    Attributes:
        sent: messages handed to ``send``.
        loops: complete passes through the recording.
        lateness_ns: how late each send was against its target time (ns, ≥ 0; the last
            100,000 sends; empty with ``fast``).
        resyncs: times the schedule was moved because the sender fell more than
            ``max_lag_s`` behind (e.g. the machine stalled); no catch-up burst follows.
        elapsed_s: wall time of the playback (s).
    """

    sent: int = 0
    loops: int = 0
    lateness_ns: list[int] = field(default_factory=list)
    resyncs: int = 0
    elapsed_s: float = 0.0

    def lateness_ms(self, q: float) -> float:
        """The ``q``-quantile (0..1) of the lateness in ms (0 when nothing was timed)."""
        return float(np.quantile(np.asarray(self.lateness_ns), q)) / 1e6 if self.lateness_ns else 0.0


_MAX_LATENESS_KEPT = 100_000
_SLEEP_SLICE_S = 0.05  # the longest single sleep, so a stop request is seen within 50 ms


def loop_period_ns(receive_ns: Sequence[int] | NDArray[np.int64]) -> int:
    """Recorded time of one pass when looping: the span plus one median inter-arrival gap (ns)."""
    t = np.asarray(receive_ns, dtype=np.int64)
    if t.size < 2:
        return 0
    return int(t[-1] - t[0]) + int(np.median(np.diff(t)))


def play(
    recording: Recording,
    send: Callable[[bytes], object],
    *,
    speed: float = 1.0,
    fast: bool = False,
    loop: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
    max_lag_s: float = 0.25,
    clock: Callable[[], int] = time.monotonic_ns,
) -> PlaybackStats:
    """Send every record's payload, unchanged, at its recorded time scaled by ``1 / speed``.

    Message ``i`` of pass ``k`` is due at ``t0 + (k · period + receive_ns[i] − receive_ns[0]) / speed``
    (``period`` from :func:`loop_period_ns`), with ``t0`` taken once, so sleeping errors never
    accumulate. Sleeping stops at the target (Linux overshoots by ~0.1 ms).

    Args:
        recording: what to play (at least one record).
        send: called with each payload.
        speed: time scale (2.0 = twice as fast); ignored with ``fast``.
        fast: send back to back, no timing.
        loop: start again after the last record until ``should_stop``.
        should_stop: polled at least every 50 ms.
        max_lag_s: when a send is this late (wall seconds), the schedule moves forward instead
            of bursting to catch up (counted in ``resyncs``).
        clock: monotonic nanoseconds.

    Raises:
        RecordingError: the recording has no records, or ``speed`` is not positive.
    """
    if not recording.records:
        raise RecordingError(f"{recording.path} holds no readable records: nothing to replay")
    if not speed > 0:
        raise RecordingError(f"replay speed must be positive, got {speed}")
    rel = recording.receive_ns - recording.receive_ns[0]  # (T,) ns from the first record
    period = loop_period_ns(recording.receive_ns)
    max_lag = int(max_lag_s * 1e9)
    stats = PlaybackStats()
    start = t0 = clock()
    k = 0
    while True:
        for i, rec in enumerate(recording.records):
            if not fast:
                target = t0 + int((k * period + int(rel[i])) / speed)
                while (left := target - clock()) > 0:
                    if should_stop():
                        break
                    time.sleep(min(left / 1e9, _SLEEP_SLICE_S))
                late = clock() - target
                if late > max_lag:
                    t0 += late  # re-anchor: the rest of the schedule shifts, no burst
                    stats.resyncs += 1
                stats.lateness_ns.append(max(late, 0))
            if should_stop():
                stats.elapsed_s = (clock() - start) / 1e9
                return stats
            send(rec.payload)
            stats.sent += 1
        stats.loops += 1
        k += 1
        if len(stats.lateness_ns) > _MAX_LATENESS_KEPT:
            del stats.lateness_ns[:-_MAX_LATENESS_KEPT]
        if not loop or should_stop():
            stats.elapsed_s = (clock() - start) / 1e9
            return stats
