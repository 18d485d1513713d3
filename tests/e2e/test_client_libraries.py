"""Libraries written for prometheus_client, across processes, after ``patch_client``:
prometheus-fastapi-instrumentator under uvicorn with 4 workers and django-prometheus under
gunicorn with 4 workers, on the shared-file and the Redis backend, scraped by a real
Prometheus. Without the patch, each worker would answer with its own count only.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

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
from tests.helpers import backend_environment, eventually
from tests.redis_server import RedisServer

REQUESTS = 60
WORKERS = 4

# (library, page to request, the library's count of those requests in PromQL, in its /metrics)
LIBRARIES = {
    "instrumentator": (
        "/items/1",
        'sum(http_requests_total{{job="{job}",handler="/items/{{item_id}}"}})',
        re.compile(r'^http_requests_total\{handler="/items/\{item_id\}".*\} (\S+)$', re.M),
    ),
    "django": (
        "/hello/",
        'sum(django_http_requests_total_by_view_transport_method_total{{job="{job}",view="tests.apps.django_prometheus_site.hello"}})',
        re.compile(
            r'^django_http_requests_total_by_view_transport_method_total\{[^}]*'
            r'view="tests.apps.django_prometheus_site.hello"[^}]*\} (\S+)$',
            re.M,
        ),
    ),
}


@dataclass
class Stack:
    prometheus: Prometheus
    servers: dict[str, str]  # job -> base URL


def command(library: str, port: int) -> list[str]:
    if library == "instrumentator":
        return uvicorn_command("tests.apps.instrumentator_app:app", port, WORKERS)
    return gunicorn_command("tests.apps.django_prometheus_site:application", port, WORKERS)


@pytest.fixture(scope="module")
def stack(processes: Processes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    here = tmp_path_factory.mktemp("client-libraries")
    redis = RedisServer()
    servers: dict[str, str] = {}
    try:
        for library in LIBRARIES:
            for backend in ("file", "redis"):
                job = f"{library}-{backend}"
                scratch = here / job
                scratch.mkdir()
                env = backend_environment(backend, scratch, redis.url)
                env["DJANGO_SETTINGS_MODULE"] = "tests.apps.django_prometheus_site"
                port = free_port()
                started = processes.start(job, command(library, port), env)
                wait_for_http(f"http://{HOST}:{port}/metrics", started)
                servers[job] = f"http://{HOST}:{port}"
        jobs = [ScrapeJob(job, url.removeprefix("http://")) for job, url in servers.items()]
        prometheus = start_prometheus(processes, here / "prometheus", jobs)
        yield Stack(prometheus, servers)
    finally:
        processes.stop_all()
        redis.stop()


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
        return body.decode()


@pytest.mark.system
@pytest.mark.parametrize("backend", ["file", "redis"])
@pytest.mark.parametrize("library", sorted(LIBRARIES))
def test_library_counts_every_request_of_every_worker(
    stack: Stack, library: str, backend: str
) -> None:
    job = f"{library}-{backend}"
    page, query, own_line = LIBRARIES[library]
    base = stack.servers[job]
    for _ in range(REQUESTS):
        get(base + page)

    def served() -> None:
        counts = [float(v) for v in own_line.findall(get(base + "/metrics"))]
        assert sum(counts) == REQUESTS, counts

    # the library's own /metrics serves the total of all four workers (on Redis, once each
    # has flushed: within its flush interval), whichever worker answers
    eventually(served, timeout=15)
    for _ in range(2 * WORKERS):
        served()
    # and Prometheus stores it
    moment = time.time()
    stack.prometheus.wait_for_scrape_after(job, moment, timeout=30, successful=True)
    assert stack.prometheus.value(query.format(job=job)) == REQUESTS
