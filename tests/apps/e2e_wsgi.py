"""A Flask app for the end-to-end scrape tests, served by gunicorn (``tests.apps.e2e_wsgi:app``).

Routes: ``/items/<int:item_id>`` sleeps :data:`ITEM_SLEEP` seconds, so its duration falls in a
known bucket of ``http_request_duration_seconds``, and observes :func:`item_size` of its id in
the summary ``e2e_item_size_bytes`` (quantiles 0.5, 0.9 and 0.99 across gunicorn's workers);
``/metrics`` is :func:`~pytheus.exposition.make_wsgi_app`, mounted with Werkzeug's dispatcher.
Requests are recorded by :class:`~pytheus.middleware.PytheusMiddlewareWSGI` (``/metrics`` itself
is skipped).

Prometheus 2.42 always asks for OpenMetrics first and has no per-job setting to change that, so
a scrape of ``/metrics?e2e_format=text`` is served with its ``Accept`` header removed: the text
format (Prometheus 3 picks a job's format with ``scrape_protocols`` and needs no such flag).
Every scrape answered is counted in ``e2e_metrics_responses_total``, labelled with the scrape
job it names (``?e2e_job=<job>``; ``none`` without), what was requested (``negotiated`` or
``text``) and the ``Content-Type`` served, so the test can tell from Prometheus's own data which
format each job received: several jobs scrape one app.

With ``PYTHEUS_MULTIPROC_DIR`` set, gunicorn's workers share the file backend.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from pytheus.exposition import make_wsgi_app
from pytheus.metrics import Counter, Summary
from pytheus.middleware import PytheusMiddlewareWSGI

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

ITEM_SLEEP = 0.03
"""Seconds each item request sleeps: its duration falls in the (0.025, 0.05] bucket."""
ROUTE = "/items/<int:item_id>"
FORCE_TEXT_PARAM = "e2e_format=text"
JOB_PARAM = "e2e_job"

METRICS_RESPONSES = Counter(
    "e2e_metrics_responses_total",
    "Scrapes answered, by the job named in the query, the format requested and the Content-Type.",
    required_labels=["scrape_job", "requested", "content_type"],
)

ITEM_SIZES = Summary(
    "e2e_item_size_bytes", "Sizes of the items served.", quantiles=[0.5, 0.9, 0.99]
)

app = Flask(__name__)


def item_size(item_id: int) -> float:
    """The size item ``item_id`` is recorded with: known to the test for every request."""
    return 1.0 + 10.0 * item_id


@app.get(ROUTE)
def item(item_id: int) -> str:
    """Sleep a known time, so the request's duration is known."""
    time.sleep(ITEM_SLEEP)
    ITEM_SIZES.observe(item_size(item_id))
    return f"item {item_id}"


_serve_metrics = make_wsgi_app()


def metrics(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The metrics, in the text format when asked with ``?e2e_format=text``; counted."""
    query = environ.get("QUERY_STRING", "")
    forced = FORCE_TEXT_PARAM in query.split("&")
    if forced:
        environ = {k: v for k, v in environ.items() if k != "HTTP_ACCEPT"}
    served: list[str] = []

    def recording_start_response(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
        served.extend(v for k, v in headers if k.lower() == "content-type")
        return start_response(status, headers, *args)

    body = _serve_metrics(environ, recording_start_response)
    METRICS_RESPONSES.labels(
        scrape_job=parse_qs(query).get(JOB_PARAM, ["none"])[0],
        requested="text" if forced else "negotiated",
        content_type=served[0] if served else "none",
    ).inc()
    return body


app.wsgi_app = PytheusMiddlewareWSGI(app.wsgi_app)  # type: ignore[method-assign]
app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/metrics": metrics})  # type: ignore[method-assign]
