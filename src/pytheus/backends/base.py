"""Choosing where metric values live: the ``Backend`` protocol and ``load_backend``.

A backend is a class. The minimal contract is pytheus 0.6's per-value protocol below: one
instance per value, created as ``cls(config, metric, histogram_bucket=None)``. A backend class
may add two class hooks:

- ``_initialize(config)``: called once by ``load_backend``, to check the configuration and set up
  connections; raise :class:`InvalidBackendConfigException` there for a bad configuration.
- ``_make_store(config)``: return a :class:`~pytheus.backends.store.Store`, which binds whole
  series (a histogram records an observation in one call) and reads all series of a scrape in
  bulk. pytheus's own backends use it.

In a forked child, the store in force starts over (its ``after_fork()``), and so do all live
stores of each multi-process backend imported (:func:`start_over_after_fork`); then every metric
value binds again, unless all there was is a store with no ``after_fork()`` of its own (memory).

The backend is resolved on first use (the first value that records, or the first scrape), not at
import: metrics are usually defined at import, while ``load_backend`` is called later, in an app
factory or a server hook. Values bound before a later ``load_backend`` are re-bound to the new
backend (their earlier recordings stay with the old one), so call it at start-up.

Environment conveniences, read when nothing was loaded explicitly:
``PYTHEUS_BACKEND_CLASS`` (dotted path of the class), ``PYTHEUS_BACKEND_CONFIG`` (path of a JSON
file with the configuration), and ``PYTHEUS_MULTIPROC_DIR`` (a directory: selects the
shared-file backend on it when no class is named).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import threading
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, Optional, Protocol, runtime_checkable

from pytheus.backends.memory import SingleProcessBackend
from pytheus.backends.per_value import PerValueStore
from pytheus.backends.store import BaseStore, CompletedStore, has_own_after_fork
from pytheus.exceptions import InvalidBackendClassException, InvalidBackendConfigException

if TYPE_CHECKING:
    from pytheus.backends.store import Store

BackendConfig = dict[str, Any]
logger = logging.getLogger("pytheus.backends")

BACKEND_CLASS_ENV = "PYTHEUS_BACKEND_CLASS"
BACKEND_CONFIG_ENV = "PYTHEUS_BACKEND_CONFIG"
MULTIPROC_DIR_ENV = "PYTHEUS_MULTIPROC_DIR"


@runtime_checkable
class Backend(Protocol):
    """One value of a metric. Implement these to bring your own storage.

    Example::

        class DictBackend:
            values: dict[tuple, float] = {}

            def __init__(self, config, metric, histogram_bucket=None):
                self.key = (metric.name, tuple(metric._labels.items()), histogram_bucket)

            def inc(self, value): self.values[self.key] = self.get() + value
            def dec(self, value): self.values[self.key] = self.get() - value
            def set(self, value): self.values[self.key] = value
            def get(self): return self.values.get(self.key, 0.0)

        load_backend(DictBackend)
    """

    def __init__(
        self, config: BackendConfig, metric: Any, histogram_bucket: Optional[str] = None
    ) -> None: ...

    def inc(self, value: float) -> None: ...

    def dec(self, value: float) -> None: ...

    def set(self, value: float) -> None: ...

    def get(self) -> float: ...


class _Loaded:
    """The backend in force. Replaced whole, never mutated, so readers need no lock."""

    __slots__ = ("backend_class", "config", "store")

    def __init__(self, backend_class: type[Any], config: BackendConfig, store: Store) -> None:
        self.backend_class = backend_class
        self.config = config
        self.store = store


_loaded: _Loaded | None = None
_load_lock = threading.RLock()
_listeners: list[Callable[[], None]] = []


def add_backend_listener(callback: Callable[[], None]) -> None:
    """Call ``callback`` after each ``load_backend`` (the metrics re-bind their values)."""
    _listeners.append(callback)


def load_backend(
    backend_class: type[Any] | None = None,
    backend_config: BackendConfig | None = None,
) -> None:
    """Select the backend that stores metric values, explicitly or from the environment.

    Example::

        from pytheus.backends import load_backend
        from pytheus.backends.file import MultiProcessFileBackend
        load_backend(MultiProcessFileBackend, {"path": "/tmp/metrics"})
    """
    global _loaded
    with _load_lock:
        cls = backend_class if backend_class is not None else _class_from_environment()
        config = backend_config if backend_config is not None else _config_from_environment()
        initialize, make_store = _class_hooks(cls)
        try:
            if initialize is not None:
                initialize(config)
            store: Store = (
                _complete(make_store(config)) if make_store is not None
                else PerValueStore(cls, config)
            )  # fmt: skip
        except InvalidBackendConfigException as error:
            source = _config_source() if backend_config is None else None
            if source is None:
                raise
            raise InvalidBackendConfigException(f"{error} (configured by {source})") from error
        previous, _loaded = _loaded, _Loaded(cls, config, store)
    if previous is not None:
        rebind_all_values()
        previous.store.close()


def _complete(store: Any) -> Store:
    """A store made by a backend class, with the optional methods it may lack."""
    return store if isinstance(store, BaseStore) else CompletedStore(store)


def rebind_all_values() -> None:
    """Make every metric value bind again on its next use (new backend, or a forked child)."""
    for callback in list(_listeners):
        callback()


# --- fork ------------------------------------------------------------------------------------

_starting_over: list[Collection[Store]] = []  # the stores of start_over_after_fork, by backend


def start_over_after_fork(stores: Collection[Store]) -> None:
    """In each forked child, every store in ``stores`` (a backend's live stores, held weakly)
    starts over (``after_fork()``), then every metric value binds again.

    A multi-process backend's module calls it once, when it is imported (after what it imports,
    such as :mod:`~pytheus.backends.process_end`, whose fork hooks must run first: hooks run in
    the child in the order they were registered). Its stores start over whether or not they are
    the one in force, and every value binds again even when none of them is alive.
    """
    _starting_over.append(stores)

    def after_fork_in_child() -> None:
        for store in list(stores):
            store.after_fork()
        rebind_all_values()

    os.register_at_fork(after_in_child=after_fork_in_child)


def _store_in_force_after_fork() -> None:
    """In a forked child, the store in force starts over, unless its backend has it start over
    with the others (:func:`start_over_after_fork`); if it has an ``after_fork()`` of its own,
    every value then binds again. The memory store has none: unless a multi-process backend was
    imported, a child goes on from the values it was forked with."""
    loaded = _loaded
    if loaded is None:
        return
    store = loaded.store
    if any(started is store for stores in _starting_over for started in list(stores)):
        return
    store.after_fork()
    if has_own_after_fork(store):
        rebind_all_values()


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_store_in_force_after_fork)


def current_store() -> Store:
    """The store of the backend in force, loading it from the environment on first use."""
    loaded = _loaded
    if loaded is None:
        with _load_lock:
            if _loaded is None:
                load_backend()
            loaded = _loaded
    assert loaded is not None
    return loaded.store


def get_backend_class() -> type[Any]:
    current_store()
    assert _loaded is not None
    return _loaded.backend_class


def get_backend_config() -> BackendConfig:
    current_store()
    assert _loaded is not None
    return _loaded.config


FILE_BACKEND_CLASS = "pytheus.backends.file.MultiProcessFileBackend"
"""What ``PYTHEUS_MULTIPROC_DIR`` selects."""


def _class_from_environment() -> type[Any]:
    path = os.environ.get(BACKEND_CLASS_ENV)
    if path:
        return import_backend_class(path)
    directory = os.environ.get(MULTIPROC_DIR_ENV)
    if directory:  # by name: the file backend builds on this module
        return import_backend_class(FILE_BACKEND_CLASS)
    if directory is not None and not os.environ.get(BACKEND_CONFIG_ENV):
        logger.warning(
            "pytheus: %s is set but empty: this process keeps its metrics to itself "
            "(the single-process backend); unset it, or name the shared directory",
            MULTIPROC_DIR_ENV,
        )
    return SingleProcessBackend


def _config_source() -> str | None:
    """The environment variable that configured the backend, for messages; None if none."""
    path = os.environ.get(BACKEND_CONFIG_ENV)
    if path:
        return f"{BACKEND_CONFIG_ENV}={path}"
    directory = os.environ.get(MULTIPROC_DIR_ENV)
    return f"{MULTIPROC_DIR_ENV}={directory}" if directory else None


def import_backend_class(path: str) -> type[Any]:
    """Import a backend class from its dotted path, e.g. ``my_package.backends.MyBackend``."""
    module_path, _, class_name = path.rpartition(".")
    if not module_path or not class_name:
        raise InvalidBackendClassException(
            f"backend class {path!r} is not a dotted path such as 'my_package.module.MyBackend'"
        )
    try:
        module = importlib.import_module(module_path)
    except ImportError as error:
        raise InvalidBackendClassException(
            f"backend module {module_path!r} could not be imported: {error}"
        ) from error
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise InvalidBackendClassException(
            f"backend class {class_name!r} was not found in module {module_path!r}"
        )
    return cls


def _class_hooks(cls: object) -> tuple[Any, Any]:
    """The class hooks ``_initialize`` and ``_make_store`` of a backend class (None for one it
    has not got); InvalidBackendClassException when ``cls`` is not a backend class."""
    if not isinstance(cls, type):
        raise InvalidBackendClassException(f"backend must be a class, got {cls!r}")
    # the class is foreign (the user's, or pytheus 0.6's per-value class): its hooks optional
    initialize = getattr(cls, "_initialize", None)
    make_store = getattr(cls, "_make_store", None)
    if make_store is None:
        missing = [m for m in ("inc", "dec", "set", "get") if not callable(getattr(cls, m, None))]
        if missing:
            raise InvalidBackendClassException(
                f"backend class {cls.__qualname__!r} does not implement the Backend protocol: "
                f"missing {', '.join(missing)}"
            )
    return initialize, make_store


def _config_from_environment() -> BackendConfig:
    path = os.environ.get(BACKEND_CONFIG_ENV)
    if not path:
        directory = os.environ.get(MULTIPROC_DIR_ENV)
        return {"path": directory} if directory else {}
    return read_config_file(path, BACKEND_CONFIG_ENV)


def read_config_file(path: str, given_by: str) -> BackendConfig:
    """A backend configuration from the JSON file ``path``, which ``given_by`` (an environment
    variable, an option) named; InvalidBackendConfigException when it cannot be read or does
    not hold a JSON object."""
    try:
        with open(path, encoding="utf-8") as config_file:
            config = json.load(config_file)
    except (OSError, ValueError) as error:
        raise InvalidBackendConfigException(
            f"backend configuration {path!r} (from {given_by}) could not be read: {error}"
        ) from error
    if not isinstance(config, dict):
        raise InvalidBackendConfigException(
            f"backend configuration {path!r} must hold a JSON object, not {type(config).__name__}"
        )
    return config
