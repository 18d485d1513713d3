"""The Redis backend's side of its scripts' protocol (``backends/redis/_protocol.py``); the
scripts' side runs against a real server in the Redis tests."""

from __future__ import annotations

import inspect
import re
from typing import TYPE_CHECKING, Any

import pytest

from pytheus.backends.redis._config import RedisOptions
from pytheus.backends.redis._flusher import Flusher
from pytheus.backends.redis._protocol import (
    ADD_CELLS,
    ADD_TO_WINDOW,
    BYE,
    DUPLICATE,
    GAP,
    OK,
    SET_GAUGE,
    STATUSES,
    TOUCH,
    WINDOW_PAIRS,
    WINDOW_SETTINGS,
    FlushArgs,
    FlushReply,
    ScrapeReply,
    batch_args,
    pairs,
    parse_window,
    rows,
    scrape_args,
)
from pytheus.backends.redis._scripts import FLUSH, SCRAPE
from pytheus.backends.redis._values import RedisCounter, RedisQuantileSummary
from pytheus.quantiles import SlidingQuantiles, window_quantiles

if TYPE_CHECKING:
    from tests.redis_server import RedisServer


def test_a_scrape_reply_is_read_by_name() -> None:
    reply: list[bytes | str] = [
        b'7\x1f["c_total","counter","",[],[],[]]',
        "7\x1f3 ",
        "7:0\x1f{}",
        "9\x1fproc-1:100\x1f1.0,2.0,0.0\x1e10\x1f_a\x1f4.0,1.0,0.0",
        b"0",
        "",
        "11\x1f42\x1f1200 600 5 0.01 2048 3 1",
        "run-id",
        "p1\x1fp2",
    ]
    parsed = ScrapeReply.parse(reply)
    assert parsed.descriptions == {"7": '["c_total","counter","",[],[],[]]'}
    assert parsed.cells == {"7": "3 "}
    assert parsed.exemplars == {"7:0": "{}"}
    assert parsed.gauges == [("9", ["proc-1:100", "1.0,2.0,0.0"]), ("10", ["_a", "4.0,1.0,0.0"])]
    assert parsed.recovering is False and parsed.natives == []
    assert parsed.windows == [("11", ["42", "1200 600 5 0.01 2048 3 1"])]
    assert (parsed.server, parsed.processes) == ("run-id", ["p1", "p2"])
    assert ScrapeReply.parse([*reply[:4], "1", *reply[5:8], ""]).recovering
    assert ScrapeReply.parse([*reply[:8], ""]).processes == []


def test_a_reply_of_another_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="8 parts, not 9"):
        ScrapeReply.parse(["", "", "", "", "0", "", "", ""])


def test_the_parts_of_a_reply() -> None:
    assert pairs("") == {} and rows("") == []
    assert pairs("a\x1f1\x1fb\x1f2") == {"a": "1", "b": "2"}
    assert rows("s1\x1ff\x1fv\x1es2") == [("s1", ["f", "v"]), ("s2", [])]
    assert scrape_args("pytheus:ns", 3600, 30.0, "", ["p1"]) == ["pytheus:ns", 3600, 30.0, "", "p1"]


# --- the flush script ---------------------------------------------------------------------


def _named_positions(script: str) -> dict[int, str]:
    """``ARGV[n] name`` of a script's opening comment: position -> name."""
    return {
        int(position): name
        for position, name in re.findall(r"^--\s+ARGV\[(\d+)\]\s+(\w+)", script, re.MULTILINE)
    }


def _read_positions(script: str) -> set[int]:
    """The fixed ``ARGV`` positions the script's code (not its comments) reads."""
    code = "\n".join(line.split("--", 1)[0] for line in script.splitlines())
    return {int(position) for position in re.findall(r"ARGV\[(\d+)\]", code)}


FLUSH_ARGS = FlushArgs(
    base="pytheus:protocol", process="host:1:ab", seq=7, expected=6, expire_seconds=1000,
    heartbeat_seconds=77, now="1234.5", resync=True, recovering_ms=5000, bye=False,
)  # fmt: skip


def test_the_flush_script_names_its_arguments_as_flush_args_does() -> None:
    assert _named_positions(FLUSH) == {i + 1: name for i, name in enumerate(FlushArgs._fields)}
    # ARGV[1] to ARGV[10] are FlushArgs; ARGV[11] is the batch's first (its number of removals)
    assert _read_positions(FLUSH) == set(range(1, len(FlushArgs._fields) + 2))


