"""Soak: gunicorn's workers under load, a worker killed, Redis lost, and Prometheus counts right.

For each multi-process backend, a gunicorn with :data:`WORKERS` workers serves the app of
:mod:`tests.apps.soak_app` (pytheus's middleware plus app-level counters), on a free loopback port:

* ``file-wsgi``: sync workers, the shared-file backend (``PYTHEUS_MULTIPROC_DIR``);
* ``redis-wsgi``: sync workers, the Redis backend, on a redis-server of its own;
* ``redis-asgi``: ``uvicorn.workers.UvicornWorker`` workers, the Redis backend, on another one.

One real Prometheus scrapes the three every second (one job each, named after the scenario). Each
test runs one scenario:

1. A load generator sends exactly :data:`RATE` requests a second, for the scenario's duration,
   from :data:`CONNECTIONS` threads (a new connection per request), and records every reply. Next
   to it a poller reads ``/metrics`` ten times a second, for the status and the counter's value.
2. With Redis, ``redis-server`` is killed, stays down :data:`OUTAGE_SECONDS`, and comes back
   empty (no persistence). Meanwhile scrapes must get 503 (``up == 0``) and the app must go on
   answering the load with 200s. While Redis restarts, and for :data:`BURST_SECONDS`, the
   poller reads ``/metrics`` back to back, so that one read comes within milliseconds of Redis
   answering again, as a scrape does when Prometheus's schedule puts it there: it may answer
   503, or the counter, but never less of it than before the outage.
3. A worker is killed with SIGKILL in the middle of a request, and gunicorn replaces it. The
   request is ``/hang/<token>``, which counts nothing and sleeps; the worker that took it writes
   its pid once Redis has acknowledged everything it counted, and the test kills it as soon as
   it reads the pid. So the request killed is one the client sees fail and the app never
   counted, and everything the worker answered before is in the counters: in the mmap of its
   file at once (file backend), or in Redis (the Redis backend's documented loss on SIGKILL, up
   to one flush interval, is then empty). A sync worker serves
   one request at a time, so it is killed under load; a uvicorn worker serves many at once, so
   the load and the poller pause first (the load generator's requests must all succeed), and it
   is killed right after a Prometheus scrape (one caught by the kill would fail for a reason
   that is not the backend's).

   The kill comes *after* the Redis outage, on purpose: a Redis that restarts empty gets the
   totals of the living workers back (each finds out that its batches are gone and re-sends its
   whole contribution), but nobody re-sends a dead worker's. Killed before the outage, the
   worker's requests would vanish from the counter at the restart (documented in docs/redis.md;
   a counter reset to Prometheus), and the exact count below would not hold.
4. Once Prometheus holds a scrape that started after the last response (plus the time the
   workers need to flush), it must show, for the job:

   * the sum of ``soak_app_requests_total`` equal to the number of 200s the load generator got,
     exactly, and per ``parity`` label; ``soak_app_units_total`` equal to the sum of the units
     of those requests; the middleware's ``http_request_duration_seconds_count`` of the work
     route equal to it too;
   * no counter ever decreased: ``resets(...)`` is 0 over the whole run, and the highest value
     ever stored is the last;
   * ``up`` equal to 1 at every scrape since Prometheus started, except, with Redis, scrapes
     in the outage, where it must be 0 (allowing one scrape interval before it, and
     :data:`AFTER_OUTAGE` after it); checked on the raw samples (``up[...]``), on
     ``count_over_time``/``sum_over_time``/``min_over_time``/``avg_over_time``, and on
     ``/api/v1/query_range`` at a 1 s step.

   The poller must have seen 503 only around the outage, always 503 while Redis was down, and
   a counter that never went down.

All the invariants are checked and those that fail are reported together. The figures
(requests, scrapes, failed scrapes, polls, durations, pids) are printed, also without ``-s``.
"""

from __future__ import annotations

