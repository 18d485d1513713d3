"""Loading backends: explicit, from the environment, third-party per-value backends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pytheus.backends import Backend, SingleProcessBackend, get_backend_class, load_backend
from pytheus.backends.base import BackendConfig, get_backend_config
from pytheus.exceptions import InvalidBackendClassException, InvalidBackendConfigException
from pytheus.metrics import Counter, Gauge, Histogram, Summary
from pytheus.registry import CollectorRegistry
from tests.backends_under_test import DictBackend
from tests.helpers import samples, value

ROOT = Path(__file__).resolve().parent.parent


class RecordingBackend:
    """Remembers what each value was created with."""

    created: list[tuple[str, dict[str, str], str | None, BackendConfig]] = []
    initialized: list[BackendConfig] = []

    def __init__(self, config: BackendConfig, metric: Any, histogram_bucket: str | None = None):
        self.created.append((metric.name, dict(metric._labels), histogram_bucket, config))
        self.value = 0.0

    def inc(self, value: float) -> None:
        self.value += value

    def dec(self, value: float) -> None:
        self.value -= value

    def set(self, value: float) -> None:
        self.value = value

    def get(self) -> float:
        return self.value

    @classmethod
    def _initialize(cls, config: BackendConfig) -> None:
        cls.initialized.append(config)


@pytest.fixture(autouse=True)
def _restore_default_backend() -> Any:
    yield
    load_backend(SingleProcessBackend, {})


def test_default_backend_is_single_process() -> None:
    load_backend()
    assert get_backend_class() is SingleProcessBackend
    assert get_backend_config() == {}
    counter = Counter("c_total", "C.", registry=CollectorRegistry())
    assert isinstance(counter._metric_value_backend, SingleProcessBackend)


def test_per_value_backend_gets_metric_labels_and_buckets() -> None:
    RecordingBackend.created.clear()
    load_backend(RecordingBackend, {"option": 1})
    assert RecordingBackend.initialized[-1] == {"option": 1}
    registry = CollectorRegistry()
    counter = Counter("c_total", "C.", required_labels=["a"], registry=registry)
    histogram = Histogram("h", "H.", buckets=[0.5], registry=registry)
    summary = Summary("s", "S.", registry=registry)
    counter.labels(a="x").inc(2)
    histogram.observe(0.1)
    histogram.observe(3)
    summary.observe(4)
    assert ("c_total", {"a": "x"}, None, {"option": 1}) in RecordingBackend.created
    buckets = {bucket for name, _, bucket, _ in RecordingBackend.created if name == "h"}
    assert buckets == {"0.5", "+Inf", "sum"}
    got = samples(registry)
    assert got[("c_total", frozenset({("a", "x")}))] == 2
    assert got[("h_bucket", frozenset({("le", "0.5")}))] == 1
    assert got[("h_count", frozenset())] == 2
    assert got[("h_sum", frozenset())] == 3.1
    assert got[("s_count", frozenset())] == 1
    assert isinstance(RecordingBackend({}, counter), Backend)


def test_metrics_defined_before_load_backend_use_the_new_backend() -> None:
    load_backend(SingleProcessBackend, {})
    registry = CollectorRegistry()
    gauge = Gauge("g", "G.", registry=registry)
    gauge.set(5)  # bound to the memory backend
    DictBackend._initialize({})
    load_backend(DictBackend, {})
    gauge.set(7)
    assert DictBackend.values[("g", (), None)] == 7
    assert value(registry, "g") == 7


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("NoDots", "dotted path"),
        ("no_such_module_xyz.Backend", "could not be imported"),
        ("tests.test_backends.Missing", "was not found"),
    ],
)
def test_bad_backend_class_path(monkeypatch: pytest.MonkeyPatch, path: str, message: str) -> None:
    monkeypatch.setenv("PYTHEUS_BACKEND_CLASS", path)
    with pytest.raises(InvalidBackendClassException, match=message):
        load_backend()


def test_class_without_protocol_is_refused() -> None:
    class NotABackend:
        def inc(self, value: float) -> None: ...

    with pytest.raises(InvalidBackendClassException, match=r"NotABackend.*dec, set, get"):
        load_backend(NotABackend)


def test_bad_backend_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHEUS_BACKEND_CONFIG", str(tmp_path / "missing.json"))
    with pytest.raises(InvalidBackendConfigException, match=r"missing\.json"):
        load_backend()
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    monkeypatch.setenv("PYTHEUS_BACKEND_CONFIG", str(broken))
    with pytest.raises(InvalidBackendConfigException, match=r"broken\.json"):
        load_backend()
    listed = tmp_path / "list.json"
    listed.write_text("[1]")
    monkeypatch.setenv("PYTHEUS_BACKEND_CONFIG", str(listed))
    with pytest.raises(InvalidBackendConfigException, match="JSON object"):
        load_backend()


def test_backend_from_environment_in_a_fresh_process(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"answer": 42}))
    script = textwrap.dedent(
        """
        from pytheus.backends import get_backend_class, get_backend_config
        from pytheus.metrics import Counter
        from pytheus.exposition import generate_metrics
        counter = Counter("env_total", "Env.")   # defined before anything loads a backend
        counter.inc(3)
        print(get_backend_class().__name__, get_backend_config()["answer"])
        print(generate_metrics())
        """
    )
    env = dict(os.environ)
    env.update(
        PYTHEUS_BACKEND_CLASS="tests.backends_under_test.DictBackend",
        PYTHEUS_BACKEND_CONFIG=str(config),
        PYTHONPATH=str(ROOT),
    )
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    first, rest = result.stdout.split("\n", 1)
    assert first == "DictBackend 42"
    assert "env_total 3.0" in rest
