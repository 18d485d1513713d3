"""The backends the behavioural suite runs on. A backend is done when it passes that suite."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytheus.backends.base import BackendConfig
from pytheus.backends.memory import SingleProcessBackend


class DictBackend:
    """A third-party backend implementing only the per-value protocol (inc/dec/set/get).

    It keys values by metric name, labels and bucket, as a user's backend would.
    """

    values: dict[tuple[Any, ...], float] = {}
    lock = threading.Lock()

    def __init__(
        self, config: BackendConfig, metric: Any, histogram_bucket: str | None = None
    ) -> None:
        self.key = (metric.name, tuple(sorted(metric._labels.items())), histogram_bucket)

    def inc(self, value: float) -> None:
        with self.lock:
            self.values[self.key] = self.values.get(self.key, 0.0) + value

    def dec(self, value: float) -> None:
        self.inc(-value)

    def set(self, value: float) -> None:
        with self.lock:
            self.values[self.key] = value

    def get(self) -> float:
        with self.lock:
            return self.values.get(self.key, 0.0)

    @classmethod
    def _initialize(cls, config: BackendConfig) -> None:
        with cls.lock:
            cls.values.clear()


def file_backend(directory: Path) -> tuple[type[Any], BackendConfig]:
    from pytheus.backends.file import MultiProcessFileBackend

    return MultiProcessFileBackend, {"path": str(directory)}


def redis_backend(directory: Path) -> tuple[type[Any], BackendConfig]:
    from pytheus.backends.redis import MultiProcessRedisBackend
    from tests.redis_server import shared_server

    server = shared_server()
    namespace = directory.name.replace(":", "_")
    return MultiProcessRedisBackend, {"url": server.url, "namespace": namespace}


def rs_backend(name: str) -> Callable[[Path], tuple[type[Any], BackendConfig]]:
    """A backend of pytheus-backend-rs 0.0.9, published for pytheus 0.6, unchanged."""

    def load(_: Path) -> tuple[type[Any], BackendConfig]:
        import pytheus_backend_rs

        return getattr(pytheus_backend_rs, name), {}

    return load


# name -> (scratch directory -> backend class and configuration)
ALL_BACKENDS: dict[str, Callable[[Path], tuple[type[Any], BackendConfig]]] = {
    "memory": lambda _: (SingleProcessBackend, {}),
    "per_value": lambda _: (DictBackend, {}),
    "file": file_backend,
    "redis": redis_backend,
    "rs_single": rs_backend("SingleProcessBackend"),
    "rs_atomic": rs_backend("SingleProcessAtomicBackend"),
}
PER_VALUE = frozenset({"per_value", "rs_single", "rs_atomic"})

# The suite runs on the first four; ``PYTHEUS_TEST_BACKENDS=rs_single,rs_atomic`` runs it on
# others (scripts/test.sh does, once, on the Python that has pytheus-backend-rs).
BACKENDS = {
    name: ALL_BACKENDS[name]
    for name in os.environ.get("PYTHEUS_TEST_BACKENDS", "memory,per_value,file,redis").split(",")
}


class UnreadableBackend:
    """A per-value backend whose storage cannot be read, like a Redis that went away."""

    def __init__(
        self, config: BackendConfig, metric: Any, histogram_bucket: str | None = None
    ) -> None:
        pass

    def inc(self, value: float) -> None:
        pass

    def dec(self, value: float) -> None:
        pass

    def set(self, value: float) -> None:
        pass

    def get(self) -> float:
        raise ConnectionRefusedError("Connection refused: storage.internal:6379")
