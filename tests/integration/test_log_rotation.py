"""Log rotation with real conmon: max-size/max-file kept as Docker keeps them, ``logs`` reading
the kept files in order, the keeper dropping a log after its conmon, bad options refused at
create."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from leakprobe import keeper_pids, kept
from waiting import wait_for

from engine import InvalidParameter
from engine.host.conmon import find_conmon_of
from engine.logs.files import log_files

REPO = Path(__file__).resolve().parents[2]
PAD = "p" * 60
LINES = 1200


def numbered_writer(lines: int, every: int = 50, pause: str = "0.05") -> list[str]:
    """``line N <pad>`` for N in 0..lines-1, pausing every ``every`` lines (as a busy service,
    not a burst of megabytes in one scheduling slice)."""
    return ["sh", "-c", f"i=0; while [ $i -lt {lines} ]; do echo \"line $i {PAD}\"; "
            f"i=$((i+1)); [ $((i % {every})) -eq 0 ] && sleep {pause}; done; true"]


def keeps(engine, cid: str) -> bool:
    """Whether the root's keeper keeps (or is yet to drop) the log of ``cid``."""
    return bool(kept(engine.layout, cid))


def numbers(texts: list[str]) -> list[int]:
    return [int(t.split()[1]) for t in texts]


def test_rotation_keeps_max_file_files_and_logs_reads_them_in_order(engine, busybox,
                                                                    probe) -> None:
    cid = engine.create(busybox, numbered_writer(LINES), network="none",
                        log_opts={"max-size": "16k", "max-file": "3"})
    engine.start(cid)
    assert engine.wait(cid) == 0
    path = engine.layout.container(cid).log
    wait_for(lambda: not keeps(engine, cid), timeout=10, what="the keeper's last pass")
    files = log_files(path)
    sizes = [f.stat().st_size for f in files]
    # ~100 bytes a record, 120 kB written: 7 rotations, the last three files kept
    assert len(files) == 3, sizes
    assert all(s <= 16 * 1024 for s in sizes), sizes
    assert all(s > 15 * 1024 for s in sizes[:-1]), sizes  # rotated when full
    assert os.path.samefile(files[-1], path)
    got = numbers([r.text for r in engine.logs(cid)])
    assert got[-1] == LINES - 1
    assert got == list(range(got[0], LINES)), "the kept lines are the last ones, in order"
    assert got[0] > LINES // 2  # the oldest were dropped
    assert numbers([r.text for r in engine.logs(cid, tail=3)]) == [LINES - 3, LINES - 2,
                                                                   LINES - 1]
    engine.remove(cid)
    assert probe.leaks(cid, removed=True) == []


def test_logs_follow_reads_through_rotations(engine, busybox) -> None:
    # a file is deleted once four newer ones exist: the follower has ~0.4 s to read it
    cid = engine.create(busybox, numbered_writer(600, every=20, pause="0.03"), network="none",
                        log_opts={"max-size": "8k", "max-file": "4"})
    engine.start(cid)
    followed = numbers([r.text for r in engine.logs(cid, follow=True)])
    assert followed == list(range(600)), "a follower sees every line across rotations"
    engine.remove(cid, force=True)


def test_restart_appends_and_the_keeper_rotates_past_max_size(engine, busybox) -> None:
    """conmon counts bytes from its own start: a second run would grow the file to twice
    max-size; the keeper asks conmon to rotate once it passes."""
    cmd = ["sh", "-c", f"i=0; while [ $i -lt 60 ]; do echo \"x $i {PAD}\"; i=$((i+1)); done;"
           " sleep 3"]
    cid = engine.create(busybox, cmd, network="none",
                        log_opts={"max-size": "8k", "max-file": "3"})
    path = engine.layout.container(cid).log
    engine.start(cid)
    assert engine.wait(cid) == 0
    engine.start(cid)  # 6 kB more into the same file: 12 kB, over 8k
    wait_for(lambda: len(log_files(path)) >= 2, timeout=10, what="a rotation past max-size")
    assert engine.wait(cid) == 0
    assert len(list(engine.logs(cid))) == 120


def test_no_cap_and_defaults(engine, busybox, root_dir: Path) -> None:
    cid = engine.create(busybox, ["sh", "-c", "echo hi; sleep 30"], network="none")
    info = engine.inspect(cid)["HostConfig"]["LogConfig"]
    assert info == {"Type": "k8s-file", "Config": {"max-size": "10m", "max-file": "3"}}
    engine.start(cid)
    argv = Path(f"/proc/{find_conmon_of(cid)}/cmdline").read_bytes().split(b"\0")
    assert argv[argv.index(b"--log-size-max") + 1] == str(10 << 20).encode()
    assert keeps(engine, cid) and keeper_pids(engine.layout)
    engine.remove(cid, force=True)
    wait_for(lambda: not keeper_pids(engine.layout), timeout=10, what="the keeper's end")

    (root_dir / "daemon.json").write_text(json.dumps({"log-opts": {"max-size": "1m"}}))
    cid = engine.create(busybox, ["true"], network="none")
    assert engine.inspect(cid)["HostConfig"]["LogConfig"]["Config"] == {"max-size": "1m"}
    cid = engine.create(busybox, ["sh", "-c", "echo unbounded"], network="none",
                        log_opts={"max-size": "-1"})
    engine.start(cid)
    assert engine.wait(cid) == 0
    assert [r.text for r in engine.logs(cid)] == ["unbounded\n"]
    assert not os.path.islink(engine.layout.container(cid).log)  # no keeper, no numbers


@pytest.mark.parametrize(("opts", "driver", "named"), [
    ({"max-size": "ten"}, "", "max-size='ten'"),
    ({"max-size": "10m", "max-file": "0"}, "", "max-file='0'"),
    ({"max-sise": "10m"}, "", "unknown log option 'max-sise'"),
    ({}, "syslog", "log driver 'syslog' is not supported"),
])
def test_bad_options_are_refused_at_create(engine, busybox, opts: dict[str, str],
                                           driver: str, named: str) -> None:
    with pytest.raises(InvalidParameter, match=named):
        engine.create(busybox, ["true"], name="bad-log", log_opts=opts, log_driver=driver)
    assert engine.list(all=True) == []
    assert not (engine.layout.root / "names" / "bad-log").exists()


def test_cli_log_opt_and_tail_on_rotated_files(engine, busybox, root_dir: Path) -> None:
    def corral(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "engine", "--root", str(root_dir), *args],
                              capture_output=True, text=True, cwd=REPO, timeout=60,
                              stdin=subprocess.DEVNULL)

    bad = corral("run", "--log-opt", "max-size=ten", "--network", "none", busybox, "true")
    assert bad.returncode == 125
    assert bad.stderr.strip().splitlines() == [
        "Error: invalid log option max-size='ten': expected a size such as 10m, 512k or 1g "
        "(or -1 for no cap)"]
    r = corral("run", "-d", "--name", "writer", "--network", "none", "--log-opt", "max-size=16k",
               "--log-opt", "max-file=2", busybox, *numbered_writer(600))
    assert r.returncode == 0, r.stderr
    assert engine.wait("writer") == 0
    wait_for(lambda: not keeps(engine, r.stdout.strip()), timeout=10,
             what="the keeper's last pass")
    assert len(log_files(engine.layout.container(r.stdout.strip()).log)) == 2
    tail = corral("logs", "--tail", "2", "writer")
    assert numbers(tail.stdout.splitlines()) == [598, 599]
    assert corral("logs", "-n", "0", "writer").stdout == ""
