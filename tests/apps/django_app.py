"""A small Django project in one module (settings and URLconf) for the middleware tests.

Routes: ``users/<int:id>/``, ``boom/`` (raises), ``stream/`` (chunks with pauses between them),
``echo/`` (POST: answers the body it read), ``file/`` (a ``FileResponse``), ``metrics``, an
``include()`` under ``api/`` and a ``re_path``. The middleware's options are the setting
``PYTHEUS_MIDDLEWARE``; ``/metrics`` exposes the registry named there.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import Any

import django
from django.conf import settings
from django.http import FileResponse, HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import include, path, re_path

from pytheus.exposition import PROMETHEUS_CONTENT_TYPE, generate_metrics

MIDDLEWARE = "pytheus.middleware.django.PytheusMiddlewareDjango"
STREAM_CHUNKS = 3
STREAM_CHUNK = b"x" * 100
STREAM_PAUSE = 0.1
FILE_CONTENT = b"f" * 5000


class Boom(RuntimeError):
    pass


def configure() -> None:
    """Configure Django once per process with this module as settings and URLconf."""
    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="tests-only",
            ALLOWED_HOSTS=["*"],
            ROOT_URLCONF=__name__,
            MIDDLEWARE=[MIDDLEWARE],
            INSTALLED_APPS=[],
            DATABASES={},
            USE_TZ=True,
            LOGGING_CONFIG=None,
        )
        django.setup()


def user(request: HttpRequest, id: int) -> HttpResponse:
    return HttpResponse(f"user {id}")


def item(request: HttpRequest, name: str) -> HttpResponse:
    return HttpResponse(f"item {name}")


def legacy(request: HttpRequest, year: str) -> HttpResponse:
    return HttpResponse(f"year {year}")


def boom(request: HttpRequest) -> HttpResponse:
    raise Boom("the app failed")


def chunks() -> Iterator[bytes]:
    for n in range(STREAM_CHUNKS):
        if n:
            time.sleep(STREAM_PAUSE)
        yield STREAM_CHUNK


def stream(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(chunks())


def echo(request: HttpRequest) -> HttpResponse:
    return HttpResponse(request.body)


def file(request: HttpRequest) -> FileResponse:
    return FileResponse(io.BytesIO(FILE_CONTENT), content_type="application/octet-stream")


def metrics(request: HttpRequest) -> HttpResponse:
    registry: Any = settings.PYTHEUS_MIDDLEWARE["registry"]
    return HttpResponse(generate_metrics(registry), content_type=PROMETHEUS_CONTENT_TYPE)


urlpatterns = [
    path("users/<int:id>/", user),
    path("boom/", boom),
    path("stream/", stream),
    path("echo/", echo),
    path("file/", file),
    path("metrics", metrics),
    path("api/", include([path("items/<slug:name>/", item)])),
    re_path(r"^legacy/(?P<year>[0-9]{4})/$", legacy),
]
