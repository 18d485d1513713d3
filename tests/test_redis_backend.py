"""The Redis backend against a real redis-server: processes, faults, scrape cost, options."""

from __future__ import annotations

import logging
import multiprocessing
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from pytheus.backends import SingleProcessBackend, load_backend
from pytheus.backends.base import current_store
from pytheus.backends.redis import MultiProcessRedisBackend, RedisStore, wait_for_flush
from pytheus.exceptions import BackendUnavailableException, InvalidBackendConfigException
from pytheus.exposition import generate_metrics
from pytheus.metrics import Counter, Gauge
from pytheus.registry import CollectorRegistry
from tests import multiprocess_workers as workers
from tests.helpers import eventually, samples, value
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
PROCESSES = 4
OPERATIONS = 2_000


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A server of the test's own, which the test may stop and restart."""
    own = RedisServer()
    yield own
    own.stop()


def config(server: RedisServer, **options: Any) -> dict[str, Any]:
    return {"url": server.url, "namespace": uuid.uuid4().hex[:12], **options}


@pytest.fixture
def loaded(server: RedisServer) -> Iterator[dict[str, Any]]:
    settings = config(server)
    load_backend(MultiProcessRedisBackend, settings)
    yield settings
    load_backend(SingleProcessBackend, {})


def store() -> RedisStore:
    current = current_store()
    assert isinstance(current, RedisStore)
    return current


def run_children(context_name: str, target: Any, args: tuple[Any, ...], count: int) -> None:
    context: Any = multiprocessing.get_context(context_name)
    children = [context.Process(target=target, args=args) for _ in range(count)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)
        assert child.exitcode == 0


def check_totals(registry: CollectorRegistry, processes: int, parent_ops: int = 0) -> None:
    total = processes * OPERATIONS + parent_ops
    got = samples(registry)
    assert got[("requests_total", frozenset({("route", "/shared"), ("worker", "any")}))] == total
    own = [v for (name, labels), v in got.items() if ("route", "/own") in labels]
    assert sorted(own) == sorted([OPERATIONS] * processes + ([parent_ops] if parent_ops else []))
    route = frozenset({("route", "/shared")})
    assert got[("latency_seconds_count", route)] == total
    assert got[("latency_seconds_bucket", route | {("le", "1.0")})] == total // 20 * 2
    assert got[("sizes_bytes_sum", frozenset())] == 2 * total
    assert got[("in_progress", frozenset())] == 0


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_processes_exact_totals(loaded: dict[str, Any], start_method: str) -> None:
    metrics = workers.Metrics()
    parent_ops = 0
    if start_method == "fork":
        workers.do_work(metrics, OPERATIONS)  # recorded before forking: children start afresh
        parent_ops = OPERATIONS
        run_children("fork", workers.do_work, (metrics, OPERATIONS), PROCESSES)
    else:
        backend = (MultiProcessRedisBackend, loaded)
        run_children("spawn", workers.work_in_fresh_process, (backend, OPERATIONS), PROCESSES)
    check_totals(metrics.registry, PROCESSES, parent_ops)


TOP_LEVEL = ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_script", "cmdstat_ping")


def test_the_server_is_the_one_asked_for(server: RedisServer) -> None:
    """The tests run on redis-server, or on valkey-server when scripts/test.sh asks for it."""
    info = redis.Redis.from_url(server.url).info("server")
    assert ("valkey_version" in info) == ("valkey" in Path(server.binary).name), info
    version = info.get("valkey_version") or info["redis_version"]
    print(f"server under test: {server.binary}, version {version}")


def test_round_trips_per_scrape_do_not_grow_with_series(server: RedisServer) -> None:
    client = redis.Redis.from_url(server.url)

    def scrape_calls(series: int) -> tuple[int, int]:
        """Commands a scrape sends (top level) and runs in all, for ``series`` counters."""
        load_backend(MultiProcessRedisBackend, config(server))
        registry = CollectorRegistry()
        counter = Counter("many_total", "M.", required_labels=["n"], registry=registry)
        for n in range(series):
            counter.labels(n=str(n)).inc()
        generate_metrics(registry)  # flushed, scripts loaded
        client.config_resetstat()
        generate_metrics(registry)
        stats = client.info("commandstats")
        top = sum(int(v["calls"]) for k, v in stats.items() if k in TOP_LEVEL)
        return top, sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_config")

    try:
        (small_top, small_all), (large_top, large_all) = scrape_calls(1), scrape_calls(1100)
    finally:
        load_backend(SingleProcessBackend, {})
    print(f"per scrape: {small_top} commands sent for 1 series, {large_top} for 1,100 series")
    assert small_top == large_top == 2  # the flush of this process's pending values and the read
    assert small_all == large_all  # counters live in one hash: even the script's work is constant


