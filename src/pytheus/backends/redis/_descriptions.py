"""Family descriptions in Redis: ``<base>:families``, a set of the encoded descriptions of
every family some process defines (see :mod:`pytheus.backends.descriptions`).

Each process adds its own after a flush that Redis acknowledged, again whenever one is new and
every third of ``expire_key_time`` (the set expires with the series when no process is left),
and again after Redis lost data. Publishing is off the hot path and never raises: a failure
leaves them due for the next flush.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from pytheus.backends import descriptions
from pytheus.backends.descriptions import StoredDescription
from pytheus.desc import MetricDesc


class DescriptionBoard:
    """This process's family descriptions and their publication."""

    def __init__(self, client: Any, base: str, ttl: int) -> None:
        self.client = client
        self.key = f"{base}:families"
        self.ttl = ttl
        self.known: set[str] = set()
        self._seen: set[tuple[object, ...]] = set()  # what add() has encoded already
        self.due = False
        self._last = 0.0
        self._lock = threading.Lock()

    def add(self, desc: MetricDesc) -> None:
        seen = (desc.name, desc.type, desc.label_names, desc.upper_bounds, desc.help, desc.unit,
                desc.options)  # fmt: skip
        if seen in self._seen:
            return
        text = descriptions.encode(desc)
        with self._lock:
            self._seen.add(seen)
            if text not in self.known:
                self.known.add(text)
                self.due = True

    def lost(self) -> None:
        """Redis lost its data: publish everything again."""
        self.due = True

    def publish(self) -> None:
        """Called after an acknowledged flush (on the flusher's thread)."""
        now = time.monotonic()
        if not self.known or (not self.due and now - self._last < self.ttl / 3):
            return
        with self._lock:
            known = sorted(self.known)
            self.due = False
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.sadd(self.key, *known)
            pipe.expire(self.key, self.ttl)
            pipe.execute()
            self._last = now
        except Exception:
            self.due = True  # the flusher reports outages; try again with the next flush


def read(client: Any, base: str) -> list[StoredDescription]:
    """Every family description of the namespace (raises when Redis cannot be read)."""
    found = (descriptions.decode(text) for text in client.smembers(f"{base}:families"))
    return [d for d in found if d is not None]
