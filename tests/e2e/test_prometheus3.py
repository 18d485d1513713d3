"""A real Prometheus 3 scrapes pytheus over protobuf and stores its native histograms.

Prometheus 3 comes from ``scripts/prometheus3.sh`` (Debian unstable's package, unpacked into
the git-ignored ``.cache/prometheus3/``; ``$PROMETHEUS3_BIN`` or a 3.x ``prometheus`` on the PATH
also do). Without one the test is skipped, except under CI=true, where it fails.

Two apps, each in its own process group on a free loopback port, both the WSGI app of
:func:`make_app` (:func:`~pytheus.exposition.make_wsgi_app` plus an ``/observe`` route):

* ``single-process``: served by ``wsgiref`` (``python -m tests.e2e.test_prometheus3 <port>``)
  on the default (in-memory) backend; before serving it observes :data:`VALUES` in the
  native-only histogram ``e2e_native_seconds`` and sets known values in a counter, a gauge, a
  summary and a classic histogram;
* ``gunicorn-4-workers``: gunicorn with 4 sync workers sharing the file backend
  (``PYTHEUS_MULTIPROC_DIR``); the test sends :data:`VALUES` to ``/observe``, 4 at a time, and
  checks from the answered pids that several workers took part.

Each app counts the scrapes it answers in ``e2e_scrapes_total``, by client (Prometheus, told by
its ``User-Agent``, or other) and by the media type it served, so Prometheus's own data says
which format it got.

One Prometheus 3 scrapes both every second with ``scrape_protocols: [PrometheusProto,
OpenMetricsText1.0.0, PrometheusText0.0.4]`` (native histograms on: a feature flag before 3.8,
``scrape_native_histograms`` from 3.8). Then, through the query API, for each app:

* ``histogram_count`` and ``histogram_sum`` of ``e2e_native_seconds`` are exact, its buckets are
  exactly those of :class:`pytheus.native.NativeHistogram` fed the same values, it has no
  classic ``_bucket`` series, and ``histogram_quantile(0.5, ...)`` is within the width of the
  native bucket that holds the true median;
* every scrape by Prometheus was answered with the protobuf media type;

and for ``single-process``, the counter, gauge, summary and classic histogram hold exactly what
the app set.

Two more kinds of app, from :mod:`tests.apps.prometheus3_apps`, scraped by the same Prometheus:

* ``redis-3-processes``: a redis-server of the module's own on a free port; three processes on
  :class:`~pytheus.backends.redis.MultiProcessRedisBackend` each observe a third of
  :data:`VALUES` in ``e2e_native_seconds``; two flush and exit, the third serves the totals. The
  native-histogram checks above run on it too (it is in :data:`NATIVE_JOBS`).
* ``utf8-names*``: ``PYTHEUS_NAME_VALIDATION=utf8`` apps with the counter
  ``http.server.requests``, incremented 7 times. Prometheus 3.5 asks ``escaping=allow-utf-8`` of
  the text formats only: scraped with its default protocols (OpenMetrics 1.0.0) or with the text
  format 1.0.0, the counter is stored under one name, ``http.server.requests_total``, queried by
  its UTF-8 name (``{"http.server.requests_total"}``). Over protobuf (no ``escaping`` asked) it
  is stored as the answer's escaping says, with ``_total`` too.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from pytheus.native import NativeHistogram, bucket_index, bucket_upper_bound, schema_for_factor
from tests.apps import prometheus3_apps
from tests.e2e.conftest import (
    HOST,
    Processes,
    Prometheus,
    ScrapeJob,
    free_port,
    gunicorn_command,
    require_prometheus3,
    start_prometheus,
    wait_for_http,
)
from tests.redis_server import RedisServer

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

VALUES = tuple(i / 64 for i in range(1, 100))
"""Observed in the native histogram; multiples of 1/64, so their sum is exact in floats."""
MEDIAN = 50 / 64
SCHEMA = schema_for_factor(1.1)  # the default native_bucket_factor: schema 3
EVENTS = {"a": 3, "b": 5}
NATIVE_EXEMPLAR = {"trace_id": "native-last"}
"""The exemplar of the last of :data:`VALUES` in the single-process app."""
TEMPERATURE = 21.5
SIZES = (1.0, 2.0, 3.0, 4.5)
CLASSIC_BUCKETS = (0.1, 0.5, 1.0)
CLASSIC_VALUES = (0.05, 0.3, 0.3, 0.7, 2.0)
SCRAPE_PROTOCOLS = ["PrometheusProto", "OpenMetricsText1.0.0", "PrometheusText0.0.4"]
PROTOBUF = "application/vnd.google.protobuf"
SINGLE = "single-process"
GUNICORN = "gunicorn-4-workers"
REDIS = "redis-3-processes"
UTF8 = "utf8-names"
UTF8_TEXT = "utf8-names-text"
UTF8_PROTO = "utf8-names-protobuf"
DEFAULT_SCRAPE_PROTOCOLS = [
    "OpenMetricsText1.0.0", "OpenMetricsText0.0.1", "PrometheusText1.0.0", "PrometheusText0.0.4",
]  # fmt: skip
"""Prometheus 3's own default (without native histograms), which asks for UTF-8 names; the
:data:`UTF8` job scrapes with it. Prometheus 3.5 asks ``escaping=allow-utf-8`` only of the text
formats 1.0.0, never of protobuf: :data:`UTF8_PROTO` gets the names escaped."""
UTF8_SCRAPES = {
    # job: (its scrape_protocols, the name its counter is stored under, the media type served)
    UTF8: (DEFAULT_SCRAPE_PROTOCOLS, "http.server.requests_total", "application/openmetrics-text"),
    UTF8_TEXT: (["PrometheusText1.0.0"], "http.server.requests_total", "text/plain"),
}
"""A counter's samples are named with ``_total`` in every format: one name, however scraped."""
JOBS = (SINGLE, GUNICORN)
NATIVE_JOBS = (SINGLE, GUNICORN, REDIS)
"""The jobs whose ``e2e_native_seconds`` holds :data:`VALUES`."""
WORKERS = 4
REDIS_PROCESSES = 3
"""Processes sharing the Redis backend: ``REDIS_PROCESSES - 1`` observe and exit, one serves."""
REDIS_NAMESPACE = "e2e"
APPS = "tests.apps.prometheus3_apps"
OBSERVE_SLEEP = 0.01
RECORDING_MARGIN = 0.2
"""Seconds after the last observation before a scrape surely holds it."""


