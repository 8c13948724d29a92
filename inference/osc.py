"""The OSC output of the live process: the schema as data, pure codec functions, a UDP sender.

Everything a patch receives is described once, in :data:`SCHEMA` (address, argument list,
when it is sent). ``docs/osc.md`` documents the same table, ``examples/listener.py`` builds its
dispatcher from it, and the tests check that what the service sends matches it.

Packets. One frame of output (both skeletons, the ``J×J`` string matrix, the strongest strings,
every forecast) is about 3 KB, more than one Ethernet frame: it is split into several bundles,
each at most :data:`MAX_PACKET_BYTES` (1472 bytes, the UDP payload of a 1500-byte MTU) and each
*self-contained* — messages are never cut, and every bundle starts with
``/istrings/part seq index count``, so a receiver can tell which frame a bundle belongs to and
whether it got all of them. ``/istrings/frame`` and ``/istrings/status`` are in the first bundle.
Bundles carry the OSC time tag "immediately" (1): a receiver never delays them.

Codec functions are pure (bytes in, bytes out) and written with :mod:`struct`: the service
encodes ~30 messages per frame at up to 1,000+ frames/s, which python-osc's builders are too
slow for (python-osc decodes what is sent here in the tests and in ``examples/listener.py``).
Sockets live behind context managers (:class:`OscSender`, :class:`RequestListener`) and only
move bytes; a sender without a listener raises nothing (errors are counted, logged once).
"""

from __future__ import annotations

import errno
import logging
import re
import socket
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from types import TracebackType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from stream.errors import IStringsError

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "/istrings"
DEFAULT_OSC = "127.0.0.1:7000"
"""Where the service sends by default (TouchDesigner/Max on this machine)."""
DEFAULT_LISTEN = "127.0.0.1:7001"
"""Where the service listens for requests (``/istrings/names``) by default: loopback only."""
MAX_PACKET_BYTES = 1472
"""Largest UDP payload sent: 1500-byte Ethernet MTU − 20 (IPv4) − 8 (UDP)."""
DEFAULT_TOP_K = 8
IMMEDIATELY = 1
"""OSC time tag meaning "process at once"."""
BUNDLE_TAG = b"#bundle\x00"

STATES: tuple[str, ...] = ("ok", "one-dancer", "no-dancers", "no-model", "no-input")
"""Values of ``/istrings/status``, in order of precedence (the last that applies wins):
``no-input`` (no frame for ``--input-timeout-s``) > ``no-model`` (the NRI or STGA model is
missing or refused) > ``no-dancers`` > ``one-dancer`` > ``ok``."""

STAGES: tuple[str, ...] = ("receive", "clean", "window", "nri", "stga", "send", "total")
"""Timed stages of a frame, in the order ``/istrings/stats`` reports them (``total`` = added
latency, receive to send)."""


class OscError(IStringsError, ValueError):
    """An OSC address or packet is malformed, or a host:port cannot be used."""


# ---------------------------------------------------------------------------------------------
# the schema


@dataclass(frozen=True)
class Arg:
    """One argument group of a message.

    Attributes:
        name: what it is (``"x, y, z per joint"``).
        types: OSC type tags of one repetition (``"f"``, ``"iif"``, ``"s"``).
        count: repetitions: a number or a symbol — ``J`` joints, ``3J`` (xyz per joint), ``k``
            top strings, ``H`` forecast horizons, ``S`` timed stages, ``0..1`` optional.
        unit: unit of the values (``"m"``, ``"ms"``, ``""``).
    """

    name: str
    types: str
    count: str = "1"
    unit: str = ""


