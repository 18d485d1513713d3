from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from pytheus.backends import base, load_backend
from pytheus.naming import get_validation_scheme, set_validation_scheme
from pytheus.registry import CollectorRegistry
from tests.backends_under_test import BACKENDS

if TYPE_CHECKING:
    from tests.redis_server import RedisServer


@contextmanager
def backend_restored() -> Iterator[None]:
    """Whatever backend the block loads, the one in force before it is in force after it (or
    none, to be resolved on first use, if none was)."""
    previous = base._loaded
    try:
        yield
    finally:
        current = base._loaded
        if current is not previous:
            base._loaded = previous
            base.rebind_all_values()
            close = getattr(current.store, "close", None) if current is not None else None
            if close is not None:
                close()


@pytest.fixture(params=sorted(BACKENDS))
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Runs a test once per backend, with that backend loaded (the earlier one restored)."""
    backend_class, config = BACKENDS[request.param](tmp_path_factory.mktemp("backend"))
    with backend_restored():
        load_backend(backend_class, config)
        yield request.param


@pytest.fixture(scope="module")
def module_redis() -> Iterator[RedisServer]:
    """A redis-server of the test module's own, on a free loopback port (namespaces keep the
    tests apart); never the machine's own on 6379."""
    from tests.redis_server import RedisServer

    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def utf8() -> Iterator[None]:
    """UTF-8 name validation for the test, then the validation that was in force before."""
    previous = get_validation_scheme()
    set_validation_scheme("utf8")
    try:
        yield
    finally:
        set_validation_scheme(previous)


@pytest.fixture
def registry(backend: str) -> CollectorRegistry:
    """A fresh registry on the backend under test."""
    return CollectorRegistry()


def require_program(name: str) -> str:
    """The path of a system program; a missing one skips the test (a failure under CI)."""
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed (bash scripts/test.sh installs it)")
    return path


def missing(message: str) -> NoReturn:
    """Skip the test for something this machine lacks; under CI the skip is a failure (see
    :func:`pytest_runtest_makereport`)."""
    pytest.skip(message)


def under_ci() -> bool:
    """Whether ``CI`` is set to a true value (``true``, ``1``, ``yes``, ``on``, any case)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes", "on")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Under CI, a skipped test fails: the test command installs everything the tests need,
    so a skip there means something is missing that must not be."""
    report = yield
    if under_ci() and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI={os.environ['CI']}, which allows no skip: {reason}"
    return report


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under ``tests/e2e`` is end to end (``-m e2e``), as are modules marked so."""
    for item in items:
        if "e2e" in item.path.parent.parts[-1:]:
            item.add_marker(pytest.mark.e2e)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    """Under CI, a module skipped as a whole fails too."""
    if under_ci() and report.skipped:
        report.outcome = "failed"
