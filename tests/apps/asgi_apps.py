"""The same small application in Starlette and in FastAPI, for the ASGI middleware tests.

Routes: ``/users/{id}``, ``/boom`` (raises), ``/stream`` (chunks with pauses between them),
``/echo`` (POST: answers the body it read), ``/metrics`` (the registry's exposition), and a
mount ``/api`` holding ``/items/{name}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import APIRouter, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

from pytheus.exposition import PROMETHEUS_CONTENT_TYPE, generate_metrics
from pytheus.registry import Registry

STREAM_CHUNKS = 3
STREAM_CHUNK = b"x" * 100
STREAM_PAUSE = 0.1
"""Seconds between two chunks of ``/stream``: the response lasts at least 0.2 s."""


class Boom(RuntimeError):
    pass


async def chunks() -> AsyncIterator[bytes]:
    for n in range(STREAM_CHUNKS):
        if n:
            await asyncio.sleep(STREAM_PAUSE)
        yield STREAM_CHUNK


def starlette_app(registry: Registry) -> Starlette:
    async def user(request: Request) -> Response:
        return PlainTextResponse(f"user {request.path_params['id']}")

    async def item(request: Request) -> Response:
        return PlainTextResponse(f"item {request.path_params['name']}")

    async def boom(request: Request) -> Response:
        raise Boom("the app failed")

    async def stream(request: Request) -> Response:
        return StreamingResponse(chunks())

    async def echo(request: Request) -> Response:
        return Response(await request.body())

    async def metrics(request: Request) -> Response:
        return Response(generate_metrics(registry), media_type=PROMETHEUS_CONTENT_TYPE)

    return Starlette(
        routes=[
            Route("/users/{id}", user),
            Route("/boom", boom),
            Route("/stream", stream),
            Route("/echo", echo, methods=["POST"]),
            Route("/metrics", metrics),
            Mount("/api", routes=[Route("/items/{name}", item)]),
        ]
    )


def fastapi_app(registry: Registry) -> FastAPI:
    app = FastAPI()

    @app.get("/users/{id}")
    async def user(id: int) -> PlainTextResponse:
        return PlainTextResponse(f"user {id}")

    @app.get("/boom")
    async def boom() -> None:
        raise Boom("the app failed")

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        return StreamingResponse(chunks())

    @app.post("/echo")
    async def echo(request: Request) -> Response:
        return Response(await request.body())

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_metrics(registry), media_type=PROMETHEUS_CONTENT_TYPE)

    api = APIRouter(prefix="/api")

    @api.get("/items/{name}")
    async def item(name: str) -> PlainTextResponse:
        return PlainTextResponse(f"item {name}")

    app.include_router(api)
    return app


APPS = {"starlette": starlette_app, "fastapi": fastapi_app}