@dataclass(frozen=True)
class AddressSpec:
    """One OSC address of the output (or input) and its arguments.

    Attributes:
        path: address after the prefix; ``{d}`` dancer 0/1, ``{i}`` dancer-0 joint 0..J-1,
            ``{ms}`` a forecast horizon in integer milliseconds.
        args: the argument groups, in order.
        when: when it is sent.
        description: one line for the docs.
        direction: ``"out"`` (service → patch) or ``"in"`` (patch → service).
    """

    path: str
    args: tuple[Arg, ...]
    when: str
    description: str
    direction: str = "out"

    def address(self, prefix: str = DEFAULT_PREFIX, **fields: int) -> str:
        """The concrete address, e.g. ``address(d=0)`` → ``/istrings/dancer/0/joints``."""
        return prefix + self.path.format(**fields)

    def pattern(self, prefix: str = DEFAULT_PREFIX) -> re.Pattern[str]:
        """A regex matching every concrete address of this spec."""
        body = re.escape(self.path).replace(r"\{d\}", "(?P<d>[01])").replace(r"\{i\}", r"(?P<i>\d+)")
        body = body.replace(r"\{ms\}", r"(?P<ms>\d+)")
        return re.compile("^" + re.escape(prefix) + body + "$")

    def type_tags(self, dims: Mapping[str, int]) -> str:
        """The exact OSC type tag string (without the comma) for sizes ``dims`` (``J``, ``k``, ``H``, ``S``)."""
        out = []
        for a in self.args:
            if a.count == "0..1":
                continue  # optional: checked by the receiver of the request
            out.append(a.types * _count(a.count, dims))
        return "".join(out)


def _count(symbol: str, dims: Mapping[str, int]) -> int:
    if symbol.isdigit():
        return int(symbol)
    m = re.fullmatch(r"(\d*)([A-Za-z]+)", symbol)
    if m is None or m.group(2) not in dims:
        raise OscError(f"schema count {symbol!r} needs one of {sorted(dims)}")
    return int(m.group(1) or 1) * int(dims[m.group(2)])


SCHEMA: tuple[AddressSpec, ...] = (
    AddressSpec("/part", (Arg("seq", "i"), Arg("index of this bundle", "i"), Arg("bundles of this frame", "i")),
                "first message of every bundle", "which frame a bundle belongs to, and how many bundles it has"),
    AddressSpec("/frame", (Arg("seq", "i"), Arg("latency capture → send", "f", unit="ms"),
                           Arg("dancers present", "i"), Arg("frames skipped since the last frame sent", "i")),
                "every frame (first bundle)", "frame header: the capture's sequence number, end-to-end latency, "
                "dancers present (0-2), input frames skipped or dropped"),
    AddressSpec("/status", (Arg("state", "s"), Arg("detail", "s")),
                "every frame (first bundle); 4 times a second while no frame arrives",
                f"state: {', '.join(STATES)}; detail: a short human-readable reason"),
    AddressSpec("/presence", (Arg("dancer present (0/1)", "i", "2"),),
                "every frame", "which dancers are present (a held dancer counts as present)"),
    AddressSpec("/dancer/{d}/joints", (Arg("x, y, z per joint", "f", "3J", "m"),),
                "every frame", "cleaned canonical joints of dancer d (canonical order, metres, y up; "
                "the last estimate while a dancer is absent, zeros before it was ever seen)"),
    AddressSpec("/edges/top", (Arg("(i, j, strength) triples, strongest first", "iif", "k"),),
                "every frame", "the k strongest strings: dancer-0 joint i, dancer-1 joint j, strength in [0, 1]"),
    AddressSpec("/edges/{i}", (Arg("strength to every dancer-1 joint", "f", "J"),),
                "every frame", "row i of the string matrix: dancer-0 joint i vs dancer-1 joints 0..J-1, "
                "smoothed strengths in [0, 1] (zeros without an NRI model)"),
    AddressSpec("/forecast/{ms}/dancer/{d}", (Arg("x, y, z per joint", "f", "3J", "m"),),
                "every frame, one per horizon (only with an STGA model)",
                "forecast joints of dancer d, ms milliseconds after the frame's capture (STGA-Net "
                "blended online with the better of zero and constant velocity by their recent errors; "
                "`infer --gate-tau-s 0`: the model alone). STGA-Net runs at most once per frame of its model "
                "(1/60 s for the bundled one, `infer --stga-interval-s`): above that input rate a frame "
                "repeats the last forecast, made less than 1/60 s before it"),
    AddressSpec("/stats", (Arg("frames sent per second", "f"), Arg("frames skipped, total", "i"),
                           Arg("messages dropped as invalid, total", "i"),
                           Arg("(p50, p99) per stage", "ff", "S", "ms")),
                "once a second", f"rolling timings of the stages {', '.join(STAGES)} (p50, p99 each)"),
    AddressSpec("/forecast/error", (Arg("(horizon ms, mean joint error m, forecasts scored)", "ifi", "H"),),
                "once a second (only with an STGA model)",
                "mean per-joint position error so far of every horizon's forecasts as sent, against the frame "
                "that arrived at it"),
    AddressSpec("/names", (Arg("joint name", "s", "J"),),
                "at start, and in answer to a /names request", "canonical joint names, in order (for OSC In DAT)"),
    AddressSpec("/horizons", (Arg("forecast horizon", "i", "H", "ms"),),
                "with /names", "the forecast horizons of the STGA model (no arguments without one)"),
    AddressSpec("/names", (Arg("reply port", "i", "0..1"),), "any time",
                "request: answer with /names and /horizons to the requester's address (to PORT on the "
                "requester's host when given)", direction="in"),
)


