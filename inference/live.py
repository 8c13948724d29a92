"""``istrings live``: capture and inference as two supervised child processes.

Each child is a real ``istrings`` process (``python -m stream.cli capture …`` and ``… infer …``),
so each keeps its own interpreter, its own GIL and its own crash domain. The supervisor:

* starts both, in their own session (a terminal's Ctrl-C reaches only the supervisor, which then
  stops the children in order), with ``PR_SET_PDEATHSIG`` on Linux so they never outlive it;
* restarts a child that exits while the run goes on, after a back-off that doubles from
  ``backoff_s`` to ``backoff_max_s`` and starts again from ``backoff_s`` once a child has run for
  ``healthy_after_s``;
* ends the run when a child marked ``ends_run`` exits with status 0 (capture whose source ended);
* stops: SIGTERM to every child, then SIGKILL to any still running after ``stop_timeout_s``.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ChildSpec:
    """One supervised process: a name for the logs, its argv, and whether a clean exit ends the run."""

    name: str
    argv: tuple[str, ...]
    ends_run: bool = False


def istrings_argv(*args: str) -> tuple[str, ...]:
    """``python -m stream.cli ARGS`` with this interpreter."""
    return (sys.executable, "-m", "stream.cli", *args)


def live_children(
    source: str, *, pub: str, osc: Sequence[str], models: Path | None, device: str, listen: str,
    loop: bool = False, capture_args: Sequence[str] = (), infer_args: Sequence[str] = (),
    verbose: bool = False,
) -> list[ChildSpec]:
    """The capture and inference children of ``istrings live``."""
    cap = ["capture", "--source", source, "--pub", pub, "--no-window"]
    if loop:
        cap.append("--loop")
    for a in capture_args:
        cap.extend(shlex.split(a))
    inf = ["infer", "--sub", pub, "--device", device, "--listen", listen]
    for target in osc:
        inf.extend(["--osc", target])
    if models is not None:
        inf.extend(["--models", str(models)])
    for a in infer_args:
        inf.extend(shlex.split(a))
    pre = ("-v",) if verbose else ()
    return [ChildSpec("capture", istrings_argv(*pre, *cap), ends_run=True),
            ChildSpec("infer", istrings_argv(*pre, *inf))]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError):  # not Linux: the supervisor's own stop still ends the children
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class _Child:
    def __init__(self, spec: ChildSpec, output: IO[Any] | None) -> None:
        self.spec = spec
        self.output = output
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.starts = 0
        self.failures = 0  # consecutive
        self.exits: list[int] = []
        self.next_start = 0.0

    def start(self) -> None:
        self.proc = subprocess.Popen(
            list(self.spec.argv), stdin=subprocess.DEVNULL, stdout=self.output, stderr=self.output,
            start_new_session=True, preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        self.started = time.monotonic()
        self.starts += 1
        log.info("started %s (pid %d)", self.spec.name, self.proc.pid)

    def stop(self, timeout_s: float) -> None:
        p = self.proc
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("%s (pid %d) did not stop within %.1f s: killing it", self.spec.name, p.pid, timeout_s)
            p.kill()
            p.wait()


def supervise(
    children: Sequence[ChildSpec],
    stop: threading.Event,
    *,
    duration_s: float | None = None,
    backoff_s: float = 0.5,
    backoff_max_s: float = 10.0,
    healthy_after_s: float = 10.0,
    stop_timeout_s: float = 5.0,
    output: IO[Any] | None = None,
    poll_s: float = 0.1,
    on_start: Any = None,
) -> dict[str, Any]:
    """Run ``children`` until ``stop``, ``duration_s``, or a clean exit of an ``ends_run`` child.

    Args:
        output: where the children's stdout/stderr go (None: inherited).
        on_start: called with ``(name, pid)`` after every (re)start (tests use it).

    Returns:
        ``{"elapsed_s", "ended_by", "children": {name: {"starts", "exits"}}}``.
    """
    kids = [_Child(c, output) for c in children]
    t0 = time.monotonic()
    deadline = t0 + duration_s if duration_s is not None else float("inf")
    ended_by = "stop"
    try:
        for k in kids:
            k.start()
            if on_start is not None:
                on_start(k.spec.name, k.proc.pid if k.proc else -1)
        while not stop.is_set():
            now = time.monotonic()
            if now >= deadline:
                ended_by = "duration"
                break
            done = False
            for k in kids:
                p = k.proc
                if p is None:
                    if now >= k.next_start:
                        k.start()
                        if on_start is not None:
                            on_start(k.spec.name, k.proc.pid if k.proc else -1)
                    continue
                rc = p.poll()
                if rc is None:
                    continue
                k.exits.append(rc)
                k.proc = None
                if rc == 0 and k.spec.ends_run:
                    log.info("%s ended (its source is finished): stopping", k.spec.name)
                    ended_by = f"{k.spec.name} ended"
                    done = True
                    break
                k.failures = 1 if now - k.started >= healthy_after_s else k.failures + 1
                delay = min(backoff_max_s, backoff_s * 2 ** (k.failures - 1))
                log.warning("%s exited with status %d; restarting in %.1f s", k.spec.name, rc, delay)
                k.next_start = now + delay
            if done:
                break
            stop.wait(poll_s)
    finally:
        for k in reversed(kids):  # reverse start order: the consumer goes before its producer
            k.stop(stop_timeout_s)
    return {
        "elapsed_s": round(time.monotonic() - t0, 3),
        "ended_by": ended_by,
        "children": {k.spec.name: {"starts": k.starts, "exits": k.exits} for k in kids},
    }
