"""The middleware options users of instrumentator and starlette_exporter reach for, on every
middleware (Starlette, FastAPI, Flask, Django) with real route templates: status grouping,
excluding by pattern and method, dropping unmatched paths, and extra labels from the request
with a cardinality guard."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.test import Client, override_settings

from pytheus.middleware import HTTPMetrics, PytheusMiddlewareASGI, PytheusMiddlewareWSGI
from pytheus.registry import CollectorRegistry, Registry
from tests.apps import django_app, flask_app
from tests.apps.asgi_apps import APPS
from tests.helpers import flat_samples, samples, value

ROOT = Path(__file__).resolve().parent.parent

django_app.configure()

DURATION = "http_request_duration_seconds_count"
Send = Callable[[str, str, dict[str, str]], tuple[int, str]]  # method, path, headers -> answer

ROUTES = {  # framework -> (path to request, its route template)
    "aiohttp": ("/users/1", "/users/{id}"),
    "litestar": ("/users/1", "/users/{id}"),
    "starlette": ("/users/1", "/users/{id}"),
    "fastapi": ("/users/1", "/users/{id}"),
    "flask": ("/users/1", "/users/<int:id>"),
    "django": ("/users/1/", "/users/<int:id>/"),
}

TENANT = {  # framework -> the tenant label function, on that framework's request object
    "aiohttp": lambda request: request.headers.get("X-Tenant", ""),
    "litestar": lambda scope: dict(scope["headers"]).get(b"x-tenant", b"").decode(),
    "starlette": lambda scope: dict(scope["headers"]).get(b"x-tenant", b"").decode(),
    "fastapi": lambda scope: dict(scope["headers"]).get(b"x-tenant", b"").decode(),
    "flask": lambda environ: environ.get("HTTP_X_TENANT", ""),
    "django": lambda request: request.headers.get("X-Tenant", ""),
}


@pytest.fixture(params=sorted(ROUTES))
def framework(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def serve(framework: str) -> Iterator[Callable[..., Send]]:
    """``serve(registry, **options)``: the framework's test app with the middleware, as a
    function sending one request."""
    settings: list[Any] = []

    def make(registry: Registry, **options: Any) -> Send:
        if framework == "aiohttp":
            return aiohttp_send(registry, **options)
        if framework in APPS or framework == "litestar":
            inner = litestar_app(registry) if framework == "litestar" else APPS[framework](registry)
            app = PytheusMiddlewareASGI(inner, registry=registry, **options)

            def send(method: str, path: str, headers: dict[str, str]) -> tuple[int, str]:
                async def main() -> tuple[int, str]:
                    transport = httpx.ASGITransport(app=app)
                    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                        response = await c.request(method, path, headers=headers)
                        return response.status_code, response.text

                return asyncio.run(main())

            return send
        if framework == "flask":
            flask = flask_app.flask_app(registry)
            flask.wsgi_app = PytheusMiddlewareWSGI(  # type: ignore[method-assign]
                flask.wsgi_app, registry=registry, **options
            )
            client = flask.test_client()

            def flask_send(method: str, path: str, headers: dict[str, str]) -> tuple[int, str]:
                response = client.open(path, method=method, headers=headers, buffered=True)
                return response.status_code, response.get_data(as_text=True)

            return flask_send
        override = override_settings(
            PYTHEUS_MIDDLEWARE={"registry": registry, **options},
            ROOT_URLCONF=django_app.__name__,
            MIDDLEWARE=[django_app.MIDDLEWARE],
            ALLOWED_HOSTS=["*"],
            DEBUG=False,
        )
        override.enable()
        settings.append(override)
        django = Client()

        def django_send(method: str, path: str, headers: dict[str, str]) -> tuple[int, str]:
            response = django.generic(method, path, headers=headers)
            return response.status_code, response.content.decode()

        return django_send

    yield make
    for override in settings:
        override.disable()


def aiohttp_send(registry: Registry, **options: Any) -> Send:
    """An aiohttp app with the middleware, served by aiohttp's test server, one per request
    (an aiohttp app belongs to one event loop)."""
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from pytheus.exposition import generate_metrics
    from pytheus.middleware.aiohttp import pytheus_middleware

    middleware = pytheus_middleware(registry=registry, **options)

    async def user(request: web.Request) -> web.Response:
        return web.Response(text=f"user {request.match_info['id']}")

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=generate_metrics(registry))

    def send(method: str, path: str, headers: dict[str, str]) -> tuple[int, str]:
        app = web.Application(middlewares=[middleware])
        app.router.add_get("/users/{id}", user)
        app.router.add_get("/metrics", metrics)

        async def main() -> tuple[int, str]:
            async with TestClient(TestServer(app)) as client:
                response = await client.request(method, path, headers=headers)
                return response.status, await response.text()

        return asyncio.run(main())

    return send


def litestar_app(registry: Registry) -> Any:
    from litestar import Litestar, MediaType, get

    from pytheus.exposition import generate_metrics

    @get("/users/{id:int}", media_type=MediaType.TEXT)
    async def user(id: int) -> str:
        return f"user {id}"

    @get("/metrics", media_type=MediaType.TEXT)
    async def metrics() -> str:
        return generate_metrics(registry)

    return Litestar(route_handlers=[user, metrics])


def counts(registry: Registry) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (name, labels), v in samples(registry).items() if name == DURATION}


def test_status_codes_grouped(framework: str, serve: Callable[..., Send]) -> None:
    registry = CollectorRegistry()
    send = serve(registry, group_status_codes=True)
    path, route = ROUTES[framework]
    assert send("GET", path, {})[0] == 200
    assert send("GET", "/nowhere/", {})[0] == 404
    assert value(registry, DURATION, method="GET", route=route, status_code="2xx") == 1
    found = {dict(labels)["status_code"] for labels in counts(registry)}
    assert found == {"2xx", "4xx"}


def test_excluded_by_pattern_method_and_unmatched(
    framework: str, serve: Callable[..., Send]
) -> None:
    registry = CollectorRegistry()
    send = serve(
        registry,
        skip_patterns=[r"/users/9\d*/?"],
        skip_methods=["options", "HEAD"],
        record_unmatched=False,
    )
    path, route = ROUTES[framework]
    send("GET", path, {})
    send("GET", path.replace("1", "99"), {})  # matches the pattern
    send("OPTIONS", path, {})
    send("HEAD", path, {})
    send("GET", "/nowhere/", {})  # no route: dropped
    assert counts(registry) == {
        frozenset({("method", "GET"), ("route", route), ("status_code", "200")}): 1
    }


def test_extra_label_from_the_request_with_a_cardinality_guard(
    framework: str, serve: Callable[..., Send]
) -> None:
    registry = CollectorRegistry()
    send = serve(registry, labels={"tenant": TENANT[framework]}, label_value_limit=3)
    path, route = ROUTES[framework]
    for n in range(10):
        assert send("GET", path, {"X-Tenant": f"t{n % 5}"})[0] == 200
    tenants = {dict(labels)["tenant"]: v for labels, v in counts(registry).items()}
    assert tenants == {"t0": 2, "t1": 2, "t2": 2, "<overflow>": 4}
    assert {dict(labels)["route"] for labels in counts(registry)} == {route}
    assert value(registry, "http_label_overflow_total", label="tenant") == 4


def test_ten_thousand_values_make_at_most_the_limit_plus_one_series() -> None:
    registry = CollectorRegistry()
    metrics = HTTPMetrics(registry=registry, labels={"user": lambda r: r}, label_value_limit=100)
    for n in range(10_000):
        metrics.record_safely("GET", "/users/{id}", 200, 0.01, 0, 10, f"user-{n}")
    assert len(counts(registry)) == 101
    assert value(registry, "http_label_overflow_total", label="user") == 9_900


def test_a_failing_label_function_gives_an_empty_value_and_never_fails_the_request() -> None:
    registry = CollectorRegistry()

    def broken(request: Any) -> str:
        raise KeyError("no tenant")

    metrics = HTTPMetrics(registry=registry, labels={"tenant": broken})
    metrics.record_safely("GET", "/", 200, 0.01, 0, 10, object())
    assert value(registry, DURATION, method="GET", route="/", status_code="200", tenant="") == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"labels": {"route": str}}, "other than"),
        ({"labels": {"tenant": "header"}}, "function"),
        ({"label_value_limit": 0}, "label_value_limit"),
        ({"skip_methods": "OPTIONS"}, "skip_methods is a collection"),
        ({"skip_patterns": "/static/.*"}, "skip_patterns is a collection"),
    ],
)
def test_bad_options_are_named(options: dict[str, Any], message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        HTTPMetrics(registry=CollectorRegistry(), **options)


# --- exemplars from the current trace -------------------------------------------------------


@pytest.fixture(scope="module")
def tracer() -> Any:
    from opentelemetry.sdk.trace import TracerProvider

    return TracerProvider().get_tracer("tests")


def duration_exemplars(registry: Registry) -> list[dict[str, str]]:
    """The exemplar labels of the duration histogram's buckets, parsed from OpenMetrics."""
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    from pytheus.collection import collect_registry
    from pytheus.exposition import openmetrics

    found = []
    text = openmetrics.render(collect_registry(registry))
    for family in text_string_to_metric_families(text):  # type: ignore[no-untyped-call]
        for sample in family.samples:
            if sample.name == "http_request_duration_seconds_bucket" and sample.exemplar:
                found.append(dict(sample.exemplar.labels))
    return found


