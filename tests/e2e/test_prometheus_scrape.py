"""Real Prometheus servers, 2.42 and 3.x, scrape real app servers instrumented by pytheus.

App servers, each in its own process group, on free loopback ports:

* ``gunicorn``: the Flask app of :mod:`tests.apps.e2e_wsgi`, 4 sync workers sharing the file
  backend (``PYTHEUS_MULTIPROC_DIR``);
* ``uvicorn-2-workers``: the Starlette app of :mod:`tests.apps.e2e_asgi`, 2 worker processes
  sharing the file backend;
* ``uvicorn-1-process``: the same app in one process, on the default (in-memory) backend.

Each test is parametrised by the major version of Prometheus, the server and the format. Each
Prometheus gets a fleet of these servers of its own, started when its first test runs and stopped
before the next Prometheus's fleet starts (:class:`Fleets`): one Prometheus configuration scrapes
each server every second in one job per format, ``<server>-<format>`` (:data:`SCRAPES`):

* Prometheus 2.42 (``prometheus`` on the PATH): ``openmetrics``, where Prometheus negotiates as it
  always does (it asks for OpenMetrics first), and ``text``, whose ``?e2e_format=text`` makes the
  app drop the ``Accept`` header, so the text format 0.0.4 is served: 2.42 has no setting to stop
  asking for OpenMetrics (``scrape_protocols`` came in 2.49). One Prometheus for all servers,
  because 2.42 applies a configuration's targets only at its scrape manager's next 5-second tick:
  one start pays that once.
* Prometheus 3 (``$PROMETHEUS3_BIN``, see :func:`~tests.e2e.conftest.require_prometheus3`): each
  job's ``scrape_protocols`` picks its format, no test-only flag: ``openmetrics``
  (``OpenMetricsText1.0.0``), ``text`` (``PrometheusText0.0.4``), ``text-1.0.0``
  (``PrometheusText1.0.0``) and ``protobuf`` (``PrometheusProto``; classic histograms and counters
  over protobuf need no feature flag). Its defaults stay: UTF-8 name validation and
  ``escaping=allow-utf-8`` asked of the text formats (pytheus, with classic names, answers without
  an ``escaping`` parameter), and no ``fallback_scrape_protocol``: without a ``Content-Type``
  Prometheus 3 knows, every scrape would fail.

Every scrape the apps answer is counted in ``e2e_metrics_responses_total``, by the job named in
its ``?e2e_job=<job>``, what was requested and the ``Content-Type`` served, so the test reads
from Prometheus itself which format each job got.

Per server, a client sends exactly ``REQUESTS`` requests to the parametrised route, paced over
``LOAD_SECONDS`` so that several scrapes see the load. Then, once Prometheus holds a successful
scrape that started after the last request, the same checks for every job, evaluated at that
scrape:

* every scrape of the job succeeded (``up == 1``), except any that timed out (after
  :data:`~tests.e2e.conftest.SCRAPE_INTERVAL`; the machine is shared, and a timeout says nothing
  of pytheus): one that failed in any other way fails the test;
* the exact request count, all ``GET`` answered ``200``;
* a median (``histogram_quantile`` over the ``rate`` and over the raw buckets) inside the bucket
  of the handler's known sleep;
* the duration buckets' ``le`` labels in float form (``le="1.0"``): Prometheus 3 rewrites ``le``
  into that form whatever the format (2.42 keeps what it got, and pytheus writes that form), so
  every job stores the same series; and no ``_created`` series (pytheus writes none);
* every scrape of the job was answered with the job's ``Content-Type``;
* gunicorn: the summary ``e2e_item_size_bytes``, observed by the 4 workers, stored with its
  exact count and each quantile within 1 % of the exact quantile of the sizes the requests
  recorded (a scrape after the workers published their windows: ``publish_interval``, 1 s).
"""

from __future__ import annotations

import math
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pytheus.middleware import DURATION_BUCKETS
from tests.apps import e2e_asgi, e2e_wsgi
from tests.e2e.conftest import (
    HOST,
    REQUIRE_PROMETHEUS,
    SCRAPE_INTERVAL,
    Processes,
    Prometheus,
    ScrapeJob,
    free_port,
    gunicorn_command,
    start_prometheus,
    uvicorn_command,
    wait_for_http,
)

