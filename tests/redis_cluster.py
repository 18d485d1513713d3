"""A Redis Cluster for the tests: three masters with one replica each, all real servers on free
loopback ports (the server binary of :mod:`tests.redis_server`, so Valkey too, run with
``--cluster-enabled yes``).

The cluster is made with plain commands (``CLUSTER SET-CONFIG-EPOCH``, ``ADDSLOTSRANGE``,
``MEET``, ``REPLICATE``), not ``redis-cli --cluster create``: a run on Valkey needs no redis-cli
matching it. Every node has its own cluster bus port (``--cluster-port``, a free port too:
the default, the port plus 10000, may be taken or past 65535).
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster

from tests.failover import wait_until
from tests.redis_server import RedisServer, answers

SLOTS = 16384
NODE_TIMEOUT_MS = 1000

# (first slot, last slot, master's port, replicas' ports), as CLUSTER SLOTS says
SlotRange = tuple[int, int, int, tuple[int, ...]]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (all bound at once, then let go)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class ClusterGroup:
    """``masters`` masters (three by default) with one replica each; the slots split evenly,
    a node down after ``NODE_TIMEOUT_MS``. Ready (every node ``cluster_state:ok``, all agreeing
    on the slot map, every replica synced) once made. A context manager: ``stop()`` at exit."""

    def __init__(self, masters: int = 3) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="pytheus-cluster-"))
        ports = free_ports(4 * masters)  # a port and a bus port a node
        self.bus_ports = dict(zip(ports[: 2 * masters], ports[2 * masters :]))
        self.nodes: dict[int, RedisServer] = {}
        self.node_ids: dict[int, str] = {}
        self.masters: list[int] = []  # as made: the masters of the slots, in order
        self.replicas: list[int] = []  # as made: replicas[i] replicates masters[i]
        self._killed: dict[int, tuple[list[tuple[int, int]], int]] = {}
        self._held: list[socket.socket] = []
        try:
            for port in ports[: 2 * masters]:
                self.nodes[port] = self._start_node(port)
            self.masters = ports[:masters]
            self.replicas = ports[masters : 2 * masters]
            self._create()
        except BaseException:
            self.stop()
            raise

    def __enter__(self) -> ClusterGroup:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- bring-up

    def _start_node(self, port: int) -> RedisServer:
        directory = self.directory / str(port)  # a replica's full sync writes its own files
        directory.mkdir()
        return RedisServer(
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(self.directory / f"nodes-{port}.conf"),
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            "--cluster-port", str(self.bus_ports[port]),
            "--enable-debug-command", "yes",
            "--repl-diskless-sync-delay", "0",
            "--repl-ping-replica-period", "1",
            port=port, directory=directory,
        )  # fmt: skip

    def _create(self) -> None:
        for epoch, port in enumerate(self.nodes, start=1):
            with self.admin(port) as node:
                # distinct epochs from the start, as redis-cli gives them: no collision to settle
                node.execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch)
                self.node_ids[port] = str(node.execute_command("CLUSTER", "MYID"))
        count = len(self.masters)
        for index, port in enumerate(self.masters):
            first, last = SLOTS * index // count, SLOTS * (index + 1) // count - 1
            with self.admin(port) as node:
                node.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
        with self.admin(self.masters[0]) as node:
            for port in self.ports[1:]:
                node.execute_command("CLUSTER", "MEET", "127.0.0.1", port, self.bus_ports[port])
        self._wait(self._all_known, "the nodes never all knew each other")
        for master, replica in zip(self.masters, self.replicas):
            with self.admin(replica) as node:
                node.execute_command("CLUSTER", "REPLICATE", self.node_ids[master])
        self._wait(self._ready, "the cluster never came up")

    def _all_known(self) -> bool:
        """Whether every node knows every other one, handshakes done."""
        for port in self.ports:
            with self.admin(port) as node:
                lines = str(node.execute_command("CLUSTER", "NODES")).strip().splitlines()
                if len(lines) != len(self.nodes) or any("handshake" in line for line in lines):
                    return False
        return True

    def _ready(self) -> bool:
        """Whether every node says ``cluster_state:ok`` and the same slot map, each master with
        its replica, and every replica has finished its first sync."""
        maps = [self.slot_map(port) for port in self.ports]
        if not self._settled(self.ports) or any(found != maps[0] for found in maps):
            return False
        owners = {master: replicas for _, _, master, replicas in maps[0]}
        if owners != {master: (replica,) for master, replica in zip(self.masters, self.replicas)}:
            return False
        for replica in self.replicas:
            with self.admin(replica) as node:
                info = node.info("replication")
                if info.get("master_link_status") != "up" or info.get("master_sync_in_progress"):
                    return False
        return True

    def _settled(self, ports: list[int]) -> bool:
        """Whether every node of ``ports`` says ``cluster_state:ok``, its slots all covered."""
        for port in ports:
            with self.admin(port) as node:
                info = str(node.execute_command("CLUSTER", "INFO"))
                if "cluster_state:ok" not in info or f"cluster_slots_assigned:{SLOTS}" not in info:
                    return False
        return True

    # -- what clients use

    @property
    def ports(self) -> list[int]:
        """Every node's port, dead ones included."""
        return list(self.nodes)

    @property
    def alive(self) -> list[int]:
        """The ports of the nodes not killed."""
        return [port for port, server in self.nodes.items() if server.process is not None]

    @property
    def startup_nodes(self) -> list[ClusterNode]:
        """Every node, for ``RedisCluster(startup_nodes=...)``."""
        return [
            ClusterNode("127.0.0.1", port)  # type: ignore[no-untyped-call, unused-ignore]
            for port in self.nodes
        ]

    @property
    def addresses(self) -> list[list[object]]:
        """Every node as ``[host, port]`` pairs (the sentinel harness's shape)."""
        return [["127.0.0.1", port] for port in self.nodes]

    @property
    def url(self) -> str:
        """The first master's URL (a cluster client finds the rest from there)."""
        return f"redis://127.0.0.1:{self.masters[0]}/0"

    def client(self, **options: Any) -> RedisCluster:
        """A cluster client of every node, with ``options`` for ``RedisCluster``."""
        return RedisCluster(startup_nodes=self.startup_nodes, **options)

    def admin(self, port: int) -> redis.Redis:
        """A plain client of one node (answers decoded; close it, or use it in ``with``)."""
        return redis.Redis(port=port, socket_timeout=2, decode_responses=True)

    # -- the slot map

    def slot_map(self, port: int | None = None) -> list[SlotRange]:
        """The slot map as the node on ``port`` (by default the first alive) says, sorted."""
        port = self.alive[0] if port is None else port
        with self.admin(port) as node:
            found = node.execute_command("CLUSTER", "SLOTS")
        return sorted(
            (
                int(entry[0]),
                int(entry[1]),
                int(entry[2][1]),
                tuple(sorted(int(replica[1]) for replica in entry[3:])),
            )
            for entry in found
        )

    def master_for_key(self, key: str | bytes) -> int:
        """The port of the master that has ``key``'s slot (``CLUSTER KEYSLOT``)."""
        with self.admin(self.alive[0]) as node:
            slot = int(node.execute_command("CLUSTER", "KEYSLOT", key))
        for first, last, master, _ in self.slot_map():
            if first <= slot <= last:
                return master
        raise RuntimeError(f"slot {slot} of {key!r} has no master")

    def replica_of(self, master: int) -> int:
        """The port of the replica of the master on ``master``, as ``CLUSTER NODES`` of the
        first node alive says (a replica flagged as failed too, as one held may be)."""
        ports = {node_id: port for port, node_id in self.node_ids.items()}
        with self.admin(self.alive[0]) as node:
            lines = str(node.execute_command("CLUSTER", "NODES")).strip().splitlines()
        for line in lines:
            fields = line.split()
            if fields[3] == self.node_ids[master]:
                return ports[fields[0]]
        raise RuntimeError(f"the master on {master} has no replica")

    # -- failures

    def hold_replica(self, master: int, seconds: float) -> None:
        """Stop the replica of the master on ``master`` for ``seconds`` (``DEBUG SLEEP``) and
        cut its link (``CLIENT KILL TYPE replica`` on the master): it takes no writes
        meanwhile, so the master killed then dies with writes the replica never had; alive,
        the master gives them to it once it wakes (a partial resync).

        Sleeping alone would not do: on loopback what the master sends a sleeping replica
        waits in the replica's socket buffer, and a replica woken after its master died still
        reads it (some megabytes). A hold longer than ``NODE_TIMEOUT_MS`` gets the replica
        flagged as failed meanwhile; it is cleared, and the failover goes on, once it wakes."""
        replica = self.replica_of(master)
        sock = socket.create_connection(("127.0.0.1", replica), timeout=5)
        sock.sendall(f"DEBUG SLEEP {seconds}\r\n".encode())
        self._held.append(sock)  # closed at stop(); the answer comes once it slept
        self._wait(lambda: not answers(replica), "the replica never went to sleep", 5)
        with self.admin(master) as node:
            node.execute_command("CLIENT", "KILL", "TYPE", "replica")

    def wait_for_replica_to_catch_up(self, master: int) -> None:
        """Until the replica of the master on ``master`` has every write it took."""
        replica = self.replica_of(master)

        def caught_up() -> bool:
            with self.admin(master) as source, self.admin(replica) as copy:
                offset = source.info("replication")["master_repl_offset"]
                return bool(copy.info("replication").get("slave_repl_offset", -1) >= offset)

        self._wait(caught_up, "the replica never caught up with its master")

    def kill_master(self, port: int) -> None:
        """SIGKILL the master on ``port``: its replica is promoted once the others see it
        fail (``wait_for_failover``)."""
        slots = [(first, last) for first, last, owner, _ in self.slot_map() if owner == port]
        if not slots:
            raise RuntimeError(f"the node on {port} is no master with slots")
        self._killed[port] = (slots, self.replica_of(port))
        self.nodes[port].stop()

    def wait_for_failover(self, port: int, timeout: float = 30) -> int:
        """Until the replica of the master killed on ``port`` is master of its slots, on every
        node alive, all ``cluster_state:ok``; the promoted replica's port."""
        slots, replica = self._killed[port]

        def promoted() -> bool:
            alive = self.alive
            maps = [self.slot_map(node) for node in alive]
            if any(found != maps[0] for found in maps) or not self._settled(alive):
                return False
            owners = {(first, last): owner for first, last, owner, _ in maps[0]}
            if any(owners.get(span) != replica for span in slots):
                return False
            with self.admin(replica) as node:
                return bool(node.execute_command("ROLE")[0] == "master")

        self._wait(promoted, f"the replica on {replica} never took over from {port}", timeout)
        return replica

    # -- the rest

    def _wait(self, condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
        wait_until(condition, what, timeout, 0.05)

    def stop(self) -> None:
        """Kill every node and remove every file of the cluster."""
        for sock in self._held:
            sock.close()
        self._held = []
        for server in self.nodes.values():
            server.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
