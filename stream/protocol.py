"""The PoseFrame wire protocol: one captured frame = one ZeroMQ message in ONE part.

One part per frame lets a subscriber keep only the newest message (``ZMQ_CONFLATE`` works
only on single-part messages). ``encode``/``decode`` are pure functions; ``decode`` checks
everything and raises :class:`ProtocolError`.

Layout (little-endian, version 1)::

    offset size  field
    0      4     magic            b"ISPF"
    4      2     version          u16 (= 1)
    6      2     flags            u16 (bit 0: world coordinates are placed in the shared frame)
    8      8     seq              u64, per source, +1 per captured frame
    16     8     t_capture_ns     i64, monotonic clock of the capturing host (ns)
    24     8     t_publish_ns     i64, same clock, when the frame was sent (0 = unknown)
    32     2     layout           u16, :class:`stream.skeleton.Layout`
    34     2     image_width      u16, pixels (0 = no image)
    36     2     image_height     u16, pixels
    38     1     num_people       u8  (P, at most MAX_PEOPLE)
    39     1     source_id_len    u8  (S, at most 64)
    40     S     source_id        UTF-8
    40+S   ...   payload, float32:
                   scores  (P,)        detection confidence in [0, 1]
                   image   (P, L, 4)   x, y normalised to the image width/height, z relative
                                       depth (MediaPipe's scale), visibility in [0, 1]
                   world   (P, L, 3)   metres, right-handed, y up

``L`` is fixed by the layout (:data:`stream.skeleton.LAYOUT_SIZES`), so the total size is
known from the header and checked exactly.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from stream.errors import IStringsError
from stream.skeleton import LAYOUT_SIZES, Layout

MAGIC = b"ISPF"
VERSION = 1
MAX_PEOPLE = 16
MAX_SOURCE_ID = 64
FLAG_WORLD_PLACED = 1 << 0
_KNOWN_FLAGS = FLAG_WORLD_PLACED

_HEADER = struct.Struct("<4sHHQqqHHHBB")
HEADER_SIZE = _HEADER.size  # 40 bytes


class ProtocolError(IStringsError, ValueError):
    """A message is not a valid PoseFrame (the message says which check failed)."""


@dataclass(frozen=True, eq=False)
class PoseFrame:
    """One captured frame: every detected person's landmarks in one source layout.

    Attributes:
        seq: sequence number per source.
        t_capture_ns: capture time, monotonic nanoseconds of the capturing host.
        layout: source layout of the landmarks (``L`` joints).
        scores: ``(P,)`` float32 detection confidences.
        image: ``(P, L, 4)`` float32 — normalised x, y, relative z, visibility.
        world: ``(P, L, 3)`` float32 — metres, y up.
        source_id: a short name of the source (e.g. ``"camera:0"``).
        image_size: ``(width, height)`` in pixels, ``(0, 0)`` when there is no image.
        t_publish_ns: when the frame was sent (0 = not yet).
        flags: bit field, see :data:`FLAG_WORLD_PLACED`.
    """

    seq: int
    t_capture_ns: int
    layout: Layout
    scores: NDArray[np.float32]
    image: NDArray[np.float32]
    world: NDArray[np.float32]
    source_id: str = ""
    image_size: tuple[int, int] = (0, 0)
    t_publish_ns: int = 0
    flags: int = field(default=FLAG_WORLD_PLACED)

    @property
    def num_people(self) -> int:
        return int(self.scores.shape[0])

    @property
    def num_landmarks(self) -> int:
        return LAYOUT_SIZES[self.layout]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PoseFrame):
            return NotImplemented
        return (
            (self.seq, self.t_capture_ns, self.layout, self.source_id, self.image_size)
            == (other.seq, other.t_capture_ns, other.layout, other.source_id, other.image_size)
            and (self.t_publish_ns, self.flags) == (other.t_publish_ns, other.flags)
            and np.array_equal(self.scores, other.scores)
            and np.array_equal(self.image, other.image)
            and np.array_equal(self.world, other.world)
        )

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def empty(cls, seq: int, t_capture_ns: int, layout: Layout, **kwargs: object) -> PoseFrame:
        """A frame with no person detected."""
        L = LAYOUT_SIZES[Layout.parse(layout)]
        return cls(
            seq=seq,
            t_capture_ns=t_capture_ns,
            layout=Layout.parse(layout),
            scores=np.zeros((0,), np.float32),
            image=np.zeros((0, L, 4), np.float32),
            world=np.zeros((0, L, 3), np.float32),
            **kwargs,  # type: ignore[arg-type]
        )


def payload_size(num_people: int, num_landmarks: int) -> int:
    """Bytes of the float32 payload for ``P`` people of ``L`` landmarks."""
    return 4 * num_people * (1 + num_landmarks * 4 + num_landmarks * 3)


def encode(frame: PoseFrame, t_publish_ns: int | None = None) -> bytes:
    """Encode a frame into one message (pure).

    Args:
        frame: the frame; its arrays are validated for shape and finiteness.
        t_publish_ns: overrides ``frame.t_publish_ns`` (the publisher stamps it at send time).

    Raises:
        ProtocolError: the frame cannot be encoded (bad shapes, too many people, non-finite
            values, an over-long source id).
    """
    layout = Layout.parse(frame.layout)
    L = LAYOUT_SIZES[layout]
    P = int(np.shape(frame.scores)[0]) if np.ndim(frame.scores) == 1 else -1
    if P < 0 or P > MAX_PEOPLE:
        raise ProtocolError(f"scores must be a vector of at most {MAX_PEOPLE} people, got {np.shape(frame.scores)}")
    if np.shape(frame.image) != (P, L, 4) or np.shape(frame.world) != (P, L, 3):
        raise ProtocolError(
            f"layout {layout.name} with {P} people needs image ({P}, {L}, 4) and world ({P}, {L}, 3), "
            f"got {np.shape(frame.image)} and {np.shape(frame.world)}"
        )
    sid = frame.source_id.encode("utf-8")
    if len(sid) > MAX_SOURCE_ID:
        raise ProtocolError(f"source id is {len(sid)} bytes, at most {MAX_SOURCE_ID} allowed")
    w, h = frame.image_size
    if not (0 <= w < 65536 and 0 <= h < 65536):
        raise ProtocolError(f"image size {frame.image_size} does not fit u16")
    if frame.flags & ~_KNOWN_FLAGS:
        raise ProtocolError(f"unknown flag bits {frame.flags:#x}")
    arrays = [np.ascontiguousarray(a, dtype="<f4") for a in (frame.scores, frame.image, frame.world)]
    if not all(np.isfinite(a).all() for a in arrays):
        raise ProtocolError("a PoseFrame must hold finite values only (drop or fill missing joints first)")
    header = _HEADER.pack(
        MAGIC, VERSION, frame.flags, frame.seq, frame.t_capture_ns,
        frame.t_publish_ns if t_publish_ns is None else t_publish_ns,
        int(layout), w, h, P, len(sid),
    )
    return b"".join([header, sid, *(a.tobytes() for a in arrays)])


def decode(message: bytes | bytearray | memoryview) -> PoseFrame:
    """Decode and validate one message (pure).

    Checks, in order: size of the header, magic, version, flags, layout, counts, the exact
    total size, the source id's UTF-8, finite values, score and visibility ranges.

    Raises:
        ProtocolError: the first failed check, with what was expected.
    """
    buf = bytes(message)
    if len(buf) < HEADER_SIZE:
        raise ProtocolError(f"message of {len(buf)} bytes is shorter than the {HEADER_SIZE}-byte header")
    magic, version, flags, seq, t_cap, t_pub, layout_id, w, h, P, S = _HEADER.unpack_from(buf)
    if magic != MAGIC:
        raise ProtocolError(f"bad magic {magic!r}: not a PoseFrame (expected {MAGIC!r})")
    if version != VERSION:
        raise ProtocolError(f"PoseFrame version {version} is not supported (this build reads {VERSION})")
    if flags & ~_KNOWN_FLAGS:
        raise ProtocolError(f"unknown flag bits {flags:#x}")
    try:
        layout = Layout(layout_id)
    except ValueError as exc:
        raise ProtocolError(f"unknown layout id {layout_id}") from exc
    if P > MAX_PEOPLE:
        raise ProtocolError(f"{P} people in one frame, at most {MAX_PEOPLE} allowed")
    if S > MAX_SOURCE_ID:
        raise ProtocolError(f"source id of {S} bytes, at most {MAX_SOURCE_ID} allowed")
    L = LAYOUT_SIZES[layout]
    expected = HEADER_SIZE + S + payload_size(P, L)
    if len(buf) != expected:
        raise ProtocolError(
            f"message is {len(buf)} bytes, but its header ({P} people, layout {layout.name}) needs {expected}"
        )
    try:
        source_id = buf[HEADER_SIZE : HEADER_SIZE + S].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError("source id is not valid UTF-8") from exc
    data = np.frombuffer(buf, dtype="<f4", offset=HEADER_SIZE + S).astype(np.float32)
    if not np.isfinite(data).all():
        raise ProtocolError("payload holds non-finite values (NaN or inf)")
    scores = data[:P]
    image = data[P : P + P * L * 4].reshape(P, L, 4)
    world = data[P + P * L * 4 :].reshape(P, L, 3)
    if ((scores < 0) | (scores > 1)).any():
        raise ProtocolError("detection scores must lie in [0, 1]")
    vis = image[..., 3]
    if ((vis < 0) | (vis > 1)).any():
        raise ProtocolError("landmark visibility must lie in [0, 1]")
    return PoseFrame(
        seq=seq, t_capture_ns=t_cap, layout=layout, scores=scores, image=image, world=world,
        source_id=source_id, image_size=(w, h), t_publish_ns=t_pub, flags=flags,
    )
