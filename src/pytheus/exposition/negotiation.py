"""Content negotiation: which exposition format and encoding a scrape request gets.

The format is chosen from the ``Accept`` header: the supported format with the highest quality
(``q``) wins, a more specific media range beating a wildcard at the same quality. Without an
``Accept`` header, or when it accepts nothing supported, the Prometheus text format (0.0.4) is
served, as every Prometheus client library does. Prometheus's own header asks for OpenMetrics::

    application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,
    text/plain;version=0.0.4;q=0.5,*/*;q=0.1

Prometheus asks for the protobuf format first when its native histograms are on; it is served
for ``application/vnd.google.protobuf`` with ``proto=io.prometheus.client.MetricFamily`` and
``encoding=delimited``, both required as client_golang requires them.

Names that are not classic (only with ``pytheus.naming.set_validation_scheme("utf8")``) are
written as the ``escaping`` parameter of the chosen media range says
(:mod:`pytheus.exposition.escaping`): ``allow-utf-8`` quotes them, ``underscores`` (the
default, also for an unknown value), ``dots`` and ``values`` escape them; the ``Content-Type``
then ends with ``; escaping=<scheme>`` unless the scheme is ``underscores``. Prometheus 3
asks ``escaping=allow-utf-8``::

    application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,
    application/openmetrics-text;version=0.0.1;q=0.4,
    text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1

With the default, classic validation every name pytheus defines is classic: ``escaping`` is
ignored (names a custom collector makes up are escaped with underscores) and the response is
the same as without it. ``text/plain;version=1.0.0`` is the text format that may quote names;
it is answered as such (``Content-Type: text/plain; version=1.0.0; charset=utf-8``).

OpenMetrics 2.0.0 (:mod:`pytheus.exposition.openmetrics2`, a draft spec) is opt-in: it is served
only for a media range naming ``version=2.0.0``. A range without a version matches 1.0.0 and
2.0.0 equally and 1.0.0, listed first, wins, as the spec wants the oldest version by default.
At equal quality a range naming 2.0.0 beats one naming no version (it is more specific), and
of two ranges naming versions the one listed first wins. For instance::

    application/openmetrics-text;version=2.0.0;escaping=allow-utf-8,
    application/openmetrics-text;version=1.0.0;q=0.9,*/*;q=0.1

The body is gzip-compressed when ``Accept-Encoding`` allows gzip. A new format is one more entry
in :data:`FORMATS`.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from pytheus.collection import collect_registry
from pytheus.desc import exposed_names
from pytheus.exposition import openmetrics, openmetrics2, protobuf, text
from pytheus.exposition.escaping import DEFAULT_SCHEME, SCHEMES
from pytheus.naming import utf8_names
from pytheus.registry import Registry
from pytheus.samples import MetricFamily


@dataclass(frozen=True)
class Format:
    """An exposition format: the media type and versions it answers, and how to render it."""

    media_type: str
    versions: frozenset[str]
    content_type: str
    render: Callable[[Sequence[MetricFamily], str], Iterable[bytes]]
    """Renders families with an escaping scheme (:mod:`pytheus.exposition.escaping`), in chunks
    that are joined or compressed one by one."""
    params: tuple[tuple[str, str], ...] = ()
    """Parameters a media range must have to name this format (values compared lower-cased)."""
    version_content_types: tuple[tuple[str, str], ...] = ()
    """The content type answering a request for one of ``versions``, when not ``content_type``."""

    def content_type_for(self, version: str | None) -> str:
        return dict(self.version_content_types).get(version or "", self.content_type)


class Negotiated(NamedTuple):
    """What a request gets: the format, the escaping scheme for names, the content type."""

    format: Format
    escaping: str
    content_type: str


def _render_text(families: Sequence[MetricFamily], escaping: str) -> Iterator[bytes]:
    return _encoded(text.render_chunks(families, escaping))


def _render_openmetrics(families: Sequence[MetricFamily], escaping: str) -> Iterator[bytes]:
    return _encoded(openmetrics.render_chunks(families, escaping))


def _render_openmetrics2(families: Sequence[MetricFamily], escaping: str) -> Iterator[bytes]:
    return _encoded(openmetrics2.render_chunks(families, escaping))


def _render_protobuf(families: Sequence[MetricFamily], escaping: str) -> list[bytes]:
    return [protobuf.render(families, escaping)]


def _encoded(chunks: Iterable[str]) -> Iterator[bytes]:
    for chunk in chunks:
        yield chunk.encode("utf-8")


TEXT_FORMAT = Format(
    "text/plain",
    frozenset({"0.0.4", "1.0.0"}),
    text.CONTENT_TYPE,
    _render_text,
    version_content_types=(("1.0.0", text.CONTENT_TYPE_1_0_0),),
)
OPENMETRICS_FORMAT = Format(
    "application/openmetrics-text",
    frozenset({"1.0.0", "0.0.1"}),
    openmetrics.CONTENT_TYPE,
    _render_openmetrics,
)
OPENMETRICS_2_FORMAT = Format(
    "application/openmetrics-text",
    frozenset({"2.0.0"}),
    openmetrics2.CONTENT_TYPE,
    _render_openmetrics2,
)

PROTOBUF_FORMAT = Format(
    "application/vnd.google.protobuf",
    frozenset(),
    protobuf.CONTENT_TYPE,
    _render_protobuf,
    (("proto", "io.prometheus.client.metricfamily"), ("encoding", "delimited")),
)

FORMATS: tuple[Format, ...] = (
    TEXT_FORMAT,
    OPENMETRICS_FORMAT,
    OPENMETRICS_2_FORMAT,
    PROTOBUF_FORMAT,
)
"""The formats served; the first is the default, and an earlier one wins ties (so OpenMetrics
without a version, or ``application/*``, gets 1.0.0, never 2.0.0)."""


def render_for_request(
    registry: Registry,
    accept: str | None,
    accept_encoding: str | None,
    name_filter: Collection[str] | None = None,
) -> tuple[bytes, str, str | None]:
    """Collect ``registry`` and render it as the request headers ask.

    Returns ``(body, content type, content encoding or None)``. ``name_filter``, when given,
    keeps the families named in it: a family matches by its name or by any sample name it
    exposes (``requests_total``, ``latency_seconds_bucket``). Raises
    :class:`~pytheus.exceptions.BackendUnavailableException` when the backend cannot be read.

    Example::

        body, content_type, encoding = render_for_request(
            REGISTRY, "application/openmetrics-text; version=1.0.0", "gzip"
        )
        # content_type == OPENMETRICS_CONTENT_TYPE, encoding == "gzip"
    """
    chosen, escaping, content_type = negotiate(accept)
    families = collect_registry(registry, live=True)
    if name_filter is not None:
        wanted = set(name_filter)
        families = [f for f in families if not wanted.isdisjoint(exposed_names(f.name, f.type))]
    chunks = chosen.render(families, escaping)
    if _accepts_gzip(accept_encoding):
        return _gzip(chunks), content_type, "gzip"
    return _joined(chunks), content_type, None


def _joined(chunks: Iterable[bytes]) -> bytes:
    """The chunks as one body, holding little more than the body at any moment.

    ``b"".join`` would hold every chunk and the body (twice the body); a ``BytesIO`` grows one
    buffer, and ``getvalue`` hands that buffer over without copying it.
    """
    buffer = io.BytesIO()
    for chunk in chunks:
        buffer.write(chunk)
    return buffer.getvalue()


def _gzip(chunks: Iterable[bytes]) -> bytes:
    """The chunks compressed into one gzip member, one chunk at a time."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 16 + 15: a gzip header
    parts = [compressor.compress(chunk) for chunk in chunks]
    parts.append(compressor.flush())
    return b"".join(parts)


def negotiate(accept: str | None) -> Negotiated:
    """The format, name escaping scheme and content type answering ``accept``.

    Example::

        negotiate("text/plain;version=0.0.4").content_type == PROMETHEUS_CONTENT_TYPE
    """
    chosen, params = _choose_format(accept)
    content_type = chosen.content_type_for(params.get("version"))
    escaping = DEFAULT_SCHEME
    if utf8_names():
        requested = params.get("escaping", "").lower()
        if requested in SCHEMES:
            escaping = requested
        if escaping != DEFAULT_SCHEME:
            content_type = f"{content_type}; escaping={escaping}"
    return Negotiated(chosen, escaping, content_type)


def _parse_header(value: str) -> list[tuple[str, dict[str, str]]]:
    """The items of a comma-separated header, each with its lower-cased ``;`` parameters."""
    items: list[tuple[str, dict[str, str]]] = []
    for item in value.split(","):
        token, *raw_params = item.split(";")
        token = token.strip().lower()
        if not token:
            continue
        params: dict[str, str] = {}
        for param in raw_params:
            key, _, param_value = param.partition("=")
            params[key.strip().lower()] = param_value.strip().strip('"')
        items.append((token, params))
    return items


def _quality(params: dict[str, str]) -> float:
    try:
        q = float(params.get("q", "1"))
    except ValueError:
        return 0.0
    return q if 0.0 <= q <= 1.0 else 0.0


def _choose_format(accept: str | None) -> tuple[Format, dict[str, str]]:
    """The format to serve, and the parameters of the media range that chose it."""
    if not accept:
        return FORMATS[0], {}
    ranges = _parse_header(accept)
    chosen, best = FORMATS[0], (0.0, 0, 0)
    for candidate in FORMATS:
        rank = _rank(candidate, ranges)
        if rank[0] > 0 and rank > best:  # ties keep the earlier format
            chosen, best = candidate, rank
    if best[1] == 0:
        return chosen, {}
    return chosen, ranges[-best[2]][1]


def _rank(candidate: Format, ranges: list[tuple[str, dict[str, str]]]) -> tuple[float, int, int]:
    """(quality, specificity, -position) of the most specific range matching ``candidate``.

    As RFC 9110 says, the most specific matching media range gives the quality.
    """
    rank = (0.0, 0, 0)
    for position, (media_range, params) in enumerate(ranges):
        specificity = _specificity(candidate, media_range, params)
        if specificity > rank[1]:
            rank = (_quality(params), specificity, -position)
    return rank


def _specificity(candidate: Format, media_range: str, params: dict[str, str]) -> int:
    """How specifically ``media_range`` names ``candidate``: 0 when it does not match."""
    if media_range == "*/*":
        return 1
    kind, _, subtype = media_range.partition("/")
    if subtype == "*":
        return 2 if candidate.media_type.startswith(kind + "/") else 0
    if media_range != candidate.media_type:
        return 0
    for key, wanted in candidate.params:
        if params.get(key, "").lower() != wanted:
            return 0
    version = params.get("version")
    if version is None:
        return 3
    return 4 if version in candidate.versions else 0


def _accepts_gzip(accept_encoding: str | None) -> bool:
    if not accept_encoding:
        return False
    codings = dict(_parse_header(accept_encoding))
    for coding in ("gzip", "x-gzip", "*"):
        if coding in codings:
            return _quality(codings[coding]) > 0
    return False
