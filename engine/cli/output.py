"""What every verb writes: stdout lines, one-line errors, Docker's tables, human sizes and
durations, the STATUS column.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import Any

ZERO_TIME_PREFIX = "0001-01-01"


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _one_line(message: object) -> str:
    # runc and conmon messages may span lines; a script reading our stderr expects one
    return " ".join(str(message).split()) or type(message).__name__


def _error(message: object) -> None:
    # an error made of several (every problem of a deployment file): one line each
    for item in getattr(message, "errors", None) or [message]:
        sys.stderr.write(f"Error: {_one_line(item)}\n")
    sys.stderr.flush()


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Columns as Docker's tabwriter lays them out: at least 10 wide, 3 spaces of padding."""
    rows = [list(r) for r in rows]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    widths = [max(10, w + 3) for w in widths]
    for r in [list(headers), *rows]:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(r[:-1])]
        _out(("".join(cells) + r[-1]).rstrip())


def human_duration(seconds: float) -> str:
    """Docker's ``units.HumanDuration`` ("Less than a second", "3 seconds", "About an hour")."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def human_size(size: float, precision: int = 3) -> str:
    """Docker's ``units.HumanSizeWithPrecision(size, 3)``: decimal units, e.g. ``1.23MB``
    (``units.HumanSize`` with ``precision`` 4)."""
    units = ("B", "kB", "MB", "GB", "TB", "PB")
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000
        i += 1
    return f"{size:.{precision}g}{units[i]}"


def _epoch(stamp: str) -> float | None:
    """Seconds since the epoch of an RFC 3339 time; None for Go's zero time or garbage."""
    from datetime import datetime

    if not stamp or stamp.startswith(ZERO_TIME_PREFIX):
        return None
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None


def _ago(stamp: str, now: float) -> str:
    t = _epoch(stamp)
    return "" if t is None else f"{human_duration(max(0.0, now - t))} ago"


def container_status(info: dict[str, Any], now: float) -> str:
    """The STATUS column of ``docker ps``."""
    state = info["State"]
    started, finished = _epoch(info.get("StartedAt", "")), _epoch(info.get("FinishedAt", ""))
    if state in ("running", "paused"):
        up = f"Up {human_duration(max(0.0, now - started))}" if started else "Up"
        if state == "paused":
            return f"{up} (Paused)"
        return f"{up} ({info['Health']})" if info.get("Health") else up
    if state == "dead":
        word = "Restarting" if info.get("Restarting") else "Exited"  # Docker's backoff
        exited = f"{word} ({info.get('ExitCode', 0)})"
        return f"{exited} {human_duration(max(0.0, now - finished))} ago" if finished else exited
    return {"created": "Created", "starting": "Starting",
            "removing": "Removal In Progress"}.get(state, state.capitalize())
