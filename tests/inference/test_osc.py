"""The OSC codec and schema: python-osc reads what is encoded, packets fit, every message fits the schema."""

from __future__ import annotations

import socket
from typing import Any

import numpy as np
import pytest
from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message import OscMessage

from inference.osc import (
    MAX_PACKET_BYTES,
    SCHEMA,
    STAGES,
    FrameAssembler,
    FrameOutput,
    OscError,
    OscSender,
    RequestListener,
    decode_packet,
    encode_frame,
    encode_message,
    encode_names,
    encode_stats,
    encode_status,
    match,
    parse_hostport,
    split_bundles,
    top_strings,
)
from stream.skeleton import CANONICAL, J

DIMS = {"J": J, "k": 8, "H": 3, "S": len(STAGES)}


def frame_output(seq: int = 7, horizons: tuple[int, ...] = (80, 160, 320)) -> FrameOutput:
    rng = np.random.default_rng(seq)
    return FrameOutput(
        seq=seq, latency_ms=3.25, present=np.array([True, False]), skipped=2, status="one-dancer",
        detail="dancer 0 only",
        joints=rng.normal(size=(2, J, 3)).astype(np.float32), strengths=rng.uniform(size=(J, J)).astype(np.float32),
        forecasts={h: rng.normal(size=(2, J, 3)).astype(np.float32) for h in horizons})


def flatten(bundle: OscBundle) -> list[OscMessage]:
    out: list[OscMessage] = []
    for item in bundle:
        out.extend(flatten(item) if isinstance(item, OscBundle) else [item])
    return out


def test_python_osc_reads_every_argument_type() -> None:
    m = OscMessage(encode_message("/istrings/frame", "ifis", (42, 1.5, -3, "naïve")))
    assert m.address == "/istrings/frame" and m.params == [42, 1.5, -3, "naïve"]
    with pytest.raises(OscError, match="type tags"):
        encode_message("/a", "ii", (1,))
    with pytest.raises(OscError, match="only i, f and s"):
        encode_message("/a", "b", (b"x",))


def test_a_frame_is_split_into_self_contained_bundles_that_fit_one_packet() -> None:
    out = frame_output()
    packets = encode_frame(out)
    assert len(packets) >= 3 and all(len(p) <= MAX_PACKET_BYTES for p in packets)
    seen: dict[str, tuple[Any, ...]] = {}
    for k, p in enumerate(packets):
        msgs = flatten(OscBundle(p))  # python-osc parses each packet on its own
        assert msgs[0].address == "/istrings/part" and msgs[0].params == [7, k, len(packets)]
        for m in msgs:
            spec, _ = match(m.address)
            assert m.address == "/istrings/part" or m.address not in seen, f"{m.address} sent twice"
            seen[m.address] = tuple(m.params)
            tags = "".join("i" if isinstance(v, int) else "f" if isinstance(v, float) else "s" for v in m.params)
            assert tags == spec.type_tags(DIMS), m.address
    assert seen["/istrings/frame"] == (7, 3.25, 1, 2)
    assert seen["/istrings/status"] == ("one-dancer", "dancer 0 only")
    assert seen["/istrings/presence"] == (1, 0)
    np.testing.assert_allclose(seen["/istrings/dancer/0/joints"], out.joints[0].reshape(-1), rtol=1e-6)
    np.testing.assert_allclose(seen["/istrings/edges/5"], out.strengths[5], rtol=1e-6)
    np.testing.assert_allclose(seen["/istrings/forecast/320/dancer/1"], out.forecasts[320][1].reshape(-1), rtol=1e-6)
    top = seen["/istrings/edges/top"]
    i, j, s = top[:3]
    assert s == pytest.approx(float(out.strengths.max())) and out.strengths[i, j] == pytest.approx(s)
    expected = {"/istrings/part", "/istrings/frame", "/istrings/status", "/istrings/presence", "/istrings/edges/top",
                *(f"/istrings/dancer/{d}/joints" for d in (0, 1)), *(f"/istrings/edges/{i}" for i in range(J)),
                *(f"/istrings/forecast/{h}/dancer/{d}" for h in (80, 160, 320) for d in (0, 1))}
    assert set(seen) == expected


