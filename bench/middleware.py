"""What the HTTP middleware adds to each request, against prometheus-fastapi-instrumentator and
starlette-exporter.

Usage::

    .venv/bin/python bench/middleware.py            # full run, about 30 seconds
    .venv/bin/python bench/middleware.py --quick    # a few seconds: checks that it works
    .venv/bin/python bench/middleware.py --check    # exit status 1 when a target is missed

For each framework (Starlette, FastAPI) five copies of the same app are built: bare, with
``PytheusMiddlewareASGI`` (its defaults), with ``PytheusMiddlewareASGI`` and every option on
(status grouping, skip patterns and methods, unmatched paths dropped, a tenant label from a
header with its cardinality guard, the in-progress gauge, exemplars), with
prometheus-fastapi-instrumentator and with starlette-exporter, each added the way its docs say
(``add_middleware`` / ``Instrumentator().instrument(app)``), each on a registry of its own.
Each copy serves the same requests in process: an ASGI call with a fresh scope, a receive that
returns an empty body, and a send that drops the messages, as a server would do with the
network left out. So the figures are the middleware's own cost, not the noise of a socket.

Timing goes in rounds. In a round, each of ``--requests`` requests is served by the five copies
in turn (which copy goes first rotates), each request timed on its own, so that all five share
whatever else the machine is doing; a copy's figure for the round is its median time per request.
A library *adds* the median, over the rounds, of its figure minus the bare app's in the same
round; the first to third quartile of those differences shows how noisy the machine was.
Targets: pytheus adds less than 30 µs per request, and, with every option on, less than the
instrumentator and starlette-exporter with their defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from time import perf_counter_ns
from typing import Any

import prometheus_client
from fastapi import FastAPI
from prometheus_fastapi_instrumentator import Instrumentator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette_exporter import PrometheusMiddleware

from pytheus.middleware import PytheusMiddlewareASGI
from pytheus.registry import CollectorRegistry

TARGET_US = 30.0
"""The largest acceptable overhead of pytheus, in microseconds per request."""

FULL = {"rounds": 21, "requests": 1000}
QUICK = {"rounds": 3, "requests": 60}

App = Callable[[Any, Any, Any], Any]
PATH = "/users/42"


# --- the apps -------------------------------------------------------------------------------------


def starlette_app() -> Starlette:
    async def user(request: Request) -> Response:
        return PlainTextResponse("user " + request.path_params["id"])

    return Starlette(routes=[Route("/users/{id}", user)])


def fastapi_app() -> FastAPI:
    app = FastAPI()

    @app.get("/users/{id}")
    async def user(id: int) -> PlainTextResponse:
        return PlainTextResponse(f"user {id}")

    return app


FRAMEWORKS: dict[str, Callable[[], Starlette]] = {
    "starlette": starlette_app,
    "fastapi": fastapi_app,
}


def with_pytheus(build: Callable[[], Starlette]) -> Starlette:
    app = build()
    app.add_middleware(PytheusMiddlewareASGI, registry=CollectorRegistry())
    return app


def tenant(scope: Any) -> str:
    for name, value in scope["headers"]:
        if name == b"x-tenant":
            return str(value.decode())
    return ""


ALL_OPTIONS: dict[str, Any] = {
    "group_status_codes": True,
    "skip_patterns": [r"/static/.*"],
    "skip_methods": ["OPTIONS", "HEAD"],
    "record_unmatched": False,
    "labels": {"tenant": tenant},
    "in_progress": True,
    "exemplars": True,
}


def with_pytheus_all(build: Callable[[], Starlette]) -> Starlette:
    app = build()
    app.add_middleware(PytheusMiddlewareASGI, registry=CollectorRegistry(), **ALL_OPTIONS)
    return app


def with_instrumentator(build: Callable[[], Starlette]) -> Starlette:
    app = build()
    Instrumentator(registry=prometheus_client.CollectorRegistry()).instrument(app)
    return app


_exporters = 0


def with_starlette_exporter(build: Callable[[], Starlette]) -> Starlette:
    global _exporters
    _exporters += 1  # its metrics live in prometheus_client's REGISTRY, one set per prefix
    app = build()
    app.add_middleware(PrometheusMiddleware, prefix=f"bench{_exporters}")
    return app


VARIANTS: dict[str, Callable[[Callable[[], Starlette]], Starlette]] = {
    "bare": lambda build: build(),
    "pytheus": with_pytheus,
    "pytheus_all": with_pytheus_all,
    "instrumentator": with_instrumentator,
    "starlette_exporter": with_starlette_exporter,
}


# --- the timing loop ------------------------------------------------------------------------------


def scope_template() -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"bench"),
            (b"user-agent", b"bench/1"),
            (b"accept", b"*/*"),
            (b"accept-encoding", b"gzip, deflate"),
            (b"x-tenant", b"acme"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def serve_round(apps: Sequence[App], requests: int, first: int) -> list[list[int]]:
    """Serve ``requests`` requests to each app, interleaved; each request's nanoseconds per app.

    Request ``i`` goes to every app in turn, starting with a different app each time, so that
    the apps share whatever the machine is doing.
    """
    template = scope_template()
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    timings: list[list[int]] = [[] for _ in apps]
    count = len(apps)
    for i in range(requests):
        for j in range(count):
            index = (first + i + j) % count
            app = apps[index]
            scope = dict(template)
            start = perf_counter_ns()
            await app(scope, receive, send)
            timings[index].append(perf_counter_ns() - start)
    if any(status != 200 for status in statuses):
        raise RuntimeError(f"an app answered {sorted(set(statuses))}")
    return timings


@dataclass(frozen=True)
class Row:
    framework: str
    rounds: dict[str, list[float]]
    """Variant (bare, pytheus, instrumentator) -> its median µs per request in each round."""

    def median(self, variant: str) -> float:
        """The median over the rounds of the variant's median time per request."""
        return statistics.median(self.rounds[variant])

    def paired(self, library: str) -> list[float]:
        """What ``library`` adds in each round: its median minus the bare app's in that round."""
        return [t - bare for t, bare in zip(self.rounds[library], self.rounds["bare"])]

    def overhead(self, library: str) -> float:
        """What ``library`` adds per request: the median of the per-round differences."""
        return statistics.median(self.paired(library))


