"""A real redis-server for the tests, on a free loopback port, which tests can stop and restart.

``PYTHEUS_TEST_REDIS_SERVER`` names another server binary to run instead (scripts/test.sh runs
the Redis tests a second time on ``valkey-server``, see scripts/valkey.sh).
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.conftest import require_program


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


SERVER_ENV = "PYTHEUS_TEST_REDIS_SERVER"


def server_binary() -> str:
    """The server the Redis tests run: ``$PYTHEUS_TEST_REDIS_SERVER``, else redis-server."""
    return os.environ.get(SERVER_ENV) or require_program("redis-server")


class RedisServer:
    """A server on ``port`` (a free one by default) writing in ``directory`` (a temporary one
    by default), run with the ``extra`` arguments; started at once."""

    def __init__(self, *extra: str, port: int | None = None, directory: Path | None = None) -> None:
        self.binary = server_binary()
        self.port = free_port() if port is None else port
        self.directory = (
            Path(tempfile.mkdtemp(prefix="pytheus-redis-")) if directory is None else directory
        )
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.directory),
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith((b"+PONG", b"-NOAUTH")):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()  # never leave a half-started server behind
                raise RuntimeError(f"{self.binary} did not start on port {self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


_shared: RedisServer | None = None


def shared_server() -> RedisServer:
    """One server for the behavioural suite; each test uses its own namespace."""
    global _shared
    if _shared is None:
        _shared = RedisServer()
        atexit.register(_shared.stop)
    return _shared


def answers(port: int) -> bool:
    """Whether the server on ``port`` answers a ``PING`` within 0.1 s."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def replication_offset(port: int, field: str) -> int:
    """A replication offset the server on ``port`` reports: ``master_repl_offset`` (how much
    it wrote), or, once a replica was promoted, ``second_repl_offset`` (one past where it took
    over from its master)."""
    import redis

    with redis.Redis(port=port, socket_timeout=2) as server:
        return int(server.info("replication")[field])
