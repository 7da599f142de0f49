"""Fault injection at every start step: the start fails naming the step, the container is
dead with exit code 128, and the leak probe finds nothing left behind."""

from __future__ import annotations

import pytest

from engine import STEP_NAMES, StartFailed


@pytest.mark.parametrize("step", STEP_NAMES)
def test_failure_at_each_step_leaves_nothing(engine, busybox, probe, step: str) -> None:
    cid = engine.create(busybox, ["/bin/sleep", "30"], name=f"fault-{step}")
    engine.fail_points = {step}
    events = []
    engine.subscribe(events.append)
    with pytest.raises(StartFailed) as info:
        engine.start(cid)
    assert info.value.step == step
    assert step in str(info.value)

    state = engine.inspect(cid)["State"]
    assert state["Status"] == "dead"
    assert state["ExitCode"] == 128
    assert state["Error"].startswith(f"{step}: injected fault")
    assert state["ErrorStep"] == step
    assert [e.action for e in events] == ["die"]
    assert probe.leaks(cid) == []

    # the same container starts once the fault is gone: nothing half-done stands in the way
    engine.fail_points = set()
    engine.start(cid)
    assert engine.inspect(cid)["State"]["Status"] == "running"
    engine.remove(cid, force=True)
    assert probe.leaks(cid, removed=True) == []


def test_real_runtime_error_is_shown_and_cleaned(engine, busybox, probe) -> None:
    cid = engine.create(busybox, ["/no/such/binary"])
    with pytest.raises(StartFailed) as info:
        engine.start(cid)
    assert info.value.step == "process"
    assert "no such file" in str(info.value).lower()  # runc's own words
    assert engine.inspect(cid)["State"]["ExitCode"] == 127  # not found, as moby sets it
    assert probe.leaks(cid) == []


def test_fail_point_from_environment(root_dir, monkeypatch) -> None:
    from engine import Engine

    monkeypatch.setenv("CORRAL_FAIL_POINTS", "mounts")
    eng = Engine(root_dir)
    try:
        assert eng.fail_points == {"mounts"}
    finally:
        eng.close()


def test_probe_sees_what_a_running_container_holds(engine, busybox, probe) -> None:
    cid = engine.create(busybox, ["/bin/sleep", "30"])
    engine.start(cid)
    kinds = {leak.split(" ")[0] for leak in probe.leaks(cid)}
    assert {"mount", "cgroup", "runc", "conmon", "container", "file"} <= kinds
    engine.remove(cid, force=True)
    assert probe.leaks(cid, removed=True) == []


def test_library_is_silent_even_when_undo_logs(engine, busybox, capfd) -> None:
    cid = engine.create(busybox, ["/bin/true"])
    engine.fail_points = {"process"}
    with pytest.raises(StartFailed):
        engine.start(cid)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
