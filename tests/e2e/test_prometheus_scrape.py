"""A real Prometheus scrapes real app servers instrumented by pytheus's middlewares.

Servers, each in its own process group, on free loopback ports:

* ``gunicorn``: the Flask app of :mod:`tests.apps.e2e_wsgi`, 4 sync workers sharing the file
  backend (``PYTHEUS_MULTIPROC_DIR``);
* ``uvicorn-2-workers``: the Starlette app of :mod:`tests.apps.e2e_asgi`, 2 worker processes
  sharing the file backend;
* ``uvicorn-1-process``: the same app in one process, on the default (in-memory) backend.

One Prometheus (2.42) scrapes each server every second in two jobs: ``<server>-openmetrics``,
where Prometheus negotiates as it always does (it asks for OpenMetrics first), and
``<server>-text``, whose ``?e2e_format=text`` makes the app drop the ``Accept`` header, so the
text format 0.0.4 is served: Prometheus 2.42 has no setting to stop asking for OpenMetrics
(``scrape_protocols`` came in 2.49). The app counts what it served in
``e2e_metrics_responses_total``, so the test reads from Prometheus itself which format each job
got. One Prometheus for all servers, because 2.42 applies a configuration's targets only at its
scrape manager's next 5-second tick: one start pays that once.

Per server, a client sends exactly ``REQUESTS`` requests to the parametrised route, paced over
``LOAD_SECONDS`` so that several scrapes see the load. Then, once Prometheus holds a scrape that
started after the last request, each job must show ``up == 1``, the exact request count, and a
median (``histogram_quantile`` over the ``rate`` and over the raw buckets) inside the bucket of
the handler's known sleep.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.apps import e2e_asgi, e2e_wsgi
from tests.conftest import require_program
from tests.e2e.conftest import (
    HOST,
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
BUCKET = (0.025, 0.05)
"""The duration bucket of ``ITEM_SLEEP`` (0.03 s) plus the server's overhead."""
FORMATS = ("openmetrics", "text")
OPENMETRICS = "application/openmetrics-text"
TEXT = "text/plain"

assert e2e_wsgi.ITEM_SLEEP == e2e_asgi.ITEM_SLEEP and BUCKET[0] < e2e_wsgi.ITEM_SLEEP < BUCKET[1]


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


@dataclass
class Stack:
    prometheus: Prometheus
    urls: dict[str, str]  # server name -> base URL
    started: float


@pytest.fixture(scope="module")
def stack(processes: Processes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Every server and one Prometheus scraping each in two jobs; all stopped at the end."""
    require_program("prometheus")
    began = time.monotonic()
    directory = tmp_path_factory.mktemp("e2e")
    urls: dict[str, str] = {}
    jobs: list[ScrapeJob] = []
    starting = []
    for server in SERVERS.values():
        port = free_port()
        started = processes.start(server.name, _command(server, port), _env(server, directory))
        urls[server.name] = f"http://{HOST}:{port}"
        starting.append((server.name, started))
        jobs.append(ScrapeJob(f"{server.name}-openmetrics", f"{HOST}:{port}"))
        jobs.append(ScrapeJob(f"{server.name}-text", f"{HOST}:{port}", {"e2e_format": "text"}))
    prometheus = start_prometheus(processes, directory / "prometheus", jobs)
    for name, started in starting:
        wait_for_http(urls[name] + "/metrics", started)
    for job in jobs:
        prometheus.wait_for(f'up{{job="{job.name}"}} == 1', 20, f"target {job.name} not up")
    print(
        f"\nstack up in {time.monotonic() - began:.1f}s: {len(SERVERS)} servers, {len(jobs)} jobs"
    )
    yield Stack(prometheus, urls, began)
    print(f"\nend to end: {time.monotonic() - began:.1f}s in all")


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


# --- the load ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    server: Server
    requests: int
    started: float  # Unix time of the first request
    ended: float  # Unix time the last response arrived


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


@pytest.fixture(scope="module", params=list(SERVERS))
def load(request: pytest.FixtureRequest, stack: Stack) -> Load:
    """The requests sent to one server (once per server, whatever the format checked)."""
    server = SERVERS[request.param]
    started, ended = send_paced(stack.urls[server.name], REQUESTS, LOAD_SECONDS)
    print(f"\n{server.name}: {REQUESTS} requests in {ended - started:.2f}s")
    return Load(server, REQUESTS, started, ended)


# --- the checks ----------------------------------------------------------------------------------


@pytest.mark.system
@pytest.mark.parametrize("format_", FORMATS)
def test_prometheus_sees_every_request(stack: Stack, load: Load, format_: str) -> None:
    prometheus = stack.prometheus
    job = f"{load.server.name}-{format_}"
    scraped_at = prometheus.wait_for_scrape_after(job, load.ended + RECORDING_MARGIN)
    selector = f'job="{job}",route="{load.server.route}"'

    assert prometheus.value(f'up{{job="{job}"}}') == 1
    count = prometheus.value(f"sum(http_request_duration_seconds_count{{{selector}}})")
    assert count == load.requests
    by_labels = prometheus.query(
        f"sum by (method, status_code) (http_request_duration_seconds_count{{{selector}}})"
    )
    assert [(r["metric"]["method"], r["metric"]["status_code"]) for r in by_labels] == [
        ("GET", "200")
    ]

    buckets = f"http_request_duration_seconds_bucket{{{selector}}}"
    over_rate = prometheus.value(f"histogram_quantile(0.5, sum by (le) (rate({buckets}[1m])))")
    over_buckets = prometheus.value(f"histogram_quantile(0.5, sum by (le) ({buckets}))")
    for median in (over_rate, over_buckets):
        assert median is not None and BUCKET[0] < median <= BUCKET[1], (over_rate, over_buckets)

    served = _served(prometheus, job)
    if format_ == "openmetrics":
        assert served.get(("negotiated", OPENMETRICS), 0) > 0, served
    else:
        assert served.get(("text", TEXT), 0) > 0, served
        assert served.get(("text", OPENMETRICS), 0) == 0, served

    scrapes = prometheus.value(f'count_over_time(up{{job="{job}"}}[10m])')
    print(
        f"\n{job}: {load.requests} requests counted, median {over_rate:.4f}s (rate) / "
        f"{over_buckets:.4f}s (buckets), {scrapes:.0f} scrapes, served {served}, last scrape "
        f"{scraped_at - load.ended:.2f}s after the load, "
        f"{time.monotonic() - stack.started:.1f}s since the stack started"
    )


def _served(prometheus: Prometheus, job: str) -> dict[tuple[str, str], float]:
    """Scrapes answered so far, by (format requested, media type served), as ``job`` saw them."""
    result = prometheus.query(
        f'sum by (requested, content_type) (e2e_metrics_responses_total{{job="{job}"}})'
    )
    return {
        (r["metric"]["requested"], r["metric"]["content_type"]): float(r["value"][1])
        for r in result
    }
