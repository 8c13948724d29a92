"""ZeroMQ transport for PoseFrame messages: a publisher and a subscriber behind context managers.

The transport only moves bytes. One PoseFrame is one single-part message (see
:mod:`stream.protocol`); nothing here decodes what it receives. Consumers turn bytes into
frames with :func:`decode_or_count`, which applies the project's rule for bad input: count
it, log it once per kind, drop it.

Real-time rules implemented here:

* The publisher never blocks. It sends with ``NOBLOCK`` into a small send queue
  (:data:`PUB_SNDHWM` messages per subscriber); when a subscriber is slow or absent ZeroMQ
  drops for it, and the capture keeps running. ``linger`` is 0 by default, so closing never
  waits for a peer that is gone.
* "Latest frame wins": :meth:`Subscriber.recv_latest` drains everything queued and returns
  only the newest message with the number it skipped. ``ZMQ_CONFLATE`` is not used because
  it cannot report the skip count.
* :meth:`Subscriber.recv` returns every message in order; with
  ``rcvhwm=`` :data:`RECORD_RCVHWM` (what ``istrings record`` uses) nothing is dropped.

The publisher is an ``XPUB`` socket (a ``PUB`` that also sees subscriptions), so a replay
can wait until its subscribers are connected (:meth:`Publisher.wait_for_subscribers`);
plain ``SUB`` sockets connect to it exactly as to a ``PUB``.

Defaults bind and connect to loopback (:data:`DEFAULT_ADDRESS`). Any other address must be
passed explicitly; when it is not loopback and the socket has no CURVE security (the
``configure`` hook, applied before bind/connect, is where the capture code enables CURVE),
a warning is logged once per socket.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import NamedTuple

import zmq

from stream.errors import IStringsError
from stream.protocol import HEADER_SIZE, MAGIC, VERSION, PoseFrame, ProtocolError, decode, encode

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"
PUB_SNDHWM = 16
"""Messages queued per subscriber before the publisher drops for it (~0.25 s at 60 fps)."""
SUB_RCVHWM = 1000
"""Receive queue of a latest-wins subscriber (drained on every read, so it stays short)."""
RECORD_RCVHWM = 1_000_000
"""Receive queue of a subscriber that must lose nothing (``istrings record``)."""
MAX_MESSAGE_BYTES = 1 << 20
"""Largest message a subscriber accepts (1 MiB; a PoseFrame is at most ~20 KB). ZeroMQ
disconnects a peer that sends more."""

Configure = Callable[[zmq.Socket], None]
"""A hook applied to a fresh socket before bind/connect (e.g. CURVE keys)."""

_SCHEMES = ("tcp", "ipc", "inproc")
_LOOPBACK_HOSTS = {"localhost", "::1", "[::1]", "lo"}


class TransportError(IStringsError, RuntimeError):
    """A socket cannot bind or connect (bad address, port in use, …)."""


def check_address(address: str) -> str:
    """Validate a ZeroMQ endpoint ``scheme://where`` and return it.

    Raises:
        TransportError: the address has no supported scheme (``tcp``, ``ipc``, ``inproc``).
    """
    scheme, sep, rest = address.partition("://")
    if not sep or scheme not in _SCHEMES or not rest:
        raise TransportError(
            f"bad ZeroMQ address {address!r}: use scheme://where, e.g. {DEFAULT_ADDRESS} "
            f"(schemes: {', '.join(_SCHEMES)})"
        )
    return address


def is_loopback(address: str) -> bool:
    """True when ``address`` stays on this host (loopback TCP, ``ipc``, ``inproc``)."""
    scheme, _, rest = check_address(address).partition("://")
    if scheme != "tcp":
        return True
    host = rest.rsplit(";", 1)[-1].rsplit(":", 1)[0]  # "src;dst:port" → dst host
    return host in _LOOPBACK_HOSTS or host.startswith("127.")


def _prepare(sock: zmq.Socket, address: str, configure: Configure | None, verb: str) -> None:
    """Apply the hook, warn about unencrypted non-loopback use, then bind or connect."""
    if configure is not None:
        configure(sock)
    if not is_loopback(address) and sock.getsockopt(zmq.MECHANISM) != zmq.CURVE:
        log.warning(
            "%s %s: not loopback and not encrypted; anyone on that network can read or send "
            "frames (enable CURVE, see `istrings keys`)", verb, address,
        )
    try:
        if verb == "binding":
            sock.bind(address)
        else:
            sock.connect(address)
    except zmq.ZMQError as exc:
        hint = (
            "another process already uses it: stop it or choose another port"
            if exc.errno == zmq.EADDRINUSE else "check the address"
        )
        raise TransportError(f"cannot {verb.removesuffix('ing')} {address}: {exc.strerror}; {hint}") from exc


class Publisher:
    """Bind a publisher and send PoseFrames without ever blocking.

    Args:
        address: endpoint to bind; ``tcp://127.0.0.1:*`` picks a free port (see :attr:`address`).
        sndhwm: messages queued per subscriber before dropping for it.
        linger_ms: how long closing waits to deliver queued messages (0: never wait).
        configure: hook applied to the socket before binding (e.g. CURVE server keys).
        context: ZeroMQ context, default the process-wide instance.

    Use as ``with Publisher(addr) as pub: pub.send(frame)``.
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        sndhwm: int = PUB_SNDHWM,
        linger_ms: int = 0,
        configure: Configure | None = None,
        context: zmq.Context | None = None,
    ) -> None:
        self._requested = check_address(address)
        self._sndhwm = sndhwm
        self._linger_ms = linger_ms
        self._configure = configure
        self._context = context or zmq.Context.instance()
        self._sock: zmq.Socket | None = None
        self.address = address
        """The bound endpoint (with the real port when ``*`` was asked)."""
        self.sent = 0
        """Messages handed to ZeroMQ."""
        self.refused = 0
        """Messages ZeroMQ refused at once (``EAGAIN``); a ``PUB`` normally drops silently instead."""
        self.subscriptions = 0
        """Subscriptions seen so far (each connected ``SUB`` subscribes once)."""

    def __enter__(self) -> Publisher:
        sock = self._context.socket(zmq.XPUB)
        try:
            sock.setsockopt(zmq.SNDHWM, self._sndhwm)
            sock.setsockopt(zmq.LINGER, self._linger_ms)
            sock.setsockopt(zmq.XPUB_VERBOSE, 1)  # pass every subscription up, to count them
            _prepare(sock, self._requested, self._configure, "binding")
            self.address = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        except BaseException:
            sock.close(linger=0)
            raise
        self._sock = sock
        log.info("publishing on %s", self.address)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket (waiting at most ``linger_ms`` for queued messages)."""
        if self._sock is not None:
            self._sock.close(linger=self._linger_ms)
            self._sock = None

    @property
    def socket(self) -> zmq.Socket:
        if self._sock is None:
            raise TransportError("the publisher is not open: use it as `with Publisher(...) as pub:`")
        return self._sock

    def send(self, frame: PoseFrame) -> bool:
        """Encode ``frame`` stamped with ``t_publish_ns = time.monotonic_ns()`` and send it.

        Returns:
            False when ZeroMQ refused the message at once (it is then dropped).

        Raises:
            ProtocolError: the frame cannot be encoded.
        """
        return self.send_raw(encode(frame, t_publish_ns=time.monotonic_ns()))

    def send_raw(self, message: bytes) -> bool:
        """Send bytes as one message, unchanged (a replay sends recorded bytes this way)."""
        try:
            self.socket.send(message, zmq.NOBLOCK, copy=len(message) < 65536)
        except zmq.Again:
            self.refused += 1
            return False
        self.sent += 1
        if self.sent % 256 == 0:
            self._read_subscriptions()  # keep the (tiny) subscription queue from growing
        return True

    def _read_subscriptions(self) -> None:
        sock = self.socket
        while True:
            try:
                msg = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if msg[:1] == b"\x01":
                self.subscriptions += 1

    def wait_for_subscribers(
        self, count: int, timeout_s: float, should_stop: Callable[[], bool] = lambda: False
    ) -> bool:
        """Wait until ``count`` subscriptions have arrived (the cure for ZeroMQ's slow joiner).

        Returns:
            True when they arrived; False after ``timeout_s`` seconds or when ``should_stop()``
            (polled every 100 ms) says so.
        """
        deadline = time.monotonic() + timeout_s
        self._read_subscriptions()
        while self.subscriptions < count:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0 or should_stop():
                return False
            if self.socket.poll(min(left_ms, 100), zmq.POLLIN):
                self._read_subscriptions()
        return True


class Latest(NamedTuple):
    """The newest message of a drained queue and how many older ones were skipped."""

    message: bytes
    skipped: int


class Subscriber:
    """Connect a subscriber to every message of a publisher.

    Args:
        address: endpoint to connect to (the publisher may bind later; ZeroMQ reconnects).
        rcvhwm: receive queue length; :data:`RECORD_RCVHWM` to lose nothing.
        max_message_bytes: larger messages make ZeroMQ drop the connection.
        configure: hook applied to the socket before connecting (e.g. CURVE client keys).
        context: ZeroMQ context, default the process-wide instance.

    A multi-part message (never sent by this project) is returned as its parts joined, so a
    consumer rejects it as one bad message.
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        rcvhwm: int = SUB_RCVHWM,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        configure: Configure | None = None,
        context: zmq.Context | None = None,
    ) -> None:
        self.address = check_address(address)
        self._rcvhwm = rcvhwm
        self._max_message_bytes = max_message_bytes
        self._configure = configure
        self._context = context or zmq.Context.instance()
        self._sock: zmq.Socket | None = None
        self.received = 0
        """Messages taken from the socket (including skipped ones)."""
        self.skipped = 0
        """Messages dropped by :meth:`recv_latest` because a newer one was queued."""

    def __enter__(self) -> Subscriber:
        sock = self._context.socket(zmq.SUB)
        try:
            sock.setsockopt(zmq.RCVHWM, self._rcvhwm)
            sock.setsockopt(zmq.MAXMSGSIZE, self._max_message_bytes)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SUBSCRIBE, b"")
            _prepare(sock, self.address, self._configure, "connecting")
        except BaseException:
            sock.close(linger=0)
            raise
        self._sock = sock
        log.info("subscribed to %s", self.address)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None

    @property
    def socket(self) -> zmq.Socket:
        if self._sock is None:
            raise TransportError("the subscriber is not open: use it as `with Subscriber(...) as sub:`")
        return self._sock

    def _take(self) -> bytes | None:
        """One queued message, or None when the queue is empty (never blocks)."""
        sock = self.socket
        try:
            first = sock.recv(zmq.NOBLOCK)
        except zmq.Again:
            return None
        if sock.getsockopt(zmq.RCVMORE):
            parts = [first]
            while sock.getsockopt(zmq.RCVMORE):
                parts.append(sock.recv())  # the rest of a multi-part message is already here
            first = b"".join(parts)
        self.received += 1
        return first

    def _wait(self, timeout_ms: int | None) -> bool:
        """Wait for a message; ``None`` waits forever, 0 does not wait."""
        return bool(self.socket.poll(timeout_ms, zmq.POLLIN))

    def recv(self, timeout_ms: int | None = None) -> bytes | None:
        """The next message in order, or None after ``timeout_ms`` (None: wait forever)."""
        message = self._take()
        if message is None and self._wait(timeout_ms):
            message = self._take()
        return message

    def recv_latest(self, timeout_ms: int | None = 0) -> Latest | None:
        """Drain the queue and return only the newest message (latest frame wins).

        Waits up to ``timeout_ms`` for the first message when none is queued (0: never wait,
        None: forever). Returns None on timeout.
        """
        newest = self._take()
        if newest is None:
            if not self._wait(timeout_ms):
                return None
            newest = self._take()
            if newest is None:
                return None
        skipped = 0
        while (newer := self._take()) is not None:
            newest = newer
            skipped += 1
        self.skipped += skipped
        return Latest(newest, skipped)

    def latest(self) -> Latest | None:
        """The newest queued message without waiting (see :meth:`recv_latest`)."""
        return self.recv_latest(0)