REQUESTS = 120
LOAD_SECONDS = 2.4
"""The requests are spread over this long: at least two scrapes (1 s apart) see the load."""
CONCURRENCY = 4
RECORDING_MARGIN = 0.2
"""Seconds after the last response before a scrape surely holds it (it is recorded at close)."""
PUBLISH_MARGIN = 1.5
"""Seconds after the last response before every worker surely published its summary window."""
BUCKET = (0.025, 0.05)
"""The duration bucket of ``ITEM_SLEEP`` (0.03 s) plus the server's overhead."""
LE_LABELS = {*(repr(bound) for bound in DURATION_BUCKETS), "+Inf"}
"""The ``le`` labels of the duration histogram, in the float form of Prometheus 3."""
STARTUP_TIMEOUT = 30.0
"""Seconds for every job of a fresh stack to be up (2.42 adds targets every 5 seconds)."""

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TEXT = "text/plain; version=0.0.4; charset=utf-8"
TEXT_1_0_0 = "text/plain; version=1.0.0; charset=utf-8"
PROTOBUF = (
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
)

assert e2e_wsgi.ITEM_SLEEP == e2e_asgi.ITEM_SLEEP and BUCKET[0] < e2e_wsgi.ITEM_SLEEP < BUCKET[1]
assert e2e_wsgi.JOB_PARAM == e2e_asgi.JOB_PARAM
assert e2e_asgi.FORCE_TEXT_PARAM.decode() == e2e_wsgi.FORCE_TEXT_PARAM


@dataclass(frozen=True)
class Server:
    """An app server of the test: how to start it and the route template it records."""

    name: str
    kind: str  # "gunicorn" or "uvicorn"
    app: str
    workers: int
    shared_directory: bool
    route: str


SERVERS = {
    server.name: server
    for server in (
        Server("gunicorn", "gunicorn", "tests.apps.e2e_wsgi:app", 4, True, e2e_wsgi.ROUTE),
        Server("uvicorn-2-workers", "uvicorn", "tests.apps.e2e_asgi:app", 2, True, e2e_asgi.ROUTE),
        Server("uvicorn-1-process", "uvicorn", "tests.apps.e2e_asgi:app", 1, False, e2e_asgi.ROUTE),
    )
}


@dataclass(frozen=True)
class Scrape:
    """How one job asks for a format, and the ``Content-Type`` it must get at every scrape."""

    name: str
    content_type: str
    protocols: tuple[str, ...] = ()
    """Prometheus 3's ``scrape_protocols`` for the job; none: Prometheus's default."""
    force_text: bool = False
    """Ask with ``?e2e_format=text``: the app drops ``Accept`` (for Prometheus 2.42)."""

    def job(self, server: str) -> str:
        return f"{server}-{self.name}"

    def scrape_job(self, server: str, target: str) -> ScrapeJob:
        params = {e2e_wsgi.JOB_PARAM: self.job(server)}
        if self.force_text:
            key, _, value = e2e_wsgi.FORCE_TEXT_PARAM.partition("=")
            params[key] = value
        settings = {"scrape_protocols": list(self.protocols)} if self.protocols else {}
        return ScrapeJob(self.job(server), target, params, settings)

    @property
    def requested(self) -> str:
        """The ``requested`` label the app counts this job's scrapes under."""
        return "text" if self.force_text else "negotiated"


SCRAPES: dict[int, tuple[Scrape, ...]] = {
    2: (Scrape("openmetrics", OPENMETRICS), Scrape("text", TEXT, force_text=True)),
    3: (
        Scrape("openmetrics", OPENMETRICS, ("OpenMetricsText1.0.0",)),
        Scrape("text", TEXT, ("PrometheusText0.0.4",)),
        Scrape("text-1.0.0", TEXT_1_0_0, ("PrometheusText1.0.0",)),
        Scrape("protobuf", PROTOBUF, ("PrometheusProto",)),
    ),
}
"""The jobs of each server, by the major version of the Prometheus scraping them."""


# --- the stacks ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    server: Server
    requests: int
    started: float  # Unix time of the first request
    ended: float  # Unix time the last response arrived


@dataclass
class Stack:
    """One Prometheus and the servers it scrapes."""

    major: int
    version: tuple[int, int, int]
    prometheus: Prometheus
    urls: dict[str, str]  # server name -> base URL
    since: float  # Unix time before anything started
    began: float  # time.monotonic() then
    loads: dict[str, Load | None] = field(default_factory=dict)  # None: the load failed


