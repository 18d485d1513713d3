from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import NoReturn

import pytest

from pytheus.backends import load_backend
from pytheus.backends.memory import SingleProcessBackend
from pytheus.naming import set_validation_scheme
from pytheus.registry import CollectorRegistry
from tests.backends_under_test import BACKENDS


@pytest.fixture(params=sorted(BACKENDS))
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Runs a test once per backend, with that backend loaded."""
    backend_class, config = BACKENDS[request.param](tmp_path_factory.mktemp("backend"))
    load_backend(backend_class, config)
    yield request.param
    load_backend(SingleProcessBackend, {})


@pytest.fixture
def utf8() -> Iterator[None]:
    """UTF-8 name validation for the test (``set_validation_scheme("utf8")``), then legacy."""
    set_validation_scheme("utf8")
    try:
        yield
    finally:
        set_validation_scheme("legacy")


@pytest.fixture
def registry(backend: str) -> CollectorRegistry:
    """A fresh registry on the backend under test."""
    return CollectorRegistry()


def require_program(name: str) -> str:
    """The path of a system program; a missing one skips the test, except under CI=true."""
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed (bash scripts/test.sh installs it)")
    return path


def missing(message: str) -> NoReturn:
    """Skip the test for a program that is not there; under CI=true, fail it instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
