"""What the ASGI, WSGI and Django middlewares share: the metric set, its options, its hot path.

Every middleware records three histograms per request, labelled ``method``, ``route`` and
``status_code``:

* ``http_request_duration_seconds``: from the request reaching the middleware to the last byte
  of the response handed to the server (or to the exception that ended the request);
* ``http_request_size_bytes``: the request body (its ``Content-Length``, or the bytes read);
* ``http_response_size_bytes``: the response body bytes sent.

The sizes are histograms rather than summaries: a pytheus summary exposes only ``_count`` and
``_sum``, so it can give the mean size and nothing else, whereas a histogram also tells how
sizes are spread (``histogram_quantile()`` over the buckets, "how many responses over 1 MiB"),
and it aggregates across processes and instances. One histogram observation costs a bucket
search more than a summary one: a fraction of a microsecond.

``route`` is the framework's route *template* (``/users/{id}``, ``/users/<int:id>``), never the
raw path, and ``method`` is one of the methods of RFC 9110 and RFC 5789 or ``OTHER``: the number
of series stays bounded whatever clients send.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

from pytheus.metrics.histogram import Histogram
from pytheus.registry import REGISTRY, Registry

logger = logging.getLogger("pytheus.middleware")

DURATION_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
"""Default buckets of the duration histogram, in seconds: 5 ms to 10 s."""

SIZE_BUCKETS: tuple[float, ...] = tuple(float(4**n) for n in range(3, 13))
"""Default buckets of the size histograms, in bytes: powers of 4 from 64 B to 16 MiB."""

UNMATCHED_ROUTE = "<unmatched>"
"""The default ``route`` of a request no route matched (a 404, a redirect to add a slash...)."""

OTHER_METHOD = "OTHER"
"""The ``method`` label of a request whose method is not a standard one."""

STANDARD_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)

DEFAULT_SKIP_PATHS: tuple[str, ...] = ("/metrics",)
"""Paths not recorded unless told otherwise: the scrape endpoint's own requests."""

LABEL_NAMES = ("method", "route", "status_code")

_Children = tuple[Histogram, Histogram, Histogram]


class HTTPMetrics:
    """The three request histograms of one middleware, and which requests it records.

    The histograms are created (and registered in ``registry``) once, here. Two middlewares with
    the same options on the same registry share their series, as any two metrics with the same
    definition do in pytheus; a different definition under the same name (other buckets, say)
    raises :class:`~pytheus.exceptions.DuplicateMetricException`.

    Options, which every middleware accepts as keyword arguments:

    * ``registry``: where the histograms are registered (default ``REGISTRY``);
    * ``prefix``: the first part of the names, ``{prefix}_request_duration_seconds``,
      ``{prefix}_request_size_bytes``, ``{prefix}_response_size_bytes`` (default ``http``);
    * ``duration_buckets``, ``size_buckets``: the histograms' buckets;
    * ``unmatched_route``: the ``route`` of requests no route matched (default ``<unmatched>``);
    * ``skip_paths``: paths never recorded, compared with the path inside the application
      (without the ``root_path`` or ``SCRIPT_NAME``), a trailing slash ignored; default
      ``("/metrics",)``;
    * ``skip``: a predicate on that path; requests for which it returns true are not recorded.

    Example::

        from pytheus.middleware import HTTPMetrics
        from pytheus.registry import CollectorRegistry

        metrics = HTTPMetrics(registry=CollectorRegistry(), prefix="api")
        metrics.observe("GET", "/users/{id}", 200, 0.012, 0, 512)
    """

    __slots__ = (
        "duration",
        "request_size",
        "response_size",
        "unmatched_route",
        "skip_paths",
        "skip",
        "_children",
    )

    def __init__(
        self,
        *,
        registry: Registry | None = REGISTRY,
        prefix: str = "http",
        duration_buckets: Sequence[float] = DURATION_BUCKETS,
        size_buckets: Sequence[float] = SIZE_BUCKETS,
        unmatched_route: str = UNMATCHED_ROUTE,
        skip_paths: Iterable[str] = DEFAULT_SKIP_PATHS,
        skip: Callable[[str], bool] | None = None,
    ) -> None:
        if not isinstance(unmatched_route, str) or not unmatched_route:
            raise ValueError(f"unmatched_route must be a non-empty string, not {unmatched_route!r}")
        if isinstance(skip_paths, str):
            raise TypeError("skip_paths is a collection of paths, not one string")
        self.duration = Histogram(
            f"{prefix}_request_duration_seconds",
            "Time from receiving an HTTP request to sending the last byte of its response.",
            required_labels=LABEL_NAMES,
            registry=registry,
            buckets=duration_buckets,
            unit="seconds",
        )
        self.request_size = Histogram(
            f"{prefix}_request_size_bytes",
            "Size of HTTP request bodies.",
            required_labels=LABEL_NAMES,
            registry=registry,
            buckets=size_buckets,
            unit="bytes",
        )
        self.response_size = Histogram(
            f"{prefix}_response_size_bytes",
            "Size of HTTP response bodies.",
            required_labels=LABEL_NAMES,
            registry=registry,
            buckets=size_buckets,
            unit="bytes",
        )
        self.unmatched_route = unmatched_route
        self.skip_paths = frozenset(skip_paths)
        self.skip = skip
        # (method, route, status as the server gave it) -> the three labelled histograms
        self._children: dict[tuple[str, str | None, object], _Children] = {}

    def skips(self, path: str) -> bool:
        """Whether a request for ``path`` goes unrecorded; a trailing slash is ignored, so an
        app mounted at a skipped path (``app.mount("/metrics", make_asgi_app())``, reached as
        ``/metrics/``) is skipped too."""
        skip_paths = self.skip_paths
        if path in skip_paths or (len(path) > 1 and path.endswith("/") and path[:-1] in skip_paths):
            return True
        skip = self.skip
        return skip is not None and bool(skip(path))

    def observe(
        self,
        method: str,
        route: str | None,
        status: int | str,
        duration: float,
        request_size: float,
        response_size: float,
    ) -> None:
        """Record one request; ``route`` None means no route matched.

        ``status`` is the status code as an ``int`` or a string starting with it (``"200 OK"``
        is read as ``200``, as WSGI servers give it).
        """
        children = self._children.get((method, route, status))
        if children is None:
            children = self._bind(method, route, status)
        children[0].observe(duration)
        children[1].observe(request_size)
        children[2].observe(response_size)

    def _bind(self, method: str, route: str | None, status: int | str) -> _Children:
        """The labelled histograms of a new combination (slow path: once per combination)."""
        known = method in STANDARD_METHODS
        labels = {
            "method": method if known else OTHER_METHOD,
            "route": self.unmatched_route if route is None else route,
            "status_code": str(status) if isinstance(status, int) else status[:3],
        }
        children: _Children = (
            self.duration.labels(labels),
            self.request_size.labels(labels),
            self.response_size.labels(labels),
        )
        if known:  # any other method would let clients grow this cache without bound
            self._children[(method, route, status)] = children
        return children

    def record_safely(
        self,
        method: str,
        route: str | None,
        status: int | str,
        duration: float,
        request_size: float,
        response_size: float,
    ) -> None:
        """:meth:`observe`, logging instead of raising: metrics never break a request."""
        try:
            self.observe(method, route, status, duration, request_size, response_size)
        except Exception:
            logger.exception("pytheus could not record an HTTP request")


def content_length(value: str | bytes | None) -> int | None:
    """A ``Content-Length`` value as an int; None when absent or not a valid length."""
    if value and value.isascii() and value.isdigit():
        return int(value)
    return None
