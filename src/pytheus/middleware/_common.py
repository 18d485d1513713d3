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
import re
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pytheus.exceptions import PytheusException
from pytheus.metrics.counter import Counter
from pytheus.metrics.gauge import Gauge
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

OVERFLOW_VALUE = "<overflow>"
"""The value of an extra label once it has reached its limit of distinct values."""

LABEL_VALUE_LIMIT = 100
"""Default limit of distinct values of each extra label (``labels=``), per process."""

LABEL_NAMES = ("method", "route", "status_code")

_Children = tuple[Histogram, Histogram, Histogram]


_seen_values: weakref.WeakKeyDictionary[Any, dict[str, set[str]]] = weakref.WeakKeyDictionary()
_seen_lock = threading.Lock()


class LabelGuard:
    """Keeps one extra label's distinct values under ``limit``; later new values are reported as
    :data:`OVERFLOW_VALUE` and counted in ``overflows``."""

    __slots__ = ("name", "read", "limit", "seen", "overflows", "lock")

    def __init__(
        self, name: str, read: Callable[[Any], object], limit: int, overflows: Counter
    ) -> None:
        self.name = name
        self.read = read
        self.limit = limit
        # shared by every middleware recording into the same series (Litestar makes one per
        # route): the limit is per label of a metric set, per process
        with _seen_lock:
            self.seen = _seen_values.setdefault(overflows._family, {}).setdefault(name, set())
        self.overflows = overflows.labels(label=name)
        self.lock = threading.Lock()

    def value(self, request: Any) -> str:
        value = str(self.read(request))
        if value in self.seen:
            return value
        with self.lock:
            if len(self.seen) < self.limit:
                self.seen.add(value)
                return value
        self.overflows.inc()
        return OVERFLOW_VALUE


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
    * ``skip``: a predicate on that path; requests for which it returns true are not recorded;
    * ``skip_patterns``: regular expressions (strings or compiled) of paths not recorded, each
      matched against the whole path (``r"/static/.*"``);
    * ``skip_methods``: methods not recorded (``["OPTIONS", "HEAD"]``);
    * ``record_unmatched``: False drops the requests no route matched instead of recording them
      under ``unmatched_route`` (default True);
    * ``group_status_codes``: True reports ``status_code`` as ``2xx``, ``3xx``, ``4xx``, ``5xx``;
    * ``labels``: extra labels, ``{"tenant": function}``, each value computed from the request
      (the framework's own: Starlette's ``scope``, WSGI's ``environ``, Django's
      ``HttpRequest``); a function that raises gives ``""``;
    * ``label_value_limit``: the most distinct values each extra label takes in a process
      (default 100); later new values are reported as ``<overflow>`` and counted in
      ``{prefix}_label_overflow_total{label="..."}``, so one client cannot blow up the number
      of series;
    * ``exemplars``: when OpenTelemetry's API is loaded and a span is active as the request
      arrives, its ``trace_id`` and ``span_id`` go with the duration observation as an exemplar
      (default True; nothing is imported, and nothing costs more than a dictionary lookup per
      request, without OpenTelemetry);
    * ``exemplar``: a function of the request returning the exemplar's labels (or None), used
      instead of OpenTelemetry's current span;
    * ``in_progress``: True adds the gauge ``{prefix}_requests_in_progress`` of requests being
      served, by ``method`` and ``route`` (the route found before the app runs). Its
      ``multiprocess_mode`` is ``livesum``: the sum over living processes, so a worker that
      dies with requests in flight does not leave them counted.

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
        "skip_patterns",
        "skip_methods",
        "record_unmatched",
        "group_status_codes",
        "guards",
        "exemplars",
        "exemplar",
        "in_progress",
        "_children",
        "_in_flight",
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
        skip_patterns: Iterable[str | re.Pattern[str]] = (),
        skip_methods: Iterable[str] = (),
        record_unmatched: bool = True,
        group_status_codes: bool = False,
        labels: Mapping[str, Callable[[Any], object]] | None = None,
        label_value_limit: int = LABEL_VALUE_LIMIT,
        exemplars: bool = True,
        exemplar: Callable[[Any], Mapping[str, str] | None] | None = None,
        in_progress: bool = False,
    ) -> None:
        if not isinstance(unmatched_route, str) or not unmatched_route:
            raise ValueError(f"unmatched_route must be a non-empty string, not {unmatched_route!r}")
        for option, value in (("skip_paths", skip_paths), ("skip_patterns", skip_patterns),
                              ("skip_methods", skip_methods)):  # fmt: skip
            if isinstance(value, str):
                raise TypeError(f"{option} is a collection, not one string")
        extra = tuple(labels or ())
        for name in extra:
            if name in LABEL_NAMES or not callable((labels or {})[name]):
                raise ValueError(
                    f"labels: {name!r} must map a label name other than {list(LABEL_NAMES)} to "
                    "a function of the request"
                )
        if not isinstance(label_value_limit, int) or label_value_limit < 1:
            raise ValueError(f"label_value_limit must be an int >= 1, not {label_value_limit!r}")
        label_names = (*LABEL_NAMES, *extra)
        self.duration = Histogram(
            f"{prefix}_request_duration_seconds",
            "Time from receiving an HTTP request to sending the last byte of its response.",
            required_labels=label_names,
            registry=registry,
            buckets=duration_buckets,
            unit="seconds",
        )
        self.request_size = Histogram(
            f"{prefix}_request_size_bytes",
            "Size of HTTP request bodies.",
            required_labels=label_names,
            registry=registry,
            buckets=size_buckets,
            unit="bytes",
        )
        self.response_size = Histogram(
            f"{prefix}_response_size_bytes",
            "Size of HTTP response bodies.",
            required_labels=label_names,
            registry=registry,
            buckets=size_buckets,
            unit="bytes",
        )
        self.unmatched_route = unmatched_route
        self.skip_paths = frozenset(skip_paths)
        self.skip = skip
        self.skip_patterns = tuple(re.compile(p) for p in skip_patterns)
        self.skip_methods = frozenset(m.upper() for m in skip_methods)
        self.record_unmatched = record_unmatched
        self.group_status_codes = group_status_codes
        self.guards: tuple[LabelGuard, ...] = ()
        if extra:
            overflows = Counter(
                f"{prefix}_label_overflow_total",
                "HTTP requests whose extra label value was replaced by <overflow>: the label "
                "had reached its limit of distinct values.",
                required_labels=["label"],
                registry=registry,
            )
            assert labels is not None
            self.guards = tuple(
                LabelGuard(name, labels[name], label_value_limit, overflows) for name in extra
            )
        self.exemplars = exemplars
        self.exemplar = exemplar
        self.in_progress: Gauge | None = None
        if in_progress:
            self.in_progress = Gauge(
                f"{prefix}_requests_in_progress",
                "HTTP requests being served.",
                required_labels=["method", "route"],
                registry=registry,
                multiprocess_mode="livesum",
            )
        self._in_flight: dict[tuple[str, str | None], Gauge] = {}
        # (method, route, status as the server gave it, extra values) -> labelled histograms
        self._children: dict[tuple[str, str | None, object, tuple[str, ...]], _Children] = {}

    def skips(self, path: str, method: str = "") -> bool:
        """Whether a request for ``path`` goes unrecorded; a trailing slash is ignored, so an
        app mounted at a skipped path (``app.mount("/metrics", make_asgi_app())``, reached as
        ``/metrics/``) is skipped too."""
        skip_paths = self.skip_paths
        if path in skip_paths or (len(path) > 1 and path.endswith("/") and path[:-1] in skip_paths):
            return True
        if method in self.skip_methods:
            return True
        if any(pattern.fullmatch(path) for pattern in self.skip_patterns):
            return True
        skip = self.skip
        return skip is not None and bool(skip(path))

    def begin(self, method: str, route: str | None) -> Gauge | None:
        """Count a request in progress (with ``in_progress``); the caller ``dec()``s the gauge
        it returns when the request ends. Never raises."""
        if self.in_progress is None or (route is None and not self.record_unmatched):
            return None
        try:
            gauge = self._in_flight.get((method, route))
            if gauge is None:
                known = method in STANDARD_METHODS
                gauge = self.in_progress.labels(
                    method if known else OTHER_METHOD,
                    self.unmatched_route if route is None else route,
                )
                if known:
                    self._in_flight[(method, route)] = gauge
            gauge.inc()
            return gauge
        except Exception:
            logger.exception("pytheus could not count an HTTP request in progress")
            return None

    def exemplar_of(self, request: Any) -> Mapping[str, str] | None:
        """The exemplar labels of a request arriving now: the ``exemplar`` function's, or the
        active OpenTelemetry span's ids; None when there is none (called at the request's
        start, while the server's span is the current one)."""
        if self.exemplar is not None:
            try:
                labels = self.exemplar(request)
            except Exception:
                logger.exception("pytheus: the exemplar function failed")
                return None
            if labels is not None and not isinstance(labels, Mapping):
                logger.warning("pytheus: the exemplar function returned %r, not a mapping", labels)
                return None
            return labels
        if not self.exemplars:
            return None
        trace = sys.modules.get("opentelemetry.trace")
        if trace is None:  # OpenTelemetry not loaded: nothing to look up
            return None
        try:
            context = trace.get_current_span().get_span_context()
            if not context.is_valid:
                return None
            return {
                "trace_id": format(context.trace_id, "032x"),
                "span_id": format(context.span_id, "016x"),
            }
        except Exception:
            logger.exception("pytheus: could not read the current OpenTelemetry span")
            return None

    def extra_values(self, request: Any) -> tuple[str, ...]:
        """The extra labels' values for ``request`` (empty without ``labels=``)."""
        values = []
        for guard in self.guards:
            try:
                values.append(guard.value(request))
            except Exception:
                logger.exception("pytheus: the function of label %r failed", guard.name)
                values.append("")
        return tuple(values)

    def observe(
        self,
        method: str,
        route: str | None,
        status: int | str,
        duration: float,
        request_size: float,
        response_size: float,
        extra: tuple[str, ...] = (),
        exemplar: Mapping[str, str] | None = None,
    ) -> None:
        """Record one request; ``route`` None means no route matched.

        ``status`` is the status code as an ``int`` or a string starting with it (``"200 OK"``
        is read as ``200``, as WSGI servers give it); ``extra`` the extra labels' values.
        """
        if route is None and not self.record_unmatched:
            return
        children = self._children.get((method, route, status, extra))
        if children is None:
            children = self._bind(method, route, status, extra)
        if exemplar is None:
            children[0].observe(duration)
        else:
            try:
                children[0].observe(duration, exemplar)
            except (PytheusException, AttributeError, TypeError):  # refused before recording
                logger.warning("pytheus: exemplar %r refused; recorded without it", exemplar)
                children[0].observe(duration)
        children[1].observe(request_size)
        children[2].observe(response_size)

    def _bind(
        self, method: str, route: str | None, status: int | str, extra: tuple[str, ...]
    ) -> _Children:
        """The labelled histograms of a new combination (slow path: once per combination)."""
        known = method in STANDARD_METHODS
        code = str(status) if isinstance(status, int) else status[:3]
        labels = {
            "method": method if known else OTHER_METHOD,
            "route": self.unmatched_route if route is None else route,
            "status_code": f"{code[:1]}xx" if self.group_status_codes else code,
        }
        for guard, value in zip(self.guards, extra):
            labels[guard.name] = value
        children: _Children = (
            self.duration.labels(labels),
            self.request_size.labels(labels),
            self.response_size.labels(labels),
        )
        if known:  # any other method would let clients grow this cache without bound
            self._children[(method, route, status, extra)] = children
        return children

    def record_safely(
        self,
        method: str,
        route: str | None,
        status: int | str,
        duration: float,
        request_size: float,
        response_size: float,
        request: Any = None,
        exemplar: Mapping[str, str] | None = None,
    ) -> None:
        """:meth:`observe`, logging instead of raising: metrics never break a request.

        ``request`` is what the ``labels`` functions are given; ``exemplar`` what
        :meth:`exemplar_of` gave when the request arrived.
        """
        try:
            extra = self.extra_values(request) if self.guards else ()
            self.observe(
                method, route, status, duration, request_size, response_size, extra, exemplar
            )
        except Exception:
            logger.exception("pytheus could not record an HTTP request")


def content_length(value: str | bytes | None) -> int | None:
    """A ``Content-Length`` value as an int; None when absent or not a valid length."""
    if value and value.isascii() and value.isdigit():
        return int(value)
    return None