import http.client
import math
import os
import shutil
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter as Tally
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import pytest

from tests.apps import soak_app
from tests.e2e.conftest import (
    HOST,
    Processes,
    Prometheus,
    ScrapeJob,
    Started,
    free_port,
    gunicorn_command,
    start_prometheus,
    wait_for_http,
)
from tests.redis_server import RedisServer

WORKERS = 4
FLUSH_INTERVAL = 0.2
"""The Redis backend's ``flush_interval`` in the app's workers."""
RATE = 80.0
"""Requests per second sent by the load generator, over all its connections."""
CONNECTIONS = 4
POLL_INTERVAL = 0.1
SCRAPE_INTERVAL = 1.0
BURST_SECONDS = 1.0
BURST_INTERVAL = 0.005
"""How long, and how often, ``/metrics`` is read from the moment Redis restarts."""
OUTAGE_SECONDS = 3.5
"""How long redis-server stays down: about three scrapes fail."""
RECORDING_MARGIN = {"file": 0.2, "redis": 1.0}
"""Seconds after the last response before a scrape surely holds it: the file backend writes at
once (the middleware records when the response is closed); with Redis, every worker's flush
thread must have run once more (``FLUSH_INTERVAL``) and its batch arrived."""
RECOVERY_ALLOWANCE = 3.0
"""How long after Redis answers again ``/metrics`` may still answer 503. Every living worker
re-sends its totals within a flush interval; until all have, a backend may answer 503 rather
than show part of them (a drop that Prometheus takes for a counter reset), for a while longer
to be safe, but not for more than this."""
AFTER_OUTAGE = SCRAPE_INTERVAL + RECOVERY_ALLOWANCE
"""How long after Redis answers again a scrape may still fail: the recovery allowed, plus one
scrape interval (a scrape is timestamped when it starts)."""
UVICORN_WORKER = "uvicorn.workers.UvicornWorker"


@dataclass(frozen=True)
class Scenario:
    name: str  # also the name of its Prometheus job
    backend: str  # "file" or "redis"
    asgi: bool
    load_seconds: float
    kill_at: float  # seconds into the load
    outage_at: float | None = None  # seconds into the load (Redis only)

    @property
    def app(self) -> str:
        return "tests.apps.soak_app:" + ("asgi_app" if self.asgi else "wsgi_app")

    @property
    def worker_class(self) -> str:
        return UVICORN_WORKER if self.asgi else "sync"

    @property
    def route(self) -> str:
        return soak_app.ASGI_WORK_ROUTE if self.asgi else soak_app.WSGI_WORK_ROUTE

    @property
    def requests(self) -> int:
        return round(RATE * self.load_seconds)


SCENARIOS = {
    scenario.name: scenario
    for scenario in (
        Scenario("file-wsgi", "file", asgi=False, load_seconds=8.0, kill_at=3.5),
        Scenario("redis-wsgi", "redis", asgi=False, load_seconds=12.0, kill_at=8.5, outage_at=2.5),
        Scenario("redis-asgi", "redis", asgi=True, load_seconds=12.0, kill_at=8.5, outage_at=2.5),
    )
}


# --- processes: gunicorn's workers ---------------------------------------------------------------


def children(pid: int) -> set[int]:
    """The living (not zombie) child processes of ``pid``, found in /proc."""
    found: set[int] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # it ended meanwhile
            continue
        state, parent = stat.rpartition(")")[2].split()[:2]  # after "pid (comm)"
        if int(parent) == pid and state != "Z":
            found.add(int(entry.name))
    return found


def wait_for_workers(
    started: Started, gone: frozenset[int] = frozenset(), timeout: float = 30.0
) -> set[int]:
    """Wait until gunicorn's master has ``WORKERS`` children, none of them in ``gone``."""
    deadline = time.monotonic() + timeout
    while True:
        workers = children(started.process.pid)
        if len(workers) == WORKERS and not workers & gone:
            return workers
        if started.process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{started.name}: workers {workers} (not {WORKERS}):\n{started.tail()}")
        time.sleep(0.05)