def out_specs() -> tuple[AddressSpec, ...]:
    """The addresses the service sends."""
    return tuple(s for s in SCHEMA if s.direction == "out")


def match(address: str, prefix: str = DEFAULT_PREFIX, direction: str = "out") -> tuple[AddressSpec, dict[str, int]]:
    """The spec of a concrete address and its fields (``d``, ``i``, ``ms``).

    Raises:
        OscError: the address is not in the schema.
    """
    for spec in SCHEMA:
        if spec.direction != direction:
            continue
        m = spec.pattern(prefix).match(address)
        if m is not None:
            return spec, {k: int(v) for k, v in m.groupdict().items()}
    raise OscError(f"{address!r} is not an address of the istrings OSC schema (see docs/osc.md)")


# ---------------------------------------------------------------------------------------------
# encoding (pure)


def osc_string(text: str) -> bytes:
    """An OSC-string: ASCII/UTF-8 bytes, a NUL, padded with NULs to a multiple of 4 bytes."""
    raw = text.encode("utf-8")
    if b"\x00" in raw:
        raise OscError(f"an OSC string cannot contain NUL: {text!r}")
    return raw + b"\x00" * (4 - len(raw) % 4)


@lru_cache(maxsize=4096)
def message_header(address: str, type_tags: str) -> bytes:
    """Address and type tag string of a message (cached: the service reuses a few dozen)."""
    if not address.startswith("/"):
        raise OscError(f"an OSC address starts with '/', got {address!r}")
    return osc_string(address) + osc_string("," + type_tags)


@lru_cache(maxsize=64)
def _struct(type_tags: str) -> struct.Struct:
    return struct.Struct(">" + type_tags.replace("s", ""))


def encode_message(address: str, type_tags: str, args: Sequence[Any]) -> bytes:
    """One OSC message with ``i`` (int32), ``f`` (float32) and ``s`` (string) arguments.

    Raises:
        OscError: an unknown type tag, or as many arguments as tags.
    """
    if len(type_tags) != len(args):
        raise OscError(f"{address}: {len(type_tags)} type tags for {len(args)} arguments")
    if set(type_tags) - set("ifs"):
        raise OscError(f"{address}: only i, f and s arguments are sent, got {type_tags!r}")
    head = message_header(address, type_tags)
    if "s" not in type_tags:
        return head + _struct(type_tags).pack(*args)
    parts = [head]
    for t, a in zip(type_tags, args, strict=True):
        parts.append(osc_string(str(a)) if t == "s" else struct.pack(">" + t, a))
    return b"".join(parts)


def encode_floats(address: str, values: NDArray[np.floating]) -> bytes:
    """A message of float32 arguments from any array (flattened in C order)."""
    flat = np.asarray(values, dtype=">f4").reshape(-1)
    return message_header(address, "f" * flat.size) + flat.tobytes()


