"""The Redis Cluster of tests/redis_cluster.py: it comes up, a ``RedisCluster`` client reaches
every master, scripts run on a hash-tagged key, a killed master's replica takes over (the client
finds it), a held replica loses the writes it never had, and ``stop()`` leaves nothing behind.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from tests.redis_cluster import ClusterGroup

pytestmark = pytest.mark.system
INCRBY = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


@pytest.fixture
def cluster() -> Iterator[ClusterGroup]:
    with ClusterGroup() as started:
        yield started


def test_every_master_serves_its_keys_and_scripts_run(cluster: ClusterGroup) -> None:
    client = cluster.client(decode_responses=True)
    keys: dict[int, str] = {}  # a key on each master
    for index in range(100):
        keys.setdefault(cluster.master_for_key(f"key-{index}"), f"key-{index}")
        if len(keys) == len(cluster.masters):
            break
    assert sorted(keys) == sorted(cluster.masters)
    for port, key in keys.items():
        assert client.set(key, f"on {port}")
        assert client.get(key) == f"on {port}"
        with cluster.admin(port) as node:  # on that master indeed
            assert node.get(key) == f"on {port}"
    with RedisCluster.from_url(cluster.url, decode_responses=True) as from_url:
        assert [from_url.get(key) for key in keys.values()] == [f"on {port}" for port in keys]

    # the hash tag puts both keys on one master, whichever the script is sent to
    assert cluster.master_for_key("{pytheus}:a") == cluster.master_for_key("{pytheus}:b")
    sha = client.script_load(INCRBY)
    assert client.evalsha(sha, 1, "{pytheus}:a", 5) == 5
    assert client.evalsha(sha, 1, "{pytheus}:a", 2) == 7
    assert client.get("{pytheus}:a") == "7"


def test_a_killed_masters_replica_takes_over_and_stop_leaves_nothing() -> None:
    with ClusterGroup() as cluster:
        directory = cluster.directory
        processes = [server.process for server in cluster.nodes.values()]
        pids = [process.pid for process in processes if process is not None]
        assert len(pids) == 6 and all(Path(f"/proc/{pid}").exists() for pid in pids)
        plain = cluster.client()  # redis-py's own retries: 10, backoff 10 ms to 1 s
        # a command sent while the master is down waits until its replica took over (some
        # 2.5-3.5 s): redis-py's default budget of retries is about as long, so this one's is more
        patient = cluster.client(retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 40))
        key = "{failover}:n"
        incrby = plain.register_script(INCRBY)
        assert incrby(keys=[key], args=[2]) == 2
        master = cluster.master_for_key(key)
        replica = cluster.replica_of(master)
        cluster.wait_for_replica_to_catch_up(master)

        started = time.monotonic()
        cluster.kill_master(master)
        assert patient.incr(key) == 3
        assert cluster.wait_for_failover(master, timeout=15) == replica
        print(f"\nfailover in {time.monotonic() - started:.1f} s")
        assert cluster.master_for_key(key) == replica
        # its slot map stale, the client meets a connection refused, reads the map again, retries
        assert plain.get(key) == b"3"
        assert plain.set(key, 10)
        assert patient.get(key) == b"10"
        # the new master lacks the script (scripts are not replicated): Script loads it again
        assert incrby(keys=[key], args=[5]) == 15
        ports = cluster.ports
    assert all(process is not None and process.poll() is not None for process in processes)
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
    assert not directory.exists()
    for port in ports:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_a_held_replica_loses_the_writes_it_never_had(cluster: ClusterGroup) -> None:
    client = cluster.client()
    key = "{held}:n"
    client.set(key, "replicated")
    master = cluster.master_for_key(key)
    cluster.wait_for_replica_to_catch_up(master)
    cluster.hold_replica(master, 1)
    client.set(key, "lost")
    cluster.kill_master(master)
    cluster.wait_for_failover(master, timeout=15)
    assert client.get(key) == b"replicated"