def test_redis_down_at_start_then_up(server: RedisServer) -> None:
    server.stop()
    settings = config(server)
    try:
        load_backend(MultiProcessRedisBackend, settings)  # down is not a configuration error
        registry = CollectorRegistry()
        counter = Counter("orders_total", "Orders.", registry=registry)
        for _ in range(1000):
            counter.inc()  # never raises, never waits for Redis
        with pytest.raises(BackendUnavailableException, match=str(server.port)):
            generate_metrics(registry)
        server.start()
        assert wait_for_flush(10)
        assert value(registry, "orders_total") == 1000
    finally:
        load_backend(SingleProcessBackend, {})


def increment_in_loop(backend: tuple[type[Any], dict[str, Any]], rounds: int, done: Any) -> None:
    workers.load(backend)
    counter = Counter("restart_total", "R.", registry=CollectorRegistry())
    for _ in range(rounds):
        for _ in range(100):
            counter.inc()
        time.sleep(0.01)
    done.set()
    assert wait_for_flush(30)


def test_redis_restart_during_run_keeps_exact_totals(server: RedisServer) -> None:
    settings = config(server, flush_interval=0.2)
    backend = (MultiProcessRedisBackend, settings)
    context = multiprocessing.get_context("spawn")
    done = [context.Event() for _ in range(PROCESSES)]
    children = [
        context.Process(target=increment_in_loop, args=(backend, 300, event)) for event in done
    ]
    for child in children:
        child.start()
    time.sleep(1.5)
    server.restart()  # comes back empty: no persistence
    time.sleep(0.5)
    server.stop()  # and down for a while
    time.sleep(1.0)
    server.start()
    for child in children:
        child.join(timeout=120)
        assert child.exitcode == 0
    load_backend(MultiProcessRedisBackend, settings)
    try:
        registry = CollectorRegistry()
        Counter("restart_total", "R.", registry=registry)
        deadline = time.monotonic() + 10
        while True:  # right after a restart, scrapes answer "unavailable", never partial totals
            try:
                total = value(registry, "restart_total")
                break
            except BackendUnavailableException as error:
                assert "lost data" in str(error)
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert total == PROCESSES * 300 * 100
    finally:
        load_backend(SingleProcessBackend, {})


def test_retried_batch_is_applied_once(loaded: dict[str, Any]) -> None:
    registry = CollectorRegistry()
    counter = Counter("once_total", "O.", registry=registry)
    counter.inc(5)
    flusher = store().flusher
    with flusher._flush_lock:  # keep the background thread out of the way
        batch = flusher._take_batch()
        assert batch is not None
        statuses = [
            flusher._send(batch.seq, flusher._acked, batch.arguments())[0] for _ in range(3)
        ]  # as if the replies to the first attempts had been lost
        flusher._acknowledge(batch)
    assert statuses == ["ok", "dup", "dup"]
    assert value(registry, "once_total") == 5


def test_scrape_while_down_is_a_clear_error(loaded: dict[str, Any], server: RedisServer) -> None:
    registry = CollectorRegistry()
    Counter("down_total", "D.", registry=registry).inc()
    server.stop()
    with pytest.raises(BackendUnavailableException, match=f"127.0.0.1:{server.port}"):
        generate_metrics(registry)


def test_namespaces_do_not_collide(server: RedisServer) -> None:
    try:
        totals = {}
        for namespace, amount in (("a", 1), ("b", 10)):
            load_backend(MultiProcessRedisBackend, {"url": server.url, "namespace": namespace})
            registry = CollectorRegistry()
            Counter("same_total", "S.", registry=registry).inc(amount)
            totals[namespace] = value(registry, "same_total")
        assert totals == {"a": 1, "b": 10}
    finally:
        load_backend(SingleProcessBackend, {})


