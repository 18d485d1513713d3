"""Value storage: where metric values live. See :mod:`pytheus.backends.base`."""

from pytheus.backends.base import (
    Backend,
    BackendConfig,
    get_backend_class,
    get_backend_config,
    load_backend,
)
from pytheus.backends.memory import SingleProcessBackend

__all__ = [
    "Backend",
    "BackendConfig",
    "SingleProcessBackend",
    "get_backend_class",
    "get_backend_config",
    "load_backend",
]
