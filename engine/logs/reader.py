"""Reading containers' logs: conmon's k8s-file format, followed as it grows.

The records are parsed by ``logformat``; a log may span rotated files (``logfiles``), and
``--tail``/``--since`` start reading near what they show (``logseek``). This module holds:

- ``LogRecord``, ``parse_line``: one record, parsed without ever raising;
- ``read_logs``: whole lines, filtered by time, optionally the last N, optionally followed;
- ``format_record``: a record as ``corral logs [-t]`` prints it;
- ``parse_since``: Docker's ``--since``/``--until`` values (timestamps, durations);
- ``LineTailer``: whole lines from a file another process appends to, across rotation and
  truncation (the event journal reads its file with it too).
"""

from __future__ import annotations

import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import chain
from pathlib import Path

from ..errors import InvalidParameter, SystemFailure
from .files import identity, log_files
from .format import RawRecord, micros, parse_record, zone
from .seek import since_start, tail_start

# A partial record with no continuation yet is shown after this long when following, so
# that a prompt written without a newline appears instead of waiting for one forever.
PARTIAL_GRACE = 0.25
# A stream that never writes a newline must not make the reader hold all of it in memory.
MAX_MERGED_BYTES = 1 << 20
_CHUNK = 1 << 16

# Docker's ``--since`` forms are looser: a date alone, no seconds, no zone (local time).
_LOOSE_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:[Tt](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))?\Z",
    re.ASCII,
)
_UNIX = re.compile(r"(\d+)(?:\.(\d+))?\Z", re.ASCII)
# Go's time.ParseDuration, which Docker uses, without the sign.
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)", re.ASCII)
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0,
                 "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class LogRecord:
    """A line of a container's output (``text`` ends with ``\\n`` unless it is partial)."""

    time: datetime
    stream: str
    text: str


def _decode(text: bytes) -> str:
    return text.decode("utf-8", errors="replace")


def parse_line(line: str) -> LogRecord | None:
    """One k8s-file record, or None when the line is not one (conmon may be mid-write)."""
    try:
        raw = parse_record(line.rstrip("\n").encode("utf-8", errors="surrogateescape"))
    except Exception:  # a reader of logs never fails on what it reads
        return None
    if raw is None:
        return None
    return LogRecord(raw.time, raw.stream, _decode(raw.text) + ("" if raw.partial else "\n"))


class _Merger:
    """Joins partial records to the rest of their line, per stream.

    Pieces are joined as bytes and decoded once, because conmon cuts a long line where its
    buffer ends, which may be inside a multi-byte character.
    """

    def __init__(self) -> None:
        # stream -> (time of the first piece, pieces, size, monotonic time it started)
        self._pending: dict[str, tuple[datetime, list[bytes], int, float]] = {}

    def feed(self, raw: RawRecord) -> LogRecord | None:
        pending = self._pending.pop(raw.stream, None)
        if pending is None:
            if not raw.partial:
                return LogRecord(raw.time, raw.stream, _decode(raw.text) + "\n")
            pending = (raw.time, [], 0, time.monotonic())
        first, pieces, size, started = pending
        pieces.append(raw.text)
        size += len(raw.text)
        if not raw.partial:
            return LogRecord(first, raw.stream, _decode(b"".join(pieces)) + "\n")
        if size >= MAX_MERGED_BYTES:
            return LogRecord(first, raw.stream, _decode(b"".join(pieces)))
        self._pending[raw.stream] = (first, pieces, size, started)
        return None

    def feed_lines(self, lines: Iterable[bytes]) -> Iterator[LogRecord]:
        for line in lines:
            raw = parse_record(line)
            if raw is not None:
                rec = self.feed(raw)
                if rec is not None:
                    yield rec

    def flush(self, older_than: float | None = None) -> list[LogRecord]:
        """Pending partial lines as they are (only those waiting longer than ``older_than``)."""
        now = time.monotonic()
        out = []
        for stream, (first, pieces, _size, started) in list(self._pending.items()):
            if older_than is None or now - started >= older_than:
                del self._pending[stream]
                out.append(LogRecord(first, stream, _decode(b"".join(pieces))))
        out.sort(key=lambda r: r.time)
        return out