def test_flush_args_put_each_name_at_its_position() -> None:
    argv = FLUSH_ARGS.argv(["0"])
    assert argv == [
        "pytheus:protocol", "host:1:ab", 7, 6, 1000, 77, "1234.5", "1", 5000, "0", "0"
    ]  # fmt: skip
    flags = {"resync": "1", "bye": "0"}  # the script compares them with '1'
    for position, name in _named_positions(FLUSH).items():
        assert argv[position - 1] == flags.get(name, getattr(FLUSH_ARGS, name))
    assert FLUSH_ARGS._replace(resync=False, bye=True).argv([])[7:10] == ["0", 5000, "1"]


def test_a_batch_as_the_flush_script_reads_it() -> None:
    assert batch_args((), ()) == ["0"]  # a heartbeat
    entries = [
        ("s1", '["c_total","counter","",[],[],[]]', ((ADD_CELLS, "", "3 "),)),
        ("s2", "{}", ((SET_GAUGE, "host:1:ab", "1.0,2.0,0.0"), (TOUCH, "", ""))),
    ]
    assert batch_args(("r1", "r2"), entries) == [
        "2", "r1", "r2",
        "s1", '["c_total","counter","",[],[],[]]', "1", "p", "", "3 ",
        "s2", "{}", "2", "s", "host:1:ab", "1.0,2.0,0.0", "t", "", "",
    ]  # fmt: skip


def test_a_flush_reply_is_read_by_name() -> None:
    assert FlushReply.parse([b"ok", b"5"]) == FlushReply(OK, 5, [])
    assert FlushReply.parse(["ok", "5", "s1 s2"]) == (OK, 5, ["s1", "s2"])
    assert FlushReply.parse([b"dup", b"5", b"s1"]).skipped == ["s1"]
    assert FlushReply.parse([b"gap", b"-1"]) == (GAP, -1, [])
    reply = FlushReply.parse(["bye", "3"])
    assert (reply.status, reply.last, reply.skipped) == (BYE, 3, [])
    assert frozenset((OK, DUPLICATE, GAP, BYE)) == STATUSES


