"""``istrings record``, ``istrings replay`` and ``istrings bench replay``: raw capture recordings.

``record`` subscribes to a PoseFrame stream and stores every message it receives, byte for
byte, with its receive time (format: :mod:`stream.recording`). Messages that do not decode
as PoseFrames are stored too (a replay must reproduce the stream as it was) and counted in
the summary. ``replay`` publishes a recording's bytes unchanged, with the recorded timing.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType, TracebackType
from typing import Annotated

import typer

from stream.cli import Groups

# The transport's default (stream.transport imports zmq, which is only imported inside commands).
_DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"
_FAST_SNDHWM = 100_000  # --fast: queue rather than drop for a subscriber that is briefly behind


class StopOnSignal:
    """Turn the first SIGINT/SIGTERM into a flag, for a clean stop; a second one interrupts.

    Used as a context manager (handlers restored on exit) and called to ask "stop now?".
    """

    def __init__(self) -> None:
        self.stopped = False
        self._old: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.stopped:
            raise KeyboardInterrupt
        self.stopped = True

    def __enter__(self) -> StopOnSignal:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    def __call__(self) -> bool:
        return self.stopped


def record_stream(
    sub: str,
    output: Path,
    *,
    duration_s: float | None = None,
    max_messages: int | None = None,
    overwrite: bool = False,
    should_stop: StopOnSignal | None = None,
) -> str:
    """Record every message from ``sub`` into ``output``; returns the one-line summary.

    Stops after ``duration_s`` seconds from the start, after ``max_messages`` messages, or
    when ``should_stop()`` is true (checked at least every 100 ms).
    """
    from stream.recording import RecordingWriter
    from stream.transport import RECORD_RCVHWM, DropCounter, Subscriber, decode_or_count

    stop = should_stop or (lambda: False)
    drops = DropCounter()
    frames = gaps = 0
    last_seq: dict[str, int] = {}
    with Subscriber(sub, rcvhwm=RECORD_RCVHWM) as subscriber, RecordingWriter(
        output, source=sub, overwrite=overwrite
    ) as writer:
        typer.echo(f"recording {sub} to {output} (Ctrl-C stops)", err=True)
        start = time.monotonic()
        while not stop():
            if max_messages is not None and writer.records >= max_messages:
                break
            timeout_ms = 100
            if duration_s is not None:
                left = duration_s - (time.monotonic() - start)
                if left <= 0:
                    break
                timeout_ms = max(1, min(timeout_ms, int(left * 1000)))
            message = subscriber.recv(timeout_ms)
            if message is None:
                continue
            receive_ns = time.monotonic_ns()
            writer.write(message, receive_ns)
            frame = decode_or_count(message, drops)
            if frame is None:
                continue
            frames += 1
            prev = last_seq.get(frame.source_id)
            if prev is not None and frame.seq > prev + 1:
                gaps += frame.seq - prev - 1
            last_seq[frame.source_id] = frame.seq
        elapsed = time.monotonic() - start
        n, size = writer.records, writer.bytes_written
    return (
        f"recorded {n} messages in {elapsed:.2f} s to {output} ({size:,} bytes): {frames} PoseFrames, "
        f"undecodable {drops.summary()}, {gaps} frames missing by sequence number"
    )


def register(app: typer.Typer, groups: Groups) -> None:
    """Add ``record``, ``replay`` and ``bench replay``."""

    @app.command("record")
    def record(
        output: Annotated[Path, typer.Option("--output", "-o", help="Recording file to create (.isrec).")],
        sub: Annotated[
            str, typer.Option("--sub", help="ZeroMQ address of the PoseFrame publisher to record.")
        ] = _DEFAULT_ADDRESS,
        duration: Annotated[
            float | None, typer.Option("--duration", min=0.0, help="Stop after this many seconds.")
        ] = None,
        frames: Annotated[
            int | None, typer.Option("--frames", min=1, help="Stop after this many messages.")
        ] = None,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing file.")] = False,
    ) -> None:
        """Record every message of a PoseFrame stream, byte for byte, with its receive time.

        Undecodable messages are stored too, and counted. Stops on --duration, --frames or Ctrl-C.
        """
        with StopOnSignal() as stop:
            summary = record_stream(
                sub, output, duration_s=duration, max_messages=frames, overwrite=overwrite, should_stop=stop
            )
        typer.echo(summary)

    @app.command("replay")
    def replay(
        file: Annotated[Path, typer.Argument(help="Recording to replay (.isrec).")],
        pub: Annotated[
            str, typer.Option("--pub", help="ZeroMQ address to publish on (tcp://127.0.0.1:* picks a port).")
        ] = _DEFAULT_ADDRESS,
        speed: Annotated[
            float, typer.Option("--speed", min=0.001, help="Time scale: 2 plays twice as fast.")
        ] = 1.0,
        loop: Annotated[bool, typer.Option("--loop", help="Start again after the end, until Ctrl-C.")] = False,
        fast: Annotated[bool, typer.Option("--fast", help="Send as fast as possible (no timing).")] = False,
        warmup_s: Annotated[
            float,
            typer.Option("--warmup-s", min=0.0, help="Seconds to wait after binding so subscribers connect."),
        ] = 0.3,
        wait_subscribers: Annotated[
            int, typer.Option("--wait-subscribers", min=0, help="Wait until this many subscribers connect.")
        ] = 0,
        wait_timeout_s: Annotated[
            float, typer.Option("--wait-timeout-s", min=0.0, help="Give up waiting for subscribers after this.")
        ] = 30.0,
        as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
    ) -> None:
        """Publish a recording's messages unchanged (bit-exact) with their recorded timing.

        Frames keep their recorded timestamps (no re-stamping). A damaged file plays as far as readable.
        """
        from stream.recording import play, read_recording
        from stream.transport import PUB_SNDHWM, Publisher, TransportError

        rec = read_recording(file, strict=False)
        if rec.damage is not None:
            typer.echo(
                f"istrings: warning: {file}: {rec.damage.describe()}; replaying its {len(rec)} readable records",
                err=True,
            )
        with Publisher(pub, sndhwm=_FAST_SNDHWM if fast else PUB_SNDHWM, linger_ms=1000) as publisher, \
                StopOnSignal() as stop:
            typer.echo(
                f"replaying {file} ({len(rec)} messages, {rec.duration_s:.2f} s) on {publisher.address}",
                err=True,
            )
            if wait_subscribers and not publisher.wait_for_subscribers(wait_subscribers, wait_timeout_s, stop):
                if stop():
                    typer.echo(f"replay stopped before {wait_subscribers} subscribers connected", err=True)
                    return
                raise TransportError(
                    f"only {publisher.subscriptions} of {wait_subscribers} subscribers connected to "
                    f"{publisher.address} within {wait_timeout_s:g} s; start them first or lower --wait-subscribers"
                )
            time.sleep(warmup_s)
            stats = play(rec, publisher.send_raw, speed=speed, fast=fast, loop=loop, should_stop=stop)
        if as_json:
            typer.echo(json.dumps({
                "file": str(file), "address": publisher.address, "sent": stats.sent, "loops": stats.loops,
                "elapsed_s": round(stats.elapsed_s, 4), "speed": None if fast else speed,
                "lateness_ms": None if fast else {
                    "median": round(stats.lateness_ms(0.5), 4), "p99": round(stats.lateness_ms(0.99), 4),
                    "max": round(stats.lateness_ms(1.0), 4),
                },
                "resyncs": stats.resyncs,
                "damage": rec.damage.describe() if rec.damage else None,
            }))
            return
        timing = "as fast as possible" if fast else (
            f"at speed {speed:g}, lateness median {stats.lateness_ms(0.5):.3f} ms, "
            f"p99 {stats.lateness_ms(0.99):.3f} ms, {stats.resyncs} resyncs"
        )
        typer.echo(
            f"replayed {stats.sent} messages ({stats.loops} full passes) in {stats.elapsed_s:.2f} s "
            f"to {publisher.address} {timing}"
        )

    @groups.bench.command("replay")
    def bench_replay(
        fps: Annotated[float, typer.Option("--fps", min=1.0, help="Frame rate of the synthetic recording.")] = 60.0,
        seconds: Annotated[float, typer.Option("--seconds", min=0.1, help="Length of the recording.")] = 5.0,
        speed: Annotated[float, typer.Option("--speed", min=0.001, help="Replay speed.")] = 1.0,
        people: Annotated[int, typer.Option("--people", min=0, max=16, help="People per frame.")] = 2,
    ) -> None:
        """Replay timing accuracy over loopback (a replay process to a subscriber here); prints JSON.

        Errors, in ms, of the received inter-arrival times against 1/(fps·speed).
        """
        import numpy as np

        from stream.recording import RecordingWriter
        from stream.transport import RECORD_RCVHWM, Subscriber

        n = max(2, round(fps * seconds))
        step_ns = 1e9 / fps
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bench.isrec"
            with RecordingWriter(path, source="bench") as writer:
                for i, message in enumerate(synthetic_messages(n, fps, people)):
                    writer.write(message, round(i * step_ns))
            cmd = [sys.executable, "-m", "stream.cli", "replay", str(path), "--pub", "tcp://127.0.0.1:*",
                   "--speed", str(speed), "--wait-subscribers", "1", "--warmup-s", "0.2", "--json"]
            proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            try:
                address = _announced_address(proc)
                received: list[int] = []
                with Subscriber(address, rcvhwm=RECORD_RCVHWM) as sub:
                    deadline = time.monotonic() + 30 + n / (fps * speed)
                    while len(received) < n and time.monotonic() < deadline:
                        if sub.recv(200) is not None:
                            received.append(time.monotonic_ns())
                out, _ = proc.communicate(timeout=30)
                sender = json.loads(out.strip().splitlines()[-1]) if proc.returncode == 0 else {}
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        t = np.asarray(received, dtype=np.int64)  # (T,) receive ns
        err_ms = (np.diff(t) - step_ns / speed) / 1e6  # (T-1,) interval errors
        drift_ms = ((t - t[0]) - np.arange(t.size) * step_ns / speed) / 1e6 if t.size else np.zeros(0)
        a = np.abs(err_ms)
        typer.echo(json.dumps({
            "bench": "replay", "fps": fps, "speed": speed, "people": people, "sent": n,
            "received": int(t.size),
            "interval_abs_error_ms": {
                "median": round(float(np.median(a)), 4) if a.size else None,
                "p99": round(float(np.quantile(a, 0.99)), 4) if a.size else None,
                "max": round(float(a.max()), 4) if a.size else None,
            },
            "sender_lateness_ms": sender.get("lateness_ms"),
            "schedule_error_ms": {  # arrival against the ideal schedule anchored at the first arrival
                "median": round(float(np.median(drift_ms)), 4) if drift_ms.size else None,
                "p99": round(float(np.quantile(drift_ms, 0.99)), 4) if drift_ms.size else None,
                "max_abs": round(float(np.abs(drift_ms).max()), 4) if drift_ms.size else None,
            },
        }))


def _announced_address(proc: subprocess.Popen[str]) -> str:
    """Read the replay process's stderr until it says where it publishes."""
    from stream.transport import TransportError

    if proc.stderr is None:
        raise TransportError("the replay process was started without a stderr pipe")
    for line in proc.stderr:
        if line.startswith("replaying ") and " on " in line:
            return line.rsplit(" on ", 1)[1].strip()
    raise TransportError(f"the replay process exited before publishing (exit code {proc.wait()})")


def synthetic_messages(n: int, fps: float, people: int, seed: int = 0) -> list[bytes]:
    """``n`` encoded PoseFrames (MEDIAPIPE33, random landmarks), ``1/fps`` apart."""
    import numpy as np

    from stream.protocol import PoseFrame, encode
    from stream.skeleton import LAYOUT_SIZES, Layout

    rng = np.random.default_rng(seed)
    L = LAYOUT_SIZES[Layout.MEDIAPIPE33]
    out = []
    for i in range(n):
        image = rng.random((people, L, 4), dtype=np.float32)  # (P, L, 4) x, y, z, visibility
        world = rng.normal(0, 0.5, (people, L, 3)).astype(np.float32)  # (P, L, 3) metres
        frame = PoseFrame(seq=i, t_capture_ns=round(i * 1e9 / fps), layout=Layout.MEDIAPIPE33,
                          scores=rng.random(people, dtype=np.float32), image=image, world=world,
                          source_id="synthetic", image_size=(1280, 720))
        out.append(encode(frame, t_publish_ns=frame.t_capture_ns + 1000))
    return out
