"""The ZeroMQ transport on real loopback sockets: delivery, latest-wins, garbage, errors."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
import zmq

from stream.protocol import PoseFrame, decode, encode
from stream.skeleton import LAYOUT_SIZES, Layout
from stream.transport import (
    RECORD_RCVHWM,
    DropCounter,
    Publisher,
    Subscriber,
    TransportError,
    check_address,
    decode_or_count,
    is_loopback,
)

ANY_PORT = "tcp://127.0.0.1:*"


def make_frame(seq: int, people: int = 2, seed: int = 0) -> PoseFrame:
    """A MEDIAPIPE33 frame with random landmarks: image (P, 33, 4), world (P, 33, 3) metres."""
    rng = np.random.default_rng(seed + seq)
    L = LAYOUT_SIZES[Layout.MEDIAPIPE33]
    return PoseFrame(
        seq=seq, t_capture_ns=1_000_000 * seq, layout=Layout.MEDIAPIPE33,
        scores=rng.random(people, dtype=np.float32),
        image=rng.random((people, L, 4), dtype=np.float32),
        world=rng.normal(0, 0.5, (people, L, 3)).astype(np.float32),
        source_id="test",
    )


def wait_queued(sub: Subscriber, seconds: float = 0.5) -> None:
    """Give loopback TCP time to move everything sent into the subscriber's queue."""
    sub.socket.poll(2000, zmq.POLLIN)
    time.sleep(seconds)


def test_send_stamps_publish_time_and_subscriber_receives() -> None:
    frame = make_frame(7)
    with Publisher(ANY_PORT) as pub, Subscriber(pub.address) as sub:
        assert pub.wait_for_subscribers(1, timeout_s=10)
        before = time.monotonic_ns()
        assert pub.send(frame)
        after = time.monotonic_ns()
        message = sub.recv(timeout_ms=5000)
    assert message is not None
    got = decode(message)
    assert before <= got.t_publish_ns <= after
    assert got.seq == 7 and np.array_equal(got.world, frame.world) and np.array_equal(got.image, frame.image)
    assert frame.t_publish_ns == 0  # the caller's frame is not modified


def test_recv_returns_every_message_in_order() -> None:
    messages = [encode(make_frame(i)) for i in range(200)]
    with Publisher(ANY_PORT, sndhwm=1000) as pub, Subscriber(pub.address, rcvhwm=RECORD_RCVHWM) as sub:
        assert pub.wait_for_subscribers(1, timeout_s=10)
        for m in messages:
            assert pub.send_raw(m)
        got = [sub.recv(timeout_ms=5000) for _ in messages]
        assert sub.recv(timeout_ms=50) is None
    assert got == messages
    assert pub.sent == 200 and sub.received == 200 and sub.skipped == 0


def test_subscriber_that_falls_behind_gets_only_the_newest_with_skip_count() -> None:
    # sndhwm 100: the test sends 20 back to back and needs all of them on the wire.
    with Publisher(ANY_PORT, sndhwm=100) as pub, Subscriber(pub.address) as sub:
        assert pub.wait_for_subscribers(1, timeout_s=10)
        for i in range(20):
            pub.send(make_frame(i))
        wait_queued(sub)  # the consumer is "busy": 20 frames pile up
        latest = sub.recv_latest(timeout_ms=1000)
        assert latest is not None
        assert decode(latest.message).seq == 19
        assert latest.skipped == 19
        assert sub.latest() is None  # nothing older is left behind
        pub.send(make_frame(20))
        again = sub.recv_latest(timeout_ms=5000)
    assert again is not None and decode(again.message).seq == 20 and again.skipped == 0
    assert sub.skipped == 19 and sub.received == 21


def test_recv_latest_times_out_with_none() -> None:
    with Publisher(ANY_PORT) as pub, Subscriber(pub.address) as sub:
        t = time.monotonic()
        assert sub.recv_latest(timeout_ms=100) is None
        assert time.monotonic() - t >= 0.09
        assert sub.recv(timeout_ms=0) is None
        assert pub.sent == 0


