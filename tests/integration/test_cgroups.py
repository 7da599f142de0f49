"""The cgroup driver on the real host (hybrid here, v2 in the Debian VM): OOM kills, a paused
container whose runtime state was lost, the figures ``stats`` needs, the container's view of
its cgroup, and refusals at ``verify`` that leave nothing behind."""

from __future__ import annotations

import os
import shutil
import signal

import pytest
from waiting import wait_for

from engine import StartFailed
from engine.host import cgroups
from engine.host.runc import process_alive

# a shell variable of 100 MB: more than a 32 MB limit holds (swap included: Docker's default
# swap limit is the memory limit again)
ALLOCATE = 'x=$(head -c 100000000 /dev/zero | tr "\\0" a); echo survived'
SLEEPS = ["sh", "-c", "echo ready; while true; do sleep 0.1; done"]


def test_oom_kill_is_reported_in_state_and_events(engine, busybox, probe, tmp_path,
                                                  monkeypatch) -> None:
    # conmon writes a file named "oom" into its working folder: the bundle, not ours
    monkeypatch.chdir(tmp_path)
    cid = engine.create(busybox, ["sh", "-c", ALLOCATE], name="oom", memory="32m",
                        network="none")
    engine.start("oom")
    assert engine.wait("oom", timeout=60) == 137
    state = engine.inspect("oom")["State"]
    assert state["OOMKilled"] is True
    actions = [e.action for e in engine.journal.read() if e.id == cid]
    assert actions[-2:] == ["oom", "die"]  # Docker's order
    assert not any("survived" in r.text for r in engine.logs("oom"))
    assert probe.leaks(cid) == []
    assert not (tmp_path / "oom").exists()

    # a run that is not killed clears it, as Docker's start does
    engine.remove("oom")
    cid = engine.create(busybox, ["true"], name="fine", memory="16m", network="none")
    engine.start("fine")
    assert engine.wait("fine", timeout=30) == 0
    assert engine.inspect("fine")["State"]["OOMKilled"] is False
    assert "oom" not in [e.action for e in engine.journal.read() if e.id == cid]


def test_paused_container_with_lost_runtime_state_can_be_removed(root_dir, busybox,
                                                                 probe) -> None:
    """A reboot as far as the engine can tell: runc's state gone with the run folder, conmon
    gone; the processes are still in a frozen cgroup, which only a thaw lets die. (An engine
    without an exit watcher, so that the removal, not the watcher, meets it.)"""
    from engine import Engine

    engine = Engine(root_dir, watch=False)
    try:
        cid = engine.create(busybox, SLEEPS, name="frozen", network="none")
        engine.start("frozen")
        wait_for(lambda: any("ready" in r.text for r in engine.logs("frozen")))
        engine.pause("frozen")
        driver = cgroups.host()
        assert driver.frozen(cid)
        pid, conmon = engine.get("frozen").state.pid, engine.get("frozen").state.conmon_pid
        shutil.rmtree(engine.layout.runc_root / cid)
        os.kill(conmon, signal.SIGKILL)
        wait_for(lambda: not process_alive(conmon))
        assert pid in driver.members(cid) and driver.frozen(cid)

        engine.remove("frozen", force=True)
        assert not process_alive(pid)
        assert driver.folders(cid) == []
        assert probe.leaks(cid, removed=True) == []
    finally:
        engine.close()


def test_stats_figures_of_a_running_container(engine, busybox) -> None:
    cid = engine.create(busybox, SLEEPS, name="figures", memory="64m", pids_limit=77,
                        cpus="0.5", network="none")
    engine.start("figures")
    wait_for(lambda: any("ready" in r.text for r in engine.logs("figures")))
    figures = cgroups.host().stats(cid)
    assert figures["memory_limit"] == 64 * 1024 * 1024
    assert 0 < figures["memory_usage"] < 64 * 1024 * 1024
    assert figures["pids_limit"] == 77
    assert 1 <= figures["pids_current"] <= 77
    assert figures["cpu_usage_ns"] > 0
    engine.stop("figures", timeout=1)


def test_container_sees_its_own_cgroup_read_only(engine, busybox) -> None:
    engine.create(busybox, ["sh", "-c", "cat /proc/self/cgroup; ls /sys/fs/cgroup; "
                            "mkdir /sys/fs/cgroup/x && echo WRITABLE"],
                  name="view", pids_limit=99, network="none")
    engine.start("view")
    engine.wait("view", timeout=30)
    out = "".join(r.text for r in engine.logs("view"))
    assert "WRITABLE" not in out
    if cgroups.host().kind == cgroups.V2:
        # a private cgroup namespace: its own cgroup is the root it sees, its files at the top
        assert "0::/\n" in out
        assert "pids.max" in out
    else:
        assert "pids" in out  # the v1 hierarchies, each showing the container's own cgroup


@pytest.mark.parametrize("cpus", ["0.123456", "1.000001"])
def test_cpus_finer_than_the_period_is_refused_at_verify(engine, busybox, probe,
                                                         cpus) -> None:
    cid = engine.create(busybox, ["true"], name="fine-cpus", cpus=cpus, network="none")
    with pytest.raises(StartFailed) as err:
        engine.start("fine-cpus")
    assert err.value.step == "verify"
    assert cpus in str(err.value) and "period" in str(err.value)
    assert cgroups.host().folders(cid) == []
    assert probe.leaks(cid) == []


@pytest.mark.parametrize("mode", ["private", "host"])
def test_cgroupns_modes(engine, busybox, mode: str) -> None:
    cid = engine.create(busybox, ["cat", "/proc/self/cgroup"], name=f"ns-{mode}",
                        cgroupns=mode, network="none")
    assert engine.inspect(cid)["HostConfig"]["CgroupnsMode"] == mode
    engine.start(cid)
    assert engine.wait(cid, timeout=30) == 0
    lines = [r.text.strip() for r in engine.logs(cid) if r.text.strip()]
    assert lines, "no /proc/self/cgroup lines"
    own = [line for line in lines if line.split(":", 2)[1] != "hugetlb"]
    if mode == "private":
        # the namespace's root is the container's own cgroup
        assert all(line.endswith(":/") for line in own), lines
    else:
        assert all(f"/corral/{cid}" in line for line in own), lines


def test_cgroupns_default_is_the_hosts(engine, busybox) -> None:
    cid = engine.create(busybox, ["true"], network="none")
    assert engine.inspect(cid)["HostConfig"]["CgroupnsMode"] == cgroups.host().default_cgroupns()


def test_smallest_memory_limit_runs_and_below_it_is_refused_at_verify(engine, busybox,
                                                                     probe) -> None:
    floor = cgroups.host().min_memory()  # Docker's 6 MB; 16 MB on v2
    if floor > cgroups.MIN_MEMORY:
        below = engine.create(busybox, ["true"], memory=floor - (1 << 20), network="none")
        with pytest.raises(StartFailed) as err:
            engine.start(below)
        assert err.value.step == "verify" and f"invalid memory {floor - (1 << 20)}" in str(
            err.value)
        assert probe.leaks(below) == []
    cid = engine.create(busybox, ["sh", "-c", "echo small"], memory=floor, network="none")
    engine.start(cid)
    assert engine.wait(cid, timeout=30) == 0
    assert [r.text.strip() for r in engine.logs(cid)] == ["small"]
    assert engine.inspect(cid)["State"]["OOMKilled"] is False
