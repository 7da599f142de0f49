"""conmon's exit command, ``python -m engine.exited ROOT ID``: it loads the engine only when
the exit still needs handling, and leaves nothing behind when the container is gone."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from exitcmd import replace_exit_command
from waiting import wait_for

from engine import Engine
from engine.exited import needs_engine
from engine.host.conmon import is_conmon_of
from engine.store.files import file_lock
from engine.store.paths import Layout

CID = "ab" * 32


@pytest.fixture
def layout(root_dir: Path) -> Layout:
    Engine(root_dir, watch=False).close()  # the root's folders
    layout = Layout.for_root(root_dir)
    layout.ensure_run()  # as the first start makes it
    return layout


def put_state(layout: Layout, state: object) -> None:
    folder = layout.container(CID).dir
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "state.json").write_text(json.dumps(state) if not isinstance(state, str)
                                       else state)


@pytest.mark.parametrize("state,needed", [
    ({"status": "running"}, True),            # nobody has handled the exit yet
    ({"status": "paused"}, True),
    ({"status": "starting"}, True),
    ({"status": "removing"}, True),
    ({"status": "dead"}, False),              # handled by the CLI or an embedded engine
    ({"status": "dead", "restart_pending": True}, True),  # this process makes the restart
    ({"status": "dead", "cleanup_pending": True}, True),
    ({"status": "created"}, False),
    ("{truncated", True),                      # the engine sets a bad entry aside
    ([1, 2], True),
])
def test_needs_engine(layout: Layout, state: object, needed: bool) -> None:
    put_state(layout, state)
    assert needs_engine(str(layout.root), CID) is needed


def test_gone_container_or_run_folder_needs_nothing(layout: Layout, tmp_path: Path) -> None:
    assert needs_engine(str(layout.root), CID) is False  # no such container
    assert needs_engine(str(tmp_path / "never-a-root"), CID) is False
    # and the command made no folder for the root it was given
    proc = subprocess.run([sys.executable, "-m", "engine.exited", str(tmp_path / "nothing"),
                           CID], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "nothing").exists()
    assert not Layout.for_root(tmp_path / "nothing").run.exists()


def test_usage_error() -> None:
    proc = subprocess.run([sys.executable, "-m", "engine.exited", "only-one"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "usage" in proc.stderr


def test_engine_of_a_background_command_makes_no_folder(tmp_path: Path) -> None:
    # the exit command's engine, made after a teardown removed the root: nothing comes back
    from engine import NotFound

    root = tmp_path / "torn-down"
    eng = Engine(root, watch=False, reconcile=False, make_layout=False)
    with pytest.raises(NotFound):
        eng.container_exited(CID, follow_restart=True)
    eng.close()
    assert not root.exists()
    assert not Layout.for_root(root).run.exists()


def _blocked_on_a_lock(pid: int) -> bool:
    # /proc/locks lists a waiter as "N: -> FLOCK ADVISORY READ <pid> ..."
    with open("/proc/locks", encoding="ascii") as f:
        return any("->" in line and line.split()[5] == str(pid) for line in f)


def test_an_exit_being_handled_is_waited_for_then_left_alone(layout: Layout) -> None:
    """Whoever holds the container's lock may be handling this very exit (an attached
    ``run``): the first stage waits for it, then finds nothing to do, without the engine."""
    put_state(layout, {"status": "running"})
    with file_lock(layout.container(CID).lock):
        proc = subprocess.Popen(
            [sys.executable, "-X", "importtime", "-m", "engine.exited", str(layout.root), CID],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: _blocked_on_a_lock(proc.pid), timeout=30,
                     what="the exit command waiting on the container's lock")
            put_state(layout, {"status": "dead"})  # as the lock's holder handles the exit
        except BaseException:
            proc.kill()
            raise
    _, imports = proc.communicate(timeout=60)
    assert proc.returncode == 0, imports
    assert "engine.core.engine" not in imports


def test_an_attached_follower_does_not_wait_for_the_exit_command(root_dir: Path,
                                                                    tmp_path: Path) -> None:
    """conmon waits for its exit command before it exits; the attached CLI (``run``) stops
    following at the container's own end, and handles the exit while that command runs."""
    release = tmp_path / "release"
    eng = Engine(root_dir, watch=False)
    replace_exit_command(eng, ["/bin/sh", "-c",
                               f"while [ ! -e {release} ]; do sleep 0.05; done"])
    try:
        eng.images.busybox()
        cid = eng.create("busybox", ["echo", "hi"])
        eng.start(cid)
        conmon = eng.get(cid).state.conmon_pid
        lines: list[str] = []
        follower = threading.Thread(
            target=lambda: lines.extend(r.text for r in eng.logs(cid, follow=True)),
            daemon=True)
        follower.start()
        follower.join(timeout=30)
        assert not follower.is_alive(), "the follower waited for conmon's exit command"
        assert lines == ["hi\n"]
        assert is_conmon_of(conmon, cid)  # still waiting for its exit command
        assert eng.wait(cid, timeout=30) == 0
        eng.remove(cid)
    finally:
        release.touch()
        eng.close()
