"""Containers outlive the process that started them: conmon keeps the exit code and runs the
exit command; a new engine reconciles what it finds with what runc and conmon report."""

from __future__ import annotations

import os
import signal

from waiting import wait_for

from engine import Engine
from engine.host.runc import process_alive
from engine.store.files import read_json


def test_exit_command_records_the_exit_with_no_engine_alive(root_dir, probe) -> None:
    eng = Engine(root_dir, watch=False)
    image = eng.images.busybox().name
    cid = eng.create(image, ["/bin/sh", "-c", "sleep 0.3; exit 9"])
    eng.start(cid)
    state_file = eng.layout.container(cid).state
    eng.close()
    del eng
    # nobody calls the engine: conmon's exit command alone moves the container to dead
    wait_for(lambda: read_json(state_file)["status"] == "dead")
    state = read_json(state_file)
    assert state["exit_code"] == 9
    assert probe.leaks(cid) == []


def test_new_engine_finds_a_container_that_died_while_none_was_alive(root_dir, probe) -> None:
    eng = Engine(root_dir, watch=False)
    image = eng.images.busybox().name
    cid = eng.create(image, ["/bin/sleep", "60"])
    eng.start(cid)
    info = eng.inspect(cid)["State"]
    conmon_pid = eng.get(cid).state.conmon_pid
    eng.close()
    # the monitor and the process both die, so no exit command can run either
    os.kill(conmon_pid, signal.SIGKILL)
    os.kill(info["Pid"], signal.SIGKILL)
    wait_for(lambda: not process_alive(info["Pid"]))
    again = Engine(root_dir, watch=False)
    try:
        state = again.inspect(cid)["State"]
        assert state["Status"] == "dead"
        assert state["ExitCode"] == 255 and "lost" in state["Error"]
        assert probe.leaks(cid) == []
    finally:
        again.close()


def test_running_container_stays_running_across_engines(root_dir) -> None:
    first = Engine(root_dir, watch=False)
    image = first.images.busybox().name
    cid = first.create(image, ["/bin/sleep", "60"], name="keeper")
    first.start(cid)
    pid = first.inspect(cid)["State"]["Pid"]
    first.close()
    second = Engine(root_dir)
    try:
        state = second.inspect("keeper")["State"]
        assert state["Status"] == "running" and state["Pid"] == pid
        second.stop("keeper", timeout=1)
        assert second.inspect("keeper")["State"]["Status"] == "dead"
    finally:
        second.close()


def test_interrupted_start_is_undone_by_the_next_engine(root_dir, probe) -> None:
    eng = Engine(root_dir, watch=False)
    image = eng.images.busybox().name
    cid = eng.create(image, ["/bin/sleep", "60"])
    # an engine that died half-way: state says starting, the rootfs mount is still there
    c = eng.get(cid)
    from engine.start.steps import MountRootfs

    ctx = eng._context(c)
    MountRootfs().do(ctx)
    c.state.status = "starting"
    eng._save(c)
    eng.close()
    assert probe.mounts()
    again = Engine(root_dir, watch=False)
    try:
        state = again.inspect(cid)["State"]
        assert state["Status"] == "dead" and state["ExitCode"] == 128
        assert "interrupted" in state["Error"]
        assert probe.leaks(cid) == []
    finally:
        again.close()


def test_orphaned_mounts_of_a_dead_container_are_swept(root_dir, probe) -> None:
    eng = Engine(root_dir, watch=False)
    image = eng.images.busybox().name
    cid = eng.create(image, ["/bin/true"])
    from engine.start.steps import MountRootfs, SetupIpc

    c = eng.get(cid)
    ctx = eng._context(c)
    MountRootfs().do(ctx)  # as if an undo had failed half-way, the container being created
    SetupIpc().do(ctx)
    eng.close()
    assert len(probe.mounts()) == 2
    Engine(root_dir, watch=False).close()
    assert probe.leaks(cid) == []
