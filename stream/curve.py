"""ZeroMQ CURVE encryption and authentication for capture across machines.

Binding the capture's publisher beyond loopback is opt-in (``--pub tcp://0.0.0.0:5555``) and then
requires CURVE: the link is encrypted, and only clients whose public key is in an allow list
can connect (enforced by a ZAP authenticator thread, :class:`zmq.auth.thread.ThreadAuthenticator`).

Keys (``istrings keys generate DIR``, made with :func:`zmq.auth.create_certificates`)::

    DIR/server.key_secret     capture machine: --curve-secret DIR/server.key_secret
    DIR/server.key            every client: the server's public key
    DIR/clients/NAME.key      capture machine: --curve-allow DIR/clients (one public key per client)
    DIR/NAME.key_secret       the client NAME's key pair (copy it to that machine only)

Hooks for :mod:`stream.transport` (``configure=`` of ``Publisher`` / ``Subscriber``):
:func:`server_configure` and :func:`client_configure`. A server must also run an authenticator
on the same ZeroMQ context — :class:`CurveServer` does both. Without it, CURVE still encrypts
but accepts any client key.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from stream.errors import IStringsError

log = logging.getLogger(__name__)

SERVER_NAME = "server"
CLIENTS_DIR = "clients"


class CurveError(IStringsError, ValueError):
    """Keys are missing or unreadable, or a non-loopback address is used without them."""


def _load(path: Path, need_secret: bool) -> tuple[bytes, bytes | None]:
    import zmq.auth

    if not Path(path).is_file():
        raise CurveError(f"CURVE key file {path} does not exist (make keys with `istrings keys generate DIR`)")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise CurveError(f"cannot read CURVE key file {path}: {exc}") from exc
    if need_secret and not secret:
        raise CurveError(f"{path} holds no secret key: pass the .key_secret file, not the public .key")
    return public, secret


@dataclass(frozen=True)
class KeyFiles:
    """What :func:`generate_keys` wrote (paths)."""

    server_secret: Path
    server_public: Path
    allow_dir: Path
    clients: dict[str, Path]


def generate_keys(directory: Path, clients: tuple[str, ...] = ("client",)) -> KeyFiles:
    """Create a server key pair and one key pair per client under ``directory``.

    Raises:
        CurveError: a key file already exists (never overwritten), or a name is not a plain word.
    """
    import zmq.auth

    d = Path(directory)
    names = (SERVER_NAME, *clients)
    for name in clients:
        if not name or not name.replace("-", "").replace("_", "").isalnum() or name == SERVER_NAME:
            raise CurveError(f"client name {name!r} must be letters, digits, - or _ (and not {SERVER_NAME!r})")
    if len(set(names)) != len(names):
        raise CurveError(f"client names must be distinct, got {', '.join(clients)}")
    existing = [p for n in names for p in (d / f"{n}.key", d / f"{n}.key_secret", d / CLIENTS_DIR / f"{n}.key")
                if p.exists()]
    if existing:
        raise CurveError(f"{existing[0]} exists: keys are never overwritten; choose another directory")
    allow = d / CLIENTS_DIR
    allow.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for name in names:
        public, secret = zmq.auth.create_certificates(d, name)
        os.chmod(secret, 0o600)
        if name != SERVER_NAME:
            Path(public).replace(allow / f"{name}.key")  # the allow list holds public keys only
            out[name] = Path(secret)
    return KeyFiles(d / f"{SERVER_NAME}.key_secret", d / f"{SERVER_NAME}.key", allow, out)


def server_configure(secret_file: Path) -> Callable[[Any], None]:
    """Hook that makes a socket a CURVE server with the key pair in ``secret_file``.

    Raises:
        CurveError: the file is missing or holds no secret key.
    """
    public, secret = _load(secret_file, need_secret=True)

    def configure(sock: Any) -> None:
        sock.curve_publickey = public
        sock.curve_secretkey = secret
        sock.curve_server = True

    return configure


def client_configure(server_public_file: Path, secret_file: Path) -> Callable[[Any], None]:
    """Hook that makes a socket a CURVE client of the server whose public key is in ``server_public_file``.

    Raises:
        CurveError: a file is missing or the client's file holds no secret key.
    """
    server_public, _ = _load(server_public_file, need_secret=False)
    public, secret = _load(secret_file, need_secret=True)

    def configure(sock: Any) -> None:
        sock.curve_serverkey = server_public
        sock.curve_publickey = public
        sock.curve_secretkey = secret

    return configure


class CurveServer:
    """A CURVE server's keys plus the authenticator that enforces the allow list.

    Args:
        secret_file: the server's ``.key_secret``.
        allow_dir: a directory of allowed clients' public ``.key`` files (at least one).
        context: the ZeroMQ context the publisher will use (default the process-wide instance).

    Use as ``with CurveServer(secret, allow) as cs: Publisher(addr, configure=cs.configure,
    context=cs.context)``.
    """

    def __init__(self, secret_file: Path, allow_dir: Path, context: Any = None) -> None:
        import zmq

        self.configure = server_configure(secret_file)
        self.allow_dir = Path(allow_dir)
        if not self.allow_dir.is_dir():
            raise CurveError(f"--curve-allow {allow_dir} is not a directory of client public keys")
        self.allowed = sorted(p.name for p in self.allow_dir.glob("*.key"))
        if not self.allowed:
            raise CurveError(f"{allow_dir} holds no client public key (*.key): no client could connect")
        self.context = context or zmq.Context.instance()
        self._auth: Any = None

    def __enter__(self) -> CurveServer:
        from zmq.auth.thread import ThreadAuthenticator

        self._auth = ThreadAuthenticator(self.context, log=logging.getLogger(f"{__name__}.zap"))
        self._auth.start()
        self._auth.configure_curve(domain="*", location=str(self.allow_dir))
        log.info("CURVE on: %d allowed client key(s) from %s", len(self.allowed), self.allow_dir)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None


def require_curve(address: str, secret_file: Path | None, allow_dir: Path | None) -> bool:
    """Decide whether a publisher on ``address`` uses CURVE; True when it must be set up.

    Loopback addresses use CURVE only when keys are given; any other address requires them.

    Raises:
        CurveError: a non-loopback address without keys, or only one of the two key options.
    """
    from stream.transport import is_loopback

    if (secret_file is None) != (allow_dir is None):
        raise CurveError("CURVE needs both --curve-secret FILE and --curve-allow DIR")
    if secret_file is None and not is_loopback(address):
        raise CurveError(
            f"refusing to publish on {address}: beyond loopback the link must be encrypted and "
            "authenticated; make keys with `istrings keys generate DIR` and pass "
            "--curve-secret DIR/server.key_secret --curve-allow DIR/clients"
        )
    return secret_file is not None
