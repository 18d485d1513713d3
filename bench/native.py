"""Native histograms against classic ones, both in pytheus: ``--suite native`` of ``bench/run.py``.

- ``observe()``: ``Histogram(native=True)`` (native-only: its single classic bucket is ``+Inf``)
  against a classic ``Histogram`` with the default buckets, on the in-memory backend, observing
  the same values as the core suite's ``Histogram.observe()`` in the same run.
- scrapes: 8 living processes (forked by the worker that scrapes, as in ``bench/backends.py``)
  each observe 20 values in each of 1,000 series of a histogram on the shared-file backend; the
  worker then scrapes with ``pytheus.exposition.render_for_request``, asking for the protobuf
  format (what Prometheus asks for when its native histograms are on) or the text format. The
  same with a classic histogram gives the other column.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.backends import NOTES, BackendWorkload, file_worker
from bench.harness import Runner
from bench.workloads import (
    HOT_PATH_OPS,
    QUICK_OPS,
    _pytheus_registry,
    observations,
    pytheus_observe,
)
from pytheus.exposition import protobuf, text
from pytheus.metrics import Histogram

WRITERS = 8
SERIES = 1_000
VALUES = 20
"""Observations per series and writer: spread from 0.5 ms to about an hour."""

NATIVE = "native"
CLASSIC = "classic"


# --- observe() on the memory backend --------------------------------------------------------------


@contextmanager
def native_observe(ops: int) -> Iterator[Runner]:
    """The core suite's ``Histogram.observe()`` loop (``pytheus_observe``), on a native one."""
    histogram = Histogram(
        "bench_latency_seconds", "Latency.", registry=_pytheus_registry(), native=True
    )
    values = observations(ops)

    def run() -> None:
        for value in values:
            histogram.observe(value)

    yield run


# --- scrapes of 1,000 series written by 8 processes on the shared-file backend --------------------


def _spec(native: bool, accept: str) -> dict[str, Any]:
    return {
        "role": "scrape",
        "counters": 0,
        "histograms": SERIES,
        "values": VALUES,
        "living": WRITERS,
        "dead": 0,
        "native": native,
        "accept": accept,
    }


@contextmanager
def _scrape(native: bool, accept: str, label: str, scrapes: int) -> Iterator[Runner]:
    with file_worker(_spec(native, accept)) as started:
        kind = NATIVE if native else CLASSIC
        NOTES.append(f"{label}, {kind}: one scrape is {started.setup['bytes']:,} bytes")
        yield started.runner(scrapes)


@contextmanager
def native_protobuf_scrape(scrapes: int) -> Iterator[Runner]:
    with _scrape(True, protobuf.CONTENT_TYPE, "protobuf", scrapes) as run:
        yield run


@contextmanager
def classic_protobuf_scrape(scrapes: int) -> Iterator[Runner]:
    with _scrape(False, protobuf.CONTENT_TYPE, "protobuf", scrapes) as run:
        yield run


@contextmanager
def native_text_scrape(scrapes: int) -> Iterator[Runner]:
    with _scrape(True, text.CONTENT_TYPE, "text", scrapes) as run:
        yield run


@contextmanager
def classic_text_scrape(scrapes: int) -> Iterator[Runner]:
    with _scrape(False, text.CONTENT_TYPE, "text", scrapes) as run:
        yield run


NATIVE_WORKLOADS: list[BackendWorkload] = [
    BackendWorkload(
        name="memory: Histogram.observe()",
        target=1.5,
        ops=HOT_PATH_OPS,
        quick_ops=QUICK_OPS,
        pytheus=native_observe,
        client=pytheus_observe,
        ours_label=NATIVE,
        theirs_label=CLASSIC,
    ),
    BackendWorkload(
        name="file: protobuf scrape 8 procs x 1k",
        target=None,  # the issue sets none: for information
        ops=3,
        quick_ops=1,
        pytheus=native_protobuf_scrape,
        client=classic_protobuf_scrape,
        unit="scrape",
        ours_label=NATIVE,
        theirs_label=CLASSIC,
    ),
    BackendWorkload(
        name="file: text scrape 8 procs x 1k",
        target=None,  # the issue sets none: for information
        ops=3,
        quick_ops=1,
        pytheus=native_text_scrape,
        client=classic_text_scrape,
        unit="scrape",
        ours_label=NATIVE,
        theirs_label=CLASSIC,
    ),
]