def reference_frame_packets(out: FrameOutput, prefix: str, top_k: int, max_bytes: int) -> list[bytes]:
    """A frame encoded message by message (encode_message, split_bundles): what encode_frame's
    cached layout must reproduce byte for byte."""
    D, Jn = out.joints.shape[:2]
    top = top_strings(out.strengths, top_k)
    msgs = [encode_message(prefix + "/frame", "ifii", (out.seq & 0x7FFFFFFF, out.latency_ms,
                                                     int(out.present.sum()), out.skipped)),
            encode_message(prefix + "/status", "ss", (out.status, out.detail)),
            encode_message(prefix + "/presence", "i" * D, [int(v) for v in out.present])]
    msgs += [encode_message(f"{prefix}/dancer/{d}/joints", "f" * 3 * Jn, out.joints[d].reshape(-1).tolist())
             for d in range(D)]
    msgs.append(encode_message(prefix + "/edges/top", "iif" * len(top), [v for t in top for v in t]))
    msgs += [encode_message(f"{prefix}/edges/{i}", "f" * Jn, out.strengths[i].tolist()) for i in range(Jn)]
    msgs += [encode_message(f"{prefix}/forecast/{h}/dancer/{d}", "f" * 3 * Jn, pose[d].reshape(-1).tolist())
             for h, pose in out.forecasts.items() for d in range(D)]
    return split_bundles(out.seq, msgs, prefix, max_bytes)


@pytest.mark.parametrize("seed", range(6))
def test_encode_frame_gives_the_bytes_of_encoding_every_message(seed: int) -> None:
    rng = np.random.default_rng(seed)
    horizons = tuple(int(h) for h in rng.choice([80, 160, 320, 500, 1000], size=int(rng.integers(0, 6)),
                                                replace=False))
    strengths = rng.uniform(size=(J, J)).astype(np.float32)
    strengths[rng.uniform(size=(J, J)) < [0.0, 0.5, 0.99, 1.0, 0.9, 0.0][seed]] = 0.0  # fewer than k strings
    strengths[0, :3] = strengths[1, 2]  # ties
    status, detail = [("ok", ""), ("one-dancer", "dancer 1 only"), ("no-model", "nri: refused, ünïcode"),
                      ("ok", "warming up"), ("no-dancers", "nobody tracked"), ("ok", "")][seed]
    out = FrameOutput(
        seq=int(rng.integers(0, 2**40)), latency_ms=float(rng.exponential(3.0)), present=rng.uniform(size=2) < 0.6,
        skipped=int(rng.integers(0, 1000)), status=status, detail=detail,
        joints=rng.normal(size=(2, J, 3)).astype(np.float32), strengths=strengths,
        forecasts={h: rng.normal(size=(2, J, 3)).astype(np.float32) for h in horizons})
    for prefix, top_k, max_bytes in (("/istrings", 8, MAX_PACKET_BYTES), ("/stage/b", 30, 600), ("/x", 0, 1472)):
        got = encode_frame(out, prefix, top_k, max_bytes)
        assert got == reference_frame_packets(out, prefix, top_k, max_bytes), (prefix, top_k, max_bytes)
        got_again = encode_frame(out, prefix, top_k, max_bytes)  # the cached layout is not written to
        assert got_again == got


def test_smaller_packets_and_a_custom_prefix() -> None:
    packets = encode_frame(frame_output(horizons=()), prefix="/stage/a", top_k=3, max_bytes=400)
    assert all(len(p) <= 400 for p in packets) and len(packets) > 6
    msgs = [m for p in packets for m in decode_packet(p)]
    assert all(a.startswith("/stage/a/") for a, _ in msgs)
    spec, _ = match("/stage/a/edges/top", prefix="/stage/a")
    assert len(dict(msgs)["/stage/a/edges/top"]) == 9 and spec.path == "/edges/top"
    with pytest.raises(OscError, match="cannot fit"):
        split_bundles(1, [encode_message("/x", "f" * 400, [0.0] * 400)], max_bytes=1472)


def test_top_strings_order_and_ties() -> None:
    S = np.zeros((J, J), np.float32)
    S[2, 3], S[0, 1], S[4, 4], S[1, 0] = 0.9, 0.5, 0.5, 0.7
    assert top_strings(S, 3) == [(2, 3, pytest.approx(0.9)), (1, 0, pytest.approx(0.7)), (0, 1, pytest.approx(0.5))]
    assert len(top_strings(S, J * J)) == 4 and top_strings(S, 0) == []  # strength 0 is no string
    assert top_strings(np.zeros((J, J), np.float32), 8) == []


