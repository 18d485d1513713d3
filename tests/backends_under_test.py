"""The backends the behavioural suite runs on. A backend is done when it passes that suite."""

from __future__ import annotations

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


# name -> (scratch directory -> backend class and configuration)
BACKENDS: dict[str, Callable[[Path], tuple[type[Any], BackendConfig]]] = {
    "memory": lambda _: (SingleProcessBackend, {}),
    "per_value": lambda _: (DictBackend, {}),
    "file": file_backend,
    "redis": redis_backend,
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
