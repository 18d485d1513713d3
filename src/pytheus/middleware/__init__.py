"""HTTP server middleware: request duration and sizes per method, route and status code.

* :class:`PytheusMiddlewareASGI`: Starlette and FastAPI (``app.add_middleware(...)``);
* :class:`PytheusMiddlewareWSGI`: Flask (``app.wsgi_app = PytheusMiddlewareWSGI(app.wsgi_app)``)
  and any WSGI app;
* ``pytheus.middleware.django.PytheusMiddlewareDjango``: Django (an entry of ``MIDDLEWARE``);
* ``pytheus.middleware.aiohttp.pytheus_middleware()``: aiohttp
  (``web.Application(middlewares=[pytheus_middleware()])``);
* Litestar: :class:`PytheusMiddlewareASGI` around the app, or in ``middleware=[DefineMiddleware(
  PytheusMiddlewareASGI)]`` (then requests no route matched are not seen).

Each records ``http_request_duration_seconds``, ``http_request_size_bytes`` and
``http_response_size_bytes``, three histograms labelled ``method``, ``route`` (the route
template, never the raw path) and ``status_code``; :class:`HTTPMetrics` describes them and the
options every middleware takes. Importing this package imports no web framework.

Example::

    from fastapi import FastAPI
    from pytheus.middleware import PytheusMiddlewareASGI

    app = FastAPI()
    app.add_middleware(PytheusMiddlewareASGI)

    @app.get("/users/{id}")
    def user(id: int) -> dict[str, int]:
        return {"id": id}   # recorded with route="/users/{id}"
"""

from pytheus.middleware._common import (
    DURATION_BUCKETS,
    SIZE_BUCKETS,
    UNMATCHED_ROUTE,
    HTTPMetrics,
)
from pytheus.middleware.asgi import PytheusMiddlewareASGI
from pytheus.middleware.wsgi import ROUTE_ENVIRON_KEY, PytheusMiddlewareWSGI

__all__ = [
    "DURATION_BUCKETS",
    "ROUTE_ENVIRON_KEY",
    "SIZE_BUCKETS",
    "UNMATCHED_ROUTE",
    "HTTPMetrics",
    "PytheusMiddlewareASGI",
    "PytheusMiddlewareWSGI",
]
