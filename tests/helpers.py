"""Test helpers: read expositions back with prometheus_client's parser (an independent oracle)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from pytheus.exposition import generate_metrics
from pytheus.registry import Registry

T = TypeVar("T")


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


def flat_samples(text: str, prefix: str = "") -> dict[str, float]:
    """``{'name{k="v",...}': value}`` of the samples whose name starts with ``prefix``, parsed
    by prometheus_client from text format 0.0.4 (labels in the order the text gives them)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith(prefix):
                labels = ",".join(f'{k}="{v}"' for k, v in sample.labels.items())
                found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


def backend_environment(kind: str, scratch: Path, redis_url: str) -> dict[str, str]:
    """The environment variables that select a multi-process backend (``file`` or ``redis``)
    in a program and in every process it starts; ``scratch`` is an empty directory of the test."""
    if kind == "file":
        return {"PYTHEUS_MULTIPROC_DIR": str(scratch)}
    config = scratch.parent / f"{scratch.name}-redis.json"
    config.write_text(json.dumps({"url": redis_url, "namespace": f"t{scratch.name}"}))
    return {
        "PYTHEUS_BACKEND_CLASS": "pytheus.backends.redis.MultiProcessRedisBackend",
        "PYTHEUS_BACKEND_CONFIG": str(config),
    }


def eventually(check: Callable[[], T], timeout: float = 30.0, interval: float = 0.05) -> T:
    """``check()``'s result once it returns without an AssertionError, retrying until
    ``timeout`` (then its last AssertionError is raised): a wait on a confirmed condition, with
    a deadline, where a test would otherwise sleep for a time it hopes is long enough."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        time.sleep(interval)


def run_to_the_end(processes: Sequence[Any], timeout: float = 120) -> None:
    """Start every process (``multiprocessing`` ones), then wait for each: all must exit 0."""
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=timeout)
        assert process.exitcode == 0, f"{process.name} ended with {process.exitcode}"


def backend_of(store: object) -> type[Any]:
    """A backend class whose store is ``store`` (for ``load_backend``): a user's store."""

    class UserBackend:
        @classmethod
        def _make_store(cls, config: dict[str, Any]) -> object:
            return store

    return UserBackend