def encode_bundle(messages: Iterable[bytes], timetag: int = IMMEDIATELY) -> bytes:
    """An OSC bundle of already-encoded messages."""
    parts = [BUNDLE_TAG, struct.pack(">Q", timetag)]
    for m in messages:
        parts.append(struct.pack(">i", len(m)))
        parts.append(m)
    return b"".join(parts)


def _pack_groups(sizes: Sequence[int], prefix: str, max_bytes: int) -> list[list[int]]:
    """Greedy packing of messages of these byte sizes, in order, into bundles of at most
    ``max_bytes`` that each start with a ``/part`` message: the indices of each bundle's messages.

    Raises:
        OscError: one message alone does not fit a bundle.
    """
    part_size = len(message_header(prefix + "/part", "iii")) + 12
    budget = max_bytes - 16 - (4 + part_size)  # bundle tag + time tag, then the /part element
    groups: list[list[int]] = [[]]
    used = 0
    for k, size in enumerate(sizes):
        need = 4 + size
        if need > budget:
            raise OscError(f"an OSC message of {size} bytes cannot fit a {max_bytes}-byte packet")
        if used + need > budget and groups[-1]:
            groups.append([])
            used = 0
        groups[-1].append(k)
        used += need
    return groups


def split_bundles(
    seq: int, messages: Sequence[bytes], prefix: str = DEFAULT_PREFIX, max_bytes: int = MAX_PACKET_BYTES
) -> list[bytes]:
    """Pack messages, in order, into as few bundles of at most ``max_bytes`` as greedy packing gives,
    each starting with ``/part seq index count``.

    Raises:
        OscError: one message alone does not fit a bundle.
    """
    groups = _pack_groups([len(m) for m in messages], prefix, max_bytes)
    s = int(seq) & 0x7FFFFFFF
    n = len(groups)
    return [encode_bundle([encode_message(prefix + "/part", "iii", (s, k, n)), *(messages[i] for i in g)])
            for k, g in enumerate(groups)]


@dataclass(frozen=True, eq=False)
class FrameOutput:
    """Everything sent for one frame.

    Attributes:
        seq: the input PoseFrame's sequence number (sent modulo 2³¹).
        latency_ms: capture → send, milliseconds.
        present: ``(D,)`` bool.
        skipped: input frames skipped or dropped since the last frame sent.
        status: one of :data:`STATES`.
        detail: short reason.
        joints: ``(D, J, 3)`` metres.
        strengths: ``(J, J)`` in [0, 1]: dancer-0 joint i vs dancer-1 joint j.
        forecasts: horizon in ms → ``(D, J, 3)`` metres.
    """

    seq: int
    latency_ms: float
    present: NDArray[np.bool_]
    skipped: int
    status: str
    detail: str
    joints: NDArray[np.float32]
    strengths: NDArray[np.float32]
    forecasts: Mapping[int, NDArray[np.float32]] = field(default_factory=dict)


def _top_flat(strengths: NDArray[np.floating], k: int) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
    """Flat indices ``i·J + j`` and strengths of the ``k`` strongest pairs with strength > 0,
    strongest first (ties: the lower flat index first)."""
    flat = np.asarray(strengths, dtype=np.float32).reshape(-1)  # (J·J,)
    k = min(k, flat.size)
    if k <= 0:
        return np.zeros(0, np.intp), np.zeros(0, np.float32)
    idx = np.argsort(-flat, kind="stable")[:k]  # stable: equal strengths keep the lower flat index first
    idx = idx[flat[idx] > 0]
    return idx, flat[idx]


