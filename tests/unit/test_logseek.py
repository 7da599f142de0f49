"""engine.logs.seek and the rotated file set: --tail read from the end, --since bisected, and
both giving what reading the whole log gives, across files and partial (``P``) records."""

from __future__ import annotations

import os
import random
import threading
import time
from collections import deque
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from test_logs import T0
from test_logs import rec as record

from engine.logs import seek as logseek
from engine.logs.files import keep, log_files, prepare
from engine.logs.reader import LogRecord, read_logs


def key(records: list[LogRecord]) -> list[tuple[datetime, str, str]]:
    return [(r.time, r.stream, r.text) for r in records]


def random_log(rng: random.Random, n: int) -> list[str]:
    """Records as conmon writes them: per stream, runs of P ending in F (or not, at the end)."""
    out = []
    for i in range(n):
        stream = rng.choice(("stdout", "stderr"))
        tag = "P" if rng.random() < 0.3 else "F"
        out.append(record(i * 0.5, f"{stream}-{i}-" + "x" * rng.randrange(0, 40), stream, tag))
    return out


def write_rotated(tmp_path: Path, records: list[str], cuts: list[int]) -> Path:
    """The records in numbered files cut at ``cuts``; ``ctr.log`` a symlink to the newest."""
    path = tmp_path / "ctr.log"
    bounds = [0, *cuts, len(records)]
    for n, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False), start=1):
        (tmp_path / f"ctr.log.{n}").write_text("".join(records[a:b]))
    path.symlink_to(f"ctr.log.{len(bounds) - 1}")
    return path


@pytest.mark.parametrize("seed", range(12))
def test_tail_equals_the_end_of_a_whole_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             seed: int) -> None:
    monkeypatch.setattr(logseek, "BLOCK", 97)  # many blocks, lines across their edges
    rng = random.Random(seed)
    records = random_log(rng, 120)
    cuts = sorted(rng.sample(range(1, 120), 3))
    path = write_rotated(tmp_path, records, cuts)
    whole = list(read_logs(path))
    for n in (0, 1, 2, 3, 7, 30, 200):
        assert key(list(read_logs(path, tail=n))) == key(list(deque(whole, maxlen=n))), n


@pytest.mark.parametrize("seed", range(8))
def test_since_until_and_tail_equal_a_filtered_whole_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    monkeypatch.setattr(logseek, "BLOCK", 101)
    rng = random.Random(seed)
    records = random_log(rng, 150)
    path = write_rotated(tmp_path, records, sorted(rng.sample(range(1, 150), 2)))
    whole = list(read_logs(path))
    for since_s in (-1, 0, 0.5, 13.2, 40, 74.5, 80):
        since = T0 + timedelta(seconds=since_s)
        expected = [r for r in whole if r.time >= since]
        assert key(list(read_logs(path, since=since))) == key(expected), since_s
        for n in (1, 4, 50):
            got = list(read_logs(path, since=since, tail=n))
            assert key(got) == key(list(deque(expected, maxlen=n))), (since_s, n)
    until = T0 + timedelta(seconds=50)
    expected = [r for r in whole if r.time <= until]
    assert key(list(read_logs(path, until=until, tail=5))) == key(expected[-5:])


def test_partial_line_across_a_rotation_is_joined(tmp_path: Path) -> None:
    records = [record(0, "a"), record(1, "long ", tag="P"), record(2, "line"), record(3, "b")]
    path = write_rotated(tmp_path, records, [2])
    assert [r.text for r in read_logs(path, tail=2)] == ["long line\n", "b\n"]
    assert [r.text for r in read_logs(path, since=T0 + timedelta(seconds=1.5))] == ["b\n"]


