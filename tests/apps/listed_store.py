"""A backend of a user's own, for ``pytheus serve --backend-class``: its store records in memory
like the default one, and lists what "its workers" hold from a JSON file (the configuration's
``path``): ``[[name, type, help, [[label names, label values, value], ...]], ...]``. It does not
subclass ``BaseStore``, as a store written for an earlier pytheus would not."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytheus.backends.memory import MemoryStore
from pytheus.backends.store import BoundSeries, StoredFamily, Value
from pytheus.samples import LabelSet, MetricFamily, MetricType, Series


class ListedStore:
    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.memory = MemoryStore()

    def bind(self, metric: BoundSeries) -> Value:
        return self.memory.bind(metric)

    def read(self, families: Sequence[StoredFamily]) -> Sequence[Sequence[Series]]:
        return self.memory.read(families)

    def families(self) -> list[MetricFamily]:
        held = json.loads(self.path.read_text(encoding="utf-8"))
        return [
            MetricFamily(name, MetricType(kind), help_text, [
                (LabelSet(tuple(names), tuple(values)), float(value))
                for names, values, value in series
            ])
            for name, kind, help_text, series in held
        ]  # fmt: skip


class ListedBackend:
    @classmethod
    def _make_store(cls, config: dict[str, Any]) -> ListedStore:
        return ListedStore(config["path"])


class UnlistedBackend:
    """A store that cannot list what it holds (the default one's): not servable."""

    @classmethod
    def _make_store(cls, config: dict[str, Any]) -> MemoryStore:
        return MemoryStore()
