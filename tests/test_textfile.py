"""write_to_textfile: the file parses, and it is replaced in one step, leaving nothing behind."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families as text_parse

from pytheus.backends import load_backend
from pytheus.backends.memory import SingleProcessBackend
from pytheus.exceptions import BackendUnavailableException
from pytheus.exposition import write_to_textfile
from pytheus.metrics import Counter, Gauge, Histogram
from pytheus.registry import CollectorRegistry
from tests.backends_under_test import UnreadableBackend


def read_values(path: Path) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in text_parse(path.read_text(encoding="utf-8"))
        for sample in family.samples
        if sample.name != "backup_duration_seconds_bucket"
    }


def test_written_file_parses(registry: CollectorRegistry, tmp_path: Path) -> None:
    Counter("backup_runs_total", "Runs.", registry=registry).inc(3)
    Gauge("backup_last_success_seconds", "Last success.", registry=registry).set(1.7e9)
    Histogram("backup_duration_seconds", "D.", buckets=[60], registry=registry).observe(42)
    path = tmp_path / "backup.prom"
    write_to_textfile(path, registry)
    assert read_values(path) == {
        "backup_runs_total": 3,
        "backup_last_success_seconds": 1.7e9,
        "backup_duration_seconds_count": 1,
        "backup_duration_seconds_sum": 42,
    }
    assert os.listdir(tmp_path) == ["backup.prom"]


def test_replacement_is_atomic(tmp_path: Path) -> None:
    """The new file replaces the old one: a reader holding the old one still reads all of it."""
    registry = CollectorRegistry()
    runs = Counter("backup_runs_total", "Runs.", registry=registry)
    path = tmp_path / "backup.prom"
    runs.inc()
    write_to_textfile(str(path), registry)  # a str path works too
    with open(path, encoding="utf-8") as reader:
        runs.inc(9)
        write_to_textfile(path, registry)
        old = reader.read()
    assert read_values(path) == {"backup_runs_total": 10}
    assert [s.value for f in text_parse(old) for s in f.samples] == [1]  # never cut or mixed
    assert os.listdir(tmp_path) == ["backup.prom"]


def test_file_mode_follows_umask(tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        write_to_textfile(tmp_path / "a.prom", CollectorRegistry())
    finally:
        os.umask(previous)
    assert (tmp_path / "a.prom").stat().st_mode & 0o777 == 0o640


@pytest.fixture
def broken_backend() -> Iterator[None]:
    load_backend(UnreadableBackend, {})
    try:
        yield
    finally:
        load_backend(SingleProcessBackend, {})


def test_failed_collection_keeps_the_old_file(tmp_path: Path, broken_backend: None) -> None:
    path = tmp_path / "backup.prom"
    path.write_text("# previous content\n")
    registry = CollectorRegistry()
    Counter("backup_runs_total", "Runs.", registry=registry).inc()
    with pytest.raises(BackendUnavailableException):
        write_to_textfile(path, registry)
    assert path.read_text() == "# previous content\n"
    assert os.listdir(tmp_path) == ["backup.prom"]


def test_failed_replace_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "a_directory.prom"
    (target / "inside").mkdir(parents=True)  # os.replace cannot put a file over a directory
    with pytest.raises(OSError):
        write_to_textfile(target, CollectorRegistry())
    assert os.listdir(tmp_path) == ["a_directory.prom"]


def test_missing_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_to_textfile(tmp_path / "missing" / "a.prom", CollectorRegistry())
    assert os.listdir(tmp_path) == []