@pytest.mark.parametrize(
    "reply, message",
    [
        ([b"ok"], "not a flush reply"),
        ([b"ok", b"5", b"s1", b"s2"], "not a flush reply"),
        ([], "not a flush reply"),
        ([b"what", b"5"], "not a flush reply"),
        ([b"ok", b"five"], "last batch is 'five'"),
        (b"OK", "a flush reply of bytes, not a list"),
        (None, "a flush reply of NoneType, not a list"),
    ],
)
def test_a_flush_reply_of_another_shape_is_refused(reply: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FlushReply.parse(reply)


class _Script:
    """The flush script as a fake client runs it: its replies, in turn."""

    def __init__(self, replies: list[Any]) -> None:
        self.replies = replies
        self.calls: list[list[object]] = []

    def __call__(self, keys: list[str], args: list[object]) -> Any:
        self.calls.append(args)
        return self.replies.pop(0)


class _Client:
    def __init__(self, script: _Script) -> None:
        self.script = script

    def register_script(self, source: str) -> _Script:
        assert source == FLUSH
        return self.script


def test_a_flush_reply_of_another_shape_keeps_the_batch_for_the_next_flush() -> None:
    """As when Redis cannot be reached: nothing dropped, the same batch sent again."""
    script = _Script([[b"ok"], [b"ok", b"1"]])
    flusher = Flusher(_Client(script), RedisOptions(namespace="protocol"))
    value = RedisCounter(flusher.queue)
    flusher._series["s1"] = ("{}", value)
    value.sid = "s1"
    value.inc(3)
    assert not flusher.flush()
    assert not flusher.healthy and flusher.dropped_updates == 0
    assert flusher._unacked is not None and flusher._acked == -1
    assert flusher.flush()
    assert flusher.healthy and flusher._unacked is None and flusher._acked == 1
    first, second = script.calls
    assert first[:6] + first[7:] == second[:6] + second[7:]  # but for now (ARGV[7])
    assert first[10:] == ["0", "s1", "{}", "1", ADD_CELLS, "", "3.0"]


def test_the_flush_script_reads_each_argument_where_flush_args_puts_it(
    module_redis: RedisServer,
) -> None:
    """Against the test suite's own server: each name has the effect the script gives it."""
    import redis

    client = redis.Redis.from_url(module_redis.url)
    script = client.register_script(FLUSH)
    args = FLUSH_ARGS._replace(seq=1, expected=-1, resync=False)
    base, process = args.base, args.process
    meta = '["g","gauge","",[],[],[]]'
    batch = batch_args(
        (), [("c1", "{}", ((ADD_CELLS, "", "3"),)), ("g1", meta, ((SET_GAUGE, process, "1,2,0"),))]
    )

    def flush(args: FlushArgs, batch: list[str]) -> FlushReply:
        return FlushReply.parse(script(keys=[f"{base}:index"], args=args.argv(batch)))

    try:
        assert flush(args, batch) == (OK, 1, [])
        assert flush(args, batch) == (DUPLICATE, 1, [])  # seq: applied once
        assert client.hget(f"{base}:v", "c1") == b"3"
        assert client.hget(f"{base}:s:g1", process) == b"1,2,0"  # process: the gauge's field
        assert client.zscore(f"{base}:seen", "c1") == 1234.5  # now
        assert 0 < client.ttl(f"{base}:proc:{process}") <= 77  # heartbeat_seconds
        assert 77 < client.ttl(f"{base}:s:g1") <= 1000  # expire_seconds
        assert client.get(f"{base}:seq:{process}") == b"1"
        # expected: Redis has batch 1, not 2: a gap, and scrapes wait recovering_ms
        assert flush(args._replace(seq=3, expected=2), ["0"]) == (GAP, 1, [])
        assert 77 < client.pttl(f"{base}:recovering") <= 5000
        # resync: the totals are taken whatever Redis had
        assert flush(args._replace(seq=3, expected=2, resync=True), ["0"]) == (OK, 3, [])
        # bye: the process's last flush, once Redis has every batch
        assert flush(args._replace(seq=3, expected=3, bye=True), ["0"]) == (BYE, 3, [])
        assert not client.exists(f"{base}:proc:{process}", f"{base}:seq:{process}")
        assert client.exists(f"{base}:gone:{process}")
    finally:
        client.delete(*client.keys(f"{base}:*"))
        client.close()


def test_the_scrape_script_names_its_arguments_as_scrape_args_does() -> None:
    names = list(inspect.signature(scrape_args).parameters)
    assert _named_positions(SCRAPE) == {i + 1: name for i, name in enumerate(names[:-1])}
    assert "ARGV[5...] processes" in SCRAPE  # the rest: one process each
    assert _read_positions(SCRAPE) == {1, 2, 3, 4}


# --- a summary's window -------------------------------------------------------------------


def test_a_window_reads_back_as_the_summary_wrote_it() -> None:
    queue: list[Any] = []
    written = SlidingQuantiles((0.5, 0.9), max_age_seconds=600, age_buckets=5)
    summary = RedisQuantileSummary(queue, written, clock=lambda: 1000.0)
    for value in (1.0, 2.0, 3.0, 40.0):
        summary.observe(value)
    fields = [part for _, field, value in summary.take() if _ == ADD_TO_WINDOW
              for part in (field, value)]  # fmt: skip
    assert fields and fields[1].split()[WINDOW_SETTINGS] == ["600.0", "5.0", "0.01", "2048.0"]
    window = parse_window(fields)
    assert window is not None
    assert window.slot_pairs() == written.slot_pairs()
    assert (window.max_age_seconds, window.age_buckets) == (600, 5)
    assert window_quantiles(window, (0.5, 0.9), 1000.0) == written.query(1000.0)
    assert len(fields[1].split()[WINDOW_PAIRS:]) == 2 * 4  # four buckets, a count each


def test_a_window_that_cannot_be_read_is_none() -> None:
    assert parse_window([]) is None
    assert parse_window(["1", "1200 600 5"]) is None  # settings cut short
    assert parse_window(["one", "1200 600 5 0.01 2048 3 1"]) is None  # not a slot
    assert parse_window(["1", "1200 600 0 0.01 2048 3 1"]) is None  # not a window's settings
    window = parse_window(["1", "1200 600 5 0.01 2048 3 1", "2", "1320 600 5 0.01 2048 3 2"])
    assert window is not None and window.slot_pairs() == {1: [3, 1], 2: [3, 2]}
