"""A busybox container through its whole life, with real runc, conmon and overlayfs."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from cgroupfiles import frozen_state, in_container, limit_file
from waiting import wait_for

from engine import Conflict, NotModified

IGNORES_TERM = ["/bin/sh", "-c", "trap '' TERM; echo ready; while true; do sleep 0.1; done"]


def freezer_state(cid: str) -> str:
    return frozen_state(cid)


def proc_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]




def test_full_lifecycle(engine, busybox, probe) -> None:
    cid = engine.create(busybox, IGNORES_TERM, name="life")
    assert engine.inspect("life")["State"]["Status"] == "created"

    engine.start("life")
    info = engine.inspect("life")["State"]
    assert info["Status"] == "running" and info["Running"]
    pid = info["Pid"]
    assert cid in Path(f"/proc/{pid}/cgroup").read_text()  # the process is really there
    wait_for(lambda: any("ready" in r.text for r in engine.logs("life")))

    engine.pause("life")
    assert engine.inspect("life")["State"]["Paused"]
    assert freezer_state(cid) == "FROZEN"
    assert proc_state(pid) in ("D", "S")  # frozen tasks sleep in the freezer
    engine.unpause("life")
    assert freezer_state(cid) == "THAWED"

    t0 = time.monotonic()
    engine.stop("life", timeout=1)
    took = time.monotonic() - t0
    state = engine.inspect("life")["State"]
    assert state["Status"] == "dead"
    assert state["ExitCode"] == 137  # SIGTERM ignored, SIGKILL after the timeout
    assert took >= 1.0
    assert not Path(f"/proc/{pid}").exists()
    assert probe.leaks(cid) == []
    assert any("ready" in r.text for r in engine.logs("life"))  # logs outlive the process

    engine.remove("life")
    assert probe.leaks(cid, removed=True) == []
    assert engine.list(all=True) == []


def test_exit_code_kept_and_restartable(engine, busybox, probe) -> None:
    cid = engine.create(busybox, ["/bin/sh", "-c", "echo out; echo err >&2; exit 7"])
    engine.start(cid)
    assert engine.wait(cid, timeout=10) == 7
    records = list(engine.logs(cid))
    # two streams: conmon may log them in either order
    assert sorted((r.stream, r.text) for r in records) == [("stderr", "err\n"),
                                                           ("stdout", "out\n")]
    assert probe.leaks(cid) == []
    engine.start(cid)  # a dead container starts again, with its own layer kept
    assert engine.wait(cid, timeout=10) == 7
    assert len(list(engine.logs(cid))) == 4


def test_writable_layer_survives_restart(engine, busybox) -> None:
    cid = engine.create(busybox, ["/bin/sh", "-c", "echo x >> /data.txt; cat /data.txt | wc -l"])
    for expected in ("1", "2"):
        engine.start(cid)
        assert engine.wait(cid, timeout=10) == 0
        assert list(engine.logs(cid))[-1].text.strip() == expected


def test_refusals(engine, busybox) -> None:
    cid = engine.create(busybox, ["/bin/sleep", "30"])
    engine.start(cid)
    with pytest.raises(NotModified, match="container is already running"):
        engine.start(cid)
    with pytest.raises(Conflict, match="container is running: stop the container before "
                       "removing or force remove"):
        engine.remove(cid)
    engine.pause(cid)
    with pytest.raises(Conflict, match="cannot start a paused container, try unpause instead"):
        engine.start(cid)
    engine.remove(cid, force=True)
    assert engine.list(all=True) == []


def test_hooks_hear_running_and_dead_without_being_asked(engine, busybox) -> None:
    seen: list[tuple[str, int]] = []
    died = threading.Event()
    engine.on("running", lambda info: seen.append(("running", info["State"]["Pid"])))

    def on_dead(info):
        seen.append(("dead", info["State"]["ExitCode"]))
        died.set()

    engine.on("dead", on_dead)
    cid = engine.create(busybox, ["/bin/sh", "-c", "sleep 0.3; exit 5"])
    engine.start(cid)
    assert died.wait(10), "the embedded engine did not notice the exit"
    assert seen[0][0] == "running" and seen[-1] == ("dead", 5)
    assert engine.inspect(cid)["State"]["Status"] == "dead"


def test_events_are_journaled(engine, busybox) -> None:
    got = []
    engine.subscribe(got.append)
    cid = engine.create(busybox, ["/bin/true"])
    engine.start(cid)
    engine.wait(cid, timeout=10)
    engine.remove(cid)
    actions = [e.action for e in engine.events() if e.id == cid]
    assert actions[:2] == ["create", "start"] and "die" in actions
    assert actions[-1] == "destroy"
    # subscribers hear this process's events; the exit may have been handled by conmon's exit
    # command, another process, whose "die" reaches the journal only
    heard = [e.action for e in got if e.id == cid]
    assert heard in (actions, [a for a in actions if a != "die"])


def test_exec_runs_inside_and_is_tracked(engine, busybox) -> None:
    cid = engine.create(busybox, ["/bin/sleep", "30"], hostname="box")
    engine.start(cid)
    result = engine.exec(cid, ["/bin/hostname"], capture=True)
    assert (result.exit_code, result.output) == (0, b"box\n")
    assert engine.exec(cid, ["/bin/sh", "-c", "exit 3"], capture=True).exit_code == 3
    assert engine.get(cid).state.exec_sessions == []
    engine.remove(cid, force=True)


def test_binds_tmpfs_env_workdir_and_limits(engine, busybox, tmp_path) -> None:
    host = tmp_path / "shared"
    host.mkdir()
    (host / "in.txt").write_text("from host\n")
    cid = engine.create(
        busybox,
        ["/bin/sh", "-c",
         "cat /mnt/in.txt; pwd; echo $GREETING; echo w > /mnt/out.txt; "
         "grep -c ' /scratch tmpfs' /proc/mounts; grep ' /dev/shm ' /proc/mounts | "
         f"grep -c size=65536k; cat {in_container('pids', 'pids.max')}; "
         f"cat {in_container('memory', limit_file('memory'))}; grep NoNewPrivs /proc/self/status"],
        volumes=[f"{host}:/mnt"], tmpfs=["/scratch"], env=["GREETING=hello"],
        working_dir="/work/dir", memory="64m", pids_limit=100, cpus=0.5)
    engine.start(cid)
    assert engine.wait(cid, timeout=10) == 0
    lines = [r.text.strip() for r in engine.logs(cid)]
    assert lines[:3] == ["from host", "/work/dir", "hello"]
    assert lines[3:7] == ["1", "1", "100", str(64 << 20)]
    assert lines[7].split() == ["NoNewPrivs:", "1"]
    assert (host / "out.txt").read_text() == "w\n"


def test_two_threads_start_one_container_one_wins(engine, busybox) -> None:
    cid = engine.create(busybox, ["/bin/sleep", "30"])
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def go():
        barrier.wait()
        try:
            engine.start(cid)
            outcomes.append("started")
        except NotModified:
            outcomes.append("not-modified")

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["not-modified", "started"]
    engine.remove(cid, force=True)


def test_host_network_sees_host_interfaces(engine, busybox) -> None:
    host_if = next(n for n in sorted(os.listdir("/sys/class/net")) if n != "lo"
                   and Path(f"/sys/class/net/{n}/device").exists() or n == "eth0")
    mac = Path(f"/sys/class/net/{host_if}/address").read_text().strip()
    cid = engine.create(busybox, ["/bin/cat", f"/sys/class/net/{host_if}/address"],
                        network="host")
    engine.start(cid)
    assert engine.wait(cid, timeout=10) == 0
    assert list(engine.logs(cid))[0].text.strip() == mac


def test_none_network_has_only_loopback_up(engine, busybox) -> None:
    cid = engine.create(busybox, ["/bin/sh", "-c", "ls /sys/class/net; "
                                  "cat /sys/class/net/lo/operstate; cat /etc/hostname"],
                        network="none")
    engine.start(cid)
    assert engine.wait(cid, timeout=10) == 0
    lines = [r.text.strip() for r in engine.logs(cid)]
    assert lines[0] == "lo"
    assert lines[1] in ("unknown", "up")
    assert lines[2] == cid[:12]


def test_every_bundle_of_the_suite_is_validated_against_the_oci_schema() -> None:
    """conftest sets CORRAL_VALIDATE_SPEC for the session (and its child processes), so each
    config.json the engine writes is checked by engine.start.spec.write_spec before runc sees it."""
    folder = Path(os.environ["CORRAL_VALIDATE_SPEC"])
    assert (folder / "config-schema.json").is_file()
    from engine.errors import SystemFailure
    from engine.start.spec import SpecOptions, build_spec, validate_spec

    spec = build_spec(SpecOptions(args=["/bin/true"], rootfs="/x"))
    validate_spec(spec)
    spec["process"]["user"]["uid"] = "root"
    with pytest.raises(SystemFailure, match="invalid OCI config"):
        validate_spec(spec)
