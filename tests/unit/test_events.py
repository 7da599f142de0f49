"""engine.store.events: the event shape, the journal (appends, rotation, following), the bus."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from pathlib import Path

import pytest
from loguru import logger
from waiting import wait_for

from engine.errors import InvalidParameter
from engine.store.events import Event, EventBus, EventJournal, emit, matches

CID = "a" * 64


def ev(i: int, action: str = "start", t: float | None = None, **attrs: str) -> Event:
    return Event(time=1_700_000_000.0 + i if t is None else t, type="container",
                 action=action, id=CID, attributes={"name": f"c{i}", **attrs})


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True) if path.exists() else []


# -- Event -------------------------------------------------------------------------------------


def test_event_dict_is_dockers_shape() -> None:
    e = Event(time=1_700_000_000.123456, type="container", action="die", id=CID,
              attributes={"name": "web", "exitCode": "3"})
    d = e.to_dict()
    assert d["Type"] == "container" and d["Action"] == "die"
    assert d["Actor"] == {"ID": CID, "Attributes": {"name": "web", "exitCode": "3"}}
    assert d["time"] == 1_700_000_000
    assert d["timeNano"] // 1000 == 1_700_000_000_123_456
    assert Event.from_dict(json.loads(json.dumps(d))) == e


def test_event_from_dict_without_nanos_and_errors() -> None:
    e = Event.from_dict({"Type": "image", "Action": "pull", "Actor": {"ID": "x"}, "time": 5})
    assert (e.time, e.type, e.action, e.id, e.attributes) == (5.0, "image", "pull", "x", {})
    for bad in ([], {}, {"Type": "container", "Action": "start"},
                {"Type": 1, "Action": "start", "time": 1},
                {"Type": "container", "Action": "start", "time": "soon"},
                {"Type": "container", "Action": "x", "time": 1, "Actor": {"Attributes": "x"}}):
        with pytest.raises(InvalidParameter):
            Event.from_dict(bad)


def test_event_is_hashable_and_now() -> None:
    e = Event.now("container", "create", CID, name="web")
    assert abs(e.time - time.time()) < 5
    assert e.attributes == {"name": "web"}
    assert len({e, e}) == 1


# -- journal -----------------------------------------------------------------------------------


def test_journal_append_and_read(tmp_path: Path) -> None:
    j = EventJournal(tmp_path / "events.jsonl")
    assert list(j.read()) == []
    for i in range(5):
        j.append(ev(i))
    assert list(j.read()) == [ev(i) for i in range(5)]
    assert list(j.read(since=1_700_000_001, until=1_700_000_003)) == [ev(1), ev(2), ev(3)]
    assert all(line.endswith(b"\n") for line in lines_of(j.path))
    assert (os.stat(j.path).st_mode & 0o777) == 0o600


def test_journal_skips_malformed_lines(tmp_path: Path) -> None:
    j = EventJournal(tmp_path / "events.jsonl")
    j.append(ev(0))
    with open(j.path, "ab") as f:
        f.write(b"not json\n[1, 2]\n{\"Type\": \"container\"}\n\xff\xfe\n")
    j.append(ev(1))
    with open(j.path, "ab") as f:
        f.write(b'{"Type":"container","Action":"st')  # a writer cut short
    assert list(j.read()) == [ev(0), ev(1)]


def _append_many(path: str, worker: int, count: int, max_bytes: int) -> None:
    j = EventJournal(Path(path), max_bytes=max_bytes)
    for i in range(count):
        # long attributes make lines bigger than one page: they still must not mix
        j.append(Event(time=time.time(), type="container", action="start", id=CID,
                       attributes={"worker": str(worker), "i": str(i),
                                   "pad": chr(ord("a") + worker) * 5000}))


def _run_workers(path: Path, workers: int, count: int, max_bytes: int) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(str(path), w, count, max_bytes))
             for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(10)
        assert p.exitcode == 0


def test_concurrent_appends_from_processes_are_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    _run_workers(path, workers=4, count=100, max_bytes=64 << 20)
    lines = lines_of(path)
    assert len(lines) == 400
    seen = set()
    for line in lines:
        d = json.loads(line)  # whole, never interleaved
        attrs = d["Actor"]["Attributes"]
        assert attrs["pad"] == chr(ord("a") + int(attrs["worker"])) * 5000
        seen.add((attrs["worker"], attrs["i"]))
    assert len(seen) == 400


def test_concurrent_appends_with_rotation(tmp_path: Path) -> None:
    j = EventJournal(tmp_path / "events.jsonl", max_bytes=100_000)
    _run_workers(j.path, workers=4, count=100, max_bytes=j.max_bytes)
    for path in (j.path, j.rotated):
        assert path.stat().st_size <= j.max_bytes
        for line in lines_of(path):
            json.loads(line)
    events = list(j.read())
    keys = [(e.attributes["worker"], int(e.attributes["i"])) for e in events]
    assert len(keys) == len(set(keys)) > 0
    # each worker's events stay in its order, and the very last append is still there
    for w in range(4):
        mine = [i for worker, i in keys if worker == str(w)]
        assert mine == sorted(mine)
    assert keys[-1][1] == 99


def test_rotation_keeps_one_old_generation(tmp_path: Path) -> None:
    j = EventJournal(tmp_path / "events.jsonl", max_bytes=2000)
    line_size = len(lines_of(_one_line(tmp_path))[0])
    for i in range(100):
        j.append(ev(i))
    assert j.path.stat().st_size <= 2000
    assert j.rotated.stat().st_size <= 2000
    assert not (tmp_path / "events.jsonl.2").exists()
    got = list(j.read())
    per_file = 2000 // line_size
    assert len(lines_of(j.rotated)) == per_file
    assert got == [ev(i) for i in range(100 - len(got), 100)]
    assert len(got) > per_file


def _one_line(tmp_path: Path) -> Path:
    j = EventJournal(tmp_path / "one.jsonl")
    j.append(ev(0))
    return j.path


def test_oversized_event_is_still_written(tmp_path: Path) -> None:
    j = EventJournal(tmp_path / "events.jsonl", max_bytes=10)
    j.append(ev(0))
    j.append(ev(1))
    assert list(j.read()) == [ev(0), ev(1)]
    assert len(lines_of(j.path)) == 1


def _follow_in_thread(j: EventJournal, **kwargs: object) -> tuple[list[Event],
                                                                   threading.Event,
                                                                   threading.Thread]:
    got: list[Event] = []
    stop = threading.Event()

    def run() -> None:
        got.extend(j.follow(stop=stop.is_set, poll_interval=0.005, **kwargs))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return got, stop, t


def test_follow_existing_then_new(tmp_path: Path) -> None:
    j = EventJournal(tmp_path / "events.jsonl")
    for i in range(3):
        j.append(ev(i))
    got, stop, t = _follow_in_thread(j, since=1_700_000_001)
    wait_for(lambda: len(got) == 2, timeout=2.0, interval=0.005)
    for i in range(3, 50):
        j.append(ev(i))
    stop.set()  # right after the last append: it still comes out
    t.join(2)
    assert not t.is_alive()
    assert got == [ev(i) for i in range(1, 50)]


def test_follow_journal_created_later(tmp_path: Path) -> None:
    j = EventJournal(tmp_path / "events.jsonl")
    got, stop, t = _follow_in_thread(j)
    time.sleep(0.03)
    j.append(ev(0))
    wait_for(lambda: len(got) == 1, timeout=2.0, interval=0.005)
    stop.set()
    t.join(2)
    assert got == [ev(0)]


def test_follow_across_rotation(tmp_path: Path) -> None:
    j = EventJournal(tmp_path / "events.jsonl", max_bytes=6000)
    for i in range(10):
        j.append(ev(i))
    got, stop, t = _follow_in_thread(j)
    wait_for(lambda: len(got) == 10, timeout=2.0, interval=0.005)
    for i in range(10, 150):
        j.append(ev(i))
        time.sleep(0.002)
    wait_for(lambda: len(got) == 150, timeout=2.0, interval=0.005)
    stop.set()
    t.join(2)
    assert j.rotated.exists()
    assert got == [ev(i) for i in range(150)]


def test_follow_reads_the_old_generation_first(tmp_path: Path) -> None:
    j = EventJournal(tmp_path / "events.jsonl", max_bytes=1000)
    for i in range(12):
        j.append(ev(i))
    on_disk = list(j.read())
    got, stop, t = _follow_in_thread(j)
    wait_for(lambda: len(got) == len(on_disk), timeout=2.0, interval=0.005)
    stop.set()
    t.join(2)
    assert got == on_disk


# -- bus ---------------------------------------------------------------------------------------


def test_bus_filters_and_unsubscribe() -> None:
    bus = EventBus()
    everything: list[Event] = []
    dies: list[Event] = []
    web: list[Event] = []
    bus.subscribe(everything.append)
    undo = bus.subscribe(dies.append, {"type": "container", "action": "die"})
    bus.subscribe(web.append, {"name": "web", "id": CID})
    a = Event(1.0, "container", "die", CID, {"name": "web"})
    b = Event(2.0, "container", "start", CID, {"name": "web"})
    c = Event(3.0, "container", "die", "b" * 64, {"name": "db"})
    d = Event(4.0, "image", "die", "x", {})
    for e in (a, b, c, d):
        bus.publish(e)
    assert everything == [a, b, c, d]
    assert dies == [a, c]
    assert web == [a, b]
    undo()
    undo()  # harmless twice
    bus.publish(a)
    assert dies == [a, c]
    assert everything[-1] == a


def test_bus_rejects_unknown_filter() -> None:
    with pytest.raises(InvalidParameter, match="colour"):
        EventBus().subscribe(print, {"colour": "red"})
    with pytest.raises(InvalidParameter):
        matches(ev(0), {"colour": "red"})


def test_raising_subscriber_breaks_nothing() -> None:
    bus = EventBus()
    got: list[Event] = []
    messages: list[str] = []

    def bad(_: Event) -> None:
        raise RuntimeError("boom")

    bus.subscribe(bad)
    bus.subscribe(got.append)
    logger.enable("engine.store.events")
    sink = logger.add(lambda m: messages.append(str(m)), level="ERROR")
    try:
        bus.publish(ev(0))  # does not raise
    finally:
        logger.remove(sink)
        logger.disable("engine.store.events")
    assert got == [ev(0)]
    assert any("boom" in m and "failed" in m for m in messages)


def test_bus_threads_and_unsubscribe_from_a_callback() -> None:
    bus = EventBus()
    counts = [0] * 8
    lock = threading.Lock()

    def counter(k: int):  # noqa: ANN202
        def cb(_: Event) -> None:
            with lock:
                counts[k] += 1
        return cb

    undos = [bus.subscribe(counter(k)) for k in range(8)]
    once: list[Event] = []

    def one_shot(e: Event) -> None:
        once.append(e)
        undo_once()

    undo_once = bus.subscribe(one_shot)

    def publisher() -> None:
        for i in range(200):
            bus.publish(ev(i))

    threads = [threading.Thread(target=publisher) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counts == [800] * 8
    assert 1 <= len(once) <= 4  # each publisher may have snapshotted it before it left
    for undo in undos:
        undo()
    bus.publish(ev(0))
    assert counts == [800] * 8


def test_emit_journals_then_publishes(tmp_path: Path) -> None:
    j = EventJournal(tmp_path / "events.jsonl")
    bus = EventBus()
    seen: list[Event] = []
    bus.subscribe(lambda e: seen.append(e) or None)
    emit(ev(0), journal=j, bus=bus)
    assert list(j.read()) == seen == [ev(0)]
    # a journal that cannot be written does not stop the event
    emit(ev(1), journal=EventJournal(tmp_path / "missing" / "events.jsonl"), bus=bus)
    assert seen == [ev(0), ev(1)]
