"""Where to start reading a log so that ``--tail`` and ``--since`` do not read all of it.

A log is a list of files, oldest first (``logfiles.log_files``); a position in it is
(file index, byte offset). ``--tail N`` reads records backwards from the end, block by
block, until it has the last N whole lines; ``--since`` bisects the file holding that time
(conmon writes records in time order). Either way the start is moved back to the first piece
of any line that a ``P`` record had begun before it, so that reading forward from the start
joins whole lines, as reading the whole log would. What is read is then bounded by what is
shown, not by the size of the log (``--tail 1`` of a 1 GB log: two blocks of 64 KiB).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .format import parse_record

BLOCK = 1 << 16
# A run of "P" records longer than this is read as it is, as the forward reader splits it.
MAX_LINE = 1 << 20
# A "line" of more than this without a newline is not a record; dropped, not held.
MAX_RECORD = 1 << 22
# How far back --tail looks, past the lines it needs, for the other stream's last record: a
# run of "P" records left unfinished there is shown last (as a partial line) when reading.
LOOK_BEYOND = 1 << 16

Position = tuple[int, int]


@dataclass(frozen=True)
class Record:
    """What the seek needs of a record: its stream, tag, time and length."""

    stream: bytes
    partial: bool
    time: datetime
    size: int


def _record(line: bytes) -> Record | None:
    raw = parse_record(line)
    if raw is None:
        return None
    return Record(raw.stream.encode(), raw.partial, raw.time, len(raw.text))


def reverse_lines(fd: int, end: int, stats: dict[str, int] | None = None
                  ) -> Iterator[tuple[int, bytes]]:
    """The lines of ``fd`` before offset ``end``, last first, each with its offset.

    Read with ``pread`` in blocks from the end; bytes after the last newline are a line too
    (a record being written). Empty lines are skipped. ``stats`` counts ``reads``/``bytes``.
    """
    pos, rest = end, b""
    while pos > 0:
        size = min(BLOCK, pos)
        pos -= size
        block = os.pread(fd, size, pos)
        if stats is not None:
            stats["reads"] = stats.get("reads", 0) + 1
            stats["bytes"] = stats.get("bytes", 0) + len(block)
        if len(block) < size:  # the file shrank under us (truncated): nothing more is sure
            return
        parts = (block + rest).split(b"\n")
        rest = parts[0]
        offset = pos + len(parts[0]) + 1
        found = []
        for part in parts[1:]:
            found.append((offset, part))
            offset += len(part) + 1
        for item in reversed(found):
            if item[1]:
                yield item
        if len(rest) > MAX_RECORD:
            rest = b""
    if rest:
        yield 0, rest


def _open(path: Path) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:  # a keeper deleted it after it was listed: it is not kept
        return None


def _backwards(files: list[Path], start: Position | None = None,
               stats: dict[str, int] | None = None) -> Iterator[tuple[Position, Record]]:
    """The records before ``start`` (default: the end), last first, across the files."""
    last = len(files) - 1 if start is None else start[0]
    for i in range(last, -1, -1):
        fd = _open(files[i])
        if fd is None:
            continue
        try:
            end = os.fstat(fd).st_size if start is None or i != start[0] else start[1]
            for off, line in reverse_lines(fd, end, stats):
                rec = _record(line)
                if rec is not None:
                    yield (i, off), rec
        finally:
            os.close(fd)


@dataclass
class _Line:
    first: Position
    time: datetime
    size: int
    closed: bool = False


def _wanted(t: datetime, since: datetime | None, until: datetime | None) -> bool:
    return (since is None or t >= since) and (until is None or t <= until)


def tail_start(files: list[Path], count: int, *, since: datetime | None = None,
               until: datetime | None = None, stats: dict[str, int] | None = None
               ) -> Position:
    """A position after which lie the last ``count`` lines within the times, whole.

    Lines are counted where they end (an ``F`` record, or the end of an unfinished run of
    ``P`` records), which is the order reading shows them in; a line's time is that of its
    first piece. More lines may follow the position (those of the other stream that end
    among them): the reader keeps the last ``count``.
    """
    lines: list[_Line] = []
    # unfinished runs at the end are shown last, whatever their place: they must be whole
    trailing: list[_Line] = []
    open_line: dict[bytes, _Line] = {}
    done = wanted = 0  # lines[:done] are closed; ``wanted`` of them are within the times

    def settle() -> bool:
        nonlocal done, wanted
        while done < len(lines) and lines[done].closed and wanted < count:
            if _wanted(lines[done].time, since, until):
                wanted += 1
            done += 1
        return wanted >= count and all(t.closed for t in trailing)

    def start() -> Position:
        return min(line.first for line in lines[:done] + trailing)

    if count <= 0:
        return len(files), 0
    floor = False  # records from here back are older than ``since``: no new line counts
    seen: set[bytes] = set()
    beyond = -1  # bytes read since the lines were found, looking for the other stream's end
    for pos, rec in _backwards(files, stats=stats):
        seen.add(rec.stream)
        if beyond >= 0:
            beyond += rec.size
        line = open_line.get(rec.stream)
        if line is not None and rec.partial and line.size < MAX_LINE:
            line.first, line.time, line.size = pos, rec.time, line.size + rec.size
        else:
            if line is not None:  # this record ends the line before: that began after it
                line.closed = True
                del open_line[rec.stream]
            floor = floor or (since is not None and rec.time < since)
            if not floor:
                open_line[rec.stream] = _Line(pos, rec.time, rec.size)
                lines.append(open_line[rec.stream])
                if rec.partial and line is None:
                    trailing.append(open_line[rec.stream])
            elif not open_line:  # the lines begun after the floor are whole
                return min((x.first for x in lines), default=(len(files), 0))
        if settle():
            # a stream whose last record is a "P" run shows it last: look for its end a while
            if len(seen) == 2 or beyond > LOOK_BEYOND:
                return start()
            beyond = max(beyond, 0)
    return 0, 0


def _forward_lines(fd: int, offset: int, end: int) -> Iterator[tuple[int, bytes]]:
    """The whole lines from ``offset`` (a line's start) to ``end``, with their offsets."""
    rest, pos = b"", offset
    while pos < end:
        block = os.pread(fd, min(BLOCK, end - pos), pos)
        if not block:
            return
        data, base = rest + block, pos - len(rest)
        pos += len(block)
        start = 0
        while (nl := data.find(b"\n", start)) >= 0:
            yield base + start, data[start:nl]
            start = nl + 1
        rest = data[start:] if len(data) - start <= MAX_RECORD else b""


def _boundary(fd: int, offset: int, end: int) -> int:
    """The start of the first line at or after ``offset``."""
    if offset == 0 or os.pread(fd, 1, offset - 1) == b"\n":
        return offset
    while offset < end:
        block = os.pread(fd, min(BLOCK, end - offset), offset)
        if not block:
            break
        nl = block.find(b"\n")
        if nl >= 0:
            return offset + nl + 1
        offset += len(block)
    return end


def _first_record(fd: int, offset: int, end: int) -> tuple[int, datetime] | None:
    """The first record beginning at or after ``offset`` (which may be mid-line)."""
    for off, line in _forward_lines(fd, _boundary(fd, offset, end), end):
        rec = _record(line)
        if rec is not None:
            return off, rec.time
    return None


def _bisect(fd: int, since: datetime) -> int:
    """The offset of the first record at or after ``since`` in an open file."""
    end = os.fstat(fd).st_size
    lo, hi = 0, end  # the answer is the first record at or after lo, and at or before hi's
    while hi - lo > BLOCK:
        mid = (lo + hi) // 2
        found = _first_record(fd, mid, end)
        if found is None or found[1] >= since:
            hi = mid
        else:
            lo = found[0] + 1
    for off, line in _forward_lines(fd, _boundary(fd, lo, end), end):
        rec = _record(line)
        if rec is not None and rec.time >= since:
            return off
    return end


def line_start(files: list[Path], pos: Position) -> Position:
    """``pos`` moved back to the first piece of any line still open there (begun by ``P``
    records before it), so that reading from it joins whole lines. A stream not met within
    ``LOOK_BEYOND`` bytes is taken to have no line open."""
    best, scanned = pos, 0
    resolved: set[bytes] = set()  # streams whose last record before the start is an "F"
    open_size: dict[bytes, int] = {}
    for at, rec in _backwards(files, start=pos):
        scanned += rec.size
        if rec.stream not in resolved:
            if rec.partial and open_size.get(rec.stream, 0) < MAX_LINE:
                best = min(best, at)
                open_size[rec.stream] = open_size.get(rec.stream, 0) + rec.size
            else:
                resolved.add(rec.stream)
        if len(resolved) == 2 or (scanned > LOOK_BEYOND and resolved >= open_size.keys()):
            break
    return best


def since_start(files: list[Path], since: datetime) -> Position:
    """A position before which every record is older than ``since``: the files that begin
    after it are read whole, the one holding it is bisected, older ones are not read."""
    for i in range(len(files) - 1, -1, -1):
        fd = _open(files[i])
        if fd is None:
            continue
        try:
            first = _first_record(fd, 0, os.fstat(fd).st_size)
            if first is None or first[1] >= since:
                continue
            return line_start(files, (i, _bisect(fd, since)))
        finally:
            os.close(fd)
    return 0, 0
