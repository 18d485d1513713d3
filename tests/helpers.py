"""Test helpers: read expositions back with prometheus_client's parser (an independent oracle)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from pytheus.exposition import generate_metrics
from pytheus.registry import Registry


def parse(text: str) -> dict[str, list[Sample]]:
    """Family name -> samples, parsed by prometheus_client from text format 0.0.4."""
    return {family.name: list(family.samples) for family in text_string_to_metric_families(text)}


def family_types(text: str) -> dict[str, str]:
    return {family.name: family.type for family in text_string_to_metric_families(text)}


def samples(registry: Registry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """(sample name, labels) -> value for everything ``registry`` exposes."""
    result: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(generate_metrics(registry)):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in result, f"duplicate series {key}"
            result[key] = sample.value
    return result


def value(registry: Registry, name: str, **labels: str) -> float | None:
    """The value of one series, or None when it is not exposed."""
    return samples(registry).get((name, frozenset(labels.items())))
