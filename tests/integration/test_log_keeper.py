"""One log keeper per engine root, with real conmon: shared by every kept container, each
container's files kept, a killed keeper brought back by the next ``logs`` or start and
catching up, the keeper leaving after the last kept log, no zombie in the embedding process."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from leakprobe import keeper_pids, kept
from test_log_rotation import PAD, numbered_writer, numbers
from waiting import wait_for

from engine.logs import keeper as logkeeper
from engine.logs.files import log_files
from engine.logs.reader import read_logs

SIZE = 8 * 1024


def zombie_children() -> list[int]:
    """Children of this (embedding) process that ended and were not reaped."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if stat[0] == "Z" and int(stat[1]) == os.getpid():
                found.append(int(entry.name))
    return found


def the_keeper(engine) -> int:
    """The root's one keeper, once a second one started in a race has left (a keeper that
    finds the lock taken leaves)."""
    wait_for(lambda: len(keeper_pids(engine.layout)) == 1, timeout=10, what="one keeper")
    return keeper_pids(engine.layout)[0]


def lines_in(path: Path) -> list[int]:
    """The numbered lines in the files of a log, read without any engine operation (which
    would bring a killed keeper back)."""
    return numbers([r.text for r in read_logs(path) if r.text.startswith("line ")])


def writer_then_wait(lines: int) -> list[str]:
    """Write ``lines`` numbered lines, then stay up (so its conmon, and its keeping, stay)."""
    return ["sh", "-c", f"{numbered_writer(lines)[2]}; sleep 60"]


@pytest.mark.parametrize("count", [2, 5])
def test_containers_share_one_keeper_and_each_keeps_its_files(engine, busybox, probe,
                                                              count: int) -> None:
    cids = [engine.create(busybox, writer_then_wait(300), network="none",
                          log_opts={"max-size": "8k", "max-file": "2"}) for _ in range(count)]
    for cid in cids:
        engine.start(cid)
    for cid in cids:
        path = engine.layout.container(cid).log
        wait_for(lambda path=path: (lines_in(path) or [0])[-1] == 299, timeout=60,
                 what="the writer's last line")
    assert logkeeper.keeper_pid(engine.layout.logkeeper) == the_keeper(engine)
    for cid in cids:
        path = engine.layout.container(cid).log
        files = log_files(path)
        # ~105 bytes a record, 31 kB written: three rotations, the last two files kept
        assert len(files) == 2, [f.name for f in files]
        assert all(f.stat().st_size <= SIZE for f in files)
        got = lines_in(path)
        assert got == list(range(got[0], 300)), "the kept lines are the last ones, in order"
    assert zombie_children() == []
    for cid in cids[:-1]:
        engine.remove(cid, force=True)
        wait_for(lambda cid=cid: not kept(engine.layout, cid), timeout=10,
                 what="the keeper dropping a removed container")
    the_keeper(engine)  # one log is still kept
    engine.remove(cids[-1], force=True)
    wait_for(lambda: not keeper_pids(engine.layout), timeout=10,
             what="the keeper's end after the last kept log")
    assert not (engine.layout.logkeeper / "pid").exists()
    assert zombie_children() == []
    assert probe.leaks(cids[-1], removed=True) == []