def test_the_duration_carries_the_active_spans_ids(
    framework: str, serve: Callable[..., Send], tracer: Any
) -> None:
    registry = CollectorRegistry()
    send = serve(registry)
    path, _ = ROUTES[framework]
    # the server's span (OpenTelemetry's own middleware would start it): active around the app
    with tracer.start_as_current_span("GET") as span:
        assert send("GET", path, {})[0] == 200
        context = span.get_span_context()
    assert duration_exemplars(registry) == [
        {"trace_id": format(context.trace_id, "032x"), "span_id": format(context.span_id, "016x")}
    ]


def test_an_exemplar_function_or_none(framework: str, serve: Callable[..., Send]) -> None:
    registry = CollectorRegistry()
    send = serve(registry, exemplar=lambda request: {"request_id": "r-1"})
    path, _ = ROUTES[framework]
    send("GET", path, {})
    assert duration_exemplars(registry) == [{"request_id": "r-1"}]
    untraced = CollectorRegistry()
    serve(untraced, exemplars=False)("GET", path, {})
    assert duration_exemplars(untraced) == []


def test_a_refused_exemplar_still_records_the_request() -> None:
    registry = CollectorRegistry()
    metrics = HTTPMetrics(registry=registry, exemplar=lambda request: {"bad-name": "x"})
    metrics.record_safely("GET", "/", 200, 0.01, 0, 10, None, metrics.exemplar_of(None))
    assert value(registry, DURATION, method="GET", route="/", status_code="200") == 1


