"""Corrupt state under the engine's root: truncated, empty or garbage state and config files,
a config whose ID is not its folder's, an unknown status, stray temporary files and folders.
The engine starts, sets each bad entry aside with a warning (after tearing down what it held),
removes the strays, and serves the rest."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from leakprobe import LeakProbe
from loguru import logger

from engine import Engine, NotFound, SystemFailure
from engine.host.runc import process_alive

OLD = time.time() - 3600  # older than any write or create takes


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    """The warnings the engine logs (the library's logger is off unless enabled)."""
    seen: list[str] = []
    logger.enable("engine")
    sink = logger.add(lambda m: seen.append(m.record["message"]), level="WARNING")
    try:
        yield seen
    finally:
        logger.remove(sink)
        logger.disable("engine")


def dead_pid() -> int:
    proc = subprocess.Popen(["/bin/true"])
    proc.wait()
    return proc.pid


def corrupt(path: Path, how: str, other: Path | None = None) -> None:
    if how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(b"\x00\xff\xfe not json at all {{{")
    elif how == "wrong shape":
        path.write_text("[1, 2, 3]")
    elif how == "unknown status":
        data = json.loads(path.read_text())
        data["status"] = "undead"
        path.write_text(json.dumps(data))
    elif how == "other id":
        assert other is not None
        path.write_bytes(other.read_bytes())
    elif how == "missing":
        path.unlink()


# (name, which file, how, running when corrupted)
BAD: list[tuple[str, str, str, bool]] = [
    ("bad-trunc-run", "state", "truncated", True),
    ("bad-empty", "state", "empty", False),
    ("bad-garbage", "config", "garbage", False),
    ("bad-shape", "state", "wrong shape", True),
    ("bad-status", "state", "unknown status", False),
    ("bad-other-id", "config", "other id", True),
    ("bad-missing", "config", "missing", False),
]


def test_bad_entries_are_set_aside_and_the_rest_is_served(root_dir: Path,
                                                          warnings: list[str]) -> None:
    eng = Engine(root_dir, watch=False)
    try:
        image = eng.images.busybox().name
        good_run = eng.create(image, ["/bin/sleep", "60"], name="good-run",
                              publish=["127.0.0.1::80"])
        eng.start(good_run)
        good_pid = eng.inspect(good_run)["State"]["Pid"]
        good_new = eng.create(image, ["/bin/true"], name="good-new")
        bad: dict[str, str] = {}
        for name, which, how, running in BAD:
            cid = eng.create(image, ["/bin/sleep", "60"], name=name, publish=["127.0.0.1::80"])
            if running:
                eng.start(cid)
            paths = eng.layout.container(cid)
            corrupt(paths.state if which == "state" else paths.config, how,
                    other=eng.layout.container(good_run).config)
            bad[name] = cid
    finally:
        eng.close()
    strays = make_strays(root_dir, good_new)

    again = Engine(root_dir, watch=False)  # starts, whatever it finds
    probe = LeakProbe(again.layout)
    try:
        assert {c["Name"] for c in again.list(all=True)} == {"good-run", "good-new"}
        state = again.inspect("good-run")["State"]
        assert state["Status"] == "running" and state["Pid"] == good_pid
        assert process_alive(good_pid)
        quarantined = set(os.listdir(root_dir / "quarantine"))
        for name, cid in bad.items():
            assert cid in quarantined, name
            assert any(cid in w and "set aside" in w for w in warnings), (name, warnings)
            with pytest.raises(NotFound):
                again.inspect(name)  # its name is free again
            assert probe.leaks(cid) == [], name  # what it held is gone, running or not
        for path in strays:
            assert not os.path.lexists(path), path
        assert probe.temporary_files() == []

        # a second engine finds nothing more to do
        warnings.clear()
        Engine(root_dir, watch=False).close()
        assert warnings == []

        # the rest works: names of set-aside entries are reusable, good containers act
        reuse = again.create(image, ["/bin/sleep", "60"], name="bad-trunc-run")
        again.start(reuse)
        again.start(good_new)
        again.stop("good-run", timeout=0)
        for cid in (reuse, good_new, good_run):
            again.remove(cid, force=True)
            assert probe.leaks(cid, removed=True) == []
    finally:
        again.close()


def make_strays(root: Path, good: str) -> list[Path]:
    """What interrupted writes, creates and removals leave; returns what must go."""
    containers = root / "containers"
    pid = dead_pid()
    strays = [
        containers / good / f".state.json.{pid}.{threading.get_ident()}.tmp",
        root / "networks" / f".bridge.leases.json.{pid}.1.tmp",
        root / f".events.jsonl.{pid}.7.tmp",
    ]
    for path in strays:
        path.write_text('{"half": ')
    # a create that died after claiming its name and filling its folder
    cid = "ab" * 32
    half = containers / f".tmp-{cid}"
    half.mkdir()
    (half / "config.json").write_text("{}")
    os.symlink(cid, root / "names" / "half-made")
    # a create that died after claiming its name only
    os.symlink("cd" * 32, root / "names" / "name-only")
    for path in (half, root / "names" / "half-made", root / "names" / "name-only"):
        os.utime(path, (OLD, OLD), follow_symlinks=False)
    # a removal that died after renaming the folder
    trash = containers / f".trash-{'ef' * 32}"
    trash.mkdir()
    (trash / "state.json").write_text("{}")
    return [*strays, half, root / "names" / "half-made", root / "names" / "name-only", trash]


def test_fresh_temporaries_of_live_writers_are_kept(root_dir: Path) -> None:
    """A temporary file whose writer is alive may be a write in flight: kept until it is
    older than any write takes."""
    eng = Engine(root_dir, watch=False)
    eng.close()
    live = root_dir / "networks" / f".bridge.json.{os.getppid()}.1.tmp"
    live.parent.mkdir(exist_ok=True)
    live.write_text("{")
    fresh_create = root_dir / "containers" / f".tmp-{'12' * 32}"
    fresh_create.mkdir()
    os.symlink("12" * 32, root_dir / "names" / "in-flight")
    Engine(root_dir, watch=False).close()
    assert live.exists() and fresh_create.exists()
    assert os.path.lexists(root_dir / "names" / "in-flight")
    for path in (live, fresh_create, root_dir / "names" / "in-flight"):
        os.utime(path, (OLD, OLD), follow_symlinks=False)
    Engine(root_dir, watch=False).close()
    assert not live.exists() and not fresh_create.exists()
    assert not os.path.lexists(root_dir / "names" / "in-flight")


@pytest.mark.parametrize("how", ["truncated", "garbage", "wrong shape", "empty"])
def test_reads_of_a_bad_entry_are_typed_errors(root_dir: Path, how: str) -> None:
    """Without the check at start (``reconcile=False``), a bad entry is a typed error for
    whoever asks for it, and invisible to ``list``: never a crash."""
    eng = Engine(root_dir, watch=False)
    try:
        image = eng.images.busybox().name
        ok = eng.create(image, ["/bin/true"], name="ok")
        cid = eng.create(image, ["/bin/true"], name="broken")
    finally:
        eng.close()
    corrupt(root_dir / "containers" / cid / "state.json", how)
    raw = Engine(root_dir, watch=False, reconcile=False)
    try:
        assert [c["Id"] for c in raw.list(all=True)] == [ok]
        calls: list[Callable[[], object]] = [lambda: raw.inspect("broken"),
                                             lambda: raw.start("broken"),
                                             lambda: raw.remove("broken")]
        for call in calls:
            with pytest.raises(SystemFailure, match="unreadable state"):
                call()
    finally:
        raw.close()


def test_garbage_in_the_event_journal_is_skipped(engine, busybox) -> None:
    cid = engine.create(busybox, ["/bin/true"])
    with open(engine.layout.events, "ab") as f:
        f.write(b'{"Type": "container", "Act')  # a line cut short by a crash
        f.write(b"\n\x00\xff garbage\n")
    engine.remove(cid)
    assert [e.action for e in engine.events()] == ["create", "destroy"]
