"""Series keys carry their meaning by name (issue 18): ``pid`` is only ever a process id, and
``part`` tells apart the entries of one kind of a series (an exemplar slot's bucket, a summary's
window block's size), while the stored format stays what it was: a key is a JSON list whose
seventh element held all of those, so files written before read the same.

The raw keys below are built as ``encode_key`` wrote them before ``part`` was named: the six
elements of the series, then the seventh (named ``pid``) when it was not None.
"""

from __future__ import annotations

import array
import fcntl
import hashlib
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytheus.backends.aggregation import SeriesKey, family_of, merge_key
from pytheus.backends.file import FileStore
from pytheus.backends.file._directory import SharedDirectory
from pytheus.backends.file._format import (
    ARCHIVE,
    DESCRIPTION,
    ENTRY_HEAD,
    EXEMPLAR,
    EXEMPLAR_CELLS,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    NATIVE,
    QUANTILES,
    VERSION,
    decode_key,
    description_key,
    description_of,
    encode_key,
    padded,
)
from pytheus.backends.listing import count_families
from pytheus.desc import MetricDesc
from pytheus.samples import CounterData, HistogramData, LabelSet, MetricType

INF = math.inf


def raw_before(*fields: Any) -> bytes:
    """A key as ``encode_key`` stored it before this change (``pid`` was the 7th element)."""
    name, kind, mode, names, values, bounds, *seventh = fields
    stored: list[Any] = [name, kind, mode, list(names), list(values), list(bounds)]
    if seventh and seventh[0] is not None:
        stored.append(seventh[0])
    return json.dumps(stored, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


DESCRIPTION_TEXT = json.dumps(["jobs_total", "counter", "", ["kind"], [], "Jobs done.", "", []])

# (what, raw key as written before, what it must decode to)
KEYS: list[tuple[str, bytes, SeriesKey]] = [
    (
        "counter",
        raw_before("jobs_total", "counter", "", ["kind"], ["a"], []),
        SeriesKey("jobs_total", "counter", "", ("kind",), ("a",), ()),
    ),
    (
        "histogram",
        raw_before("lat", "histogram", "", [], [], [0.5, INF]),
        SeriesKey("lat", "histogram", "", (), (), (0.5, INF)),
    ),
    (
        "native block",
        raw_before("lat", NATIVE, "", [], [], [0.5, INF]),
        SeriesKey("lat", NATIVE, "", (), (), (0.5, INF)),
    ),
    (
        "per-process gauge of a dead process",
        raw_before("temp", "gauge", "all", ["room"], ["hall"], [], 4242),
        SeriesKey("temp", "gauge", "all", ("room",), ("hall",), (), pid=4242),
    ),
    (
        "gauge",
        raw_before("temp", "gauge", "max", [], [], []),
        SeriesKey("temp", "gauge", "max", (), (), ()),
    ),
    (
        "exemplar slot of a histogram bucket",
        raw_before("lat", EXEMPLAR, "", [], [], [0.5, INF], 1),
        SeriesKey("lat", EXEMPLAR, "", (), (), (0.5, INF), part=1),
    ),
    (
        "exemplar slot of a counter",
        raw_before("jobs_total", EXEMPLAR, "", ["kind"], ["a"], [], 0),
        SeriesKey("jobs_total", EXEMPLAR, "", ("kind",), ("a",), (), part=0),
    ),
    (
        "window block",
        raw_before("rt", QUANTILES, "", ["op"], ["get"], [], 128),
        SeriesKey("rt", QUANTILES, "", ("op",), ("get",), (), part=128),
    ),
    (
        "merged window block (the archive's)",
        raw_before("rt", QUANTILES, "", ["op"], ["get"], []),
        SeriesKey("rt", QUANTILES, "", ("op",), ("get",), ()),
    ),
    (
        "description",
        raw_before("jobs_total", DESCRIPTION, DESCRIPTION_TEXT, [], [], []),
        SeriesKey("jobs_total", DESCRIPTION, DESCRIPTION_TEXT, (), (), ()),
    ),
    (
        "utf-8 names and values",
        raw_before("café.total", "counter", "", ["ünit"], ["naïve \"q\""], []),
        SeriesKey("café.total", "counter", "", ("ünit",), ('naïve "q"',), ()),
    ),
]


@pytest.mark.parametrize(("what", "raw", "expected"), KEYS, ids=[k[0] for k in KEYS])
def test_keys_written_before_decode_to_named_fields(
    what: str, raw: bytes, expected: SeriesKey
) -> None:
    key = decode_key(raw)
    assert key == expected
    assert tuple(key) == tuple(expected)  # every field, pid and part included
    assert encode_key(key) == raw  # byte for byte
    assert encode_key(expected) == raw
    assert decode_key(raw, {}) == expected  # with the family parts shared


def test_each_meaning_has_its_own_name() -> None:
    slot = decode_key(raw_before("lat", EXEMPLAR, "", [], [], [0.5, INF], 1))
    assert (slot.part, slot.bucket, slot.pid) == (1, 1, None)
    block = decode_key(raw_before("rt", QUANTILES, "", [], [], [], 256))
    assert (block.part, block.pid) == (256, None)
    gauge = decode_key(raw_before("temp", "gauge", "liveall", [], [], [], 77))
    assert (gauge.pid, gauge.part) == (77, None)
    counter = decode_key(raw_before("jobs_total", "counter", "", [], [], []))
    assert (counter.pid, counter.part) == (None, None)
    description = decode_key(raw_before("jobs_total", DESCRIPTION, DESCRIPTION_TEXT, [], [], []))
    assert description_of(description) == DESCRIPTION_TEXT
    assert description == description_key("jobs_total", DESCRIPTION_TEXT)


def test_entries_of_a_series_are_made_by_name() -> None:
    key = SeriesKey("lat", "histogram", "", ("route",), ("/",), (0.5, INF))
    assert encode_key(key.entry(EXEMPLAR, part=1)) == raw_before(
        "lat", EXEMPLAR, "", ["route"], ["/"], [0.5, INF], 1
    )
    native = raw_before("lat", NATIVE, "", ["route"], ["/"], [0.5, INF])
    assert encode_key(key.entry(NATIVE)) == native
    summary = SeriesKey("rt", "summary", "", (), (), ())
    assert encode_key(summary.entry(QUANTILES, part=64)) == raw_before(
        "rt", QUANTILES, "", [], [], [], 64
    )
    assert key.entry(NATIVE).entry("histogram") == key


def test_a_key_cannot_store_what_its_kind_has_no_place_for() -> None:
    with pytest.raises(ValueError):
        encode_key(SeriesKey("lat", EXEMPLAR, "", (), (), (), pid=12, part=1))
    with pytest.raises(ValueError):
        encode_key(SeriesKey("temp", "gauge", "all", (), (), (), pid=12, part=1))


def test_family_and_series() -> None:
    key = SeriesKey("temp", "gauge", "all", ("room",), ("hall",), (), pid=4242)
    assert key.family == ("temp", "gauge", "all", ("room",), ())
    assert key.series == ("temp", "gauge", "all", ("room",), ("hall",), ())
    assert SeriesKey.in_family(key.family, ("hall",), pid=4242) == key
    mode = (("multiprocess_mode", "all"),)
    desc = MetricDesc("temp", "t", MetricType.GAUGE, ("room",), options=mode)
    assert family_of(desc) == key.family
    stored = [list(key.to_list()), ["temp", "gauge", "all", ["room"], ["cellar"], [], 1], ["x"]]
    assert count_families([key, *stored]) == {key.family: 3}  # keys, JSON lists; not a key: out


def test_merge_keys_group_as_before() -> None:
    small = SeriesKey("rt", QUANTILES, "", (), (), (), part=64)
    large = small.entry(QUANTILES, part=128)
    merged = SeriesKey("rt", QUANTILES, "", (), (), ())
    assert merge_key(small, 10) == merge_key(large, 11) == merged
    assert (merged.pid, merged.part) == (None, None)
    gauge = SeriesKey("temp", "gauge", "all", (), (), ())
    assert merge_key(gauge, 10) == gauge.with_pid(10) != merge_key(gauge, 11)
    assert merge_key(gauge.with_pid(10), None) == gauge.with_pid(10)  # the archive's
    assert merge_key(SeriesKey("temp", "gauge", "sum", (), (), (), pid=10), 11).pid is None


def test_redis_metas_are_unchanged() -> None:
    from pytheus.backends.redis import RedisStore, _describe

    class Bound:
        _desc = MetricDesc(
            "lat", "h", MetricType.HISTOGRAM, ("route",), upper_bounds=(0.5, INF)
        )
        _series = LabelSet(("route",), ("/é",))

    sid, meta = RedisStore._identify(Bound())
    before = json.dumps(
        ["lat", "histogram", "", ["route"], ["/é"], [0.5, INF]],
        separators=(",", ":"), ensure_ascii=False,
    )  # fmt: skip
    assert meta == before
    assert sid == hashlib.sha1(before.encode()).hexdigest()[:20]
    families: dict[Any, Any] = {}
    key, family = _describe(meta, families)
    assert key == SeriesKey("lat", "histogram", "", ("route",), ("/é",), (0.5, INF))
    assert family == key.family and families == {family: family}


# --- a directory written before ---------------------------------------------------------------


def write_segment(path: Path, entries: list[tuple[bytes, list[float]]], pid: int) -> None:
    """A segment as ``_format`` lays it out, holding ``entries`` (raw key, cells)."""
    chunks = []
    for raw, cells in entries:
        chunks.append(ENTRY_HEAD.pack(len(raw), len(cells)))
        chunks.append(raw + b"\0" * (padded(len(raw)) - len(raw)))
        chunks.append(array.array("d", cells).tobytes())
    body = b"".join(chunks)
    path.write_bytes(HEADER.pack(MAGIC, VERSION, 7, HEADER_SIZE + len(body), pid) + body)


def exemplar_cells(labels: dict[str, str], value: float, timestamp: float) -> list[float]:
    payload = json.dumps(labels).encode()
    floats = array.array("d", payload + b"\0" * (padded(len(payload)) - len(payload))).tolist()
    cells = [1.0, value, timestamp, float(len(payload)), *floats]
    return cells + [0.0] * (EXEMPLAR_CELLS - 1 - len(cells)) + [1.0]


@pytest.fixture
def written_before(tmp_path: Path) -> Iterator[Path]:
    """An archive and a living process's segment, their keys as written before this change."""
    write_segment(
        tmp_path / ARCHIVE,
        [
            (raw_before("temp", "gauge", "all", ["room"], ["hall"], [], 4242), [7.0, 5.0, 5.0]),
            (raw_before("jobs_total", "counter", "", ["kind"], ["a"], []), [2.0]),
            (raw_before("jobs_total", DESCRIPTION, DESCRIPTION_TEXT, [], [], []), [0.0]),
        ],
        pid=0,
    )
    living = tmp_path / "proc-4343_0123456789ab-0.db"
    write_segment(
        living,
        [
            (raw_before("jobs_total", "counter", "", ["kind"], ["a"], []), [3.0]),
            (
                raw_before("jobs_total", EXEMPLAR, "", ["kind"], ["a"], [], 0),
                exemplar_cells({"trace_id": "abc"}, 1.0, 100.0),
            ),
            (raw_before("lat", "histogram", "", [], [], [0.5, INF]), [1.0, 2.0, 1.0, 1.3, 1.0]),
            (
                raw_before("lat", EXEMPLAR, "", [], [], [0.5, INF], 1),
                exemplar_cells({"trace_id": "def"}, 0.9, 200.0),
            ),
            (raw_before("rt", "summary", "", [], [], []), [1.0, 4.0, 2.0, 1.0]),
            (raw_before("rt", QUANTILES, "", [], [], [], 64), [0.0] * 64),
        ],
        pid=4343,
    )
    fd = os.open(living, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # the process is alive while it holds its first segment
    try:
        yield tmp_path
    finally:
        os.close(fd)


def test_segments_written_before_read_the_same(written_before: Path) -> None:
    directory = SharedDirectory(written_before)
    pid, entries = directory.read_segment(written_before / "proc-4343_0123456789ab-0.db")
    assert pid == 4343
    keys = [key for key, _ in entries]
    assert keys[1].part == 0 and keys[1].pid is None  # a counter's exemplar slot
    assert keys[3].bucket == 1 and keys[3].pid is None  # bucket 1's exemplar slot
    assert keys[5].part == 64 and keys[5].pid is None  # the window block's size
    _, archived = directory.read_segment(written_before / ARCHIVE)
    assert archived[0][0].pid == 4242 and archived[0][0].part is None

    store = FileStore(written_before, join_run=False)
    families = {family.name: family for family in store.families()}
    assert families["jobs_total"].help == "Jobs done."
    ((labels, jobs),) = families["jobs_total"].series
    assert isinstance(jobs, CounterData)
    assert (labels.values, jobs.value) == (("a",), 5.0)
    assert jobs.exemplar is not None and jobs.exemplar.labels == {"trace_id": "abc"}
    ((labels, temp),) = families["temp"].series
    assert (dict(zip(labels.names, labels.values)), temp) == ({"room": "hall", "pid": "4242"}, 7.0)
    ((_, lat),) = families["lat"].series
    assert isinstance(lat, HistogramData)
    assert (lat.bucket_counts, lat.sum) == ([2.0, 1.0], 1.3)
    assert lat.exemplars is not None and lat.exemplars[0] is None
    assert lat.exemplars[1] is not None and lat.exemplars[1].labels == {"trace_id": "def"}
    ((_, rt),) = families["rt"].series
    assert (rt.count, rt.sum) == (4.0, 2.0)  # type: ignore[union-attr]
