"""Collection: turn a registry into :class:`~pytheus.samples.MetricFamily` objects.

Metric families are read from the backend in one batch (a multi-process backend reads its
shared storage once per scrape). Custom collectors run in the scraping process; one that fails
is logged and left out, so a scrape never breaks on user code. The only exception a scrape
raises is :class:`BackendUnavailableException`, when the backend cannot be read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from pytheus.backends.base import current_store
from pytheus.backends.store import StoredFamily, read_local
from pytheus.desc import exposed_names
from pytheus.exceptions import BackendUnavailableException
from pytheus.registry import Registry
from pytheus.samples import LabelSet, MetricFamily, MetricType, Series

logger = logging.getLogger(__name__)


def collect_registry(registry: Registry, *, live: bool = False) -> list[MetricFamily]:
    """Every family of ``registry``, names prefixed, sorted by name.

    The series are read now, a snapshot. ``live=True`` is for a formatter that walks them once:
    a store may then hand series that are read as they are walked
    (:class:`~pytheus.samples.LiveSeries`), so a scrape never holds every reading at once.
    """
    return collect_families(registry.collect(), registry.prefix, live=live)


def collect_families(
    collectors: Iterable[Any], prefix: str | None = None, *, live: bool = False
) -> list[MetricFamily]:
    families: list[StoredFamily] = []
    custom: list[Any] = []
    for collector in collectors:
        (families if hasattr(collector, "desc") else custom).append(collector)

    output = _families_from_store(families, live)
    for collector in custom:
        output.extend(_run_custom_collector(collector))

    by_name: dict[str, MetricFamily] = {}
    exposed: set[str] = set()
    for family in output:
        if prefix:
            unprefixed, family.name = family.name, f"{prefix}_{family.name}"
            if family.type is MetricType.STATESET:
                family.series = _relabel_states(family.series, unprefixed, family.name)
        names = exposed_names(family.name, family.type)
        if not exposed.isdisjoint(names):
            logger.warning(
                "metric %r clashes with another metric of this scrape; it is left out", family.name
            )
            continue
        exposed |= names
        by_name[family.name] = family
    return [by_name[name] for name in sorted(by_name)]


def _relabel_states(series: Iterable[Series], old: str, new: str) -> list[Series]:
    """A stateset's series with the state label, named after the family, renamed with it.

    OpenMetrics wants each sample labelled with the family's name, prefix included.
    """
    output: list[Series] = []
    for labels, value in series:
        if labels.names[-1:] == (old,):
            labels = LabelSet((*labels.names[:-1], new), labels.values)
        output.append((labels, value))
    return output


def _families_from_store(families: Sequence[StoredFamily], live: bool) -> list[MetricFamily]:
    if not families:
        return []
    stored = [getattr(f, "storage", None) or f for f in families]  # Info/Enum keep a gauge
    try:
        series_lists = current_store().read(stored)
        if not live:
            series_lists = [list(series) for series in series_lists]
    except BackendUnavailableException:
        raise
    except Exception as error:
        raise BackendUnavailableException(
            f"the metrics backend could not be read: {error}"
        ) from error
    return [
        MetricFamily(f.desc.name, f.desc.type, f.desc.help, _finish(f, series), f.desc.unit)
        for f, series in zip(families, series_lists)
    ]


def _finish(family: Any, series: Sequence[Series]) -> Sequence[Series]:
    finish = getattr(family, "finish", None)
    return finish(series) if finish is not None else series


def _run_custom_collector(collector: Any) -> list[MetricFamily]:
    """A custom collector's output, read from this process's own values."""
    try:
        output: list[MetricFamily] = []
        for item in collector.collect():
            if isinstance(item, MetricFamily):
                output.append(item)
                continue
            family = item._collector
            [series] = read_local([family.storage or family])
            series = family.finish(series)
            desc = family.desc
            output.append(MetricFamily(desc.name, desc.type, desc.help, series, desc.unit))
        return output
    except Exception:
        logger.exception(
            "custom collector %r failed; its metrics are left out of this scrape", collector
        )
        return []