def test_tail_reads_only_the_end(tmp_path: Path) -> None:
    """A log of a few MB: the last line costs a block, and one more looking for stderr's
    last record (a partial line there would be shown last)."""
    path = tmp_path / "ctr.log"
    line = record(0, "y" * 200)
    with open(path, "w") as f:
        for _ in range(4 * 1024 * 1024 // len(line)):
            f.write(line)
    stats: dict[str, int] = {}
    pos = logseek.tail_start([path], 1, stats=stats)
    assert stats == {"reads": 2, "bytes": 2 * logseek.BLOCK}
    assert pos == (0, path.stat().st_size - len(line))
    stats.clear()
    logseek.tail_start([path], 10, stats=stats)
    assert stats["reads"] == 2
    assert [r.text for r in read_logs(path, tail=3)] == ["y" * 200 + "\n"] * 3


def test_read_logs_tail_reads_a_bounded_amount(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The defect: ``logs --tail 1`` read the whole log (277 s on 2.7 GB)."""
    path = tmp_path / "ctr.log"
    with open(path, "w") as f:
        for i in range(60000):
            f.write(record(i, f"line {i} " + "z" * 60))
    read = []
    real_read, real_pread = os.read, os.pread
    monkeypatch.setattr(os, "read", lambda fd, n: (b := real_read(fd, n), read.append(len(b)))[0])
    monkeypatch.setattr(os, "pread",
                        lambda fd, n, off: (b := real_pread(fd, n, off), read.append(len(b)))[0])
    assert [r.text for r in read_logs(path, tail=1)] == ["line 59999 " + "z" * 60 + "\n"]
    assert sum(read) <= 4 * 65536 < path.stat().st_size


def test_since_bisects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads = []
    real = os.pread
    monkeypatch.setattr(logseek.os, "pread", lambda fd, n, off: reads.append(n) or real(fd, n, off))
    path = tmp_path / "ctr.log"
    with open(path, "w") as f:
        for i in range(40000):
            f.write(record(i, f"line {i}"))
    got = list(read_logs(path, since=T0 + timedelta(seconds=39990)))
    assert [r.text for r in got] == [f"line {i}\n" for i in range(39990, 40000)]
    assert sum(reads) < 20 * logseek.BLOCK < path.stat().st_size


def test_reverse_lines_offsets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logseek, "BLOCK", 3)
    data = b"ab\ncdefg\n\nh\nunfinished"
    path = tmp_path / "f"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        got = list(logseek.reverse_lines(fd, len(data)))
    finally:
        os.close(fd)
    assert got == [(12, b"unfinished"), (10, b"h"), (3, b"cdefg"), (0, b"ab")]
    assert all(data[off:off + len(line)] == line for off, line in got)


# -- the file set the keeper maintains ------------------------------------------------------------


def test_prepare_and_keep_name_the_files(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    prepare(path)
    assert os.readlink(path) == "ctr.log.1"
    assert os.readlink(tmp_path / "ctr.log.tmp") == "ctr.log.2"
    # what conmon does at --log-size-max: open .tmp (through the symlink), rename over ctr.log
    for n in range(2, 6):
        (tmp_path / "ctr.log.tmp").open("a").write(f"file {n}\n")
        os.rename(tmp_path / "ctr.log.tmp", path)
        keep(path, max_files=3, max_size=100)
    assert [p.name for p in log_files(path)] == ["ctr.log.3", "ctr.log.4", "ctr.log.5"]
    assert os.readlink(path) == "ctr.log.5"


def test_keep_numbers_a_regular_file_conmon_made(tmp_path: Path) -> None:
    """Two rotations between two passes: the second makes a regular ctr.log; nothing is lost."""
    path = tmp_path / "ctr.log"
    prepare(path)
    tmp = tmp_path / "ctr.log.tmp"
    tmp.open("a").write("second\n")
    os.rename(tmp, path)  # through the keeper's symlink: ctr.log.2
    tmp.write_text("")  # no symlink laid yet: a regular file
    with open(tmp, "a") as f:
        f.write("third\n")
    os.rename(tmp, path)
    keep(path, max_files=5, max_size=100)
    assert [p.read_text() for p in log_files(path)] == ["", "second\n", "third\n"]
    assert os.path.samefile(log_files(path)[-1], path)


def test_follow_with_tail_starts_at_the_tail_of_rotated_files(tmp_path: Path) -> None:
    records = [record(i, f"l{i}") for i in range(10)]
    path = write_rotated(tmp_path, records, [4, 8])
    stop = threading.Event()
    got: list[str] = []

    def follow() -> None:
        for r in read_logs(path, follow=True, tail=3, stop=stop.is_set, poll_interval=0.01):
            got.append(r.text)

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()

    def wait(n: int) -> None:
        deadline = time.monotonic() + 5
        while len(got) < n and time.monotonic() < deadline:
            time.sleep(0.01)

    wait(3)
    with open(path, "a") as f:
        f.write(record(11, "new"))
    wait(4)
    stop.set()
    thread.join(5)
    assert got == ["l7\n", "l8\n", "l9\n", "new\n"]


def test_keep_asks_conmon_to_rotate_a_file_past_max_size(tmp_path: Path) -> None:
    """A restarted conmon counts from zero: the keeper asks it (its control FIFO) to rotate."""
    path, ctl = tmp_path / "ctr.log", tmp_path / "ctl"
    prepare(path)
    os.mkfifo(ctl)
    reader = os.open(ctl, os.O_RDONLY | os.O_NONBLOCK)
    try:
        path.write_text("x" * 100)
        keep(path, max_files=3, max_size=100, ctl=ctl)
        # at max-size, not past it: conmon's own cap comes first (no writer yet: EOF)
        assert os.read(reader, 100) == b""
        path.write_text("x" * 101)
        keep(path, max_files=3, max_size=100, ctl=ctl)
        assert os.read(reader, 100) == b"2 0 0\n"
    finally:
        os.close(reader)