def measure(framework: str, rounds: int, requests: int) -> Row:
    build = FRAMEWORKS[framework]
    names = list(VARIANTS)
    apps = [VARIANTS[name](build) for name in names]
    medians: dict[str, list[float]] = {name: [] for name in names}
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(serve_round(apps, max(50, requests // 10), 0))  # warm-up
        for round_index in range(rounds):
            gc.collect()
            gc.disable()  # as timeit does
            try:
                timings = loop.run_until_complete(serve_round(apps, requests, round_index))
            finally:
                gc.enable()
            for name, times in zip(names, timings):
                medians[name].append(statistics.median(times) / 1000)
    finally:
        loop.close()
    return Row(framework, medians)


# --- output ---------------------------------------------------------------------------------------

LIBRARIES = ("pytheus", "pytheus_all", "instrumentator", "starlette_exporter")


def table(rows: Sequence[Row]) -> tuple[str, bool]:
    """The results as text, and whether every target was met."""
    header = ["app", "bare app"]
    for library in LIBRARIES:
        header += [f"{library} adds", "(quartiles)"]
    header.append("target met")
    lines = [header]
    met_all = True
    for row in rows:
        ours, everything = row.overhead("pytheus"), row.overhead("pytheus_all")
        theirs = min(row.overhead("instrumentator"), row.overhead("starlette_exporter"))
        met = ours < TARGET_US and ours < theirs and everything < theirs
        met_all = met_all and met
        line = [row.framework, f"{row.median('bare'):.1f} µs"]
        for library in LIBRARIES:
            line += [f"{row.overhead(library):.1f} µs", spread(row.paired(library))]
        line.append("yes" if met else "NO")
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = "\n".join(
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths))
        ).rstrip()
        for line in lines
    )
    return text, met_all


def spread(values: Sequence[float]) -> str:
    """The first to third quartile of the per-round values (all of them when few)."""
    if len(values) < 4:
        return f"{min(values):.1f} to {max(values):.1f}"
    low, _, high = statistics.quantiles(values, n=4)
    return f"{low:.1f} to {high:.1f}"


def describe() -> str:
    packages = ", ".join(
        f"{name} {version(name)}"
        for name in (
            "starlette", "fastapi", "prometheus-fastapi-instrumentator", "starlette-exporter"
        )
    )
    return (
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.machine()}; {packages}"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a very short smoke run")
    parser.add_argument("--rounds", type=int, help=f"rounds (default {FULL['rounds']})")
    parser.add_argument(
        "--requests", type=int, help=f"requests per round (default {FULL['requests']})"
    )
    parser.add_argument("--only", choices=sorted(FRAMEWORKS), help="benchmark one framework only")
    parser.add_argument(
        "--check", action="store_true", help="exit with status 1 when a target is missed"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    defaults = QUICK if args.quick else FULL
    rounds = args.rounds or defaults["rounds"]
    requests = args.requests or defaults["requests"]
    frameworks = [args.only] if args.only else list(FRAMEWORKS)
    print(describe())
    print(f"{rounds} rounds of {requests} requests per app (GET {PATH}, in process)\n")
    rows = [measure(framework, rounds, requests) for framework in frameworks]
    text, met = table(rows)
    print(text)
    print(
        f"\ntarget: pytheus adds < {TARGET_US:g} µs per request, and with every option on "
        "(pytheus_all) less than the instrumentator and starlette-exporter"
    )
    if args.quick:
        print("(--quick figures are not worth reading)")
    return 1 if args.check and not met else 0


if __name__ == "__main__":
    sys.exit(main())