# --- the apps (run in their own processes) -------------------------------------------------------


def make_app(preload: bool = True) -> WSGIApplication:
    """Define the metrics on the default registry; the WSGI app serving them.

    ``/metrics`` serves the metrics, counting each scrape; ``/observe?value=<v>`` observes ``v``
    in ``e2e_native_seconds`` and answers the pid of the process that did. With ``preload``,
    :data:`VALUES` are observed at once and the other metrics set to their known values.
    """
    from urllib.parse import parse_qs

    from pytheus.exposition import make_wsgi_app
    from pytheus.metrics import Counter, Gauge, Histogram, Summary

    native = Histogram("e2e_native_seconds", "Known values, native only.", native=True)
    scrapes = Counter(
        "e2e_scrapes_total",
        "Scrapes answered, by client (prometheus or other) and media type served.",
        required_labels=["client", "content_type"],
    )
    if preload:
        for value in VALUES[:-1]:
            native.observe(value)
        native.observe(VALUES[-1], exemplar=NATIVE_EXEMPLAR)
        events = Counter("e2e_events_total", "Known counts.", required_labels=["kind"])
        for kind, count in EVENTS.items():
            events.labels(kind=kind).inc(count, exemplar={"trace_id": f"events-{kind}"})
        Gauge("e2e_temperature_celsius", "A known level.").set(TEMPERATURE)
        sizes = Summary("e2e_size_bytes", "Known sizes.")
        for size in SIZES:
            sizes.observe(size)
        classic = Histogram("e2e_classic_seconds", "Classic buckets.", buckets=CLASSIC_BUCKETS)
        for value in CLASSIC_VALUES:
            classic.observe(value)
    serve_metrics = make_wsgi_app()

    def metrics(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        served: list[str] = []

        def recording(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            served.extend(v for k, v in headers if k.lower() == "content-type")
            return start_response(status, headers, *args)

        body = serve_metrics(environ, recording)
        media_type = served[0].split(";")[0].strip() if served else "none"
        agent = environ.get("HTTP_USER_AGENT", "")
        client = "prometheus" if agent.startswith("Prometheus/") else "other"
        scrapes.labels(client=client, content_type=media_type).inc()
        return body

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/observe":
            return metrics(environ, start_response)
        (value,) = parse_qs(environ.get("QUERY_STRING", ""))["value"]
        native.observe(float(value))
        time.sleep(OBSERVE_SLEEP)  # keeps this worker busy: the next request goes to another
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(os.getpid()).encode()]

    return app


def make_gunicorn_app() -> WSGIApplication:
    """The app of each gunicorn worker: nothing preloaded, values come by ``/observe``."""
    return make_app(preload=False)


def serve(port: int) -> None:
    """Serve :func:`make_app` on loopback until killed."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    with make_server(HOST, port, make_app(), handler_class=Quiet) as server:
        server.serve_forever()


# --- the stack -----------------------------------------------------------------------------------


@dataclass
class Stack:
    prometheus: Prometheus
    version: tuple[int, int, int]
    urls: dict[str, str]  # job -> base URL
    started: float
    redis_observed: float | None  # when every Redis process had flushed; None without Redis


@pytest.fixture(scope="module")
def stack(processes: Processes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Both apps and a Prometheus 3 scraping them; all stopped at the end of the module."""
    binary, version = require_prometheus3()
    began = time.monotonic()
    directory = tmp_path_factory.mktemp("prometheus3")
    shared = directory / "gunicorn-metrics"
    shared.mkdir()
    redis = _redis_server()
    jobs = (*JOBS, UTF8, UTF8_TEXT, UTF8_PROTO, *((REDIS,) if redis else ()))
    ports = {job: free_port() for job in jobs}
    urls = {job: f"http://{HOST}:{port}" for job, port in ports.items()}
    apps = {
        SINGLE: processes.start(SINGLE, [sys.executable, "-m", __name__, str(ports[SINGLE])]),
        GUNICORN: processes.start(
            GUNICORN,
            gunicorn_command(f"{__name__}:make_gunicorn_app()", ports[GUNICORN], WORKERS),
            {"PYTHEUS_MULTIPROC_DIR": str(shared)},
        ),
        **{
            job: processes.start(
                job,
                [sys.executable, "-m", APPS, "utf8-serve", str(ports[job])],
                {"PYTHEUS_NAME_VALIDATION": "utf8"},
            )
            for job in (UTF8, UTF8_TEXT, UTF8_PROTO)
        },
    }
    redis_observed = None
    if redis is not None:
        where = [redis.url, REDIS_NAMESPACE]
        observers = [
            processes.start(
                f"redis-observer-{index}",
                [sys.executable, "-m", APPS, "redis-observe", *where,
                 str(index), str(REDIS_PROCESSES)],
            )
            for index in range(1, REDIS_PROCESSES)
        ]  # fmt: skip
        apps[REDIS] = processes.start(
            REDIS,
            [sys.executable, "-m", APPS, "redis-serve", str(ports[REDIS]), *where,
             "0", str(REDIS_PROCESSES)],
        )  # fmt: skip
        for observer in observers:
            try:
                code = observer.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                code = None
            assert code == 0, f"{observer.name} exited with {code}:\n{observer.tail()}"
        redis_observed = time.time()
    for job, app in apps.items():
        wait_for_http(urls[job] + "/metrics", app)
    settings: dict[str, Any] = {"scrape_protocols": SCRAPE_PROTOCOLS}
    flags = ["--enable-feature=exemplar-storage"]
    if version < (3, 8, 0):
        flags.append("--enable-feature=native-histograms")
    else:  # native histograms are stable from 3.8 on, and scraped when the config says so
        settings["scrape_native_histograms"] = True
    prometheus = start_prometheus(
        processes,
        directory / "prometheus3",
        [
            ScrapeJob(
                job,
                f"{HOST}:{port}",
                settings={"scrape_protocols": UTF8_SCRAPES[job][0]} if job in UTF8_SCRAPES else {},
            )
            for job, port in ports.items()
        ],
        binary=binary,
        global_settings=settings,
        flags=flags,
    )
    for job in ports:
        prometheus.wait_for(f'up{{job="{job}"}} == 1', 30, f"target {job} not up")
    print(f"\nPrometheus {'.'.join(map(str, version))} up in {time.monotonic() - began:.1f}s")
    try:
        yield Stack(prometheus, version, urls, began, redis_observed)
    finally:
        if redis is not None:
            processes.stop_all()  # the Redis app before its server
            redis.stop()
            shutil.rmtree(redis.directory, ignore_errors=True)
    print(f"\nPrometheus 3 end to end: {time.monotonic() - began:.1f}s in all")


def _redis_server() -> RedisServer | None:
    """A redis-server of the module's own on a free port; None if there is none (the tests of
    its job then skip, which fails them under CI)."""
    if shutil.which("redis-server") is None:
        return None
    return RedisServer()


@pytest.fixture(scope="module")
def loaded(stack: Stack) -> float:
    """:data:`VALUES` observed by gunicorn's workers; when Prometheus surely holds them all."""
    url = stack.urls[GUNICORN]

    def observe(value: float) -> int:
        with urllib.request.urlopen(f"{url}/observe?value={value!r}", timeout=10) as response:
            assert response.status == 200
            return int(response.read())

    began = time.time()
    with ThreadPoolExecutor(WORKERS) as pool:
        pids = list(pool.map(observe, VALUES))
    ended = time.time()
    workers = len(set(pids))
    print(f"\ngunicorn: {len(VALUES)} observations in {ended - began:.2f}s by {workers} workers")
    assert workers >= 2, f"one worker took every observation: {set(pids)}"
    stack.prometheus.wait_for_scrape_after(GUNICORN, ended + RECORDING_MARGIN)
    stack.prometheus.wait_for_scrape_after(SINGLE, ended + RECORDING_MARGIN)
    if stack.redis_observed is not None:
        stack.prometheus.wait_for_scrape_after(REDIS, stack.redis_observed + RECORDING_MARGIN)
    return ended


def _require_job(stack: Stack, job: str) -> None:
    if job == REDIS and stack.redis_observed is None:
        pytest.skip("redis-server is not installed (bash scripts/test.sh installs it)")


# --- the checks ----------------------------------------------------------------------------------


@pytest.mark.system
@pytest.mark.parametrize("job", NATIVE_JOBS)
def test_native_histogram_count_sum_and_buckets(stack: Stack, loaded: float, job: str) -> None:
    _require_job(stack, job)
    prometheus = stack.prometheus
    selector = f'e2e_native_seconds{{job="{job}"}}'
    assert prometheus.value(f"histogram_count(sum({selector}))") == len(VALUES)
    assert prometheus.value(f"histogram_sum(sum({selector}))") == sum(VALUES)

    (series,) = prometheus.query(selector)
    assert "histogram" in series and "value" not in series, series  # stored as native
    stored = series["histogram"][1]
    expected = NativeHistogram(schema=SCHEMA)
    for value in VALUES:
        expected.observe(value)
    assert float(stored["count"]) == expected.count and float(stored["sum"]) == expected.sum
    # the same buckets; their bounds as Prometheus computes them, to the last bits
    got, want = _api_buckets(stored["buckets"]), _expected_buckets(expected)
    assert len(got) == len(want) and all(
        g[2] == w[2] and g[:2] == pytest.approx(w[:2], rel=1e-12) for g, w in zip(got, want)
    ), (got, want)
    # native only: no classic buckets were ingested besides the native histogram
    assert prometheus.query(f'{{__name__=~"e2e_native_seconds_.+",job="{job}"}}') == []


@pytest.mark.system
@pytest.mark.parametrize("job", NATIVE_JOBS)
def test_native_histogram_median(stack: Stack, loaded: float, job: str) -> None:
    _require_job(stack, job)
    median = stack.prometheus.value(
        f'histogram_quantile(0.5, sum(e2e_native_seconds{{job="{job}"}}))'
    )
    index = bucket_index(MEDIAN, SCHEMA)
    lower, upper = bucket_upper_bound(index - 1, SCHEMA), bucket_upper_bound(index, SCHEMA)
    assert median is not None and abs(median - MEDIAN) <= upper - lower, (median, lower, upper)
    print(f"\n{job}: median {median:.5f}, true {MEDIAN}, bucket ({lower:.5f}, {upper:.5f}]")


@pytest.mark.system
def test_classic_types_over_protobuf(stack: Stack) -> None:
    prometheus = stack.prometheus
    job = f'job="{SINGLE}"'
    prometheus.wait_for(f"sum(e2e_events_total{{{job}}})", 10, "no counter")
    events = prometheus.query(f"e2e_events_total{{{job}}}")
    assert {r["metric"]["kind"]: float(r["value"][1]) for r in events} == EVENTS
    assert prometheus.value(f"e2e_temperature_celsius{{{job}}}") == TEMPERATURE
    assert prometheus.value(f"e2e_size_bytes_count{{{job}}}") == len(SIZES)
    assert prometheus.value(f"e2e_size_bytes_sum{{{job}}}") == sum(SIZES)

    buckets = prometheus.query(f"e2e_classic_seconds_bucket{{{job}}}")
    cumulative = {float(r["metric"]["le"]): float(r["value"][1]) for r in buckets}
    bounds = (*CLASSIC_BUCKETS, math.inf)
    assert cumulative == {b: sum(1 for v in CLASSIC_VALUES if v <= b) for b in bounds}
    assert prometheus.value(f"e2e_classic_seconds_count{{{job}}}") == len(CLASSIC_VALUES)
    assert prometheus.value(f"e2e_classic_seconds_sum{{{job}}}") == sum(CLASSIC_VALUES)
    # a classic histogram stays classic: no native series under its name
    assert prometheus.query(f"e2e_classic_seconds{{{job}}}") == []


@pytest.mark.system
def test_exemplars_over_protobuf(stack: Stack, loaded: float) -> None:
    """Prometheus stores the exemplars of a counter and of a native histogram read from protobuf.

    A native histogram's exemplars are read from ``Histogram.exemplars`` of the schema, a
    counter's from ``Counter.exemplar``; both must carry their labels and values unchanged.
    """
    prometheus = stack.prometheus

    def exemplars(selector: str) -> list[dict[str, Any]]:
        now = time.time()
        found: list[dict[str, Any]] = prometheus.api(
            "/api/v1/query_exemplars", query=selector, start=repr(now - 600), end=repr(now + 60)
        )
        return found

    events = exemplars(f'e2e_events_total{{job="{SINGLE}"}}')
    by_kind = {
        series["seriesLabels"]["kind"]: [(e["labels"], float(e["value"])) for e in found]
        for series in events
        for found in [series["exemplars"]]
    }
    assert by_kind == {
        kind: [({"trace_id": f"events-{kind}"}, float(count))] for kind, count in EVENTS.items()
    }, events
    (native,) = exemplars(f'e2e_native_seconds{{job="{SINGLE}"}}')
    assert [(e["labels"], float(e["value"])) for e in native["exemplars"]] == [
        (NATIVE_EXEMPLAR, VALUES[-1])
    ], native
    print(f"\n{SINGLE}: exemplars stored for {sorted(by_kind)} and the native histogram")


@pytest.mark.system
def test_redis_processes_each_contributed(stack: Stack, loaded: float) -> None:
    """The values were split among the processes: the totals are not one process's share."""
    _require_job(stack, REDIS)
    assert prometheus3_apps.REDIS_VALUES == VALUES
    shares = [prometheus3_apps.share(i, REDIS_PROCESSES) for i in range(REDIS_PROCESSES)]
    assert sorted(v for part in shares for v in part) == sorted(VALUES)
    selector = f'e2e_native_seconds{{job="{REDIS}"}}'
    count = stack.prometheus.value(f"histogram_count({selector})")
    assert count == len(VALUES) > max(len(part) for part in shares)
    print(f"\n{REDIS}: shares of {[len(part) for part in shares]} values add up to {count:.0f}")


def _utf8_selector(job: str) -> str:
    name = UTF8_SCRAPES[job][1]
    return f'{{"{name}",job="{job}","{prometheus3_apps.UTF8_LABEL}"="GET"}}'


@pytest.mark.system
@pytest.mark.parametrize("job", UTF8_SCRAPES)
def test_utf8_name_queried_by_its_name(stack: Stack, job: str) -> None:
    prometheus = stack.prometheus
    name = UTF8_SCRAPES[job][1]
    assert name.startswith(prometheus3_apps.UTF8_COUNTER)
    requests = float(prometheus3_apps.UTF8_REQUESTS)
    assert prometheus.wait_for(_utf8_selector(job), 10, "no UTF-8 counter") == requests
    by_name = prometheus.query(f'{{__name__="{name}",job="{job}"}}')
    assert [r["metric"] for r in by_name] == [
        {
            "__name__": name,
            prometheus3_apps.UTF8_LABEL: "GET",
            "instance": stack.urls[job].removeprefix("http://"),
            "job": job,
        }
    ], by_name
    assert [float(r["value"][1]) for r in by_name] == [requests]
    # stored under its UTF-8 name only, never escaped
    assert prometheus.query(f'{{__name__=~"http_server_requests.*",job="{job}"}}') == []
    assert prometheus.query(f'{{__name__=~"U__.*|.*_dot_.*",job="{job}"}}') == []
    print(f"\n{job}: {_utf8_selector(job)} = {requests:.0f}")


def scrapes_counted(prometheus: Any, job: str) -> list[Any]:
    """``e2e_scrapes_total`` of a job's scrapes by Prometheus, once at least one was stored.

    An app counts a scrape while answering it, so the count shows from a later scrape on (and,
    for an app on the Redis backend, after its next flush).
    """
    query = f'e2e_scrapes_total{{job="{job}",client="prometheus"}}'
    deadline = time.monotonic() + 15
    while not (found := prometheus.query(query)) and time.monotonic() < deadline:
        time.sleep(0.5)
    result: list[Any] = found
    return result


@pytest.mark.system
@pytest.mark.parametrize("job", UTF8_SCRAPES)
def test_utf8_scrapes_asked_for_utf8(stack: Stack, job: str) -> None:
    """Prometheus 3 asks the text formats for UTF-8 names, and pytheus answered with them."""
    prometheus = stack.prometheus
    prometheus.wait_for(_utf8_selector(job), 10, "no UTF-8 counter")
    served = {
        (r["metric"]["content_type"], r["metric"]["escaping"]): float(r["value"][1])
        for r in scrapes_counted(prometheus, job)
    }
    assert set(served) == {(UTF8_SCRAPES[job][2], "allow-utf-8")}, served
    print(f"\n{job}: served {served}")
    # the other apps keep the classic validation: their Content-Type has no escaping parameter
    if stack.redis_observed is not None:
        classic = scrapes_counted(prometheus, REDIS)
        assert {r["metric"]["escaping"] for r in classic} == {"none"}, classic


@pytest.mark.system
def test_utf8_name_over_protobuf(stack: Stack) -> None:
    """Over protobuf the name is stored as the escaping pytheus answered with says.

    Prometheus 3.5 sends no ``escaping`` with its protobuf media range, so pytheus escapes with
    the default ``underscores`` (``http_server_requests_total``, ``http_method``), as client_golang
    does; a Prometheus that asks for ``allow-utf-8`` gets, and stores, the UTF-8 name.
    """
    prometheus = stack.prometheus
    job = f'job="{UTF8_PROTO}",client="prometheus"'
    prometheus.wait_for(f"sum(e2e_scrapes_total{{{job}}})", 10, "no scrape counted")
    served = {
        (r["metric"]["content_type"], r["metric"]["escaping"])
        for r in prometheus.query(f"e2e_scrapes_total{{{job}}}")
    }
    assert len(served) == 1, served
    ((media_type, escaping),) = served
    assert media_type == PROTOBUF
    utf8 = f'{{"http.server.requests_total",job="{UTF8_PROTO}","http.method"="GET"}}'
    escaped = f'http_server_requests_total{{job="{UTF8_PROTO}",http_method="GET"}}'
    stored, absent = (utf8, escaped) if escaping == "allow-utf-8" else (escaped, utf8)
    assert escaping in ("allow-utf-8", "none"), escaping
    assert prometheus.value(stored) == prometheus3_apps.UTF8_REQUESTS
    assert prometheus.query(absent) == []
    print(f"\n{UTF8_PROTO}: Prometheus {stack.version} got escaping={escaping}: {stored}")


@pytest.mark.system
@pytest.mark.parametrize("job", (*JOBS, REDIS, UTF8_PROTO))
def test_every_scrape_was_protobuf(stack: Stack, loaded: float, job: str) -> None:
    _require_job(stack, job)
    prometheus = stack.prometheus
    served = {
        r["metric"]["content_type"]: float(r["value"][1]) for r in scrapes_counted(prometheus, job)
    }
    assert set(served) == {PROTOBUF} and served[PROTOBUF] >= 1, served
    scrapes = prometheus.value(f'count_over_time(up{{job="{job}"}}[10m])')
    print(
        f"\n{job}: served {served}; {scrapes:.0f} scrapes; "
        f"{time.monotonic() - stack.started:.1f}s since the stack started"
    )


def _api_buckets(buckets: list[list[Any]]) -> list[tuple[float, float, float]]:
    """The API's ``[boundary rule, lower, upper, count]`` buckets as floats."""
    return [(float(lower), float(upper), float(count)) for _, lower, upper, count in buckets]


def _expected_buckets(histogram: NativeHistogram) -> list[tuple[float, float, float]]:
    """The positive buckets of ``histogram`` (no zero or negative ones here), lowest first."""
    assert histogram.zero_count == 0 and not histogram.negative
    return [
        (
            bucket_upper_bound(index - 1, histogram.schema),
            bucket_upper_bound(index, histogram.schema),
            float(count),
        )
        for index, count in sorted(histogram.positive.items())
    ]


if __name__ == "__main__":
    serve(int(sys.argv[1]))