def test_garbage_reaches_the_consumer_as_bytes_and_is_counted_once_per_kind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = encode(make_frame(3))
    garbage = [b"hello", b"X" * 200, good[:-4], b"nope" * 30]
    with Publisher(ANY_PORT) as pub, Subscriber(pub.address, rcvhwm=RECORD_RCVHWM) as sub:
        assert pub.wait_for_subscribers(1, timeout_s=10)
        for m in [*garbage, good]:
            pub.send_raw(m)
        got = [sub.recv(timeout_ms=5000) for _ in range(5)]
    assert got == [*garbage, good]  # the transport moves bytes, whatever they are
    counter = DropCounter()
    with caplog.at_level(logging.WARNING, logger="stream.transport"):
        frames = [decode_or_count(m, counter) for m in got if m is not None]
    assert frames[:4] == [None] * 4 and frames[4] == make_frame(3)
    assert counter.by_kind == {
        "shorter than a header": 1, "bad magic": 2, "message is … bytes, but its header … needs …": 1,
    }
    assert counter.total == 4
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3  # "bad magic" twice, logged once
    assert counter.summary().startswith("4 (bad magic: 2")


def test_multipart_message_is_delivered_joined() -> None:
    with Publisher(ANY_PORT) as pub, Subscriber(pub.address) as sub:
        assert pub.wait_for_subscribers(1, timeout_s=10)
        pub.socket.send_multipart([b"ab", b"cd", b"ef"])
        assert sub.recv(timeout_ms=5000) == b"abcdef"
        assert sub.received == 1


@pytest.mark.timeout(60)
def test_publisher_without_subscriber_never_blocks() -> None:
    frame = encode(make_frame(0))
    with Publisher(ANY_PORT) as pub:
        for _ in range(20_000):
            pub.send_raw(frame)
    assert pub.sent == 20_000 and pub.refused == 0


def test_slow_subscriber_does_not_block_the_publisher() -> None:
    with Publisher(ANY_PORT) as pub, Subscriber(pub.address, rcvhwm=1) as sub:
        assert pub.wait_for_subscribers(1, timeout_s=10)
        for i in range(5000):  # far more than both queues hold: ZeroMQ drops, send returns
            pub.send(make_frame(i % 3))
        assert pub.sent == 5000
        wait_queued(sub, 0.2)
        latest = sub.recv_latest(timeout_ms=1000)
    assert latest is not None and latest.skipped < 5000


def test_configure_hook_runs_before_bind_and_connect() -> None:
    seen: list[tuple[int, bytes]] = []

    def hook(sock: zmq.Socket) -> None:
        seen.append((int(sock.getsockopt(zmq.TYPE)), bytes(sock.getsockopt(zmq.LAST_ENDPOINT))))
        sock.setsockopt(zmq.SNDTIMEO, 1234)

    with Publisher(ANY_PORT, configure=hook) as pub, Subscriber(pub.address, configure=hook) as sub:
        assert pub.socket.getsockopt(zmq.SNDTIMEO) == 1234
        assert sub.socket.getsockopt(zmq.SNDTIMEO) == 1234
    assert seen == [(zmq.XPUB, b""), (zmq.SUB, b"")]  # not yet bound / connected


def test_binding_a_port_in_use_is_a_named_error() -> None:
    with Publisher(ANY_PORT) as first, pytest.raises(TransportError, match="already uses it"):
        Publisher(first.address).__enter__()


def test_bad_address_is_a_named_error() -> None:
    with pytest.raises(TransportError, match="bad ZeroMQ address"):
        check_address("127.0.0.1:5555")
    with pytest.raises(TransportError, match="bad ZeroMQ address"):
        Subscriber("udp://127.0.0.1:5555")
    with pytest.raises(TransportError, match="cannot connect tcp://no-port"):
        Subscriber("tcp://no-port").__enter__()


def test_not_opened_socket_is_a_named_error() -> None:
    with pytest.raises(TransportError, match="not open"):
        Publisher(ANY_PORT).send_raw(b"x")


@pytest.mark.parametrize(
    ("address", "local"),
    [
        ("tcp://127.0.0.1:5555", True), ("tcp://localhost:5555", True), ("tcp://[::1]:5555", True),
        ("tcp://127.0.0.2:*", True), ("ipc:///tmp/x", True), ("inproc://x", True),
        ("tcp://*:5555", False), ("tcp://0.0.0.0:5555", False), ("tcp://192.168.1.20:5555", False),
        ("tcp://127.0.0.1:4000;192.168.1.20:5555", False),
    ],
)
def test_is_loopback(address: str, local: bool) -> None:
    assert is_loopback(address) is local


def test_unencrypted_remote_address_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="stream.transport"):
        with Subscriber("tcp://127.0.0.1:5999"):
            pass
        assert not caplog.records
        with Subscriber("tcp://192.0.2.1:5999"):  # TEST-NET-1: connect is asynchronous
            pass
    assert len(caplog.records) == 1 and "not loopback and not encrypted" in caplog.records[0].getMessage()