def test_series_expire_when_no_living_process_holds_them(server: RedisServer) -> None:
    settings = config(server, expire_key_time=1)
    code = textwrap.dedent(
        f"""
        from pytheus.backends import load_backend
        from pytheus.backends.redis import MultiProcessRedisBackend
        from pytheus.metrics import Counter
        load_backend(MultiProcessRedisBackend, {settings!r})
        Counter("gone_total", "G.", required_labels=["user"]).labels(user="departed").inc()
        """
    )
    subprocess.run(
        [sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    try:
        load_backend(MultiProcessRedisBackend, settings)
        registry = CollectorRegistry()
        counter = Counter("gone_total", "G.", required_labels=["user"], registry=registry)
        info = Gauge("started", "S.", registry=registry)
        info.set(42)  # set once, held by this living process
        counter.labels(user="here").inc()
        assert value(registry, "gone_total", user="departed") == 1

        def departed_expired() -> None:  # past expire_key_time: it expires, ours do not
            assert value(registry, "gone_total", user="departed") is None

        eventually(departed_expired)
        time.sleep(1.5)  # more than expire_key_time later, what this process holds is still there
        assert value(registry, "gone_total", user="here") == 1
        assert value(registry, "started") == 42
    finally:
        load_backend(SingleProcessBackend, {})


def test_write_through(server: RedisServer) -> None:
    settings = config(server, flush_interval=0)
    try:
        load_backend(MultiProcessRedisBackend, settings)
        counter = Counter("through_total", "T.", registry=CollectorRegistry())
        counter.inc(3)
        client = redis.Redis.from_url(server.url)
        stored = client.hvals(f"pytheus:{settings['namespace']}:v")
        assert stored == [b"3.0"]  # in Redis before any scrape
    finally:
        load_backend(SingleProcessBackend, {})


def test_bad_configuration_is_a_clear_error() -> None:
    with pytest.raises(InvalidBackendConfigException, match="url must start"):
        load_backend(MultiProcessRedisBackend, {"url": "http://127.0.0.1:1"})
    with pytest.raises(InvalidBackendConfigException, match="cannot be resolved"):
        load_backend(MultiProcessRedisBackend, {"host": "no-such-host.invalid", "port": 6379})
    with pytest.raises(InvalidBackendConfigException, match="namespace"):
        load_backend(MultiProcessRedisBackend, {"namespace": "a:b"})
    for settings in ({"url": "redis://127.0.0.1:1/0"}, {"host": "127.0.0.1", "port": 1}):
        with pytest.raises(InvalidBackendConfigException) as raised:  # a misspelt option
            load_backend(MultiProcessRedisBackend, {**settings, "socket_timout": 2})
        assert str(raised.value) == (
            "Redis backend: unknown option 'socket_timout' (neither a pytheus option nor one "
            "of redis-py's connection options)"
        )
    with pytest.raises(InvalidBackendConfigException) as raised:
        load_backend(
            MultiProcessRedisBackend, {"url": "redis://127.0.0.1:1/0", "flush_interval": "1s"}
        )
    assert "option 'flush_interval' must be a number" in str(raised.value)
    assert "got '1s'" in str(raised.value)


def test_wrong_password_names_the_address_not_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    protected = RedisServer("--requirepass", "s3cret-pass")
    try:
        url = f"redis://:wrong-pass@127.0.0.1:{protected.port}/0"
        with pytest.raises(InvalidBackendConfigException) as raised:
            load_backend(MultiProcessRedisBackend, {"url": url})
        assert f"127.0.0.1:{protected.port}" in str(raised.value)
        assert "wrong-pass" not in str(raised.value)
        good = f"redis://:s3cret-pass@127.0.0.1:{protected.port}/0"
        load_backend(MultiProcessRedisBackend, {"url": good})
        registry = CollectorRegistry()
        Counter("auth_total", "A.", registry=registry).inc()
        with caplog.at_level(logging.DEBUG):
            assert value(registry, "auth_total") == 1
        assert "s3cret-pass" not in caplog.text
    finally:
        load_backend(SingleProcessBackend, {})
        protected.stop()


def test_gauge_modes_across_processes(loaded: dict[str, Any]) -> None:
    modes = ["all", "sum", "livesum", "max", "livemax", "mostrecent"]
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    children = []
    for v in (3.0, 1.0, 2.0):
        ready = context.Event()
        child = context.Process(
            target=workers.set_gauges_and_wait,
            args=((MultiProcessRedisBackend, loaded), modes, v, ready, stop),
        )
        child.start()
        assert ready.wait(60)
        assert wait_for_flush(10)
        children.append(child)
        time.sleep(0.01)
    registry = CollectorRegistry()
    for mode in modes:
        Gauge(f"gauge_{mode}", "G.", multiprocess_mode=mode, registry=registry)
    Gauge("gauge_default_set", "G.", registry=registry)
    Gauge("gauge_default_inc", "G.", registry=registry)

    def every_child_flushed() -> None:  # each child flushes its gauges on its own schedule
        got = {m: value(registry, f"gauge_{m}") for m in modes if m != "all"}
        assert got == {"sum": 6, "livesum": 6, "max": 3, "livemax": 3, "mostrecent": 2}
        assert value(registry, "gauge_default_set") == 2
        assert value(registry, "gauge_default_inc") == 6

    eventually(every_child_flushed)
    own = f"{store().flusher.process.rsplit(':', 1)[0]}"
    per_process = [
        v for (n, labels), v in samples(registry).items()
        if n == "gauge_all" and dict(labels)["pid"] != own
    ]  # fmt: skip
    assert sorted(per_process) == [1, 2, 3]
    stop.set()
    for child in children:
        child.join()
    # the children are gone; their heartbeats expire only after a while, so end them now
    client = redis.Redis.from_url(loaded["url"], decode_responses=True)
    for key in client.keys(f"pytheus:{loaded['namespace']}:proc:*"):
        if store().flusher.process not in key:
            client.delete(key)
    after = {m: value(registry, f"gauge_{m}") for m in modes if m != "all"}
    assert after == {"sum": 6, "livesum": 0, "max": 3, "livemax": 0, "mostrecent": 2}
    assert value(registry, "gauge_default_inc") == 0


def test_unrelated_processes_on_other_hosts_share_series(loaded: dict[str, Any]) -> None:
    code = textwrap.dedent(
        f"""
        from pytheus.backends import load_backend
        from pytheus.backends.redis import MultiProcessRedisBackend
        from pytheus.metrics import Counter
        load_backend(MultiProcessRedisBackend, {loaded!r})
        Counter("hosts_total", "H.", required_labels=["zone"]).labels(zone="eu").inc(2)
        """
    )
    for _ in range(3):
        subprocess.run(
            [sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
        )
    registry = CollectorRegistry()
    Counter("hosts_total", "H.", required_labels=["zone"], registry=registry)
    assert value(registry, "hosts_total", zone="eu") == 6


def test_pending_cap_drops_counted_and_logged(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.stop()
    try:
        load_backend(MultiProcessRedisBackend, config(server, max_pending_series=3))
        counter = Counter("capped_total", "C.", required_labels=["n"], registry=CollectorRegistry())
        for n in range(5):
            counter.labels(n=str(n)).inc()  # 5 series pending while Redis is down
        with caplog.at_level(logging.ERROR, logger="pytheus.backends.redis"):
            assert store().flusher.flush() is False
            assert store().flusher.flush() is False
        assert store().flusher.dropped_updates == 5
        assert "dropped the pending updates of 5 series" in caplog.text
    finally:
        load_backend(SingleProcessBackend, {})


def test_removed_series_disappear_for_every_process(loaded: dict[str, Any]) -> None:
    write = textwrap.dedent(
        f"""
        from pytheus.backends import load_backend
        from pytheus.backends.redis import MultiProcessRedisBackend
        from pytheus.metrics import Counter
        load_backend(MultiProcessRedisBackend, {loaded!r})
        Counter("jobs_total", "J.", required_labels=["queue"]).labels(queue="a").inc(3)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    registry = CollectorRegistry()
    counter = Counter("jobs_total", "J.", required_labels=["queue"], registry=registry)
    counter.labels(queue="a").inc()
    subprocess.run([sys.executable, "-c", write], check=True, env=env)
    assert value(registry, "jobs_total", queue="a") == 4
    counter.remove(queue="a")
    assert value(registry, "jobs_total", queue="a") is None
    subprocess.run([sys.executable, "-c", write], check=True, env=env)  # from zero again
    assert value(registry, "jobs_total", queue="a") == 3


def remove_queue_a(counter: Counter) -> None:
    counter.remove(queue="a")


def test_a_process_that_only_removes_sends_the_removal(loaded: dict[str, Any]) -> None:
    """A forked child that records nothing: its removal still reaches Redis when it exits."""
    registry, onlooker = CollectorRegistry(), CollectorRegistry()
    counter = Counter("jobs_total", "J.", required_labels=["queue"], registry=registry)
    Counter("jobs_total", "J.", required_labels=["queue"], registry=onlooker)  # holds no series
    counter.labels(queue="a").inc()
    assert value(onlooker, "jobs_total", queue="a") == 1
    child = multiprocessing.get_context("fork").Process(target=remove_queue_a, args=(counter,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    assert value(onlooker, "jobs_total", queue="a") is None


def test_scrape_after_redis_lost_data_is_unavailable_not_partial(server: RedisServer) -> None:
    try:
        load_backend(MultiProcessRedisBackend, config(server, flush_interval=0.2))
        registry = CollectorRegistry()
        counter = Counter("kept_total", "K.", registry=registry)
        counter.inc(5)
        assert value(registry, "kept_total") == 5
        server.restart()  # empty: no persistence
        counter.inc()
        with pytest.raises(BackendUnavailableException, match="lost data"):
            generate_metrics(registry)  # other processes may not have re-sent theirs yet

        def recovered() -> float | None:  # the recovery window (2 flush intervals + 1 s) ends
            try:
                return value(registry, "kept_total")
            except BackendUnavailableException as error:
                raise AssertionError(error) from None

        assert eventually(recovered) == 6
    finally:
        load_backend(SingleProcessBackend, {})


def test_a_forked_child_leaves_its_parents_flusher_alone(loaded: dict[str, Any]) -> None:
    """A child of os.fork (a gunicorn worker) runs the atexit hooks it inherited: the parent's
    flusher must neither send the parent's values under the parent's name nor say goodbye."""
    registry = CollectorRegistry()
    counter = Counter("forked_total", "F.", registry=registry)
    counter.inc(5)
    parent_flusher = store().flusher
    pid = os.fork()
    if pid == 0:
        try:
            parent_flusher.close()  # as at the child's exit
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    counter.inc(2)
    assert value(registry, "forked_total") == 7


def count_then_wait(counter: Counter, counted: Any, write_again: Any, leave: Any) -> None:
    """A process that writes, then writes nothing more until told (its flusher held)."""
    counter.inc(5)
    assert wait_for_flush(30)
    with store().flusher._flush_lock:
        counted.set()
        assert write_again.wait(60)
    assert wait_for_flush(30)
    leave.wait(60)


def scrape_or_unavailable(registry: CollectorRegistry) -> float | None:
    """The total, or None when the scrape answers unavailable (503)."""
    try:
        return value(registry, "held_total")
    except BackendUnavailableException:
        return None


@pytest.mark.parametrize("how", ["came back empty", "a replica that lacks the last batch"])
def test_a_changed_server_answers_503_until_every_process_wrote_again(
    server: RedisServer, how: str
) -> None:
    """Another server (a failover, a restart) may lack what a process wrote: until that process
    writes again, scrapes answer 503, not totals without its part; then the exact totals."""
    settings = config(server, flush_interval=0.2)
    load_backend(MultiProcessRedisBackend, settings)
    context: Any = multiprocessing.get_context("fork")
    counted, write_again, leave = context.Event(), context.Event(), context.Event()
    try:
        registry = CollectorRegistry()
        counter = Counter("held_total", "H.", registry=registry)
        child = context.Process(target=count_then_wait, args=(counter, counted, write_again, leave))
        child.start()
        assert counted.wait(60)
        assert scrape_or_unavailable(registry) == 5  # this scraper now knows the server
        client = redis.Redis.from_url(server.url)
        base = f"pytheus:{settings['namespace']}"
        if how == "came back empty":
            server.restart()  # no persistence: empty, and with another run_id
        else:  # what a promoted replica that missed the child's last batch holds
            client.set(f"{base}:server", "0123456789abcdef-the-old-master")
            [seq_key] = client.keys(f"{base}:seq:*")
            client.decr(seq_key)
            client.delete(f"{base}:v")
        for _ in range(3):  # however often asked, and while the child lives
            assert scrape_or_unavailable(registry) is None
        write_again.set()  # the child writes: it finds what the server lacks and sends it

        def answered() -> float | None:
            found = scrape_or_unavailable(registry)
            assert found is not None
            return found

        assert eventually(answered) == 5
    finally:
        leave.set()
        load_backend(SingleProcessBackend, {})