# --- the stack -----------------------------------------------------------------------------------


@dataclass
class Server:
    scenario: Scenario
    started: Started
    url: str
    state_dir: Path
    redis: RedisServer | None


@dataclass
class Soak:
    prometheus: Prometheus
    servers: dict[str, Server]
    since: float  # Unix time just before Prometheus started: every scrape is after it


@pytest.fixture(scope="module")
def soak(processes: Processes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Soak]:
    """A gunicorn per scenario (and a redis-server per Redis scenario), one Prometheus."""
    began = time.monotonic()
    directory = tmp_path_factory.mktemp("soak")
    redis_servers: list[RedisServer] = []
    try:
        servers: dict[str, Server] = {}
        for scenario in SCENARIOS.values():
            state_dir = directory / scenario.name
            state_dir.mkdir()
            env = {soak_app.STATE_DIR_ENV: str(state_dir)}
            redis = None
            if scenario.backend == "file":
                shared = state_dir / "metrics"
                shared.mkdir()
                env["PYTHEUS_MULTIPROC_DIR"] = str(shared)
            else:
                redis = RedisServer()  # a free loopback port of its own, no persistence
                redis_servers.append(redis)
                config = state_dir / "redis.json"
                namespace = scenario.name.replace("-", "_")
                config.write_text(
                    f'{{"url": "{redis.url}", "namespace": "{namespace}", '
                    f'"flush_interval": {FLUSH_INTERVAL}}}'
                )
                env["PYTHEUS_BACKEND_CLASS"] = "pytheus.backends.redis.MultiProcessRedisBackend"
                env["PYTHEUS_BACKEND_CONFIG"] = str(config)
            port = free_port()
            command = gunicorn_command(scenario.app, port, WORKERS, scenario.worker_class)
            started = processes.start(f"soak-{scenario.name}", command, env)
            servers[scenario.name] = Server(
                scenario, started, f"http://{HOST}:{port}", state_dir, redis
            )
        for server in servers.values():
            wait_for_http(server.url + "/metrics", server.started)
            wait_for_workers(server.started)
        since = time.time()
        jobs = [
            ScrapeJob(name, server.url.removeprefix("http://")) for name, server in servers.items()
        ]
        prometheus = start_prometheus(processes, directory / "prometheus", jobs)
        for job in jobs:
            prometheus.wait_for(f'up{{job="{job.name}"}} == 1', 20, f"target {job.name} not up")
        print(f"\nsoak stack up in {time.monotonic() - began:.1f}s: {len(servers)} gunicorns")
        yield Soak(prometheus, servers, since)
        print(f"\nsoak: {time.monotonic() - began:.1f}s in all")
    finally:
        for redis in redis_servers:
            redis.stop()
            shutil.rmtree(redis.directory, ignore_errors=True)


# --- the load generator --------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One request of the load generator: 200 and the right body, or what went wrong."""

    index: int
    sent: float  # Unix times
    received: float
    status: int | None  # None: no HTTP response at all (connection refused or reset)
    pid: int | None  # the worker that answered
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200 and not self.error