def test_a_killed_keeper_is_restarted_and_catches_up(engine, busybox) -> None:
    """While no keeper runs, conmon rotates twice (the second makes a regular ``ctr.log``);
    ``logs`` brings the keeper back, which numbers that file; then rotation goes on, and no
    line is lost or doubled."""
    script = (
        "w() { i=$1; while [ $i -lt $2 ]; do echo \"line $i " + PAD + "\"; i=$((i+1)); done; }; "
        "w 0 50; while [ ! -e /tmp/go ]; do sleep 0.05; done; "
        "w 50 170; while [ ! -e /tmp/go2 ]; do sleep 0.05; done; "
        "w 170 400; sleep 60")
    cid = engine.create(busybox, ["sh", "-c", script], network="none",
                        log_opts={"max-size": "8k", "max-file": "10"})
    path = engine.layout.container(cid).log
    engine.start(cid)
    wait_for(lambda: len(lines_in(path)) == 50, timeout=20, what="the first lines")
    first = the_keeper(engine)
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: not keeper_pids(engine.layout), timeout=10, what="the keeper's death")

    engine.exec(cid, ["touch", "/tmp/go"])
    wait_for(lambda: (lines_in(path) or [0])[-1] == 169, timeout=20, what="the second lines")
    assert not os.path.islink(path), "conmon rotated twice with no keeper: a regular ctr.log"
    assert not keeper_pids(engine.layout)
    assert lines_in(path) == list(range(170))

    assert numbers([r.text for r in engine.logs(cid)]) == list(range(170))  # brings it back
    assert the_keeper(engine) != first
    wait_for(lambda: os.path.islink(f"{path}.tmp"), timeout=10, what="the catch-up")
    assert all(f.name != "ctr.log" for f in log_files(path)), "the regular file has a number"

    engine.exec(cid, ["touch", "/tmp/go2"])
    wait_for(lambda: (lines_in(path) or [0])[-1] == 399, timeout=30, what="the last lines")
    files = log_files(path)
    assert all(f.stat().st_size <= SIZE for f in files), [f.stat().st_size for f in files]
    assert len(files) >= 5  # 42 kB in files of at most 8 kB: rotations went on after the kill
    assert numbers([r.text for r in engine.logs(cid)]) == list(range(400))
    assert zombie_children() == []
    engine.remove(cid, force=True)
    wait_for(lambda: not keeper_pids(engine.layout), timeout=10, what="the keeper's end")


def test_a_start_brings_a_killed_keeper_back(engine, busybox) -> None:
    opts = {"max-size": "8k", "max-file": "2"}
    first = engine.create(busybox, writer_then_wait(10), network="none", log_opts=opts)
    engine.start(first)
    os.kill(the_keeper(engine), signal.SIGKILL)
    wait_for(lambda: not keeper_pids(engine.layout), timeout=10, what="the keeper's death")
    second = engine.create(busybox, writer_then_wait(10), network="none", log_opts=opts)
    engine.start(second)
    the_keeper(engine)
    assert kept(engine.layout, first) and kept(engine.layout, second)
    engine.remove(first, force=True)
    engine.remove(second, force=True)
    wait_for(lambda: not keeper_pids(engine.layout), timeout=10, what="the keeper's end")


def test_keeping_goes_on_across_the_keepers_end(engine, busybox) -> None:
    """A start just as the keeper leaves (its last log dropped) is kept all the same: by the
    leaving keeper, which looks again after releasing its lock, or by a new one."""
    opts = {"max-size": "8k", "max-file": "2"}
    for _ in range(3):
        cid = engine.create(busybox, ["true"], network="none", log_opts=opts)
        nxt = engine.create(busybox, writer_then_wait(10), network="none", log_opts=opts)
        engine.start(cid)  # ends at once: its log is dropped, the keeper leaves meanwhile
        engine.start(nxt)
        assert engine.wait(cid) == 0
        wait_for(lambda cid=cid: not kept(engine.layout, cid), timeout=10,
                 what="the first log dropped")
        assert kept(engine.layout, nxt)
        the_keeper(engine)
        engine.remove(nxt, force=True)
        engine.remove(cid)
    wait_for(lambda: not keeper_pids(engine.layout), timeout=10, what="the keeper's end")


def test_teardown_stops_the_keeper(root_dir: Path, busybox, engine) -> None:
    from teardown import teardown_root

    cid = engine.create(busybox, ["sleep", "60"], network="none",
                        log_opts={"max-size": "8k", "max-file": "2"})
    engine.start(cid)
    the_keeper(engine)
    teardown_root(root_dir)
    assert not keeper_pids(engine.layout)
    assert not engine.layout.run.exists()
