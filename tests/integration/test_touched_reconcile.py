"""The CLI's engine reconciles only what a command touches (``reconcile="touched"``): a full
reconcile for the first engine since boot, then a start killed half-way is finished by the next
command on that container, and a name claimed by a killed create is released when a create
needs it. The commands run as a user runs them: ``python -m engine`` in a child process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from leakprobe import LeakProbe
from test_crash import crash_at

from engine import Engine
from engine.store.files import STALE_AGE, read_json
from engine.store.paths import Layout


def corral(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "engine", "--root", str(root), *args],
                          capture_output=True, text=True, timeout=60, check=False)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def image(root_dir: Path) -> str:
    eng = Engine(root_dir, watch=False)  # a full reconcile (no marker yet: no container)
    try:
        return eng.images.busybox().name
    finally:
        eng.close()


@pytest.mark.parametrize("point", ["network.veth", "process"])
def test_start_killed_half_way_is_finished_by_the_next_command(root_dir: Path, image: str,
                                                               point: str) -> None:
    layout = Layout.for_root(root_dir)
    cid = corral(root_dir, "create", image, "/bin/sleep", "300").stdout.strip()
    crash_at(root_dir, cid, f"pause:{point}")
    # made by the first engine that found a container: the commands below reconcile lazily
    assert (layout.run / "reconciled").exists()
    assert read_json(layout.container(cid).state)["status"] == "starting"
    assert LeakProbe(layout).leaks(cid)  # the crash left something behind

    corral(root_dir, "ps")  # a command that does not touch it leaves it
    assert read_json(layout.container(cid).state)["status"] == "starting"

    corral(root_dir, "start", cid)  # locks it: the killed start is undone first
    assert read_json(layout.container(cid).state)["status"] == "running"
    eng = Engine(root_dir, watch=False, reconcile=False)
    try:
        died = [e.attributes.get("exitCode") for e in eng.events(since=0, follow=False)
                if e.id == cid and e.action == "die"]
    finally:
        eng.close()
    assert died == ["128"]  # the killed start, recorded as a failed one
    corral(root_dir, "rm", "-f", cid)
    assert LeakProbe(layout).leaks(cid, removed=True) == []


def _claim(layout: Layout, name: str, target: str, age: float) -> Path:
    link = layout.names / name
    os.symlink(target, link)
    then = time.time() - age
    os.utime(link, (then, then), follow_symlinks=False)
    return link


def test_name_claimed_by_a_killed_create_is_released_when_needed(root_dir: Path,
                                                                 image: str) -> None:
    layout = Layout.for_root(root_dir)
    never = "f" * 64  # a create killed between claiming the name and writing its folder
    _claim(layout, "stale", never, age=STALE_AGE + 5)
    cid = corral(root_dir, "create", "--name", "stale", image, "true").stdout.strip()
    assert os.readlink(layout.names / "stale") == cid

    # a young claim may be a create in progress: refused, and left as it is
    _claim(layout, "young", never, age=1)
    proc = corral(root_dir, "create", "--name", "young", image, "true", check=False)
    assert proc.returncode != 0 and 'name "/young" is already in use' in proc.stderr
    assert os.readlink(layout.names / "young") == never
    os.unlink(layout.names / "young")


def test_first_engine_since_boot_reconciles_everything(root_dir: Path, image: str) -> None:
    layout = Layout.for_root(root_dir)
    corral(root_dir, "create", image, "true")
    corral(root_dir, "ps")  # a root with a container keeps the marker of its full reconcile
    _claim(layout, "stale", "e" * 64, age=STALE_AGE + 5)
    (layout.run / "reconciled").unlink()  # as after a reboot, which empties /run
    corral(root_dir, "ps")
    assert not (layout.names / "stale").is_symlink()  # the full sweep released it
    assert (layout.run / "reconciled").exists()
