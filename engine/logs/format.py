"""conmon's k8s-file record: ``<RFC3339Nano time> <stdout|stderr> <F|P> <text>``.

``F`` ends a line of the container's output, ``P`` is a piece of a longer line whose rest
follows in the next record of the same stream. Parsing never raises: a line that is not a
record (conmon mid-write, a damaged file) is None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))\Z",
    re.ASCII,
)


@dataclass(frozen=True)
class RawRecord:
    time: datetime
    stream: str
    partial: bool
    text: bytes


def zone(z: str | None, sign: str | None, hh: str | None, mm: str | None) -> timezone | None:
    if z:
        return UTC
    if sign:
        offset = timedelta(hours=int(hh or 0), minutes=int(mm or 0))
        return timezone(-offset if sign == "-" else offset)
    return None


def micros(fraction: str | None) -> int:
    # datetime stops at microseconds: the nanoseconds are truncated, not rounded, so that a
    # record never moves past a later one.
    return int((fraction or "0")[:6].ljust(6, "0"))


def _parse_timestamp(value: str) -> datetime | None:
    m = _TIMESTAMP.match(value)
    if m is None:
        return None
    y, mo, d, h, mi, s, frac, z, sign, hh, mm = m.groups()
    try:
        return datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), micros(frac),
                        tzinfo=zone(z, sign, hh, mm))
    except ValueError:
        return None


def parse_record(line: bytes) -> RawRecord | None:
    """One record (a line without its newline), or None."""
    parts = line.split(b" ", 3)
    if len(parts) < 3:
        return None
    stamp, stream, tag = parts[0], parts[1], parts[2]
    if stream not in (b"stdout", b"stderr") or tag not in (b"F", b"P"):
        return None
    try:
        when = _parse_timestamp(stamp.decode("ascii"))
    except UnicodeDecodeError:
        return None
    if when is None:
        return None
    # conmon writes an empty line as "<time> stdout F" or with the separating space
    text = parts[3] if len(parts) == 4 else b""
    return RawRecord(when, stream.decode(), tag == b"P", text)
