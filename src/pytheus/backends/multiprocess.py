"""What the two multi-process backends (shared files, Redis) share as backends: the class that
``load_backend`` takes, and starting over in a forked child.
"""

from __future__ import annotations

import os
import weakref
from typing import TYPE_CHECKING, Any

from pytheus.backends.base import rebind_all_values

if TYPE_CHECKING:
    from pytheus.backends.base import BackendConfig


class StoreBackend:
    """A backend that stores whole series (its ``_make_store`` makes a ``Store``): what
    ``load_backend`` takes, never made per value as pytheus 0.6's backends were."""

    def __init__(
        self, config: BackendConfig, metric: Any, histogram_bucket: str | None = None
    ) -> None:
        name = type(self).__name__
        raise TypeError(f"{name} stores whole series; load it with load_backend")


def start_over_after_fork(stores: weakref.WeakSet[Any]) -> None:
    """In a forked child, each of a backend's ``stores`` starts over (``after_fork()``: a file or
    a flusher of the child's own), then every metric value binds again."""

    def after_fork_in_child() -> None:
        for store in list(stores):
            store.after_fork()
        rebind_all_values()

    os.register_at_fork(after_in_child=after_fork_in_child)
