"""conmon's exit command, ``python -m engine.exited ROOT ID``: it loads the engine only when
the exit still needs handling, and leaves nothing behind when the container is gone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine import Engine
from engine.exited import needs_engine
from engine.paths import Layout

CID = "ab" * 32


@pytest.fixture
def layout(root_dir: Path) -> Layout:
    Engine(root_dir, watch=False).close()  # the root's folders, run folder included
    return Layout.for_root(root_dir)


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