@dataclass
class DropCounter:
    """Counts of messages dropped because they did not decode, by kind of failure.

    Each kind is logged once (at WARNING) when first seen; later ones are only counted.
    """

    by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())

    def count(self, kind: str, detail: str) -> None:
        if kind not in self.by_kind:
            log.warning("a message is not a valid PoseFrame (%s): %s; further ones of this kind "
                        "are only counted", kind, detail)
            self.by_kind[kind] = 0
        self.by_kind[kind] += 1

    def summary(self) -> str:
        """E.g. ``"3 (bad magic: 2, wrong size: 1)"`` or ``"0"``."""
        if not self.by_kind:
            return "0"
        kinds = ", ".join(f"{k}: {n}" for k, n in sorted(self.by_kind.items()))
        return f"{self.total} ({kinds})"


def failure_kind(message: bytes, error: ProtocolError) -> str:
    """A short, stable name for why ``message`` did not decode (numbers and bytes removed)."""
    if len(message) < HEADER_SIZE:
        return "shorter than a header"
    if message[:4] != MAGIC:
        return "bad magic"
    if int.from_bytes(message[4:6], "little") != VERSION:
        return "unsupported version"
    return re.sub(r"b?'[^']*'|\(.*?\)|\d+", "…", str(error))


def decode_or_count(message: bytes, counter: DropCounter) -> PoseFrame | None:
    """Decode one message, or count it in ``counter`` (logged once per kind) and return None."""
    try:
        return decode(message)
    except ProtocolError as exc:
        counter.count(failure_kind(message, exc), str(exc))
        return None
