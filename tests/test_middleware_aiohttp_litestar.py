"""The middleware on aiohttp (``pytheus.middleware.aiohttp``) and on Litestar (the ASGI
middleware, wrapping the app or registered with Litestar's ``DefineMiddleware``), with real
route templates, read back with prometheus_client's parser."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from litestar import Litestar, MediaType, get
from litestar.exceptions import NotAuthorizedException
from litestar.middleware import DefineMiddleware

from pytheus.middleware import PytheusMiddlewareASGI
from pytheus.middleware.aiohttp import pytheus_middleware
from pytheus.registry import CollectorRegistry, Registry
from tests.helpers import samples, value

DURATION = "http_request_duration_seconds_count"
RESPONSE_SIZE = "http_response_size_bytes_sum"
REQUEST_SIZE = "http_request_size_bytes_sum"


def recorded(registry: Registry) -> dict[tuple[str, str, str], float]:
    return {
        (dict(labels)["method"], dict(labels)["route"], dict(labels)["status_code"]): v
        for (name, labels), v in samples(registry).items()
        if name == DURATION
    }


# --- aiohttp --------------------------------------------------------------------------------


async def user(request: web.Request) -> web.Response:
    return web.Response(text=f"user {request.match_info['id']}")


async def boom(request: web.Request) -> web.Response:
    raise RuntimeError("the handler failed")


async def forbidden(request: web.Request) -> web.Response:
    raise web.HTTPForbidden()


async def echo(request: web.Request) -> web.Response:
    return web.Response(body=await request.read())


def aiohttp_requests(registry: Registry, *requests: tuple[str, str, bytes]) -> list[int]:
    middleware = pytheus_middleware(registry=registry)
    app = web.Application(middlewares=[middleware])
    app.router.add_get("/users/{id}", user)
    app.router.add_get("/boom", boom)
    app.router.add_get("/forbidden", forbidden)
    app.router.add_post("/echo", echo)

    async def main() -> list[int]:
        async with TestClient(TestServer(app)) as client:
            statuses = []
            for method, path, body in requests:
                response = await client.request(method, path, data=body)
                await response.read()
                statuses.append(response.status)
            return statuses

    return asyncio.run(main())


def test_aiohttp_routes_statuses_and_sizes() -> None:
    registry = CollectorRegistry()
    statuses = aiohttp_requests(
        registry,
        ("GET", "/users/1", b""),
        ("GET", "/users/2", b""),
        ("GET", "/nowhere", b""),
        ("GET", "/boom", b""),
        ("GET", "/forbidden", b""),
        ("POST", "/echo", b"x" * 300),
        ("GET", "/metrics", b""),  # skipped by default (and a 404 here)
    )
    assert statuses == [200, 200, 404, 500, 403, 200, 404]
    assert recorded(registry) == {
        ("GET", "/users/{id}", "200"): 2,
        ("GET", "<unmatched>", "404"): 1,
        ("GET", "/boom", "500"): 1,
        ("GET", "/forbidden", "403"): 1,
        ("POST", "/echo", "200"): 1,
    }
    echo_labels = {"method": "POST", "route": "/echo", "status_code": "200"}
    assert value(registry, REQUEST_SIZE, **echo_labels) == 300
    assert value(registry, RESPONSE_SIZE, **echo_labels) == 300
    user_labels = {"method": "GET", "route": "/users/{id}", "status_code": "200"}
    assert value(registry, RESPONSE_SIZE, **user_labels) == len(b"user 1") * 2


# --- Litestar -------------------------------------------------------------------------------


@get("/users/{id:int}", media_type=MediaType.TEXT)
async def litestar_user(id: int) -> str:
    return f"user {id}"


@get("/private", media_type=MediaType.TEXT)
async def private() -> str:
    raise NotAuthorizedException()


def litestar_get(app: Any, *paths: str) -> list[int]:
    async def main() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [(await client.get(path)).status_code for path in paths]

    return asyncio.run(main())


def test_litestar_wrapped_whole_records_templates_and_unmatched() -> None:
    registry = CollectorRegistry()
    app = PytheusMiddlewareASGI(
        Litestar(route_handlers=[litestar_user, private]), registry=registry
    )
    assert litestar_get(app, "/users/1", "/users/2", "/private", "/nowhere") == [
        200, 200, 401, 404,
    ]  # fmt: skip
    assert recorded(registry) == {
        ("GET", "/users/{id}", "200"): 2,
        ("GET", "/private", "401"): 1,
        ("GET", "<unmatched>", "404"): 1,
    }


def test_litestar_define_middleware_records_routed_requests() -> None:
    registry = CollectorRegistry()
    app = Litestar(
        route_handlers=[litestar_user],
        middleware=[DefineMiddleware(PytheusMiddlewareASGI, registry=registry)],
    )
    assert litestar_get(app, "/users/7", "/users/8") == [200, 200]
    assert recorded(registry) == {("GET", "/users/{id}", "200"): 2}


async def streamed(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.content_length = 12
    await response.prepare(request)
    await response.write(b"hello, world")
    return response


def test_aiohttp_sizes_of_streamed_and_file_responses(tmp_path: Any) -> None:
    registry = CollectorRegistry()
    served = tmp_path / "served.bin"
    served.write_bytes(b"f" * 1059)

    async def file(request: web.Request) -> web.FileResponse:
        return web.FileResponse(served)

    app = web.Application(middlewares=[pytheus_middleware(registry=registry)])
    app.router.add_get("/stream", streamed)
    app.router.add_get("/file", file)

    async def main() -> None:
        async with TestClient(TestServer(app)) as client:
            for path in ("/stream", "/file"):
                await (await client.get(path)).read()

    asyncio.run(main())
    sizes = {
        route: value(registry, RESPONSE_SIZE, method="GET", route=route, status_code="200")
        for route in ("/stream", "/file")
    }
    assert sizes == {"/stream": 12, "/file": 1059}


def test_litestar_define_middleware_keeps_one_label_limit_for_all_routes() -> None:
    """Litestar makes one middleware per route: the limit is still the metric set's."""
    registry = CollectorRegistry()
    handlers = []
    for n in range(4):

        @get(f"/r{n}", media_type=MediaType.TEXT, name=f"r{n}")
        async def route() -> str:
            return "ok"

        handlers.append(route)
    app = Litestar(
        route_handlers=handlers,
        middleware=[
            DefineMiddleware(
                PytheusMiddlewareASGI,
                registry=registry,
                labels={"route_no": lambda scope: scope["path"]},
                label_value_limit=1,
            )
        ],
    )
    litestar_get(app, "/r0", "/r1", "/r2", "/r3")
    values = {
        dict(labels)["route_no"]
        for (name, labels) in samples(registry)
        if name == DURATION
    }
    assert values == {"/r0", "<overflow>"}
