"""Injected faults, many times over: every start step and every network sub-step fails again
and again, and every undo fails once; the leak probe must find nothing, at once or (after a
failed undo) once the next engine has reconciled.

``ROUNDS`` failures per fail point run in CI; the issue's 20 run by hand with
``CORRAL_FAULT_ROUNDS=20`` (figures in docs/RELIABILITY.md).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from exitcmd import without_exit_command
from leakprobe import LeakProbe

from engine import STEP_NAMES, Engine, StartFailed, SystemFailure
from engine.start.netsteps import SUB_STEP_NAMES
from engine.store.files import read_json

ROUNDS = int(os.environ.get("CORRAL_FAULT_ROUNDS", "3"))
POINTS = [*STEP_NAMES, *(f"network.{sub}" for sub in SUB_STEP_NAMES)]
# a published port makes the ports sub-step install rules and the veth step set hairpin
PUBLISH = ["127.0.0.1::80"]
# undos that leave something the probe sees when they fail outright (not the veth's: the
# namespace's undo still runs, and the kernel takes the veth away with the namespace)
UNDOS_THAT_HOLD = {"rootfs", "network", "bundle", "ipc", "process", "network.lease",
                   "network.namespace", "network.ports"}


def outer_step(point: str) -> str:
    return point.split(".", 1)[0]


@pytest.mark.parametrize("point", POINTS)
def test_repeated_failures_at_each_point_leave_nothing(engine, busybox, probe,
                                                       point: str) -> None:
    cid = engine.create(busybox, ["/bin/sleep", "30"], publish=PUBLISH)
    engine.fail_points = {point}
    leaks: list[str] = []
    spent = 0.0  # in the failed starts alone: the steps, their undos, the state writes
    for _ in range(ROUNDS):
        t0 = time.monotonic()
        with pytest.raises(StartFailed) as info:
            engine.start(cid)
        spent += time.monotonic() - t0
        assert info.value.step == outer_step(point)
        assert "injected fault" in str(info.value)
        state = engine.inspect(cid)["State"]
        assert (state["Status"], state["ExitCode"]) == ("dead", 128)
        assert "cleanup incomplete" not in state["Error"]
        leaks += probe.leaks(cid)
    per_failure = spent / ROUNDS
    assert leaks == []
    print(f"\n{point}: {ROUNDS} failures, {per_failure * 1000:.0f} ms each, 0 leaks")

    engine.fail_points = set()
    engine.start(cid)
    assert engine.inspect(cid)["State"]["Status"] == "running"
    engine.remove(cid, force=True)
    assert probe.leaks(cid, removed=True) == []


def _stored(engine: Engine, cid: str) -> dict:
    return read_json(engine.layout.container(cid).state)


@pytest.mark.parametrize("undo_of", POINTS)
def test_failed_undo_marks_the_container_and_next_engine_finishes(root_dir: Path,
                                                                  undo_of: str) -> None:
    """The last step fails, then so does the undo of ``undo_of``: the container is dead and
    marked, what the undo should have removed may be left; a new engine removes it."""
    first = Engine(root_dir, watch=False)
    without_exit_command(first)  # or conmon's exit command may finish the cleanup first
    try:
        image = first.images.busybox().name
        cid = first.create(image, ["/bin/sleep", "30"], publish=PUBLISH)
        first.fail_points = {"process", f"undo:{undo_of}"}
        with pytest.raises(StartFailed) as info:
            first.start(cid)
        assert info.value.step == "process"  # the undo error never replaces the cause
        stored = _stored(first, cid)
        assert stored["status"] == "dead" and stored["exit_code"] == 128
        assert stored["cleanup_pending"] is True
        assert stored["error"].startswith("process: injected fault at step process; "
                                          "cleanup incomplete: ")
        assert f"undo of {outer_step(undo_of)} failed" in stored["error"]
        left = LeakProbe(first.layout).leaks(cid)
        assert bool(left) == (undo_of in UNDOS_THAT_HOLD), left
    finally:
        first.close()

    second = Engine(root_dir, watch=False)  # no fail points: its reconcile finishes the undo
    try:
        stored = _stored(second, cid)
        assert stored["cleanup_pending"] is False
        assert stored["error"] == "process: injected fault at step process"
        assert LeakProbe(second.layout).leaks(cid) == []
        second.start(cid)
        second.remove(cid, force=True)
        assert LeakProbe(second.layout).leaks(cid, removed=True) == []
    finally:
        second.close()


def test_failed_undo_after_an_exit_is_finished_by_the_next_start(engine, busybox,
                                                                 probe) -> None:
    without_exit_command(engine)
    cid = engine.create(busybox, ["/bin/sleep", "30"], publish=PUBLISH)
    engine.start(cid)
    engine.fail_points = {"undo:rootfs", "undo:network.namespace"}
    engine.stop(cid, timeout=0)
    stored = _stored(engine, cid)
    assert stored["status"] == "dead" and stored["cleanup_pending"] is True
    assert "cleanup incomplete: " in stored["error"]
    left = probe.leaks(cid)
    assert any(x.startswith("mount ") for x in left), left
    assert any(x.startswith("netns ") for x in left), left

    engine.fail_points = set()
    engine.start(cid)  # the start first finishes what the stop left
    state = engine.inspect(cid)["State"]
    assert state["Status"] == "running" and state["Error"] == ""
    assert _stored(engine, cid)["cleanup_pending"] is False
    engine.remove(cid, force=True)
    assert probe.leaks(cid, removed=True) == []


def test_start_refused_while_the_cleanup_still_fails(engine, busybox, probe) -> None:
    cid = engine.create(busybox, ["/bin/sleep", "30"])
    engine.fail_points = {"ipc", "undo:rootfs"}  # before the process step: no conmon
    with pytest.raises(StartFailed):
        engine.start(cid)
    # the undo keeps failing: the start is refused before any step runs, with a clear reason
    engine.fail_points = {"undo:rootfs"}
    with pytest.raises(SystemFailure, match="cleanup of its last run is incomplete") as info:
        engine.start(cid)
    assert not isinstance(info.value, StartFailed)
    assert engine.inspect(cid)["State"]["Status"] == "dead"
    engine.fail_points = set()
    engine.remove(cid)
    assert probe.leaks(cid, removed=True) == []
