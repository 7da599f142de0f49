"""State and exit codes as Docker reports them (issue 11, item 4): the exit codes of failed
starts, ``State.Dead`` and ``Image`` in inspect, ``Restarting`` during the backoff, restarts
after the monitor is lost or the host rebooted, ``stop`` on a full disk, and the exit code a
``rm -f`` killed half-way leaves."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from leakprobe import LeakProbe
from test_disk_full import fill, small_root  # noqa: F401 - the fixture, shared
from waiting import wait_for

from engine import Engine, StartFailed, SystemFailure
from engine.host import mounts as _mounts
from engine.host.runc import process_alive
from engine.store.files import read_json
from engine.store.paths import Layout

CORRAL = [sys.executable, "-m", "engine"]
CGROUP_BASE = Path("/sys/fs/cgroup")


def corral(root: Path, *args: str, env: dict[str, str] | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*CORRAL, "--root", str(root), *args], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=timeout, env=env)


def stored(root: Path, cid: str) -> dict:
    return read_json(Layout.for_root(root).container(cid).state)


def cgroup_members(cid: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if f"/{cid}" in Path(f"/proc/{entry.name}/cgroup").read_text():
                    found.append(int(entry.name))
    return found


# -- failed starts ----------------------------------------------------------------------------

# (command, working dir, exit code): moby's setExitCodeFromError on runc's messages
FAILED_STARTS = [
    (["/nope"], "", 127),                # not there
    (["nope"], "", 127),                 # not in $PATH
    (["./nope"], "/bin", 127),           # relative to the working directory, not there
    (["/etc"], "", 126),                 # a directory
    (["/etc/passwd"], "", 126),          # no x bit
]


@pytest.mark.parametrize("cmd,workdir,code", FAILED_STARTS, ids=lambda v: str(v))
def test_failed_start_keeps_dockers_exit_code(engine, busybox, probe, cmd, workdir,
                                              code) -> None:
    cid = engine.create(busybox, cmd, working_dir=workdir, network="none")
    with pytest.raises(StartFailed):
        engine.start(cid)
    state = engine.inspect(cid)["State"]
    assert (state["Status"], state["ExitCode"], state["ErrorStep"]) == ("dead", code,
                                                                        "process")
    die = [e for e in engine.events() if e.id == cid and e.action == "die"]
    assert die[-1].attributes["exitCode"] == str(code)
    assert probe.leaks(cid) == []


def test_a_failure_before_the_runtime_is_128(root_dir: Path) -> None:
    eng = Engine(root_dir, watch=False, fail_points={"mounts"})
    try:
        cid = eng.create(eng.images.busybox().name, ["/nope"], network="none")
        with pytest.raises(StartFailed):
            eng.start(cid)
        assert eng.inspect(cid)["State"]["ExitCode"] == 128
    finally:
        eng.close()


def test_cli_run_and_start_of_a_missing_command(engine, busybox, root_dir: Path) -> None:
    run = corral(root_dir, "run", "--name", "missing", "--network", "none", busybox, "/nope")
    assert run.returncode == 127, run.stderr
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("Error: "), run.stderr
    assert engine.inspect("missing")["State"]["ExitCode"] == 127
    # docker start reports the daemon's error and exits 1; the container keeps 127
    start = corral(root_dir, "start", "missing")
    assert start.returncode == 1, start.stderr
    assert start.stderr.count("\n") == 1 and start.stderr.startswith("Error: "), start.stderr
    assert "/nope" in start.stderr
    assert engine.inspect("missing")["State"]["ExitCode"] == 127
    run = corral(root_dir, "run", "--network", "none", busybox, "/etc")
    assert run.returncode == 126, run.stderr


# -- inspect ---------------------------------------------------------------------------------


def test_inspect_has_dead_and_the_image_id(root_dir: Path) -> None:
    eng = Engine(root_dir, watch=False, fail_points={"undo:rootfs"})
    try:
        image = eng.images.busybox()
        cid = eng.create(image.name, ["/bin/true"], network="none")
        info = eng.inspect(cid)
        assert info["Image"] == f"sha256:{image.id}"
        assert info["Config"]["Image"] == image.name
        assert info["State"]["Dead"] is False
        with pytest.raises(SystemFailure):
            eng.remove(cid)  # its cleanup fails: Docker marks such a container dead
        state = eng.inspect(cid)["State"]
        assert (state["Status"], state["Dead"]) == ("dead", True)
        eng.fail_points.clear()
        eng.remove(cid)
    finally:
        eng.close()


# -- restart backoff ---------------------------------------------------------------------------


def test_restarting_during_the_backoff(root_dir: Path) -> None:
    eng = Engine(root_dir, watch=False)
    try:
        cid = eng.create(eng.images.busybox().name, ["/bin/sh", "-c", "exit 1"],
                         name="flapper", restart="always", network="none")
        eng.start(cid)
    finally:
        eng.close()

    def backing_off() -> bool:  # the fifth wait lasts 1.6 s: long enough to look at it
        st = stored(root_dir, cid)
        return st["restart_count"] >= 4 and st["restart_pending"]

    wait_for(backing_off, timeout=30, interval=0.01)
    try:
        state = Engine(root_dir, watch=False, reconcile=False).inspect(cid)["State"]
        assert state["Restarting"] is True and state["Status"] == "dead"
        assert state["ExitCode"] == 1
        ps = corral(root_dir, "ps")  # listed without -a, as docker ps lists it
        line = next(ln for ln in ps.stdout.splitlines() if "flapper" in ln)
        assert "Restarting (1) " in line and " ago" in line, ps.stdout
        assert "Exited" not in line
    finally:
        corral(root_dir, "stop", "-t", "0", "flapper")
    state = Engine(root_dir, watch=False, reconcile=False).inspect(cid)["State"]
    assert state["Restarting"] is False


# -- monitor loss and reboot -------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["always", "unless-stopped", "on-failure"])
def test_killed_conmon_is_restarted_by_the_next_command(root_dir: Path, policy: str) -> None:
    eng = Engine(root_dir, watch=False)
    try:
        cid = eng.create(eng.images.busybox().name, ["/bin/sleep", "300"], restart=policy,
                         network="none")
        eng.start(cid)
        first = eng.get(cid).state
    finally:
        eng.close()
    os.kill(first.conmon_pid, signal.SIGKILL)
    wait_for(lambda: not process_alive(first.conmon_pid), what="conmon gone")
    # no engine is alive: the next command notices
    ps = corral(root_dir, "ps", "-a")
    assert ps.returncode == 0, ps.stderr

    def restarted() -> bool:
        st = stored(root_dir, cid)
        return st["status"] == "running" and st["pid"] not in (0, first.pid)

    wait_for(restarted, timeout=30, what="restarted after its monitor was lost")
    st = stored(root_dir, cid)
    assert st["restart_count"] == 1 and process_alive(st["pid"])
    assert not process_alive(first.pid)
    corral(root_dir, "rm", "-f", cid)
    assert LeakProbe(Layout.for_root(root_dir)).leaks(cid, removed=True) == []


def test_killed_conmon_is_restarted_by_an_embedded_engine(root_dir: Path) -> None:
    eng = Engine(root_dir)  # its watcher notices at once, no command needed
    try:
        cid = eng.create(eng.images.busybox().name, ["/bin/sleep", "300"], restart="always",
                         network="none")
        eng.start(cid)
        first = eng.get(cid).state
        os.kill(first.conmon_pid, signal.SIGKILL)

        def restarted() -> bool:
            st = stored(root_dir, cid)
            return st["status"] == "running" and st["pid"] not in (0, first.pid)

        wait_for(restarted, timeout=30, what="restarted after its monitor was lost")
        assert eng.inspect(cid)["RestartCount"] == 1
        eng.remove(cid, force=True)
    finally:
        eng.close()


def test_killed_conmon_is_noticed_by_the_health_monitor(root_dir: Path) -> None:
    eng = Engine(root_dir, watch=False)
    try:
        cid = eng.create(eng.images.busybox().name, ["/bin/sleep", "300"], restart="always",
                         network="none", healthcheck={"test": ["CMD", "true"],
                                                      "interval": 0.2})
        eng.start(cid)
        first = eng.get(cid).state
    finally:
        eng.close()
    os.kill(first.conmon_pid, signal.SIGKILL)
    # no engine alive, no command: the health monitor's next check finds the exit

    def restarted() -> bool:
        st = stored(root_dir, cid)
        return st["status"] == "running" and st["pid"] not in (0, first.pid)

    wait_for(restarted, timeout=30, what="restarted after its monitor was lost")
    # the old monitor leaves once the exit is handled, which can be just after the restart
    wait_for(lambda: not process_alive(first.health_pid), timeout=10,
             what="the old health monitor gone")
    corral(root_dir, "rm", "-f", cid)
    assert LeakProbe(Layout.for_root(root_dir)).leaks(cid, removed=True) == []


def simulate_reboot(root: Path) -> None:
    """What a reboot does to a root: every process of its containers gone (conmon first, so
    no exit command runs), its mounts and cgroups gone, its run folder in /run gone."""
    layout = Layout.for_root(root)
    cids = [d.name for d in layout.containers.iterdir() if not d.name.startswith(".")]
    for cid in cids:
        st = stored(root, cid)
        for pid in (st["conmon_pid"], st["health_pid"]):
            if process_alive(pid):
                os.kill(pid, signal.SIGKILL)
    for cid in cids:
        for pid in cgroup_members(cid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_for(lambda c=cid: not [p for p in cgroup_members(c) if process_alive(p)],
                 what="container processes gone")
    for point in sorted({*_mounts.mounted_under(root), *_mounts.mounted_under(layout.run)},
                        key=len, reverse=True):
        _mounts.unmount(Path(point))
    for cid in cids:
        for controller in CGROUP_BASE.iterdir():
            group = controller / "corral" / cid
            if group.is_dir():
                wait_for(lambda g=group: _rmdir(g), timeout=5, what=f"{group} removed")
    shutil.rmtree(layout.run)


def _rmdir(path: Path) -> bool:
    try:
        path.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


@pytest.mark.parametrize("first", ["cli", "embedded"])
def test_after_a_reboot_the_first_engine_restarts_always_and_unless_stopped(
        root_dir: Path, first: str) -> None:
    eng = Engine(root_dir, watch=False)
    ids = {}
    try:
        image = eng.images.busybox().name
        for name, policy in (("always", "always"), ("unless-stopped", "unless-stopped"),
                             ("on-failure", "on-failure"), ("no", "no"),
                             ("stopped-always", "always"),
                             ("stopped-unless", "unless-stopped")):
            ids[name] = eng.create(image, ["/bin/sleep", "300"], name=name, restart=policy,
                                   network="none")
            eng.start(ids[name])
        eng.stop("stopped-always", timeout=0)
        eng.stop("stopped-unless", timeout=0)
        before = {n: eng.get(c).state.pid for n, c in ids.items()}
    finally:
        eng.close()
    simulate_reboot(root_dir)

    if first == "cli":
        ps = corral(root_dir, "ps", "-a")
        assert ps.returncode == 0, ps.stderr
        later: Engine | None = None
    else:
        later = Engine(root_dir)
    try:
        for name in ("always", "unless-stopped"):
            wait_for(lambda n=name: stored(root_dir, ids[n])["status"] == "running",
                     timeout=30, what=f"{name} restarted after the reboot")
            st = stored(root_dir, ids[name])
            assert st["pid"] != before[name] and process_alive(st["pid"])
        time.sleep(1.0)  # nothing else starts
        for name in ("on-failure", "no"):
            st = stored(root_dir, ids[name])
            assert (st["status"], st["exit_code"], st["restart_pending"]) == ("dead", 255,
                                                                              False), name
        for name in ("stopped-always", "stopped-unless"):
            st = stored(root_dir, ids[name])
            assert (st["status"], st["restart_pending"]) == ("dead", False), name
    finally:
        if later is not None:
            later.close()


def test_a_restart_waiting_in_its_backoff_is_made_after_a_reboot(root_dir: Path) -> None:
    eng = Engine(root_dir, watch=False)
    try:
        cid = eng.create(eng.images.busybox().name, ["/bin/sh", "-c", "sleep 1; exit 3"],
                         restart="on-failure", network="none")
        c = eng.get(cid)
        # dead with a start pending whose waiting process (the exit command) went down
        c.state.status, c.state.exit_code = "dead", 3
        c.state.restart_pending, c.state.restart_delay = True, 30.0
        eng._save(c)
    finally:
        eng.close()
    # the reboot (a container never started has no run folder: nothing to remove then)
    shutil.rmtree(Layout.for_root(root_dir).run, ignore_errors=True)
    assert corral(root_dir, "ps").returncode == 0
    # at once, as dockerd's start: not after the 30 s the backoff had left
    wait_for(lambda: stored(root_dir, cid)["restart_count"] >= 1, timeout=20,
             what="the pending restart made")
    corral(root_dir, "rm", "-f", cid)


# -- stop on a full disk -----------------------------------------------------------------------


def test_stop_on_a_full_disk_stops_the_container(small_root: Path) -> None:  # noqa: F811
    eng = Engine(small_root, watch=False)
    probe = LeakProbe(eng.layout)
    try:
        image = eng.images.busybox().name
        # under a restart policy: the stop the state file cannot hold must still be final
        running = eng.create(image, ["/bin/sleep", "300"], name="running", network="none",
                             restart="always")
        eng.start(running)
        frozen = eng.create(image, ["/bin/sleep", "300"], name="frozen", network="none")
        eng.start(frozen)
        eng.pause(frozen)
        pids = {cid: eng.get(cid).state.pid for cid in (running, frozen)}
        cleanup = eng._cleanup

        def cleanup_then_fill(c, ctx=None, **kwargs):  # the disk stays full for the record
            errors = cleanup(c, ctx, **kwargs)
            fill(small_root)
            return errors

        eng._cleanup = cleanup_then_fill  # type: ignore[method-assign]
        fill(small_root)
        for cid in (running, frozen):
            eng.stop(cid, timeout=0)
            assert not process_alive(pids[cid])
            assert eng.runtime.state(cid) is None
            state = eng.inspect(cid)["State"]  # as it is, though not recorded yet
            assert (state["Status"], state["ExitCode"]) == ("dead", 137)
            assert stored(small_root, cid)["status"] in ("running", "paused")
        eng._cleanup = cleanup  # type: ignore[method-assign]
        (small_root / "filler").unlink()
        for cid in (running, frozen):
            state = eng.inspect(cid)["State"]
            assert (state["Status"], state["ExitCode"]) == ("dead", 137)
            assert stored(small_root, cid)["status"] == "dead"
            assert probe.leaks(cid) == []
        time.sleep(1.0)  # conmon's exit command has looked too: nothing restarts it
        st = stored(small_root, running)
        assert (st["status"], st["manual_stop"], st["restart_pending"]) == ("dead", True, False)
        assert not list(eng.layout.exits.iterdir())
        for cid in (running, frozen):
            eng.start(cid)
            eng.remove(cid, force=True)
    finally:
        eng.close()


# -- rm -f killed half-way ---------------------------------------------------------------------


@pytest.mark.parametrize("undo", ["mounts", "network", "rootfs"])
def test_sigkilled_rm_f_leaves_exit_code_137(root_dir: Path, undo: str) -> None:
    eng = Engine(root_dir, watch=False)
    try:
        cid = eng.create(eng.images.busybox().name, ["/bin/sleep", "300"], network="none")
        eng.start(cid)
    finally:
        eng.close()
    marker = root_dir / f"paused-at-undo:{undo}"
    env = dict(os.environ, CORRAL_FAIL_POINTS=f"pause:undo:{undo}")
    cli = subprocess.Popen([*CORRAL, "--root", str(root_dir), "rm", "-f", cid], env=env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: marker.exists() or cli.poll() is not None, timeout=30,
                 interval=0.01, what=f"rm -f paused at the undo of {undo}")
        assert cli.poll() is None, "rm -f ended before the pause"
    finally:
        cli.send_signal(signal.SIGKILL)
        cli.wait(10)
        marker.unlink(missing_ok=True)
    again = Engine(root_dir, watch=False)
    try:
        state = again.inspect(cid)["State"]
        assert (state["Status"], state["ExitCode"]) == ("dead", 137), state
        assert LeakProbe(again.layout).leaks(cid) == []
        ps = corral(root_dir, "ps", "-a")
        assert "Exited (137)" in ps.stdout, ps.stdout
    finally:
        again.close()