def test_without_opentelemetry_nothing_is_imported() -> None:
    import subprocess
    import sys

    code = (
        "import sys, pytheus.middleware\n"
        "from pytheus.middleware import HTTPMetrics\n"
        "from pytheus.registry import CollectorRegistry\n"
        "m = HTTPMetrics(registry=CollectorRegistry())\n"
        "assert m.exemplar_of(None) is None\n"
        "print(sorted(n for n in sys.modules if n.startswith('opentelemetry')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# --- requests in progress -------------------------------------------------------------------


def test_requests_in_progress_by_method_and_route(
    framework: str, serve: Callable[..., Send]
) -> None:
    registry = CollectorRegistry()
    send = serve(registry, in_progress=True, skip_paths=())
    # the app's /metrics route exposes the registry while its own request is in progress
    status, body = send("GET", "/metrics", {})
    assert status == 200
    during = flat_samples(body, "http_requests_in_progress")
    assert during == {'http_requests_in_progress{method="GET",route="/metrics"}': 1.0}
    assert value(registry, "http_requests_in_progress", method="GET", route="/metrics") == 0
    path, route = ROUTES[framework]
    send("GET", path, {})
    assert value(registry, "http_requests_in_progress", method="GET", route=route) == 0


def test_requests_in_progress_of_a_dead_worker_are_not_counted(tmp_path: Path) -> None:
    """livesum: a process killed with a request in flight leaves nothing behind."""
    code = textwrap.dedent(
        """
        import os, signal
        from pytheus.middleware import HTTPMetrics
        from pytheus.exposition import generate_metrics
        metrics = HTTPMetrics(in_progress=True)
        pid = os.fork()
        if pid == 0:
            metrics.begin("GET", "/slow")  # in flight...
            os.kill(os.getpid(), signal.SIGKILL)  # ...when the worker dies
        os.waitpid(pid, 0)
        metrics.begin("GET", "/slow")
        print([l for l in generate_metrics().splitlines() if l.startswith("http_requests_in")])
        """
    )
    env = {**os.environ, "PYTHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    expected = ['http_requests_in_progress{method="GET",route="/slow"} 1.0']
    assert done.stdout.strip() == repr(expected)


def test_an_exemplar_function_returning_no_mapping_still_records() -> None:
    registry = CollectorRegistry()
    metrics = HTTPMetrics(registry=registry, exemplar=lambda request: ["trace", "1"])  # type: ignore[arg-type, return-value]
    metrics.record_safely("GET", "/", 200, 0.01, 0, 10, None, metrics.exemplar_of(None))
    metrics.record_safely("GET", "/", 200, 0.01, 0, 10, None, "not labels")  # type: ignore[arg-type]
    assert value(registry, DURATION, method="GET", route="/", status_code="200") == 2