def get(url: str, timeout: float = 10.0) -> tuple[int | None, dict[str, str], bytes, str]:
    """GET ``url`` on a new connection: status (None: no response), headers, body, error."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, _lower(response.headers), response.read(), ""
    except urllib.error.HTTPError as error:
        return error.code, _lower(error.headers), error.read(), ""
    except (OSError, http.client.HTTPException) as error:
        return None, {}, b"", f"{type(error).__name__}: {error}"


def _lower(headers: Message) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


class LoadGenerator:
    """Sends requests ``/work/0`` .. ``/work/<total - 1>``, the i-th at ``i / RATE`` s.

    ``CONNECTIONS`` threads, each request on a new connection. Bounded: ``total`` requests,
    and none is sent after ``deadline_seconds``. ``pause()`` holds new requests back and waits
    for those in flight; ``resume()`` shifts the schedule by the pause.
    """

    def __init__(self, base_url: str, total: int, deadline_seconds: float) -> None:
        self.base_url = base_url
        self.total = total
        self.deadline_seconds = deadline_seconds
        self.replies: list[Reply] = []
        self.started = 0.0
        self.ended = 0.0
        self._cond = threading.Condition()
        self._next = 0
        self._in_flight = 0
        self._paused_since: float | None = None
        self._offset = 0.0
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._run, name=f"load-{i}", daemon=True)
            for i in range(CONNECTIONS)
        ]

    def start(self) -> None:
        self.started = time.time()
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._next >= self.total:
                    return
                index = self._next
                self._next += 1
            if not self._wait_turn(index):
                return
            reply = self._send(index)
            with self._cond:
                self._in_flight -= 1
                self.replies.append(reply)
                self._cond.notify_all()

    def _wait_turn(self, index: int) -> bool:
        """Wait until request ``index`` is due and the load is not paused; False past the end."""
        with self._cond:
            while True:
                now = time.time()
                if self._stopped or now > self.started + self.deadline_seconds:
                    return False
                wait = 0.05
                if self._paused_since is None:
                    due = self.started + self._offset + index / RATE
                    if due <= now:
                        self._in_flight += 1
                        return True
                    wait = min(wait, due - now)
                self._cond.wait(wait)

    def _send(self, index: int) -> Reply:
        sent = time.time()
        status, headers, body, error = get(f"{self.base_url}/work/{index}")
        if status is not None and body != f"done {index}".encode():
            error = f"unexpected body {body[:100]!r}"
        pid = headers.get(soak_app.PID_HEADER.lower())
        return Reply(index, sent, time.time(), status, int(pid) if pid else None, error)

    def pause(self, timeout: float = 15.0) -> None:
        with self._cond:
            self._paused_since = time.time()
            idle = self._cond.wait_for(lambda: self._in_flight == 0, timeout)
        assert idle, "requests still in flight"

    def resume(self) -> None:
        with self._cond:
            assert self._paused_since is not None
            self._offset += time.time() - self._paused_since
            self._paused_since = None
            self._cond.notify_all()

    def stop(self) -> None:
        """Send nothing more (the test failed; the requests in flight end on their own)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def join(self) -> None:
        deadline = self.started + self.deadline_seconds + 15  # + the last request's timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.time()))
        assert not any(t.is_alive() for t in self._threads), "load generator still running"
        self.ended = max((r.received for r in self.replies), default=self.started)


# --- the /metrics poller -------------------------------------------------------------------------


@dataclass(frozen=True)
class Poll:
    started: float
    ended: float
    status: int | None
    requests: float | None  # the sum of soak_app_requests_total, from a 200


