"""What the two multi-process backends (shared files, Redis) share as backends: the class that
``load_backend`` takes, and starting over in a forked child (:func:`start_over_after_fork`, each
live store's ``after_fork()``, then every value binds again; it lives with ``load_backend``,
which also has the store in force start over).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytheus.backends.base import start_over_after_fork

if TYPE_CHECKING:
    from pytheus.backends.base import BackendConfig

__all__ = ["StoreBackend", "start_over_after_fork"]


class StoreBackend:
    """A backend that stores whole series (its ``_make_store`` makes a ``Store``): what
    ``load_backend`` takes, never made per value as pytheus 0.6's backends were."""

    def __init__(
        self, config: BackendConfig, metric: Any, histogram_bucket: str | None = None
    ) -> None:
        name = type(self).__name__
        raise TypeError(f"{name} stores whole series; load it with load_backend")