class LineTailer:
    """Whole lines from a file that other processes append to, read as they arrive.

    The file may not exist yet (``open`` says False until it does), its last line may be
    half written (kept until its newline comes), it may be replaced by a new file (rotation:
    what is left of the old one is read first) or truncated in place (read again from the
    start). Not thread-safe: one reader per tailer.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None
        self._buf = b""

    @property
    def identity(self) -> tuple[int, int] | None:
        """(device, inode) of the file being read, None before it is opened."""
        return self._identity

    def open(self) -> bool:
        if self._fd is not None:
            return True
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise SystemFailure(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        st = os.fstat(fd)
        self._fd, self._identity, self._buf = fd, (st.st_dev, st.st_ino), b""
        return True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> LineTailer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _drain(self) -> Iterator[bytes]:
        assert self._fd is not None
        while True:
            data = os.read(self._fd, _CHUNK)
            if not data:
                return
            *lines, self._buf = (self._buf + data).split(b"\n")
            yield from lines

    def read_lines(self) -> Iterator[bytes]:
        """The complete lines (without their newline) written since the last call."""
        if not self.open():
            return
        fd = self._fd
        assert fd is not None
        yield from self._drain()
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return  # between the rename of a rotation and the creation of the new file
        if (st.st_dev, st.st_ino) != self._identity:
            yield from self._drain()
            # nobody writes to a replaced file any more: its unfinished line is all there is
            rest = self.take_remainder()
            if rest:
                yield rest
            replaced = self._identity
            self.close()
            if self.open():
                assert replaced is not None and self._identity is not None
                yield from self.between(replaced, self._identity)
                yield from self._drain()
        elif st.st_size < os.lseek(fd, 0, os.SEEK_CUR):
            os.lseek(fd, 0, os.SEEK_SET)
            self._buf = b""
            yield from self._drain()

    def take_remainder(self) -> bytes:
        """The unfinished last line, given up on (the caller is done waiting for its end)."""
        rest, self._buf = self._buf, b""
        return rest

    def seek(self, offset: int) -> None:
        """Read on from ``offset`` of the open file (a line's start)."""
        assert self._fd is not None
        os.lseek(self._fd, offset, os.SEEK_SET)
        self._buf = b""

    def between(self, old: tuple[int, int], new: tuple[int, int]) -> Iterator[bytes]:
        """The lines of files that came between a replaced file and its replacement (the
        rotations seen at once): none for a plain file."""
        return iter(())


class _LogTailer(LineTailer):
    """A container's log: the rotations seen at once are read through, in order."""

    def between(self, old: tuple[int, int], new: tuple[int, int]) -> Iterator[bytes]:
        files = log_files(self.path)
        ids = [identity(f) for f in files]
        if old not in ids:
            return
        for f, i in zip(files[ids.index(old) + 1:], ids[ids.index(old) + 1:], strict=True):
            if i == new:
                return
            yield from _file_lines(f, 0)


def _file_lines(path: Path, offset: int) -> Iterator[bytes]:
    """The lines of a file no one writes to any more, from ``offset``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:  # deleted by the keeper since it was listed: not kept
        return
    try:
        os.lseek(fd, offset, os.SEEK_SET)
        rest = b""
        while data := os.read(fd, _CHUNK):
            *lines, rest = (rest + data).split(b"\n")
            yield from lines
        if rest:
            yield rest
    finally:
        os.close(fd)


def _backlog(tailer: LineTailer, tail: int | None, since: datetime | None,
             until: datetime | None) -> Iterator[bytes]:
    """The lines of the rotated files from where reading starts; the tailer (open on the
    file being written) is moved to where its part starts."""
    files = log_files(tailer.path)
    if tail is not None:
        i, off = tail_start(files, tail, since=since, until=until)
    elif since is not None:
        i, off = since_start(files, since)
    else:
        i, off = 0, 0
    if i >= len(files):  # nothing before the end is wanted
        if not files:
            return
        i = len(files) - 1
        try:
            off = os.stat(files[i]).st_size
        except OSError:
            off = 0
    for j in range(i, len(files)):
        begin = off if j == i else 0
        if identity(files[j]) == tailer.identity:
            tailer.seek(begin)
            return
        yield from _file_lines(files[j], begin)
    # the file being written came after the listing (a rotation since): read from its start


def _aware(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.astimezone()  # a naive time is local, as Docker reads one


def _final(lines: Iterable[bytes], tailer: LineTailer, merger: _Merger) -> Iterator[LogRecord]:
    # the end of reading: an unfinished line and unfinished partials are shown as they are
    yield from merger.feed_lines(lines)
    rest = tailer.take_remainder()
    if rest:
        yield from merger.feed_lines([rest])
    yield from merger.flush()


def _last(records: Iterable[LogRecord], tail: int | None) -> Iterable[LogRecord]:
    return records if tail is None else deque(records, maxlen=tail)


def read_logs(
    path: Path,
    *,
    follow: bool = False,
    tail: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    stop: Callable[[], bool] | None = None,
    poll_interval: float = 0.05,
    pause: Callable[[float], object] = time.sleep,
) -> Iterator[LogRecord]:
    """The records of a k8s-file log, partial records joined into whole lines.

    ``tail`` keeps the last N lines of those present when reading starts, after the time
    filter (``--since 10m --tail 5``: the last five of the last ten minutes); a negative
    ``tail`` means all. ``since``/``until`` bound the times (inclusive; naive times are local).
    With ``follow`` the file is read as it grows (it may not exist yet) until ``stop()`` is
    true or the clock passes ``until``; what was written by then is still read, then the
    iterator ends. A missing file without ``follow`` is an empty log. Between reads it calls
    ``pause(poll_interval)``, which may return early when something happened (an exit).
    """
    since, until = _aware(since), _aware(until)
    if tail is not None and tail < 0:
        tail = None

    def wanted(rec: LogRecord) -> bool:
        return (since is None or rec.time >= since) and (until is None or rec.time <= until)

    tailer = _LogTailer(path)
    merger = _Merger()
    first = True
    try:
        while True:
            # asked before reading, so that the last read sees all that came before the stop
            last = (not follow or (stop is not None and stop())
                    or (until is not None and datetime.now(UTC) > until))
            if not tailer.open():
                if last:
                    return
                pause(poll_interval)
                continue
            lines: Iterable[bytes] = tailer.read_lines()
            if first:
                lines = chain(_backlog(tailer, tail, since, until), lines)
            records = filter(wanted, _final(lines, tailer, merger) if last
                             else merger.feed_lines(lines))
            if first:
                records = _last(records, tail)
                first = False
            got = False
            for rec in records:
                got = True
                yield rec
            if last:
                return
            if got:
                continue
            yield from filter(wanted, merger.flush(older_than=PARTIAL_GRACE))
            pause(poll_interval)
    finally:
        tailer.close()


def format_record(rec: LogRecord, timestamps: bool) -> str:
    """The record as ``logs`` prints it; with ``timestamps``, Docker's ``-t`` prefix."""
    if not timestamps:
        return rec.text
    t = rec.time.astimezone(UTC)
    # Docker's fixed-width RFC3339Nano keeps columns aligned; the nanoseconds were truncated
    # when parsing, so they print as zeros.
    return f"{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond:06d}000Z {rec.text}"


def _parse_duration(value: str) -> timedelta | None:
    pos, seconds = 0, 0.0
    while pos < len(value):
        m = _DURATION_PART.match(value, pos)
        if m is None:
            return None
        seconds += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    return timedelta(seconds=seconds) if pos else None


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """A point in time from Docker's ``--since``/``--until`` forms (tz-aware).

    RFC 3339 timestamps (a date alone, or without a zone, is local time), Unix timestamps
    (``1700000000``, ``1700000000.5``) and durations back from ``now`` (``10m``, ``1h30m``).
    """
    text = value.strip() if isinstance(value, str) else ""
    duration = _parse_duration(text) if text and text != "0" else None
    if duration is not None:
        ref = _aware(now) or datetime.now(UTC)
        return ref - duration
    m = _UNIX.match(text)
    if m is not None:
        try:
            return (datetime.fromtimestamp(int(m.group(1)), UTC)
                    + timedelta(microseconds=micros(m.group(2))))
        except (OverflowError, OSError, ValueError):
            pass
    m = _LOOSE_TIMESTAMP.match(text)
    if m is not None:
        y, mo, d, h, mi, s, frac, z, sign, hh, mm = m.groups()
        try:
            when = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0),
                            micros(frac), tzinfo=zone(z, sign, hh, mm))
            return when if when.tzinfo else when.astimezone()
        except (OverflowError, ValueError):
            pass
    raise InvalidParameter(
        f"invalid time {value!r}: expected an RFC 3339 or Unix timestamp, or a duration "
        "such as 10m or 1h30m")