def requests_in(body: bytes) -> float:
    """The sum of ``soak_app_requests_total``'s samples in a text-format exposition."""
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith("soak_app_requests_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


class Poller:
    """Reads ``/metrics`` every ``POLL_INTERVAL`` (text format), one request at a time."""

    def __init__(self, url: str, deadline_seconds: float) -> None:
        self.url = url
        self.deadline_seconds = deadline_seconds
        self.polls: list[Poll] = []
        self._busy = threading.Lock()  # held during each poll
        self._paused = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        deadline = time.time() + self.deadline_seconds
        while not self._stop.wait(POLL_INTERVAL) and time.time() < deadline:
            with self._busy:
                if not self._paused.is_set():
                    self._poll()

    def burst(self, seconds: float) -> None:
        """Read ``/metrics`` back to back for ``seconds`` (from another thread), recorded with
        the others: a scrape is then never more than a few milliseconds away."""
        end = time.time() + seconds
        while time.time() < end:
            with self._busy:
                self._poll()
            time.sleep(BURST_INTERVAL)

    def _poll(self) -> Poll:
        started = time.time()
        status, _, body, _ = get(self.url, timeout=5)
        value = requests_in(body) if status == 200 else None
        poll = Poll(started, time.time(), status, value)
        self.polls.append(poll)
        return poll

    def pause(self) -> None:
        self._paused.set()
        with self._busy:  # the poll in flight, if any, is over; none starts until resume()
            pass

    def resume(self) -> None:
        self._paused.clear()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        assert not self._thread.is_alive()


# --- the faults ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outage:
    stopping: float  # about to kill redis-server (Unix time)
    down: float  # redis-server killed
    restarting: float  # about to start again: down until at least now
    back: float  # answering PING again


def redis_outage(redis: RedisServer, poller: Poller) -> Outage:
    """Kill redis-server, wait ``OUTAGE_SECONDS``, start it again on the same port (empty).

    While it starts, and for a little while after, ``/metrics`` is read back to back
    (:meth:`Poller.burst`), so that one read comes within milliseconds of Redis answering again,
    as a scrape does when Prometheus's schedule puts it there: it may answer 503, or the
    counter, but never less of it than before the outage.
    """
    stopping = time.time()
    redis.stop()
    down = time.time()
    time.sleep(OUTAGE_SECONDS)
    burst = threading.Thread(target=poller.burst, args=(BURST_SECONDS,), name="burst")
    restarting = time.time()
    burst.start()
    redis.start()
    back = time.time()
    burst.join(BURST_SECONDS + 10)
    assert not burst.is_alive()
    return Outage(stopping, down, restarting, back)


@dataclass(frozen=True)
class Kill:
    pid: int
    at: float
    hang_error: str  # what the client of the killed request got
    replacements: set[int]
    replaced_after: float  # seconds until gunicorn had WORKERS workers again


def kill_worker_mid_request(
    server: Server, prometheus: Prometheus, load: LoadGenerator, poller: Poller
) -> Kill:
    """SIGKILL the worker serving a ``/hang`` request; wait until gunicorn has replaced it."""
    scenario = server.scenario
    before = wait_for_workers(server.started)
    if scenario.asgi:  # a uvicorn worker serves many requests at once: none but /hang in flight
        load.pause()
        poller.pause()
    token = uuid.uuid4().hex
    outcome: list[tuple[int | None, str]] = []
    hanging = threading.Thread(
        target=lambda: outcome.append(get(f"{server.url}/hang/{token}", timeout=20)[::3]),
        name="hang",
        daemon=True,
    )
    hanging.start()
    pid_file = soak_app.hang_file(server.state_dir, token)
    deadline = time.monotonic() + 10
    while not pid_file.exists():
        assert time.monotonic() < deadline, "no worker took the /hang request"
        time.sleep(0.02)
    pid = int(pid_file.read_text())
    assert pid in before, (pid, before)  # and Redis has all it counted (soak_app.announce_hang)
    if scenario.asgi:  # right after a scrape: the next is a scrape interval away
        prometheus.wait_for_scrape_after(scenario.name, time.time())
    os.kill(pid, signal.SIGKILL)
    killed = time.time()
    hanging.join(25)
    assert outcome, "the /hang request did not end"
    status, error = outcome[0]
    assert status is None and error, f"the killed worker's request got {status} {error}"
    after = wait_for_workers(server.started, gone=frozenset({pid}))
    replaced_after = time.time() - killed
    if scenario.asgi:
        load.resume()
        poller.resume()
    return Kill(pid, killed, error, after - before, replaced_after)


# --- Prometheus ----------------------------------------------------------------------------------


def raw_samples(prometheus: Prometheus, expression: str, at: float) -> list[tuple[float, float]]:
    """The raw samples of a one-series range selector at the Unix time ``at``, ``(time, value)``."""
    data = prometheus.api("/api/v1/query", query=expression, time=repr(at))
    assert data["resultType"] == "matrix", data
    assert len(data["result"]) == 1, data["result"]
    return [(float(t), float(v)) for t, v in data["result"][0]["values"]]


def range_values(
    prometheus: Prometheus, expression: str, start: float, end: float
) -> list[tuple[float, float]]:
    """``/api/v1/query_range`` of a one-series expression at a 1 s step."""
    data = prometheus.api(
        "/api/v1/query_range", query=expression, start=repr(start), end=repr(end), step="1"
    )
    assert data["resultType"] == "matrix", data
    assert len(data["result"]) == 1, data["result"]
    return [(float(t), float(v)) for t, v in data["result"][0]["values"]]


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


def _number(value: float | None) -> float:
    assert value is not None
    return value


# --- the test ------------------------------------------------------------------------------------


@pytest.mark.system
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_soak(soak: Soak, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    server = soak.servers[name]
    scenario = server.scenario
    prometheus = soak.prometheus
    job = f'job="{name}"'

    load = LoadGenerator(server.url, scenario.requests, scenario.load_seconds + 30)
    poller = Poller(server.url + "/metrics", scenario.load_seconds + 60)
    load.start()
    poller.start()
    outage: Outage | None = None
    try:
        if scenario.outage_at is not None:
            assert server.redis is not None
            sleep_until(load.started + scenario.outage_at)
            outage = redis_outage(server.redis, poller)
        sleep_until(load.started + scenario.kill_at)
        kill = kill_worker_mid_request(server, prometheus, load, poller)
        load.join()
    finally:
        load.stop()  # at once only if something above failed: the load is bounded anyway
        poller.stop()
    final_scrape = prometheus.wait_for_scrape_after(
        name, load.ended + RECORDING_MARGIN[scenario.backend]
    )
    # Every query is evaluated at one moment, half a scrape interval after the final scrape,
    # so that they all see the same samples: the next scrape is timestamped later.
    at = final_scrape + SCRAPE_INTERVAL / 2
    window = f"{math.ceil(at - soak.since) + 5}s"  # every scrape of the job

    # -- what the load generator got
    replies = sorted(load.replies, key=lambda r: r.index)
    answered = [r for r in replies if r.ok]
    failed = [r for r in replies if not r.ok]
    by_worker = Tally(r.pid for r in answered)
    before_kill = sum(1 for r in answered if r.pid == kill.pid)
    by_replacement = sum(by_worker[pid] for pid in kill.replacements)
    during_outage = (
        [r for r in replies if r.sent >= outage.down and r.received <= outage.restarting]
        if outage
        else []
    )

    # -- what Prometheus stored
    last = _number(prometheus.value(f"sum(soak_app_requests_total{{{job}}})", at))
    by_parity = {
        r["metric"]["parity"]: float(r["value"][1])
        for r in prometheus.query(f"sum by (parity) (soak_app_requests_total{{{job}}})", at)
    }
    units = prometheus.value(f"sum(soak_app_units_total{{{job}}})", at)
    highest = prometheus.value(
        f"sum(max_over_time(soak_app_requests_total{{{job}}}[{window}]))", at
    )
    work = f'{job},route="{scenario.route}"'
    middleware = prometheus.value(f"sum(http_request_duration_seconds_count{{{work}}})", at)
    middleware_statuses = {
        r["metric"]["status_code"]
        for r in prometheus.query(
            f"sum by (status_code) (http_request_duration_seconds_count{{{work}}})", at
        )
    }
    resets = {
        metric: prometheus.value(f"sum(resets({metric}{{{job}}}[{window}]))", at)
        for metric in (
            "soak_app_requests_total",
            "soak_app_units_total",
            "http_request_duration_seconds_count",
        )
    }
    up_samples = raw_samples(prometheus, f"up{{{job}}}[{window}]", at)
    scrapes = _number(prometheus.value(f"count_over_time(up{{{job}}}[{window}])", at))
    scrapes_up = _number(prometheus.value(f"sum_over_time(up{{{job}}}[{window}])", at))
    up_min = prometheus.value(f"min_over_time(up{{{job}}}[{window}])", at)
    up_avg = _number(prometheus.value(f"avg_over_time(up{{{job}}}[{window}])", at))
    up_steps = range_values(prometheus, f"up{{{job}}}", soak.since, final_scrape)
    failed_scrapes = [t for t, v in up_samples if v == 0]

    polls_ok = [p for p in poller.polls if p.status == 200]
    polls_503 = [p for p in poller.polls if p.status == 503]
    decreases = [  # (when, value before, value after)
        (b.started, _number(a.requests), _number(b.requests))
        for a, b in zip(polls_ok, polls_ok[1:])
        if _number(b.requests) < _number(a.requests)
    ]

    # when /metrics answered 200 again for good, from the last 503 on (Unix time)
    recovered = max((p.ended for p in polls_503), default=load.started)
    duration = load.ended - load.started
    figures = [
        f"soak {name}: {len(replies)}/{load.total} requests in {duration:.1f}s, "
        f"{len(answered)} answered 200, {len(failed)} failed; /hang killed "
        f"({kill.hang_error.split(':')[0]}) with worker {kill.pid}, which had answered "
        f"{before_kill}; replaced by {sorted(kill.replacements)} in {kill.replaced_after:.2f}s, "
        f"which answered {by_replacement}",
        f"  Prometheus: requests {last:.0f} (highest {highest}), units {units}, middleware "
        f"{middleware}, resets {sum(v or 0 for v in resets.values()):.0f}; {scrapes:.0f} scrapes, "
        f"{len(failed_scrapes)} failed (up min {up_min}, avg {up_avg:.3f}); last scrape "
        f"{final_scrape - load.ended:.2f}s after the last response",
        f"  /metrics polled {len(poller.polls)} times: {len(polls_ok)} x 200, "
        f"{len(polls_503)} x 503, {len(decreases)} decrease(s)",
    ]
    if outage is not None:
        figures.append(
            f"  redis-server down {outage.restarting - outage.down:.1f}s (answering again after "
            f"{outage.back - outage.down:.2f}s); {len(during_outage)} requests answered "
            f"meanwhile; /metrics answered 503 until {recovered - outage.back:+.2f}s after that"
        )
    with capsys.disabled():  # the figures are part of the report, also without -s
        print("\n" + "\n".join(figures))

    # Every invariant is checked, and all that fail are reported together: one broken
    # invariant of a soak run often explains another.
    problems: list[str] = []

    def check(holds: bool, message: str) -> None:
        if not holds:
            problems.append(message)

    # -- the load: every request answered, also while Redis was down; only /hang was killed
    check(len(replies) == load.total, f"the load generator sent {len(replies)}/{load.total}")
    check(not failed, f"{len(failed)} requests failed: {failed[:5]}")
    if outage is not None:
        check(
            bool(during_outage) and all(r.ok for r in during_outage),
            f"requests during the outage: {Tally(r.status for r in during_outage)}",
        )
    check(before_kill > 0, f"the killed worker {kill.pid} had answered nothing: {by_worker}")
    check(len(kill.replacements) == 1, f"not one replacement: {kill}")
    if not scenario.asgi:  # uvicorn workers share connections unevenly: a new one may get few
        check(by_replacement > 0, f"the replacement answered nothing: {by_worker}")

    # -- the counters: exact, and never down
    check(last == len(answered), f"counter {last} != {len(answered)} requests answered")
    expected_parity = dict(Tally(soak_app.parity(r.index) for r in answered))
    check(by_parity == expected_parity, f"by parity {by_parity} != {expected_parity}")
    expected_units = sum(soak_app.units(r.index) for r in answered)
    check(units == expected_units, f"units {units} != {expected_units}")
    check(middleware == len(answered), f"middleware count {middleware} != {len(answered)}")
    check(middleware_statuses == {"200"}, f"middleware status codes {middleware_statuses}")
    check(highest == last, f"highest value stored {highest} != last {last}")
    check(all(v == 0 for v in resets.values()), f"counter resets in Prometheus: {resets}")
    restart = outage.back if outage else load.started
    check(
        not decreases,
        f"the counter went down between two polls of /metrics {len(decreases)} time(s): "
        + ", ".join(f"{a:.0f} -> {b:.0f} at {t - restart:+.3f}s" for t, a, b in decreases[:5])
        + (" (times from Redis answering again)" if outage else ""),
    )
    check(
        bool(polls_ok) and _number(polls_ok[-1].requests) <= len(answered),
        f"last poll {polls_ok[-1:]} above {len(answered)}",
    )

    # -- up: 1 at every scrape but, with Redis, those during the outage
    check(scrapes == len(up_samples), f"count_over_time {scrapes} != {len(up_samples)} samples")
    check(scrapes >= duration, f"{scrapes} scrapes in {duration:.1f}s")
    check(scrapes_up == scrapes - len(failed_scrapes), f"sum_over_time(up) {scrapes_up}")
    statuses = Tally(p.status for p in poller.polls)
    if outage is None:
        check(failed_scrapes == [], f"failed scrapes at {failed_scrapes}")
        check(up_min == 1 and up_avg == 1, f"up: min {up_min}, avg {up_avg}")
        check({v for _, v in up_steps} == {1.0}, f"query_range of up: {up_steps}")
        check(set(statuses) == {200}, f"polls of /metrics: {statuses}")
    else:
        # A scrape that started during the outage fails; one a scrape interval before or after
        # (a scrape is timestamped when it starts, and takes a little while) may fail too.
        early, late = outage.stopping - SCRAPE_INTERVAL, outage.back + AFTER_OUTAGE
        relative = [round(t - outage.down, 2) for t in failed_scrapes]
        check(
            all(early <= t <= late for t in failed_scrapes),
            f"failed scrapes outside the outage: {relative}s from Redis going down "
            f"(down for {outage.back - outage.down:.2f}s)",
        )
        check(
            all(v == 0 for t, v in up_samples if outage.down <= t <= outage.restarting),
            f"a scrape succeeded while Redis was down: {up_samples}",
        )
        check(
            len(failed_scrapes) >= OUTAGE_SECONDS / SCRAPE_INTERVAL - 1,
            f"only {len(failed_scrapes)} failed scrapes in the outage",
        )
        check(up_min == 0, f"min_over_time(up) {up_min}")
        # query_range: 1 at each step but those whose latest scrape may have been in the outage
        check(
            all(v == 1 for t, v in up_steps if not early <= t <= late + SCRAPE_INTERVAL),
            f"query_range: up 0 outside the outage: {up_steps}",
        )
        check(
            all(
                v == 0 for t, v in up_steps if outage.down + SCRAPE_INTERVAL < t < outage.restarting
            ),
            f"query_range: up 1 during the outage: {up_steps}",
        )
        # the poller: 503 while Redis was down, and only around then
        check(
            all(
                p.status == 503
                for p in poller.polls
                if p.started >= outage.down and p.ended <= outage.restarting
            ),
            "a poll of /metrics got an answer other than 503 while Redis was down",
        )
        check(bool(polls_503), "no poll of /metrics got 503 during the outage")
        outside = [p for p in polls_503 if p.ended < outage.stopping or p.started > late]
        check(not outside, f"503 outside the outage: {outside}")
        check(set(statuses) <= {200, 503}, f"polls of /metrics: {statuses}")
    if problems:
        pytest.fail(f"{name}:\n  " + "\n  ".join(problems), pytrace=False)
