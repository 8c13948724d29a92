"""PoseFrame encode/decode: round trips and rejection of garbage (property-based)."""

from __future__ import annotations

import contextlib
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from stream.protocol import (
    HEADER_SIZE,
    MAX_PEOPLE,
    PoseFrame,
    ProtocolError,
    decode,
    encode,
)
from stream.skeleton import LAYOUT_SIZES, Layout

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=32)
unit = st.floats(0, 1, allow_nan=False, width=32)


@st.composite
def frames(draw: st.DrawFn) -> PoseFrame:
    layout = draw(st.sampled_from(list(Layout)))
    L = LAYOUT_SIZES[layout]
    P = draw(st.integers(0, 4))
    image = draw(hnp.arrays(np.float32, (P, L, 4), elements=finite))
    image[..., 3] = draw(hnp.arrays(np.float32, (P, L), elements=unit))
    return PoseFrame(
        seq=draw(st.integers(0, 2**64 - 1)),
        t_capture_ns=draw(st.integers(-(2**63), 2**63 - 1)),
        layout=layout,
        scores=draw(hnp.arrays(np.float32, (P,), elements=unit)),
        image=image,
        world=draw(hnp.arrays(np.float32, (P, L, 3), elements=finite)),
        source_id=draw(st.text(max_size=16)),
        image_size=(draw(st.integers(0, 65535)), draw(st.integers(0, 65535))),
        t_publish_ns=draw(st.integers(0, 2**63 - 1)),
    )


@settings(max_examples=200, deadline=None)
@given(frames())
def test_round_trip_is_exact(frame: PoseFrame) -> None:
    msg = encode(frame)
    assert decode(msg) == frame
    assert encode(decode(msg)) == msg  # bit-exact both ways


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_garbage_is_rejected_with_protocol_error(blob: bytes) -> None:
    try:
        decode(blob)
    except ProtocolError:
        return
    # the only garbage that may decode is a well-formed frame; re-encoding must reproduce it
    assert encode(decode(blob)) == blob


@settings(max_examples=200, deadline=None)
@given(frames(), st.data())
def test_truncation_and_bit_flips_never_escape_as_other_errors(frame: PoseFrame, data: st.DataObject) -> None:
    msg = bytearray(encode(frame))
    cut = data.draw(st.integers(0, len(msg) - 1))
    with pytest.raises(ProtocolError):
        decode(bytes(msg[:cut]))
    pos = data.draw(st.integers(0, len(msg) - 1))
    msg[pos] ^= 1 << data.draw(st.integers(0, 7))
    with contextlib.suppress(ProtocolError):
        decode(bytes(msg))


def _frame(P: int = 2) -> PoseFrame:
    L = LAYOUT_SIZES[Layout.MEDIAPIPE33]
    rng = np.random.default_rng(0)
    image = rng.random((P, L, 4), dtype=np.float32)
    return PoseFrame(
        seq=7, t_capture_ns=123, layout=Layout.MEDIAPIPE33,
        scores=np.full(P, 0.9, np.float32), image=image,
        world=rng.normal(size=(P, L, 3)).astype(np.float32), source_id="camera:0", image_size=(640, 480),
    )


def test_header_fields_and_size() -> None:
    f = _frame()
    msg = encode(f, t_publish_ns=999)
    assert msg[:4] == b"ISPF"
    assert len(msg) == HEADER_SIZE + len("camera:0") + 4 * 2 * (1 + 33 * 7)
    d = decode(msg)
    assert (d.seq, d.t_capture_ns, d.t_publish_ns, d.image_size, d.num_people) == (7, 123, 999, (640, 480), 2)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda m: b"XXXX" + m[4:], "bad magic"),
        (lambda m: m[:4] + struct.pack("<H", 9) + m[6:], "version 9 is not supported"),
        (lambda m: m[:32] + struct.pack("<H", 77) + m[34:], "unknown layout id 77"),
        (lambda m: m[:-1], "needs"),
        (lambda m: m + b"\0", "needs"),
        (lambda m: m[:10], "shorter than the 40-byte header"),
        (lambda m: m[:-4] + np.float32(np.nan).tobytes(), "non-finite"),
    ],
)
def test_specific_rejections(mutate, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ProtocolError, match=match):
        decode(mutate(encode(_frame())))


def test_encode_refuses_bad_frames() -> None:
    f = _frame()
    with pytest.raises(ProtocolError, match="finite"):
        encode(PoseFrame(**{**f.__dict__, "world": np.full_like(f.world, np.nan)}))
    with pytest.raises(ProtocolError, match=r"needs image \(2, 33, 4\)"):
        encode(PoseFrame(**{**f.__dict__, "image": f.image[:, :10]}))
    many = MAX_PEOPLE + 1
    with pytest.raises(ProtocolError, match="at most 16 people"):
        encode(PoseFrame(**{**f.__dict__, "scores": np.ones(many, np.float32)}))
    with pytest.raises(ProtocolError, match="source id is 65 bytes"):
        encode(PoseFrame(**{**f.__dict__, "source_id": "x" * 65}))


def test_visibility_and_score_ranges_checked() -> None:
    f = _frame()
    bad = f.image.copy()
    bad[0, 0, 3] = 1.5
    with pytest.raises(ProtocolError, match="visibility"):
        decode(encode(PoseFrame(**{**f.__dict__, "image": bad})))
    with pytest.raises(ProtocolError, match="scores"):
        decode(encode(PoseFrame(**{**f.__dict__, "scores": np.array([0.5, 2.0], np.float32)})))


def test_empty_frame_round_trips() -> None:
    f = PoseFrame.empty(3, 10, Layout.CANONICAL18, source_id="synthetic")
    assert decode(encode(f)) == f and f.num_people == 0
