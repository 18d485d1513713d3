"""Custom collectors: produce metrics at scrape time from data you do not instrument."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class CustomCollector:
    """Subclass and implement ``collect()``, yielding metrics created with ``registry=None``.

    The collector is registered under its lower-cased class name.

    Example::

        class QueueCollector(CustomCollector):
            def collect(self):
                depth = Gauge("queue_depth", "Jobs waiting.", registry=None)
                depth.set(queue.qsize())
                yield depth

        REGISTRY.register(QueueCollector())
    """

    @property
    def name(self) -> str:
        return type(self).__name__.lower()

    @name.setter
    def name(self, value: str) -> None:  # the Collector protocol declares a writable name
        pass

    def collect(self) -> Iterable[Any]:
        raise NotImplementedError("a CustomCollector must implement collect()")
