"""The engine killed with SIGKILL in the middle of a start, at each step and network sub-step
(a ``pause:<step>`` fail point holds the start there), then a new engine: the stored state
agrees with runc and conmon, what the start had made is cleaned, other containers run on.
And a container whose process ends while no engine is alive is found dead, with its exit
code, by the next engine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from exitcmd import without_exit_command
from leakprobe import LeakProbe
from waiting import wait_for

from engine import STEP_NAMES, Engine
from engine.host.runc import process_alive
from engine.start.netsteps import SUB_STEP_NAMES
from engine.store.files import read_json
from engine.store.paths import Layout

POINTS = [*STEP_NAMES, *(f"network.{sub}" for sub in SUB_STEP_NAMES)]
PAUSE_TIMEOUT = 30.0

TESTS = Path(__file__).resolve().parents[1]
CHILD = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
from engine import Engine
from exitcmd import without_exit_command
eng = Engine(sys.argv[1], watch=False)
if sys.argv[3:] == ["no-exit-command"]:
    without_exit_command(eng)
eng.start(sys.argv[2])
"""


@pytest.fixture
def bystander(root_dir: Path) -> Iterator[tuple[str, str]]:
    """A running container that must survive every crash of the others; and an image."""
    eng = Engine(root_dir, watch=False)
    try:
        image = eng.images.busybox().name
        cid = eng.create(image, ["/bin/sleep", "300"], name="bystander", publish=["80"])
        eng.start(cid)
    finally:
        eng.close()
    yield cid, image


def crash_at(root: Path, cid: str, fail_points: str, *, exit_command: bool = True) -> None:
    """Start ``cid`` in a child process that pauses at the first ``pause:`` point, and kill it
    there with SIGKILL. Without ``exit_command``, conmon runs none: once the undo has killed
    the container, its exit command (an engine too) would otherwise race the next engine to
    finish the cleanup."""
    point = next(p for p in fail_points.split(",") if p.startswith("pause:"))[len("pause:"):]
    marker = root / f"paused-at-{point}"
    env = dict(os.environ, CORRAL_FAIL_POINTS=fail_points)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(root), cid,
                              *([] if exit_command else ["no-exit-command"])], env=env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + PAUSE_TIMEOUT
        while not marker.exists():
            if child.poll() is not None:
                raise AssertionError(f"the start ended before {point}: "
                                     f"{child.stderr.read().decode()[-2000:]}")
            assert time.monotonic() < deadline, f"never paused at {point}"
            time.sleep(0.01)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        child.stderr.close()
        marker.unlink(missing_ok=True)
    assert child.returncode == -signal.SIGKILL


def check_after_crash(root: Path, cid: str, bystander: str, *, holds: bool = True) -> None:
    layout = Layout.for_root(root)
    assert read_json(layout.container(cid).state)["status"] == "starting"
    left = LeakProbe(layout).leaks(cid)
    assert bool(left) == holds, left  # the crash left something for the next engine to do
    eng = Engine(root, watch=False)  # its reconcile does the work
    try:
        stored = read_json(eng.layout.container(cid).state)
        assert stored["status"] == "dead" and stored["exit_code"] == 128
        assert "start interrupted" in stored["error"]
        assert stored["cleanup_pending"] is False and stored["pid"] == 0
        # runc and conmon agree: neither knows the container any more
        assert eng.runtime.state(cid) is None
        assert LeakProbe(eng.layout).leaks(cid) == []

        other = eng.inspect(bystander)["State"]
        assert other["Status"] == "running" and process_alive(other["Pid"])
        runc = eng.runtime.state(bystander)
        assert runc is not None and runc["status"] == "running" and runc["pid"] == other["Pid"]

        eng.start(cid)  # nothing half-done stands in the way of the next start
        assert eng.inspect(cid)["State"]["Status"] == "running"
        eng.remove(cid, force=True)
        assert LeakProbe(eng.layout).leaks(cid, removed=True) == []
    finally:
        eng.close()


@pytest.mark.parametrize("point", POINTS)
def test_sigkill_during_start_at_each_step(root_dir: Path, bystander, point: str) -> None:
    other, image = bystander
    eng = Engine(root_dir, watch=False)
    try:
        cid = eng.create(image, ["/bin/sleep", "300"], publish=["127.0.0.1::80"])
    finally:
        eng.close()
    crash_at(root_dir, cid, f"pause:{point}")
    check_after_crash(root_dir, cid, other, holds=point != "verify")


@pytest.mark.parametrize("undo", ["process", "network", "rootfs"])
def test_sigkill_during_the_undo_of_a_failed_start(root_dir: Path, bystander,
                                                   undo: str) -> None:
    other, image = bystander
    eng = Engine(root_dir, watch=False)
    try:
        cid = eng.create(image, ["/bin/sleep", "300"], publish=["127.0.0.1::80"])
    finally:
        eng.close()
    crash_at(root_dir, cid, f"process,pause:undo:{undo}", exit_command=False)
    check_after_crash(root_dir, cid, other)


@pytest.mark.parametrize("how,code", [("exit", 7), ("sigkill", 137)])
def test_exit_while_no_engine_is_alive_is_found_by_the_next(root_dir: Path, how: str,
                                                           code: int) -> None:
    eng = Engine(root_dir, watch=False)
    try:
        without_exit_command(eng)
        image = eng.images.busybox().name
        cmd = ["/bin/sh", "-c", "sleep 0.3; exit 7"] if how == "exit" else ["/bin/sleep", "300"]
        cid = eng.create(image, cmd)
        eng.start(cid)
        pid = eng.inspect(cid)["State"]["Pid"]
        paths = eng.layout.container(cid)
    finally:
        eng.close()
    if how == "sigkill":
        os.kill(pid, signal.SIGKILL)
    # conmon (alive) keeps the code; nobody tells the stored state
    wait_for(lambda: paths.exit_file.exists(), timeout=15, interval=0.02,
             what="exit file written")
    assert read_json(paths.state)["status"] == "running"
    again = Engine(root_dir, watch=False)
    try:
        state = again.inspect(cid)["State"]
        assert (state["Status"], state["ExitCode"], state["Pid"]) == ("dead", code, 0)
        assert again.runtime.state(cid) is None
        assert LeakProbe(again.layout).leaks(cid) == []
    finally:
        again.close()
