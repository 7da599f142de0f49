"""engine.logs.reader: parsing conmon's k8s-file records, merging, filtering, following, --since."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from engine.errors import InvalidParameter
from engine.logs.reader import (
    LineTailer,
    LogRecord,
    format_record,
    parse_line,
    parse_since,
    read_logs,
)

T0 = datetime(2026, 11, 28, 20, 31, 2, 123456, tzinfo=UTC)


def stamp(seconds: float) -> str:
    t = T0 + timedelta(seconds=seconds)
    return f"{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond:06d}789+00:00"


def rec(seconds: float, text: str, stream: str = "stdout", tag: str = "F") -> str:
    return f"{stamp(seconds)} {stream} {tag} {text}\n"


def texts(records: list[LogRecord]) -> list[str]:
    return [r.text for r in records]


def append(path: Path, data: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(data)


class Follower:
    """read_logs(follow=True) in a thread, collecting what it yields."""

    def __init__(self, path: Path, **kwargs: object) -> None:
        self.stop = threading.Event()
        self.records: list[LogRecord] = []
        self.thread = threading.Thread(target=self._run, args=(path, kwargs), daemon=True)
        self.thread.start()

    def _run(self, path: Path, kwargs: dict) -> None:
        for r in read_logs(path, follow=True, stop=self.stop.is_set, poll_interval=0.01,
                           **kwargs):
            self.records.append(r)

    def wait_for(self, n: int, timeout: float = 2.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.records) < n and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(self.records) >= n, texts(self.records)

    def finish(self) -> list[LogRecord]:
        self.stop.set()
        self.thread.join(2.0)
        assert not self.thread.is_alive()
        return self.records


# -- parse_line --------------------------------------------------------------------------------


def test_parse_full_line_truncates_nanoseconds() -> None:
    r = parse_line("2026-11-28T20:31:02.123456789+00:00 stdout F hello")
    assert r == LogRecord(datetime(2026, 11, 28, 20, 31, 2, 123456, tzinfo=UTC), "stdout",
                          "hello\n")


def test_parse_partial_zone_and_spaces() -> None:
    r = parse_line("2026-11-28T21:31:02.5+01:00 stderr P a  b ")
    assert r is not None
    assert r.stream == "stderr" and r.text == "a  b "
    assert r.time == datetime(2026, 11, 28, 20, 31, 2, 500000, tzinfo=UTC)
    assert r.time.utcoffset() == timedelta(hours=1)


def test_parse_empty_line() -> None:
    assert parse_line("2026-11-28T20:31:02Z stdout F").text == "\n"
    assert parse_line("2026-11-28T20:31:02Z stdout F \n").text == "\n"


@pytest.mark.parametrize("line", [
    "",
    "garbage",
    "2026-11-28T20:31:02Z stdout",
    "2026-11-28T20:31:02Z stdin F x",
    "2026-11-28T20:31:02Z stdout X x",
    "2026-11-28T20:31:02 stdout F no zone",
    "2026-13-28T20:31:02Z stdout F bad month",
    "2026-11-28T20:3",
    "\udcff stdout F x",
])
def test_parse_malformed_is_none(line: str) -> None:
    assert parse_line(line) is None


# -- read_logs ---------------------------------------------------------------------------------


def test_read_missing_file_is_empty(tmp_path: Path) -> None:
    assert list(read_logs(tmp_path / "nope.log")) == []


def test_partial_records_merge_per_stream(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    log.write_text(
        rec(0, "hel", tag="P")
        + rec(1, "oops", stream="stderr")
        + rec(2, "lo ", tag="P")
        + rec(3, "world")
        + rec(4, "tail without end", tag="P"))
    records = list(read_logs(log))
    assert texts(records) == ["oops\n", "hello world\n", "tail without end"]
    assert records[1].stream == "stdout"
    assert records[1].time == T0  # the time of the first piece
    assert records[0].stream == "stderr"


def test_partial_split_inside_a_utf8_character(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    data = "é".encode()
    log.write_bytes(f"{stamp(0)} stdout P ".encode() + data[:1] + b"\n"
                    + f"{stamp(1)} stdout F ".encode() + data[1:] + b"\n")
    assert texts(list(read_logs(log))) == ["é\n"]


def test_malformed_lines_are_skipped(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    log.write_text(rec(0, "one") + "not a record\n" + "\n" + rec(1, "two")
                   + stamp(2)[:10] + "\n" + rec(3, "three"))
    assert texts(list(read_logs(log))) == ["one\n", "two\n", "three\n"]


def test_last_line_without_newline_is_read_when_not_following(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    log.write_text(rec(0, "one") + rec(1, "two").rstrip("\n"))
    assert texts(list(read_logs(log))) == ["one\n", "two\n"]


def test_tail(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    log.write_text("".join(rec(i, f"line {i}") for i in range(10))
                   + rec(10, "a", tag="P") + rec(11, "b"))
    assert texts(list(read_logs(log, tail=2))) == ["line 9\n", "ab\n"]
    assert texts(list(read_logs(log, tail=0))) == []
    assert len(list(read_logs(log, tail=100))) == 11
    assert len(list(read_logs(log, tail=-1))) == 11


def test_since_until(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    log.write_text("".join(rec(i, f"line {i}") for i in range(10)))
    since = T0 + timedelta(seconds=3)
    until = T0 + timedelta(seconds=5)
    assert texts(list(read_logs(log, since=since, until=until))) == [
        "line 3\n", "line 4\n", "line 5\n"]
    # tail counts among the lines in the window
    assert texts(list(read_logs(log, since=since, tail=2))) == ["line 8\n", "line 9\n"]
    other_zone = since.astimezone(timezone(timedelta(hours=-7)))
    assert len(list(read_logs(log, since=other_zone))) == 7


def test_follow_reads_what_a_writer_appends(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    log.write_text(rec(0, "before"))
    f = Follower(log)
    f.wait_for(1)
    for i in range(20):
        append(log, rec(i + 1, f"n{i}"))
        time.sleep(0.002)
    # a record written in two pieces, the first without its newline yet
    line = rec(30, "split")
    append(log, line[:15])
    time.sleep(0.05)
    append(log, line[15:])
    f.wait_for(22)
    assert texts(f.finish()) == ["before\n", *(f"n{i}\n" for i in range(20)), "split\n"]


def test_follow_writer_thread_then_stop_drains(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    log.touch()
    f = Follower(log)

    def writer() -> None:
        for i in range(200):
            append(log, rec(i, f"w{i}"))

    t = threading.Thread(target=writer)
    t.start()
    t.join()
    # stop right after the last write: what was written must still come out
    records = f.finish()
    assert texts(records) == [f"w{i}\n" for i in range(200)]


def test_follow_file_appearing_late(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    f = Follower(log, tail=1)
    time.sleep(0.05)
    append(log, rec(0, "old") + rec(1, "first"))
    f.wait_for(1)
    append(log, rec(2, "second"))
    f.wait_for(2)
    assert texts(f.finish()) == ["first\n", "second\n"]


def test_follow_stop_before_file_exists(tmp_path: Path) -> None:
    f = Follower(tmp_path / "never.log")
    time.sleep(0.03)
    assert f.finish() == []


def test_follow_merges_partials_and_shows_a_lone_partial(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    log.touch()
    f = Follower(log)
    append(log, rec(0, "a", tag="P") + rec(1, "b"))
    f.wait_for(1)
    append(log, rec(2, "prompt> ", tag="P"))
    f.wait_for(2)  # shown after the grace period, without its newline
    assert texts(f.finish()) == ["ab\n", "prompt> "]


def test_follow_pending_partial_flushed_on_stop(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    log.write_text(rec(0, "x", tag="P") + rec(1, "unfinished line"))
    log.write_text(log.read_text().rstrip("\n"))
    f = Follower(log)
    time.sleep(0.03)
    assert texts(f.finish()) == ["xunfinished line\n"]


def test_follow_until_in_the_past_ends(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    log.write_text(rec(0, "a") + rec(1, "b"))
    start = time.monotonic()
    got = list(read_logs(log, follow=True, until=T0, poll_interval=0.01))
    assert texts(got) == ["a\n"]
    assert time.monotonic() - start < 1


def test_follow_does_not_busy_loop(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    log.touch()
    stop = threading.Event()
    calls = 0

    def stopped() -> bool:
        nonlocal calls
        calls += 1
        return stop.is_set()

    threading.Timer(0.2, stop.set).start()
    cpu = time.process_time()
    assert list(read_logs(log, follow=True, stop=stopped, poll_interval=0.02)) == []
    assert calls <= 20
    assert time.process_time() - cpu < 0.15


def test_follow_across_rotation_and_truncation(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    log.write_text(rec(0, "a"))
    f = Follower(log)
    f.wait_for(1)
    append(log, rec(1, "b"))
    os.rename(log, tmp_path / "ctr.log.1")
    append(log, rec(2, "c"))
    f.wait_for(3)
    log.write_text("")  # truncated in place (copytruncate), then written again
    time.sleep(0.05)
    append(log, rec(3, "d"))
    f.wait_for(4)
    assert texts(f.finish()) == ["a\n", "b\n", "c\n", "d\n"]


def test_line_tailer_keeps_unfinished_line(tmp_path: Path) -> None:
    path = tmp_path / "f"
    with LineTailer(path) as t:
        assert not t.open()
        path.write_bytes(b"one\ntw")
        assert list(t.read_lines()) == [b"one"]
        append(path, "o\n")
        assert list(t.read_lines()) == [b"two"]
        append(path, "x")
        assert list(t.read_lines()) == []
        assert t.take_remainder() == b"x"


# -- format_record -----------------------------------------------------------------------------


def test_format_record() -> None:
    r = LogRecord(datetime(2026, 11, 28, 21, 31, 2, 123456,
                           tzinfo=timezone(timedelta(hours=1))), "stdout", "hi\n")
    assert format_record(r, False) == "hi\n"
    assert format_record(r, True) == "2026-11-28T20:31:02.123456000Z hi\n"


# -- parse_since -------------------------------------------------------------------------------

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("value", "expected"), [
    ("2026-11-28T20:31:02.123456789Z", datetime(2026, 11, 28, 20, 31, 2, 123456, tzinfo=UTC)),
    ("2026-11-28T21:31:02+01:00", datetime(2026, 11, 28, 20, 31, 2, tzinfo=UTC)),
    ("1700000000", datetime.fromtimestamp(1700000000, UTC)),
    ("1700000000.5", datetime.fromtimestamp(1700000000, UTC) + timedelta(milliseconds=500)),
    ("0", datetime.fromtimestamp(0, UTC)),
    ("10m", NOW - timedelta(minutes=10)),
    ("1h30m", NOW - timedelta(hours=1, minutes=30)),
    ("45s", NOW - timedelta(seconds=45)),
    ("2h", NOW - timedelta(hours=2)),
    ("1.5h", NOW - timedelta(minutes=90)),
    ("500ms", NOW - timedelta(milliseconds=500)),
])
def test_parse_since_forms(value: str, expected: datetime) -> None:
    got = parse_since(value, now=NOW)
    assert got.tzinfo is not None
    assert got == expected


def test_parse_since_local_forms() -> None:
    assert parse_since("2026-11-28") == datetime(2026, 11, 28).astimezone()
    assert parse_since("2026-11-28T10:00:00") == datetime(2026, 11, 28, 10).astimezone()


def test_parse_since_default_now() -> None:
    got = parse_since("1m")
    assert abs((datetime.now(UTC) - got) - timedelta(minutes=1)) < timedelta(seconds=5)


@pytest.mark.parametrize("value", ["", "yesterday", "10x", "m", "1h30", "-5m",
                                   "2026-11-28T25:00:00Z", "2026-11-28 10:00"])
def test_parse_since_invalid(value: str) -> None:
    with pytest.raises(InvalidParameter, match=repr(value)):
        parse_since(value, now=NOW)