def test_other_messages_fit_the_schema() -> None:
    names = decode_packet(encode_names(CANONICAL.joint_names, (80, 160)))
    assert names[0] == ("/istrings/names", CANONICAL.joint_names) and names[1] == ("/istrings/horizons", (80, 160))
    assert match("/istrings/names")[0].type_tags(DIMS) == "s" * J
    stats = decode_packet(encode_stats(29.5, 3, 1, {"clean": (0.1, 0.4)}, [(80, 0.02, 10), (160, 0.05, 9)]))
    assert stats[0][0] == "/istrings/stats" and len(stats[0][1]) == 3 + 2 * len(STAGES)
    assert stats[0][1][3 + 2 * STAGES.index("clean")] == pytest.approx(0.1)
    assert stats[1] == ("/istrings/forecast/error", (80, pytest.approx(0.02), 10, 160, pytest.approx(0.05), 9))
    status = decode_packet(encode_status(5, "no-input", "no frame for 1.0 s"))
    assert [a for a, _ in status] == ["/istrings/part", "/istrings/status"]
    assert match("/istrings/names", direction="in")[0].direction == "in"
    with pytest.raises(OscError, match="not an address"):
        match("/istrings/edges/top/extra")


def test_decoder_rejects_damaged_packets() -> None:
    packet = encode_frame(frame_output())[0]
    assert decode_packet(packet)[0][0] == "/istrings/part"
    with pytest.raises(OscError, match=r"past the packet|truncated"):
        decode_packet(packet[:-7])
    with pytest.raises(OscError, match="not an OSC message"):
        decode_packet(b"hello\x00\x00\x00")


def test_assembler_joins_the_bundles_of_a_frame() -> None:
    asm = FrameAssembler()
    first, second = encode_frame(frame_output(seq=1)), encode_frame(frame_output(seq=2))
    assert asm.feed(decode_packet(first[0])) is None
    assert asm.feed(decode_packet(second[0])) is None  # frame 1 never completed
    done = [asm.feed(decode_packet(p)) for p in second[1:]]
    assert done[-1] is not None and done[-1].seq == 2 and asm.incomplete == 1
    assert done[-1].floats("/istrings/edges/0").shape == (J,)
    asm.feed(decode_packet(encode_status(3, "no-input", "")))
    assert asm.other["/istrings/status"] == ("no-input", "")


def test_hostport_parsing() -> None:
    assert parse_hostport("10.0.0.5:9000") == ("10.0.0.5", 9000)
    assert parse_hostport(":7000") == ("127.0.0.1", 7000) and parse_hostport("7000") == ("127.0.0.1", 7000)
    with pytest.raises(OscError, match="HOST:PORT"):
        parse_hostport("localhost:seven")
    with pytest.raises(OscError, match="HOST:PORT"):
        parse_hostport("localhost:70000")


def test_sender_without_listener_raises_nothing_and_requests_are_answered() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]  # closed again below: nobody listens there
    with OscSender([("127.0.0.1", dead_port)]) as osc:
        for _ in range(200):
            osc.send(encode_frame(frame_output()))
        assert osc.packets + sum(osc.errors.values()) == 200 * len(encode_frame(frame_output()))
    with RequestListener("127.0.0.1", 0) as listener, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.bind(("127.0.0.1", 0))
        client.sendto(encode_message("/istrings/names", "", ()), ("127.0.0.1", listener.port))
        client.sendto(b"garbage", ("127.0.0.1", listener.port))
        client.settimeout(2.0)
        import time

        got: list[tuple[str, tuple[object, ...], tuple[str, int]]] = []
        deadline = time.monotonic() + 2.0
        while not got and time.monotonic() < deadline:
            got = listener.poll()
            time.sleep(0.01)
        assert got[0][0] == "/istrings/names" and got[0][2] == client.getsockname()
        time.sleep(0.05)
        listener.poll()
        assert listener.bad == 1


def test_schema_is_complete() -> None:
    paths = {s.path for s in SCHEMA if s.direction == "out"}
    for required in ("/frame", "/dancer/{d}/joints", "/edges/{i}", "/edges/top", "/forecast/{ms}/dancer/{d}",
                     "/status", "/names"):
        assert required in paths
