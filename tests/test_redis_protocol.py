"""The Redis backend's side of its scripts' protocol (``backends/redis/_protocol.py``); the
scripts' side runs against a real server in the Redis tests."""

from __future__ import annotations

import pytest

from pytheus.backends.redis._protocol import ScrapeReply, pairs, rows, scrape_args


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
