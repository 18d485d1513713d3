"""A Redis behind Sentinel for the tests: a master, a replica and three sentinels, all real
servers on free loopback ports (the server binary of :mod:`tests.redis_server`, run with
``--sentinel`` for the sentinels, as Debian's redis-sentinel and valkey-sentinel do)."""

from __future__ import annotations

import socket
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import redis

from tests.failover import wait_until
from tests.redis_server import RedisServer, answers, free_port, server_binary

SERVICE = "mymaster"


class SentinelGroup:
    """One master, one replica, three sentinels (quorum 2, a master down after 1 s)."""

    def __init__(self) -> None:
        self.master = RedisServer()
        self.replica = RedisServer(
            "--replicaof", "127.0.0.1", str(self.master.port), "--enable-debug-command", "yes"
        )
        self.directory = Path(tempfile.mkdtemp(prefix="pytheus-sentinel-"))
        self.ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []
        self._held: list[socket.socket] = []
        try:
            for port in self.ports:
                self.sentinels.append(self._start_sentinel(port))
            self._wait(self._ready, "the sentinels never saw the master, replica and each other")
        except BaseException:
            self.stop()
            raise

    @property
    def addresses(self) -> list[list[object]]:
        """The ``sentinels`` option of the backend."""
        return [["127.0.0.1", port] for port in self.ports]

    def _start_sentinel(self, port: int) -> subprocess.Popen[bytes]:
        config = self.directory / f"sentinel-{port}.conf"  # a sentinel rewrites its own file
        config.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {self.directory}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.master.port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 5000\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        return subprocess.Popen(
            [server_binary(), str(config), "--sentinel"], stdout=subprocess.DEVNULL
        )

    def _sentinel(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, decode_responses=True)

    def _ready(self) -> bool:
        for port in self.ports:
            with self._sentinel(port) as client:
                if len(client.execute_command("SENTINEL", "REPLICAS", SERVICE)) < 1:
                    return False
                if len(client.execute_command("SENTINEL", "SENTINELS", SERVICE)) < 2:
                    return False
        return True

    def master_port(self) -> int | None:
        """The master's port as the first sentinel that answers says."""
        for port in self.ports:
            try:
                with self._sentinel(port) as client:
                    found = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
                    return int(found[1])
            except redis.RedisError:
                continue
        return None

    def hold_replica(self, seconds: float) -> None:
        """Stop the replica for ``seconds`` (``DEBUG SLEEP``) and cut its link (``CLIENT KILL
        TYPE replica`` on the master): it takes no writes meanwhile, so a master killed then
        dies with writes the replica never had. (Sleeping alone would not do: what the master
        sends a sleeping replica waits in its socket buffer, and it reads it once awake.)"""
        sock = socket.create_connection(("127.0.0.1", self.replica.port), timeout=5)
        sock.sendall(f"DEBUG SLEEP {seconds}\r\n".encode())
        self._held.append(sock)  # closed at stop(); the answer comes once it slept
        self._wait(lambda: not answers(self.replica.port), "the replica never went to sleep", 5)
        with redis.Redis(port=self.master.port) as master:
            master.execute_command("CLIENT", "KILL", "TYPE", "replica")

    def wait_for_replica_to_catch_up(self) -> None:
        """Until the replica has every write the master took (replication offsets equal)."""
        master = redis.Redis(port=self.master.port)
        replica = redis.Redis(port=self.replica.port)

        def caught_up() -> bool:
            offset = master.info("replication")["master_repl_offset"]
            return bool(replica.info("replication").get("slave_repl_offset", -1) >= offset)

        self._wait(caught_up, "the replica never caught up with the master")

    def kill_master(self) -> None:
        """SIGKILL the master: the sentinels promote the replica."""
        assert self.master.process is not None
        self.master.process.kill()
        self.master.process.wait(timeout=10)
        self.master.process = None

    def wait_for_failover(self, timeout: float = 60) -> None:
        self._wait(lambda: self.master_port() == self.replica.port, "no failover", timeout)

    def _wait(self, condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
        wait_until(condition, what, timeout, 0.1)

    def stop(self) -> None:
        for sock in self._held:
            sock.close()
        for process in self.sentinels:
            process.kill()
            process.wait(timeout=10)
        self.sentinels = []
        self.replica.stop()
        self.master.stop()