def start_stack(major: int, processes: Processes, directory: Path) -> Stack:
    """Every server, then a Prometheus of version ``major`` scraping each in its jobs."""
    binary, version = REQUIRE_PROMETHEUS[major]()  # skips (fails under CI) before starting
    since, began = time.time(), time.monotonic()
    urls: dict[str, str] = {}
    starting = []
    for server in SERVERS.values():
        port = free_port()
        started = processes.start(server.name, _command(server, port), _env(server, directory))
        urls[server.name] = f"http://{HOST}:{port}"
        starting.append((server.name, started))
    for name, started in starting:  # before Prometheus: its first scrape finds them up
        wait_for_http(urls[name] + "/metrics", started)
    jobs = [
        scrape.scrape_job(name, url.removeprefix("http://"))
        for name, url in urls.items()
        for scrape in SCRAPES[major]
    ]
    prometheus = start_prometheus(processes, directory / f"prometheus{major}", jobs, binary=binary)
    for job in jobs:
        prometheus.wait_for(
            f'up{{job="{job.name}"}} == 1', STARTUP_TIMEOUT, f"target {job.name} not up"
        )
    print(
        f"\nPrometheus {'.'.join(map(str, version))} and {len(SERVERS)} servers up in "
        f"{time.monotonic() - began:.1f}s, {len(jobs)} jobs"
    )
    return Stack(major, version, prometheus, urls, since, began)


def _command(server: Server, port: int) -> list[str]:
    if server.kind == "gunicorn":
        return gunicorn_command(server.app, port, server.workers)
    return uvicorn_command(server.app, port, server.workers)


def _env(server: Server, directory: Path) -> dict[str, str]:
    if not server.shared_directory:
        return {}
    shared = directory / f"{server.name}-metrics"
    shared.mkdir()
    return {"PYTHEUS_MULTIPROC_DIR": str(shared)}


class Fleets:
    """The stack of one Prometheus at a time, started when a test first asks for it.

    Asking for another major version stops the running stack first: one fleet of servers at a
    time on the machine. The tests are ordered by major version, so each stack starts once. Each
    server gets its load once per stack, whatever the format checked.
    """

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.tmp_path_factory = tmp_path_factory
        self.current: Stack | None = None
        self.processes: Processes | None = None
        self.broken: set[int] = set()

    def stack(self, major: int) -> Stack:
        if self.current is not None and self.current.major == major:
            return self.current
        self.close()
        if major in self.broken:
            pytest.fail(f"the Prometheus {major} stack did not start: see its first test")
        directory = self.tmp_path_factory.mktemp(f"e2e-prometheus{major}")
        self.processes = Processes(directory)
        try:
            self.current = start_stack(major, self.processes, directory)
        except pytest.skip.Exception:
            raise
        except BaseException:
            self.broken.add(major)
            raise
        return self.current

    def load(self, major: int, server: Server) -> Load:
        stack = self.stack(major)
        if server.name not in stack.loads:
            stack.loads[server.name] = None  # until it succeeds: its requests are not known
            started, ended = send_paced(stack.urls[server.name], REQUESTS, LOAD_SECONDS)
            print(f"\n{server.name}: {REQUESTS} requests in {ended - started:.2f}s")
            stack.loads[server.name] = Load(server, REQUESTS, started, ended)
        load = stack.loads[server.name]
        if load is None:
            pytest.fail(f"the load of {server.name} failed: see its first test")
        return load

    def close(self) -> None:
        if self.current is not None:
            print(
                f"\nPrometheus {self.current.major} end to end: "
                f"{time.monotonic() - self.current.began:.1f}s in all"
            )
        self.current = None
        if self.processes is not None:
            self.processes.stop_all()
            self.processes = None


@pytest.fixture(scope="module")
def fleets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleets]:
    """The stacks of the module; whichever is running is stopped at its end, whatever happened."""
    running = Fleets(tmp_path_factory)
    try:
        yield running
    finally:
        running.close()


# --- the load ------------------------------------------------------------------------------------


def send_paced(base_url: str, requests: int, seconds: float) -> tuple[float, float]:
    """GET ``/items/<i>`` for i in 0..requests-1, the i-th at ``i * seconds / requests``."""
    step = seconds / requests
    counter = iter(range(requests))
    lock = threading.Lock()
    started = time.time()

    def client() -> int:
        sent = 0
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                return sent
            time.sleep(max(0.0, started + index * step - time.time()))
            with urllib.request.urlopen(f"{base_url}/items/{index}", timeout=10) as response:
                assert response.status == 200
                assert response.read() == f"item {index}".encode()
            sent += 1

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        sent = sum(pool.map(lambda _: client(), range(CONCURRENCY)))
    assert sent == requests
    return started, time.time()


# --- the checks ----------------------------------------------------------------------------------

CASES = [
    pytest.param(major, server, scrape, id=f"prometheus{major}-{server}-{scrape.name}")
    for major, scrapes in SCRAPES.items()
    for server in SERVERS
    for scrape in scrapes
]
"""Ordered by major version: each Prometheus's stack starts once."""


