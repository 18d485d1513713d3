"""The official Prometheus protobuf schema, compiled at test time, to decode pytheus's output.

``metrics.proto`` comes from Debian's ``golang-github-prometheus-client-model-dev`` (never from
this repository): the current one from Debian unstable, which ``scripts/metrics-proto.sh``
unpacks into ``.cache/`` and ``scripts/test.sh`` names in ``PYTHEUS_METRICS_PROTO``, else Debian
stable's older copy. It is compiled with grpcio-tools into a temporary directory. A missing
schema or compiler (or a field the copy lacks) skips the tests that need it, except under
CI=true, where they fail.
"""

from __future__ import annotations

import functools
import glob
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

DEBIAN_PACKAGE = "golang-github-prometheus-client-model-dev"
PROTO_GLOB = "/usr/share/gocode/src/github.com/prometheus/client_model*/**/metrics.proto"
CONTENT_TYPE = (
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
)


def _unavailable(message: str) -> None:
    pytest.skip(message)  # a failure under CI (tests/conftest.py)


def proto_path() -> Path | None:
    """Where the official ``metrics.proto`` is (``PYTHEUS_METRICS_PROTO`` overrides)."""
    override = os.environ.get("PYTHEUS_METRICS_PROTO")
    if override:
        return Path(override)
    found = sorted(glob.glob(PROTO_GLOB, recursive=True))
    return Path(found[0]) if found else None


@functools.lru_cache(maxsize=1)
def _compile() -> ModuleType | str:
    """The generated ``metrics_pb2`` module, or why it could not be made (once per session)."""
    path = proto_path()
    if path is None or not path.is_file():
        return f"metrics.proto is not installed (apt-get install {DEBIAN_PACKAGE})"
    if importlib.util.find_spec("grpc_tools") is None:
        return "grpcio-tools is not installed (pip install -e '.[test]')"
    if importlib.util.find_spec("google.protobuf") is None:
        return "protobuf is not installed (pip install -e '.[test]')"
    import grpc_tools  # type: ignore[import-untyped]

    out = Path(tempfile.mkdtemp(prefix="pytheus-proto-"))
    shutil.copyfile(path, out / "metrics.proto")
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{out}",
            f"-I{well_known}",
            f"--python_out={out}",
            str(out / "metrics.proto"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"protoc failed on {path}: {result.stderr}")
    generated = out / "metrics_pb2.py"
    spec = importlib.util.spec_from_file_location("pytheus_test_metrics_pb2", generated)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    shutil.rmtree(out, ignore_errors=True)
    return module


def metrics_pb2() -> Any:
    """The compiled official schema; skips the test (fails under CI=true) when unavailable."""
    module = _compile()
    if isinstance(module, str):
        _unavailable(module)
    return module


def require_field(message: Any, name: str) -> None:
    """Skip (fail under CI=true) when this copy of the schema predates field ``name``."""
    if name not in message.DESCRIPTOR.fields_by_name:
        _unavailable(
            f"{proto_path()} has no {message.DESCRIPTOR.name}.{name}: run scripts/metrics-proto.sh "
            "and set PYTHEUS_METRICS_PROTO to the path it prints (scripts/test.sh does)"
        )


def has_native_fields(pb2: Any) -> bool:
    fields = pb2.Histogram.DESCRIPTOR.fields_by_name
    return all(
        name in fields
        for name in (
            "schema",
            "zero_threshold",
            "zero_count",
            "negative_span",
            "negative_delta",
            "positive_span",
            "positive_delta",
        )
    )


def decode_delimited(body: bytes) -> list[Any]:
    """The ``MetricFamily`` messages of a length-delimited body, decoded by protobuf."""
    from google.protobuf.internal.decoder import (  # type: ignore[import-untyped]
        _DecodeVarint32,
    )

    pb2 = metrics_pb2()
    families = []
    position = 0
    while position < len(body):
        length, position = _DecodeVarint32(body, position)
        family = pb2.MetricFamily()
        family.ParseFromString(body[position : position + length])
        families.append(family)
        position += length
    return families


def encode_delimited(families: list[Any]) -> bytes:
    """The official serializer's length-delimited bytes of ``families``."""
    from google.protobuf.internal.encoder import _VarintBytes  # type: ignore[import-untyped]

    out = []
    for family in families:
        message = family.SerializeToString()
        out.append(_VarintBytes(len(message)) + message)
    return b"".join(out)


def native_buckets(spans: Any, deltas: Any) -> dict[int, int]:
    """Sparse ``{index: count}`` from the spans and delta-encoded counts, as the schema says."""
    buckets: dict[int, int] = {}
    index = 0
    count = 0
    delta_iter = iter(deltas)
    for number, span in enumerate(spans):
        index = span.offset if number == 0 else index + span.offset
        for _ in range(span.length):
            count += next(delta_iter)
            assert count >= 0, f"bucket {index} has a negative count"
            if count:
                buckets[index] = count
            index += 1
    assert next(delta_iter, None) is None, "more deltas than the spans cover"
    return buckets
