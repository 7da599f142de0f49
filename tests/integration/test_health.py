"""Health checks run by the detached monitor: starting -> healthy / unhealthy, with events."""

from __future__ import annotations

from leakprobe import LeakProbe
from waiting import wait_for


def health(engine, cid: str) -> dict:
    return engine.inspect(cid)["State"]["Health"]


def test_becomes_healthy_after_a_few_checks(engine, busybox, probe: LeakProbe) -> None:
    cid = engine.create(
        busybox, ["/bin/sh", "-c", "sleep 0.6; touch /tmp/ready; sleep 60"], network="none",
        healthcheck={"test": ["CMD-SHELL", "test -e /tmp/ready"], "interval": 0.2,
                     "timeout": 2, "retries": 10})
    engine.start(cid)
    assert health(engine, cid)["Status"] == "starting"
    wait_for(lambda: health(engine, cid)["Status"] == "healthy")
    log = health(engine, cid)["Log"]
    assert log[-1]["ExitCode"] == 0 and any(e["ExitCode"] != 0 for e in log)
    assert [i["Health"] for i in engine.list() if i["Id"] == cid] == ["healthy"]
    actions = [e.action for e in engine.events() if e.id == cid]
    assert "health_status: healthy" in actions
    monitor = engine.get(cid).state.health_pid
    engine.remove(cid, force=True)
    assert probe.leaks(cid, removed=True) == []
    wait_for(lambda: not _alive(monitor))


def test_failing_check_makes_it_unhealthy(engine, busybox) -> None:
    cid = engine.create(busybox, ["/bin/sleep", "60"], network="none",
                        healthcheck={"test": ["CMD", "/bin/false"], "interval": 0.1,
                                     "timeout": 1, "retries": 2})
    engine.start(cid)
    wait_for(lambda: health(engine, cid)["Status"] == "unhealthy")
    assert health(engine, cid)["FailingStreak"] >= 2
    engine.remove(cid, force=True)


def test_check_timeout_counts_as_failure(engine, busybox) -> None:
    cid = engine.create(busybox, ["/bin/sleep", "60"], network="none",
                        healthcheck={"test": ["CMD", "/bin/sleep", "5"], "interval": 0.1,
                                     "timeout": 0.3, "retries": 1})
    engine.start(cid)
    wait_for(lambda: health(engine, cid)["Status"] == "unhealthy")
    assert health(engine, cid)["Log"][-1]["ExitCode"] == 124
    engine.remove(cid, force=True)


def _alive(pid: int) -> bool:
    from engine.host.runc import process_alive

    return process_alive(pid)
