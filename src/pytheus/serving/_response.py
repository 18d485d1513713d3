"""One scrape request answered (status, headers, body), the same way by every server here."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qs

from pytheus.exceptions import BackendUnavailableException
from pytheus.exposition.negotiation import render_for_request
from pytheus.registry import Registry

logger = logging.getLogger("pytheus.serving")

UNAVAILABLE_BODY = b"metrics backend unavailable\n"


@dataclass
class Response:
    status: HTTPStatus
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def status_line(self) -> str:
        """``"200 OK"``, as WSGI wants it."""
        return f"{self.status.value} {self.status.phrase}"


def plain_response(status: HTTPStatus, body: bytes, *extra: tuple[str, str]) -> Response:
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    return Response(status, [*headers, *extra], body)


def metrics_response(
    registry: Registry,
    method: str,
    query_string: str,
    accept: str | None,
    accept_encoding: str | None,
) -> Response:
    """The answer to a scrape: the metrics as negotiated, or 503 when the backend is down.

    ``name[]`` query parameters select families, as in ``/metrics?name[]=requests_total``.
    The answer to ``HEAD`` has the headers of ``GET`` and no body.
    """
    response = _answer(registry, method, query_string, accept, accept_encoding)
    if method == "HEAD":
        response.body = b""
    return response


def _answer(
    registry: Registry,
    method: str,
    query_string: str,
    accept: str | None,
    accept_encoding: str | None,
) -> Response:
    if method not in ("GET", "HEAD"):
        return plain_response(
            HTTPStatus.METHOD_NOT_ALLOWED, b"method not allowed\n", ("Allow", "GET, HEAD")
        )
    names = parse_qs(query_string).get("name[]")
    try:
        body, content_type, encoding = render_for_request(registry, accept, accept_encoding, names)
    except BackendUnavailableException as error:
        logger.warning("scrape answered 503: %s", error)
        return plain_response(HTTPStatus.SERVICE_UNAVAILABLE, UNAVAILABLE_BODY)
    headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Vary", "Accept, Accept-Encoding"),
    ]
    if encoding is not None:
        headers.append(("Content-Encoding", encoding))
    return Response(HTTPStatus.OK, headers, body)
