"""The root's log keeper without containers: what it does with an entry whose conmon is gone,
and that looking for it makes nothing."""

from __future__ import annotations

import os
import time
from pathlib import Path

from engine.logs import keeper as logkeeper
from engine.logs.files import log_files, prepare


def wait(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_looking_for_a_keeper_makes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "run" / "logkeeper"
    logkeeper.ensure(folder)
    logkeeper.stop(folder)
    assert not (tmp_path / "run").exists()
    assert logkeeper.keeper_pid(folder) == 0 and logkeeper.keeper_pids(folder) == []


def test_an_entry_whose_conmon_is_gone_gets_a_last_pass_and_the_keeper_leaves(
        tmp_path: Path) -> None:
    """As after a keeper was killed and the container ended meanwhile: conmon rotated twice
    (a regular ctr.log); the keeper started for it numbers that file, drops the entry and
    leaves, with no pid file left."""
    log = tmp_path / "ctr" / "ctr.log"
    log.parent.mkdir()
    prepare(log)
    tmp = log.with_name("ctr.log.tmp")
    tmp.write_text("second\n")  # through the symlink: ctr.log.2
    os.rename(tmp, log)
    tmp.write_text("third\n")  # no keeper laid a symlink: a regular file
    os.rename(tmp, log)
    folder = tmp_path / "run" / "logkeeper"
    # the pid of this test process: alive, but not a conmon (a reused pid)
    logkeeper.register(folder, cid="c" * 64, log=log, max_files=5, max_size=100,
                       ctl=tmp_path / "ctl", conmon_pid=os.getpid(), base=0)
    assert wait(lambda: not os.listdir(folder / "keep")), "the entry dropped"
    assert wait(lambda: not logkeeper.keeper_pids(folder)), "the keeper gone"
    assert not (folder / "pid").exists()
    assert [p.read_text() for p in log_files(log)] == ["", "second\n", "third\n"]
    assert all(p.name != "ctr.log" for p in log_files(log))
    assert os.readlink(tmp) == "ctr.log.4"
