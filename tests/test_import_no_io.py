"""Importing pytheus does no I/O and chooses nothing: with the backends' environment variables
set, importing every module of the package creates no file and opens no connection (the backend
is set up at first use). An exporter started with the same environment as the workers must not
find that importing it claimed a run, or removed the workers' files; nor does importing
``pytheus.cli`` act on the exporter's own variables (``PYTHEUS_REDIS_URL``...): only
``pytheus serve`` reads them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytheus.cli
from pytheus.backends.base import MULTIPROC_DIR_ENV
from pytheus.naming import ENV_VAR as NAME_VALIDATION_ENV

IMPORT_EVERYTHING = """
import importlib, json, pkgutil, pytheus
names = [m.name for m in pkgutil.walk_packages(pytheus.__path__, "pytheus.")]
for name in names:
    if name != "pytheus.__main__":
        importlib.import_module(name)
print(json.dumps(names))
"""


def import_everything(environ: dict[str, str]) -> list[str]:
    """The names of pytheus's modules, each imported (but ``__main__``) with ``environ`` set."""
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERYTHING],
        env={**os.environ, **environ},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    names: list[str] = json.loads(done.stdout)
    return names


def test_importing_with_a_metrics_directory_set_creates_nothing(tmp_path: Path) -> None:
    earlier = tmp_path / "counter_123.db"  # as a worker of this run left it
    earlier.write_bytes(b"\0" * 64)
    modules = import_everything({"PYTHEUS_MULTIPROC_DIR": str(tmp_path)})
    assert len(modules) > 50  # the walk found the package
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_123.db"]
    assert earlier.read_bytes() == b"\0" * 64


def cli_environment(redis_address: str) -> dict[str, str]:
    """The exporter's own variables, its Redis sources all at ``redis_address`` (host:port)."""
    return {
        pytheus.cli.REDIS_URL_ENV: f"redis://{redis_address}/0",
        pytheus.cli.REDIS_SENTINELS_ENV: redis_address,
        pytheus.cli.REDIS_SERVICE_ENV: "mymaster",
        pytheus.cli.REDIS_CLUSTER_ENV: "1",
        pytheus.cli.PASSWORD_ENV: "secret",
        NAME_VALIDATION_ENV: "utf8",
    }


def test_the_cli_environment_is_all_covered() -> None:
    """Every variable ``pytheus serve`` reads is set by the test below (or, for the directory,
    by both tests)."""
    read = {value for name, value in vars(pytheus.cli).items() if name.endswith("_ENV")}
    assert pytheus.cli.REDIS_URL_ENV in read  # found by the naming convention
    assert read == {*cli_environment("127.0.0.1:1"), MULTIPROC_DIR_ENV}


def test_importing_with_a_redis_backend_set_connects_nowhere(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    config = redis_config(tmp_path, {"url": f"redis://127.0.0.1:{port}/0"})
    files = tmp_path / "files"
    files.mkdir()
    try:
        cli = cli_environment(f"127.0.0.1:{port}")
        modules = import_everything({**config, **cli, "PYTHEUS_MULTIPROC_DIR": str(files)})
        assert "pytheus.cli" in modules
        try:
            connection, _ = listener.accept()
        except TimeoutError:
            connection = None
        assert connection is None, "importing pytheus connected to the configured Redis"
    finally:
        listener.close()
    assert list(files.iterdir()) == []


def redis_config(directory: Path, config: dict[str, object]) -> dict[str, str]:
    """The environment that selects the Redis backend with ``config`` (a JSON file)."""
    path = directory / "backend.json"
    path.write_text(json.dumps(config))
    return {
        "PYTHEUS_BACKEND_CLASS": "pytheus.backends.redis.MultiProcessRedisBackend",
        "PYTHEUS_BACKEND_CONFIG": str(path),
    }


def test_the_oracle_sees_a_backend_set_up_at_first_use(tmp_path: Path) -> None:
    """The tests above could pass by looking in the wrong place: the first recording does
    create the directory's files and a connection attempt."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(10)
    port = listener.getsockname()[1]
    record = "from pytheus.metrics import Counter; Counter('c_total', 'c').inc()"
    subprocess.run(
        [sys.executable, "-c", record],
        env={**os.environ, "PYTHEUS_MULTIPROC_DIR": str(tmp_path / "files")},
        check=True,
        timeout=60,
    )
    assert list((tmp_path / "files").iterdir())
    config = {"url": f"redis://127.0.0.1:{port}/0", "flush_interval": 0, "exit_timeout": 0}
    started = subprocess.Popen(
        [sys.executable, "-c", record],
        env={**os.environ, **redis_config(tmp_path, config)},
        stderr=subprocess.DEVNULL,
    )
    try:
        connection, _ = listener.accept()
        connection.close()
    finally:
        listener.close()
        started.kill()
        started.wait()
