"""A minimal Python listener for the Invisible Strings OSC stream (python-osc).

Run the demo (``istrings demo``) or ``istrings infer``, then::

    python examples/listener.py                  # listens on 127.0.0.1:7000, prints one line per frame
    python examples/listener.py --json --frames 100

It asks the service for the joint names (``/istrings/names`` to its request port, the reply coming
to this listener's port), joins the bundles of each frame by their ``/istrings/part`` header (``seq index count``), and
prints the frame's sequence number, latency, status and strongest strings by joint name. Every
address it receives is checked against the schema in ``inference/osc.py`` (the same table as
``docs/osc.md``); anything else is reported once.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from typing import Any

from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_server import BlockingOSCUDPServer

from inference.osc import OscError, match


class FrameJoiner:
    """Collects the messages of one frame until every bundle announced by ``/part`` has arrived."""

    def __init__(self, prefix: str, on_frame: Any) -> None:
        self.prefix = prefix
        self.on_frame = on_frame
        self.seq = -1
        self.count = 0
        self.parts: set[int] = set()
        self.messages: dict[str, list[Any]] = {}
        self.names: list[str] = []
        self.horizons: list[int] = []
        self.unknown: set[str] = set()

    def handle(self, address: str, *args: Any) -> None:
        if address == self.prefix + "/names":
            self.names = [str(a) for a in args]
            return
        if address == self.prefix + "/horizons":
            self.horizons = [int(a) for a in args]
            return
        try:
            match(address, self.prefix)  # the schema of inference/osc.py
        except OscError:
            if address not in self.unknown:
                self.unknown.add(address)
                print(f"not in the schema: {address}", file=sys.stderr)
            return
        if address == self.prefix + "/part":
            seq, index, count = (int(a) for a in args)
            if seq != self.seq:
                self.seq, self.count, self.parts, self.messages = seq, count, set(), {}
            self.parts.add(index)
            return
        self.messages[address] = list(args)

    def complete(self) -> bool:
        """True once, when every bundle of the current frame has been handled."""
        if self.count and len(self.parts) == self.count and self.prefix + "/frame" in self.messages:
            self.count = 0  # reported: wait for the next frame
            return True
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=7000, help="port to listen on (the service's --osc)")
    parser.add_argument("--prefix", default="/istrings", help="OSC address prefix")
    parser.add_argument("--request", default="127.0.0.1:7001", help="the service's request port (--listen)")
    parser.add_argument("--frames", type=int, default=0, help="stop after this many frames (0: never)")
    parser.add_argument("--timeout", type=float, default=0.0, help="stop after this many seconds without data")
    parser.add_argument("--json", action="store_true", help="print every frame as one JSON object")
    args = parser.parse_args()

    done = {"frames": 0}

    def on_frame(j: FrameJoiner) -> None:
        m, p = j.messages, args.prefix
        names = j.names or [str(i) for i in range(18)]
        top = m.get(p + "/edges/top", [])
        strings = [(names[int(top[k])], names[int(top[k + 1])], round(float(top[k + 2]), 3))
                   for k in range(0, len(top) - 2, 3)]
        seq, latency, present, skipped = m[p + "/frame"]
        if args.json:
            print(json.dumps({"seq": seq, "latency_ms": latency, "present": present, "skipped": skipped,
                              "status": m[p + "/status"][0], "names": j.names, "horizons": j.horizons,
                              "joints": [m[f"{p}/dancer/{d}/joints"] for d in (0, 1)],
                              "edges": [m[f"{p}/edges/{i}"] for i in range(len(names))],
                              "top": strings, "forecasts": sorted(a for a in m if "/forecast/" in a)}), flush=True)
        else:
            best = ", ".join(f"{a}↔{b} {s:.2f}" for a, b, s in strings[:3])
            print(f"seq {seq:6d}  {latency:6.2f} ms  {m[p + '/status'][0]:10s}  {best}", flush=True)
        done["frames"] += 1

    joiner = FrameJoiner(args.prefix, on_frame)
    dispatcher = Dispatcher()
    got = {"packet": False}

    def handle(address: str, *values: Any) -> None:
        got["packet"] = True
        joiner.handle(address, *values)

    dispatcher.set_default_handler(handle)
    server = BlockingOSCUDPServer((args.host, args.port), dispatcher)
    server.timeout = args.timeout or 1.0
    host, port = args.request.rsplit(":", 1)
    request = OscMessageBuilder(args.prefix + "/names")
    request.add_arg(server.server_address[1], "i")  # answer to this listener's port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(request.build().dgram, (host, int(port)))
    while not args.frames or done["frames"] < args.frames:
        got["packet"] = False
        server.handle_request()  # one packet: one bundle, its messages handled in order
        if joiner.complete():
            on_frame(joiner)
        if args.timeout and not got["packet"]:
            break  # nothing for --timeout seconds
    server.server_close()


if __name__ == "__main__":
    main()