@pytest.mark.system
@pytest.mark.parametrize(("major", "server", "scrape"), CASES)
def test_prometheus_sees_every_request(
    fleets: Fleets, major: int, server: str, scrape: Scrape
) -> None:
    stack = fleets.stack(major)
    load = fleets.load(major, SERVERS[server])
    prometheus = stack.prometheus
    job = scrape.job(server)
    at = prometheus.wait_for_scrape_after(
        job, load.ended + RECORDING_MARGIN, timeout=20, successful=True
    )  # every query below is evaluated at this scrape, so later ones cannot change its answer
    selector = f'job="{job}",route="{load.server.route}"'

    scrapes, timed_out = _check_every_scrape_up(prometheus, job, stack.since, at)
    assert prometheus.value(f'up{{job="{job}"}}', at) == 1
    count = prometheus.value(f"sum(http_request_duration_seconds_count{{{selector}}})", at)
    assert count == load.requests
    by_labels = prometheus.query(
        f"sum by (method, status_code) (http_request_duration_seconds_count{{{selector}}})", at
    )
    assert [(r["metric"]["method"], r["metric"]["status_code"]) for r in by_labels] == [
        ("GET", "200")
    ]

    buckets = f"http_request_duration_seconds_bucket{{{selector}}}"
    over_rate = prometheus.value(f"histogram_quantile(0.5, sum by (le) (rate({buckets}[1m])))", at)
    over_buckets = prometheus.value(f"histogram_quantile(0.5, sum by (le) ({buckets}))", at)
    for median in (over_rate, over_buckets):
        assert median is not None and BUCKET[0] < median <= BUCKET[1], (over_rate, over_buckets)

    les = {r["metric"]["le"] for r in prometheus.query(f"group by (le) ({buckets})", at)}
    assert les == LE_LABELS, les
    assert prometheus.query(f'{{__name__=~"http_.+_created",job="{job}"}}', at) == []

    served = _served(prometheus, job, at)
    assert set(served) == {(scrape.requested, scrape.content_type)}, served
    if server == "gunicorn":
        _check_summary_quantiles(prometheus, job, load)

    print(
        f"\n{job}: {load.requests} requests counted, median {over_rate:.4f}s (rate) / "
        f"{over_buckets:.4f}s (buckets), {scrapes} scrapes ({timed_out} timed out), served "
        f"{served}, last scrape {at - load.ended:.2f}s after the load, "
        f"{time.monotonic() - stack.began:.1f}s since the stack started"
    )


def _check_summary_quantiles(prometheus: Prometheus, job: str, load: Load) -> None:
    """The workers' windows, merged by whichever worker answered: exact within 1 %."""
    at = prometheus.wait_for_scrape_after(
        job, load.ended + PUBLISH_MARGIN, timeout=20, successful=True
    )
    sizes = sorted(e2e_wsgi.item_size(i) for i in range(load.requests))
    selector = f'job="{job}"'
    assert prometheus.value(f"e2e_item_size_bytes_count{{{selector}}}", at) == load.requests
    for q in (0.5, 0.9, 0.99):
        exact = sizes[math.floor(q * (len(sizes) - 1))]
        stored = prometheus.value(f'e2e_item_size_bytes{{{selector},quantile="{q}"}}', at)
        assert stored is not None and abs(stored - exact) <= 0.01 * exact, (q, stored, exact)


def _check_every_scrape_up(
    prometheus: Prometheus, job: str, since: float, at: float
) -> tuple[int, int]:
    """Every scrape of ``job`` up to ``at`` succeeded, or timed out; (scrapes, timed out)."""
    window = f"{math.ceil(at - since) + 5}s"
    ups = prometheus.samples(f'up{{job="{job}"}}', window, at)
    durations = dict(prometheus.samples(f'scrape_duration_seconds{{job="{job}"}}', window, at))
    failed = [(moment, durations.get(moment)) for moment, up in ups if up != 1]
    timed_out = [m for m, took in failed if took is not None and took >= SCRAPE_INTERVAL]
    assert len(timed_out) == len(failed), f"{job}: (time, duration) of failed scrapes: {failed}"
    assert ups, f"{job}: no scrape"
    return len(ups), len(timed_out)


def _served(prometheus: Prometheus, job: str, at: float) -> dict[tuple[str, str], float]:
    """Scrapes of ``job`` answered, by (format requested, Content-Type served), as it saw them."""
    result = prometheus.query(
        "sum by (requested, content_type) "
        f'(e2e_metrics_responses_total{{job="{job}",scrape_job="{job}"}})',
        at,
    )
    return {
        (r["metric"]["requested"], r["metric"]["content_type"]): float(r["value"][1])
        for r in result
    }
