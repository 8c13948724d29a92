"""CURVE: keys, the allow list, and who receives frames (real ZeroMQ sockets on 127.0.0.1, CURVE forced on)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stream.curve import (
    CurveError,
    CurveServer,
    client_configure,
    generate_keys,
    require_curve,
    server_configure,
)
from stream.protocol import PoseFrame, decode
from stream.skeleton import Layout
from stream.transport import Publisher, Subscriber

N = 40


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    root = tmp_path_factory.mktemp("keys")
    good = generate_keys(root / "stage", ("inference", "monitor"))
    other = generate_keys(root / "other", ("intruder",))
    return good, other


def test_key_layout(keys: tuple) -> None:
    good, _ = keys
    assert good.server_secret.is_file() and good.server_public.is_file()
    assert sorted(p.name for p in good.allow_dir.iterdir()) == ["inference.key", "monitor.key"]
    assert "secret-key" not in (good.allow_dir / "inference.key").read_text()  # public keys only
    assert stat.S_IMODE(os.stat(good.clients["inference"]).st_mode) == 0o600
    with pytest.raises(CurveError, match="never overwritten"):
        generate_keys(good.server_secret.parent, ("inference",))
    with pytest.raises(CurveError, match="must be letters"):
        generate_keys(good.server_secret.parent / "x", ("a b",))


def _received(pub_address: str, configure: object) -> list[PoseFrame]:
    frames = []
    with Subscriber(pub_address, configure=configure) as sub:  # type: ignore[arg-type]
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            msg = sub.recv(100)
            if msg is not None:
                frames.append(decode(msg))
    return frames


def test_only_allowed_clients_with_the_server_key_receive(keys: tuple) -> None:
    good, other = keys
    clients = {
        "right key": client_configure(good.server_public, good.clients["inference"]),
        "second allowed client": client_configure(good.server_public, good.clients["monitor"]),
        "client key not allowed": client_configure(good.server_public, other.clients["intruder"]),
        "wrong server key": client_configure(other.server_public, good.clients["inference"]),
        "no CURVE": None,
    }
    subs = {}
    with CurveServer(good.server_secret, good.allow_dir) as cs, Publisher(
        "tcp://127.0.0.1:*", configure=cs.configure, context=cs.context, sndhwm=10_000
    ) as pub:
        for name, configure in clients.items():
            subs[name] = Subscriber(pub.address, configure=configure, rcvhwm=10_000).__enter__()  # type: ignore[arg-type]
        try:
            assert pub.wait_for_subscribers(2, 5.0)
            time.sleep(0.5)  # let the refused handshakes fail too
            for i in range(N):
                pub.send(PoseFrame.empty(i, time.monotonic_ns(), Layout.MEDIAPIPE33, source_id="curve-test"))
            counts = {}
            for name, sub in subs.items():
                got = []
                while (msg := sub.recv(300)) is not None:
                    got.append(decode(msg).seq)
                counts[name] = got
        finally:
            for sub in subs.values():
                sub.close()
    assert counts["right key"] == list(range(N))
    assert counts["second allowed client"] == list(range(N))
    assert counts["client key not allowed"] == []
    assert counts["wrong server key"] == []
    assert counts["no CURVE"] == []


def test_require_curve() -> None:
    assert require_curve("tcp://127.0.0.1:5555", None, None) is False
    assert require_curve("tcp://127.0.0.1:5555", Path("s"), Path("a")) is True
    with pytest.raises(CurveError, match=r"refusing to publish on tcp://0\.0\.0\.0:5555"):
        require_curve("tcp://0.0.0.0:5555", None, None)
    with pytest.raises(CurveError, match="needs both"):
        require_curve("tcp://0.0.0.0:5555", Path("s"), None)


def test_key_file_errors(keys: tuple, tmp_path: Path) -> None:
    good, _ = keys
    with pytest.raises(CurveError, match="no secret key"):
        server_configure(good.server_public)
    with pytest.raises(CurveError, match="does not exist"):
        client_configure(tmp_path / "none.key", good.clients["inference"])
    with pytest.raises(CurveError, match="holds no client public key"):
        CurveServer(good.server_secret, tmp_path)
    with pytest.raises(CurveError, match="not a directory"):
        CurveServer(good.server_secret, tmp_path / "nowhere")


def _istrings(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stream.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_keys_generate_command(tmp_path: Path) -> None:
    r = _istrings("keys", "generate", str(tmp_path / "k"), "--client", "laptop")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "k" / "clients" / "laptop.key").is_file()
    assert "capture --curve-secret" in r.stdout
    again = _istrings("keys", "generate", str(tmp_path / "k"), "--client", "laptop")
    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [
        f"istrings: error: {tmp_path / 'k' / 'server.key'} exists: keys are never overwritten; "
        "choose another directory"]


def test_capture_refuses_non_loopback_without_keys() -> None:
    r = _istrings("capture", "--source", "synthetic", "--pub", "tcp://0.0.0.0:5599")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("istrings: error: refusing to publish on tcp://0.0.0.0:5599")
    assert "istrings keys generate" in lines[0]


def test_capture_process_with_curve(keys: tuple) -> None:
    """A real capture process with CURVE on loopback: the allowed client gets every frame, others none."""
    good, other = keys
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream.cli", "capture", "--source", "synthetic", "--fast", "--pub",
         "tcp://127.0.0.1:*", "--curve-secret", str(good.server_secret), "--curve-allow", str(good.allow_dir),
         "--max-frames", "200", "--wait-subscribers", "1", "--json", "--no-window"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "(CURVE)" in line, line
        address = line.split("→ ")[1].split(" ")[0]
        bad = Subscriber(address, configure=client_configure(good.server_public, other.clients["intruder"]),
                         rcvhwm=10_000).__enter__()
        time.sleep(0.3)  # the refused client tries first, so it would be first to receive
        got = []
        with Subscriber(address, configure=client_configure(good.server_public, good.clients["inference"]),
                        rcvhwm=10_000) as sub:
            while (msg := sub.recv(5000)) is not None:
                got.append(decode(msg))
                if len(got) == 200:
                    break
        bad_got = bad.recv(200)
        bad.close()
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert [f.seq for f in got] == list(range(200))
    assert all(f.layout == Layout.CANONICAL18 and f.num_people == 2 for f in got)
    assert bad_got is None
    assert '"published": 200' in out