def top_strings(strengths: NDArray[np.floating], k: int) -> list[tuple[int, int, float]]:
    """The ``k`` strongest ``(i, j, strength)`` of a ``(J, J)`` matrix, strongest first (ties: lower
    flat index first). Pairs of strength 0 are no strings and never listed, so without an NRI model
    (or before its first window) the list is empty."""
    idx, val = _top_flat(strengths, k)
    J1 = np.shape(strengths)[1]
    return [(int(q // J1), int(q % J1), float(v)) for q, v in zip(idx, val, strict=True)]


@dataclass(frozen=True)
class _FrameLayout:
    """The packets of every frame with one layout, numbers left at zero, and where the numbers go.

    Attributes:
        template: ``(W,)`` big-endian 32-bit words: all packets one after the other.
        bounds: ``(start, end)`` byte range of each packet in the template.
        slots: ``(S,)`` word index of each number, in the order :func:`encode_frame` lists them:
            ``/part`` seq of each packet, then the numbers of the frame's messages in order.
    """

    template: NDArray[np.uint32]
    bounds: tuple[tuple[int, int], ...]
    slots: NDArray[np.intp]


@lru_cache(maxsize=256)
def _frame_layout(prefix: str, D: int, J: int, status: str, detail: str, n_top: int,
                  horizons: tuple[int, ...], max_bytes: int) -> _FrameLayout:
    """The layout of a frame: its messages (addresses, type tags, strings), their split into
    bundles (:func:`_pack_groups`, as :func:`split_bundles`) and the word of every number.

    Every OSC element is a multiple of 4 bytes, so each number is one aligned word.
    """
    heads = [(message_header(prefix + "/frame", "ifii"), 4),
             (encode_message(prefix + "/status", "ss", (status, detail)), 0),
             (message_header(prefix + "/presence", "i" * D), D)]
    heads += [(message_header(f"{prefix}/dancer/{d}/joints", "f" * (3 * J)), 3 * J) for d in range(D)]
    heads.append((message_header(prefix + "/edges/top", "iif" * n_top), 3 * n_top))
    heads += [(message_header(f"{prefix}/edges/{i}", "f" * J), J) for i in range(J)]
    heads += [(message_header(f"{prefix}/forecast/{ms}/dancer/{d}", "f" * (3 * J)), 3 * J)
              for ms in horizons for d in range(D)]
    groups = _pack_groups([len(h) + 4 * n for h, n in heads], prefix, max_bytes)
    part_head = message_header(prefix + "/part", "iii")
    buf = bytearray()
    bounds: list[tuple[int, int]] = []
    part_slots: list[int] = []
    first_word = [0] * len(heads)  # word index of each message's first number
    for k, g in enumerate(groups):
        start = len(buf)
        buf += BUNDLE_TAG + struct.pack(">Q", IMMEDIATELY)
        buf += struct.pack(">i", len(part_head) + 12) + part_head
        part_slots.append(len(buf) // 4)
        buf += struct.pack(">iii", 0, k, len(groups))
        for m in g:
            head, n = heads[m]
            buf += struct.pack(">i", len(head) + 4 * n) + head
            first_word[m] = len(buf) // 4
            buf += bytes(4 * n)
        bounds.append((start, len(buf)))
    slots = np.concatenate([np.array(part_slots, np.intp),
                            *(np.arange(n, dtype=np.intp) + first_word[m] for m, (_, n) in enumerate(heads))])
    return _FrameLayout(template=np.frombuffer(bytes(buf), dtype=">u4"), bounds=tuple(bounds), slots=slots)


def encode_frame(out: FrameOutput, prefix: str = DEFAULT_PREFIX, top_k: int = DEFAULT_TOP_K,
                 max_bytes: int = MAX_PACKET_BYTES) -> list[bytes]:
    """The packets of one frame (see the module docstring for the split).

    The messages, in order: ``/frame``, ``/status``, ``/presence``, ``/dancer/{d}/joints``,
    ``/edges/top``, ``/edges/{i}``, ``/forecast/{ms}/dancer/{d}``; packed greedily into bundles
    that each start with ``/part``. A frame's layout is built once (:func:`_frame_layout`, cached)
    and each frame only writes its numbers into it: the same bytes as encoding every message.
    """
    D, J = out.joints.shape[:2]
    top_idx, top_val = _top_flat(out.strengths, top_k)
    horizons = tuple(out.forecasts)
    layout = _frame_layout(prefix, D, J, out.status, out.detail, top_idx.size, horizons, max_bytes)
    n = len(layout.bounds)
    words = np.empty(layout.slots.size, dtype=">u4")  # the numbers, in the order of layout.slots
    as_int, as_float = words.view(">i4"), words.view(">f4")
    as_int[: n + 1] = int(out.seq) & 0x7FFFFFFF  # /part seq of each packet, /frame seq
    as_float[n + 1] = out.latency_ms
    as_int[n + 2] = np.count_nonzero(out.present)
    as_int[n + 3] = min(int(out.skipped), 0x7FFFFFFF)
    p = n + 4
    as_int[p : p + D] = np.asarray(out.present, dtype=bool)
    p += D
    as_float[p : p + 3 * D * J] = np.asarray(out.joints).reshape(-1)
    p += 3 * D * J
    top = words[p : p + 3 * top_idx.size]
    top.view(">i4")[0::3], top.view(">i4")[1::3] = np.divmod(top_idx, J)
    top.view(">f4")[2::3] = top_val
    p += 3 * top_idx.size
    as_float[p : p + J * J] = np.asarray(out.strengths).reshape(-1)
    p += J * J
    for h in horizons:
        as_float[p : p + 3 * D * J] = np.asarray(out.forecasts[h]).reshape(-1)
        p += 3 * D * J
    packed = layout.template.copy()
    packed[layout.slots] = words
    data = packed.tobytes()
    return [data[a:b] for a, b in layout.bounds]


def encode_status(seq: int, status: str, detail: str, prefix: str = DEFAULT_PREFIX) -> bytes:
    """The one bundle sent while no frame arrives: ``/part``, ``/status``."""
    return split_bundles(seq, [encode_message(prefix + "/status", "ss", (status, detail))], prefix)[0]


def encode_names(names: Sequence[str], horizons_ms: Sequence[int], prefix: str = DEFAULT_PREFIX) -> bytes:
    """``/names`` and ``/horizons`` in one bundle (not a frame: no ``/part``)."""
    return encode_bundle([
        encode_message(prefix + "/names", "s" * len(names), list(names)),
        encode_message(prefix + "/horizons", "i" * len(horizons_ms), [int(h) for h in horizons_ms]),
    ])


def encode_stats(fps: float, skipped: int, dropped: int, stages_ms: Mapping[str, tuple[float, float]],
                 errors: Sequence[tuple[int, float, int]], prefix: str = DEFAULT_PREFIX) -> bytes:
    """``/stats`` (and ``/forecast/error`` when ``errors``) in one bundle (no ``/part``)."""
    vals: list[Any] = [float(fps), int(skipped) & 0x7FFFFFFF, int(dropped) & 0x7FFFFFFF]
    for st in STAGES:
        p50, p99 = stages_ms.get(st, (0.0, 0.0))
        vals += [float(p50), float(p99)]
    msgs = [encode_message(prefix + "/stats", "fii" + "ff" * len(STAGES), vals)]
    if errors:
        msgs.append(encode_message(prefix + "/forecast/error", "ifi" * len(errors),
                                   [v for e in errors for v in (int(e[0]), float(e[1]), int(e[2]))]))
    return encode_bundle(msgs)


# ---------------------------------------------------------------------------------------------
# decoding (pure)


def _read_string(data: bytes, pos: int) -> tuple[str, int]:
    end = data.find(b"\x00", pos)
    if end < 0:
        raise OscError("unterminated OSC string")
    try:
        text = data[pos:end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise OscError("OSC string is not UTF-8") from exc
    return text, end + 4 - (end - pos) % 4


def decode_message(data: bytes) -> tuple[str, tuple[Any, ...]]:
    """``(address, args)`` of one message with ``i f s h d T F N`` arguments.

    Raises:
        OscError: malformed or truncated.
    """
    address, pos = _read_string(data, 0)
    if not address.startswith("/"):
        raise OscError(f"not an OSC message (address {address[:20]!r})")
    if pos >= len(data):
        return address, ()
    tags, pos = _read_string(data, pos)
    if not tags.startswith(","):
        raise OscError(f"{address}: type tag string must start with ','")
    args: list[Any] = []
    try:
        for t in tags[1:]:
            if t in "if":
                args.append(struct.unpack_from(">" + t, data, pos)[0])
                pos += 4
            elif t in "hd":
                args.append(struct.unpack_from(">" + ("q" if t == "h" else "d"), data, pos)[0])
                pos += 8
            elif t == "s":
                s, pos = _read_string(data, pos)
                args.append(s)
            elif t in "TFN":
                args.append({"T": True, "F": False, "N": None}[t])
            else:
                raise OscError(f"{address}: unsupported OSC type tag {t!r}")
    except struct.error as exc:
        raise OscError(f"{address}: truncated arguments") from exc
    if pos > len(data):
        raise OscError(f"{address}: truncated arguments")
    return address, tuple(args)


def decode_packet(data: bytes) -> list[tuple[str, tuple[Any, ...]]]:
    """Every message of a packet (a message or a bundle, nested bundles flattened), in order.

    Raises:
        OscError: malformed or truncated.
    """
    if not data.startswith(BUNDLE_TAG):
        return [decode_message(data)]
    out: list[tuple[str, tuple[Any, ...]]] = []
    pos = 16
    while pos < len(data):
        if pos + 4 > len(data):
            raise OscError("truncated bundle element size")
        (size,) = struct.unpack_from(">i", data, pos)
        pos += 4
        if size < 0 or pos + size > len(data):
            raise OscError("bundle element runs past the packet")
        out.extend(decode_packet(data[pos : pos + size]))
        pos += size
    return out


# ---------------------------------------------------------------------------------------------
# receiving whole frames


@dataclass
class ReceivedFrame:
    """One frame put together from its bundles: ``messages`` maps address → args."""

    seq: int
    parts: int
    messages: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def floats(self, address: str) -> NDArray[np.float32]:
        return np.asarray(self.messages.get(address, ()), dtype=np.float32)


class FrameAssembler:
    """Joins the bundles of a frame by their ``/part`` header (a receiver-side helper).

    ``feed(messages)`` with the messages of one packet returns the frame when its last bundle
    has arrived; a frame whose bundles stop coming (a newer seq arrives) is counted in
    :attr:`incomplete`. Messages outside frames (``/names``, ``/stats``, ``/status`` while idle)
    go to :attr:`other` (latest per address).
    """

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = prefix
        self._part = prefix + "/part"
        self._current: ReceivedFrame | None = None
        self._seen: set[int] = set()
        self.incomplete = 0
        self.frames = 0
        self.other: dict[str, tuple[Any, ...]] = {}

    def feed(self, messages: Sequence[tuple[str, tuple[Any, ...]]]) -> ReceivedFrame | None:
        if not messages or messages[0][0] != self._part:
            for address, args in messages:
                self.other[address] = args
            return None
        seq, index, count = (int(v) for v in messages[0][1])
        if count == 1 and len(messages) == 2 and messages[1][0] == self.prefix + "/status":
            self.other[messages[1][0]] = messages[1][1]  # an idle status bundle
            return None
        cur = self._current
        if cur is None or cur.seq != seq:
            if cur is not None:
                self.incomplete += 1
            cur = self._current = ReceivedFrame(seq, count)
            self._seen = set()
        self._seen.add(index)
        for address, args in messages[1:]:
            cur.messages[address] = args
        if len(self._seen) == cur.parts:
            self._current = None
            self.frames += 1
            return cur
        return None


# ---------------------------------------------------------------------------------------------
# sockets


def parse_hostport(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``HOST:PORT`` (or ``:PORT``, ``PORT``) → ``(host, port)``.

    Raises:
        OscError: not of that form, or the port is outside 1..65535 (0 allowed: "any free port").
    """
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or default_host
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise OscError(f"bad OSC address {text!r}: use HOST:PORT, e.g. {DEFAULT_OSC}")
    return host, int(port)


class OscSender:
    """Send packets over UDP to one or more ``(host, port)`` targets; never blocks, never raises.

    A send that fails (no route, a full buffer, ``ECONNREFUSED`` reported for an earlier
    packet) is counted in :attr:`errors` by kind and logged once per kind; the packet is lost,
    as UDP packets may be.
    """

    def __init__(self, targets: Sequence[tuple[str, int]]) -> None:
        if not targets:
            raise OscError("give at least one OSC target HOST:PORT")
        self.targets = list(targets)
        self._sock: socket.socket | None = None
        self._resolved: list[tuple[Any, ...]] = []
        self.packets = 0
        self.bytes = 0
        self.errors: dict[str, int] = {}

    def __enter__(self) -> OscSender:
        resolved = []
        for host, port in self.targets:
            try:
                info = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)
            except socket.gaierror as exc:
                raise OscError(f"cannot resolve OSC target {host}:{port}: {exc.strerror}") from exc
            resolved.append(info[0][4])
        self._resolved = resolved
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        self._sock = sock
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def send(self, packets: Sequence[bytes]) -> None:
        """Send every packet to every target."""
        sock = self._sock
        if sock is None:
            raise OscError("the OSC sender is not open: use `with OscSender(...) as osc:`")
        for addr in self._resolved:
            for p in packets:
                self.send_to(p, addr, sock)

    def send_to(self, packet: bytes, addr: tuple[Any, ...], sock: socket.socket | None = None) -> None:
        """Send one packet to one address (e.g. a reply to a requester)."""
        s = sock or self._sock
        if s is None:
            raise OscError("the OSC sender is not open")
        try:
            s.sendto(packet, addr)
        except OSError as exc:
            kind = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
            if kind not in self.errors:
                log.warning("OSC send to %s:%s failed (%s); further %s failures are only counted",
                            addr[0], addr[1], exc, kind)
                self.errors[kind] = 0
            self.errors[kind] += 1
            return
        self.packets += 1
        self.bytes += len(packet)


class RequestListener:
    """A UDP socket for requests from patches (``/istrings/names``); polled, never blocks.

    Args:
        host, port: where to listen (loopback by default; port 0 picks a free one, see :attr:`address`).
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._sock: socket.socket | None = None
        self.bad = 0

    def __enter__(self) -> RequestListener:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise OscError(f"cannot listen for OSC requests on {self.host}:{self.port}: {exc.strerror}; "
                           "choose another --listen port") from exc
        sock.setblocking(False)
        if self.host not in ("127.0.0.1", "localhost"):
            log.warning("listening for OSC requests on %s:%d, beyond loopback", self.host, self.port)
        self._sock = sock
        self.port = sock.getsockname()[1]
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def fileno(self) -> int:
        if self._sock is None:
            raise OscError("the request listener is not open")
        return self._sock.fileno()

    def poll(self) -> list[tuple[str, tuple[Any, ...], tuple[str, int]]]:
        """Every request waiting: ``(address, args, sender)``; malformed packets are counted in :attr:`bad`."""
        if self._sock is None:
            return []
        out: list[tuple[str, tuple[Any, ...], tuple[str, int]]] = []
        while True:
            try:
                data, sender = self._sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return out
            except OSError:
                return out  # e.g. an ICMP error queued on the socket: nothing to read
            try:
                out.extend((a, args, sender) for a, args in decode_packet(data))
            except OscError:
                self.bad += 1


def schema_table(prefix: str = DEFAULT_PREFIX) -> str:
    """The schema as the Markdown table of ``docs/osc.md`` (a test keeps the two identical)."""
    rows = ["| address | arguments (type tags) | sent | what |", "|---|---|---|---|"]
    for s in SCHEMA:
        args = ", ".join(
            f"{a.name} `{a.types}`" + ("" if a.count == "1" else f" × {a.count}") + (f" ({a.unit})" if a.unit else "")
            for a in s.args) or "none"
        where = "" if s.direction == "out" else " (request, to the service)"
        rows.append(f"| `{prefix}{s.path}`{where} | {args} | {s.when} | {s.description} |")
    return "\n".join(rows)
