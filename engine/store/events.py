"""Events: what happened to containers and images, told to subscribers and kept on disk.

- ``Event``: one event, shaped like Docker's event JSON by ``to_dict``/``from_dict``;
- ``EventJournal``: the JSON-lines file every engine process and CLI appends to, read back
  (``corral events --since``) and followed (``corral events``), bounded by rotation;
- ``EventBus``: in-process subscribers with Docker's event filters;
- ``matches``, ``emit``: a filter test and the journal-then-bus convenience.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidParameter
from ..log import logger
from ..logs.reader import LineTailer

DEFAULT_MAX_BYTES = 8 << 20
FILTER_KEYS = frozenset({"type", "action", "id", "name"})
_NS = 1_000_000_000


def _to_nanos(t: float) -> int:
    # Split first: the whole seconds and the fraction are exact floats, so nothing is lost
    # below the microsecond as ``int(t * 1e9)`` would lose it.
    whole = int(t // 1)
    return whole * _NS + round((t - whole) * _NS)


def _from_nanos(ns: int) -> float:
    whole, frac = divmod(ns, _NS)
    return whole + frac / _NS


@dataclass(frozen=True)
class Event:
    """One event; ``time`` in Unix seconds, ``attributes`` as Docker's (name, image, exitCode)."""

    time: float
    type: str
    action: str
    id: str
    attributes: dict[str, str] = field(default_factory=dict, hash=False)

    @classmethod
    def now(cls, type: str, action: str, id: str, **attributes: str) -> Event:
        return cls(time.time(), type, action, id, dict(attributes))

    def to_dict(self) -> dict[str, Any]:
        return {
            "Type": self.type,
            "Action": self.action,
            "Actor": {"ID": self.id, "Attributes": dict(self.attributes)},
            "scope": "local",
            "time": int(self.time // 1),
            "timeNano": _to_nanos(self.time),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Event:
        """The event in ``data``; InvalidParameter when it is not one."""
        try:
            actor = data.get("Actor") or {}
            attributes = actor.get("Attributes") or {}
            if data.get("timeNano") is not None:
                when = _from_nanos(int(data["timeNano"]))
            else:
                when = float(data["time"])
            kind, action, ident = data["Type"], data["Action"], actor.get("ID", "")
            if not all(isinstance(v, str) for v in (kind, action, ident)):
                raise TypeError("Type, Action and Actor.ID must be strings")
            return cls(when, kind, action, ident,
                       {str(k): str(v) for k, v in attributes.items()})
        except (AttributeError, KeyError, TypeError, ValueError, OverflowError) as exc:
            raise InvalidParameter(f"not an event: {exc}") from exc


def _parse(line: bytes) -> Event | None:
    try:
        return Event.from_dict(json.loads(line))
    except (ValueError, InvalidParameter):  # a line cut short, or not ours: skip it
        return None


def matches(event: Event, filters: dict[str, str] | None) -> bool:
    """Whether ``event`` passes every filter (keys: type, action, id, name)."""
    if not filters:
        return True
    for key, want in filters.items():
        if key == "name":
            have = event.attributes.get("name")
        elif key in FILTER_KEYS:
            have = getattr(event, key)
        else:
            raise InvalidParameter(
                f"invalid event filter {key!r}: expected one of {', '.join(sorted(FILTER_KEYS))}")
        if have != want:
            return False
    return True


class EventJournal:
    """The events of one engine root, one JSON object per line, shared by processes.

    Appends are single ``write``s on an ``O_APPEND`` file, so lines of concurrent writers
    never mix. Past ``max_bytes`` the file is renamed to ``<path>.1`` (the older generation is
    dropped). A writer holds an exclusive ``flock`` on ``<path>.lock`` over its size check,
    rotation and write: the size stays bounded, and when a follower sees a new file nothing
    will be written to the old one any more, so reading the old one to its end loses nothing.
    """

    def __init__(self, path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.rotated = self.path.with_name(self.path.name + ".1")
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    @contextlib.contextmanager
    def _locked(self, how: int) -> Iterator[None]:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, how)
            yield
        finally:
            os.close(fd)

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def _write(self, fd: int, data: bytes) -> None:
        written = os.write(fd, data)
        if written != len(data):
            # only on a full disk or a file size limit; the cut line is skipped by readers
            raise OSError(f"short write to {self.path}: {written} of {len(data)} bytes")

    def append(self, event: Event) -> None:
        """Add ``event`` to the journal; raises OSError when the disk refuses."""
        data = json.dumps(event.to_dict(), separators=(",", ":"), sort_keys=True).encode()
        data += b"\n"
        # exclusive: under a shared lock two writers could both find room for their line and
        # together pass max_bytes
        with self._locked(fcntl.LOCK_EX):
            fd = self._open()
            try:
                size = os.fstat(fd).st_size
                if size and size + len(data) > self.max_bytes:
                    os.replace(self.path, self.rotated)
                    os.close(fd)
                    fd = self._open()
                self._write(fd, data)
            finally:
                os.close(fd)

    def _open_generations(self) -> tuple[int | None, int | None]:
        """File descriptors of the old and the current file, as one consistent pair."""
        def opened(path: Path) -> int | None:
            try:
                return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return None

        def ident(fd: int) -> tuple[int, int]:
            st = os.fstat(fd)
            return st.st_dev, st.st_ino

        current = opened(self.path)
        old = opened(self.rotated)
        if current is not None and old is not None and ident(current) == ident(old):
            # rotated between the two opens: what we opened as current is the old one now
            os.close(old)
            old, current = current, opened(self.path)
        return old, current

    def read(self, since: float | None = None, until: float | None = None) -> Iterator[Event]:
        """The events on disk, oldest first, with ``since <= time <= until``."""
        old, current = self._open_generations()
        try:
            for fd in (old, current):
                if fd is None:
                    continue
                with os.fdopen(fd, "rb", closefd=False) as f:
                    for line in f:
                        ev = _parse(line)
                        if ev is None:
                            continue
                        if (since is None or ev.time >= since) and (
                                until is None or ev.time <= until):
                            yield ev
        finally:
            for fd in (old, current):
                if fd is not None:
                    os.close(fd)

    def follow(self, since: float | None = None, stop: Callable[[], bool] | None = None,
               poll_interval: float = 0.05) -> Iterator[Event]:
        """The events on disk from ``since`` (all of them when None), then new ones as they
        are appended, until ``stop()`` is true; the journal may not exist yet."""
        def wanted(lines: Iterable[bytes]) -> Iterator[Event]:
            for line in lines:
                ev = _parse(line)
                if ev is not None and (since is None or ev.time >= since):
                    yield ev

        with LineTailer(self.path) as tailer:
            tailer.open()
            try:
                fd = os.open(self.rotated, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                fd = None
            if fd is not None:
                with os.fdopen(fd, "rb") as f:
                    st = os.fstat(f.fileno())
                    # unless it is the file the tailer holds, rotated meanwhile
                    if (st.st_dev, st.st_ino) != tailer.identity:
                        yield from wanted(f)
            while True:
                # asked before reading, so that the last read sees all that came before
                last = stop is not None and stop()
                got = False
                for ev in wanted(tailer.read_lines()):
                    got = True
                    yield ev
                if last:
                    yield from wanted([tailer.take_remainder()])
                    return
                if not got:
                    time.sleep(poll_interval)


class EventBus:
    """In-process subscribers; callbacks run in the publisher's thread, in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[int, tuple[Callable[[Event], None], dict[str, str]]] = {}
        self._next = 0

    def subscribe(self, callback: Callable[[Event], None],
                  filters: dict[str, str] | None = None) -> Callable[[], None]:
        """Call ``callback(event)`` for each published event that passes ``filters``; returns
        the function that ends the subscription (calling it twice is harmless)."""
        filters = dict(filters or {})
        unknown = set(filters) - FILTER_KEYS
        if unknown:
            raise InvalidParameter(
                f"invalid event filter {sorted(unknown)[0]!r}: expected one of "
                f"{', '.join(sorted(FILTER_KEYS))}")
        with self._lock:
            token = self._next
            self._next += 1
            self._subscribers[token] = (callback, filters)

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers.pop(token, None)

        return unsubscribe

    def publish(self, event: Event) -> None:
        # callbacks run outside the lock, so one may subscribe or unsubscribe from within
        with self._lock:
            subscribers = list(self._subscribers.values())
        for callback, filters in subscribers:
            if not matches(event, filters):
                continue
            try:
                callback(event)
            except Exception:
                logger.exception("event subscriber {!r} failed on {} {}", callback,
                                 event.type, event.action)


def emit(event: Event, *, journal: EventJournal | None = None,
         bus: EventBus | None = None) -> None:
    """Journal ``event``, then publish it. A journal that cannot be written is logged, not
    raised: the event tells of something already done, which must not fail after the fact."""
    if journal is not None:
        try:
            journal.append(event)
        except OSError as exc:
            logger.warning("cannot append to the event journal {}: {}", journal.path, exc)
    if bus is not None:
        bus.publish(event)
