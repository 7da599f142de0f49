"""A full disk under the engine's root: the engine root on a small tmpfs, filled up by a filler
file. Each operation that must write fails with a clear error (``SystemFailure`` naming the
path and "No space left"), the state files written before are intact and parse, no temporary
file remains, and once space is back everything works and nothing has leaked."""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from leakprobe import LeakProbe
from teardown import teardown_root

from engine import Engine, SystemFailure
from engine.host import mounts as _mounts

TMPFS_SIZE = "8m"
PAGE = os.sysconf("SC_PAGE_SIZE")
# free pages left when a start begins: the disk fills at a different write each time
PAGES = [int(p) for p in os.environ.get("CORRAL_DISK_PAGES", "0,1,2,3,4,5,6,8,12,16").split(",")]


@pytest.fixture
def small_root(tmp_path: Path) -> Iterator[Path]:
    """An engine root on its own small tmpfs; torn down and unmounted whatever the test did."""
    root = tmp_path / "small"
    root.mkdir()
    _mounts.mount("tmpfs", root, "tmpfs", 0, f"size={TMPFS_SIZE},mode=0700")
    try:
        yield root
    finally:
        with contextlib.suppress(FileNotFoundError):
            (root / "filler").unlink()
        try:
            teardown_root(root)
        finally:
            _mounts.unmount(root)


def fill(root: Path, leave_pages: int = 0) -> Path:
    """Fill the file system of ``root`` up, then give back ``leave_pages`` pages."""
    filler = root / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 1 << 16, PAGE, 1):
            block = b"\xa5" * size
            while True:
                try:
                    os.write(fd, block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
        if leave_pages:
            os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave_pages * PAGE))
    finally:
        os.close(fd)
    if not leave_pages:
        assert os.statvfs(root).f_bavail == 0
    return filler


def state_files(root: Path) -> dict[Path, bytes]:
    """Every state file of the root (containers, networks) with its bytes; each parses."""
    found = {}
    for pattern in ("containers/*/state.json", "containers/*/config.json", "networks/*.json"):
        for path in root.glob(pattern):
            data = path.read_bytes()
            json.loads(data)
            found[path] = data
    return found


def assert_no_space(exc: BaseException, root: Path) -> None:
    text = str(exc)
    assert "No space left" in text, text
    assert str(root) in text, text  # the error names the file it could not write


def test_every_writing_operation_fails_clearly_and_keeps_old_state(small_root: Path) -> None:
    eng = Engine(small_root, watch=False)
    probe = LeakProbe(eng.layout)
    try:
        image = eng.images.busybox().name
        kept = eng.create(image, ["/bin/sleep", "30"], name="kept")
        runner = eng.create(image, ["/bin/sleep", "30"], name="runner")
        eng.start(runner)
        frozen = eng.create(image, ["/bin/sleep", "30"], name="frozen")
        eng.start(frozen)
        eng.pause(frozen)
        before = state_files(small_root)
        names = sorted(os.listdir(eng.layout.names))
        fill(small_root)

        with pytest.raises(SystemFailure) as info:
            eng.create(image, ["/bin/true"], name="newcomer")
        assert_no_space(info.value, small_root)
        assert sorted(os.listdir(eng.layout.names)) == names  # the name was given back

        with pytest.raises(SystemFailure) as info:
            eng.start(kept)
        assert_no_space(info.value, small_root)
        assert eng.inspect(kept)["State"]["Status"] == "created"
        assert probe.leaks(kept) == []

        # (stop still stops, full disk or not: test_docker_state.py)
        for op, cid, status in ((eng.pause, runner, "running"), (eng.unpause, frozen, "paused")):
            with pytest.raises(SystemFailure) as info:
                op(cid)
            assert_no_space(info.value, small_root)
            # what is stored is what runc says: nothing happened
            assert eng.inspect(cid)["State"]["Status"] == status
            assert eng.runtime.state(cid)["status"] == status

        assert state_files(small_root) == before
        assert probe.temporary_files() == []
        assert {c["Name"] for c in eng.list(all=True)} == {"kept", "runner", "frozen"}

        (small_root / "filler").unlink()
        eng.start(kept)
        eng.pause(runner)
        eng.unpause(frozen)
        for cid in (kept, runner, frozen):
            eng.remove(cid, force=True)
            assert probe.leaks(cid, removed=True) == []
        assert [e.action for e in eng.events()].count("destroy") == 3
    finally:
        eng.close()


def test_exit_with_a_full_disk_is_recorded_once_space_is_back(small_root: Path) -> None:
    """The cleanup after an exit runs (and gives space back), then the disk fills up and the
    state write fails; the next operation finds the exit again and records it."""
    eng = Engine(small_root, watch=False)
    probe = LeakProbe(eng.layout)
    cleanup = eng._cleanup

    def cleanup_then_fill(c, ctx=None, **kwargs):
        errors = cleanup(c, ctx, **kwargs)
        fill(small_root)
        return errors

    try:
        image = eng.images.busybox().name
        cid = eng.create(image, ["/bin/sleep", "30"])
        eng.start(cid)
        eng._cleanup = cleanup_then_fill  # type: ignore[method-assign]
        with pytest.raises(SystemFailure) as info:
            eng.kill(cid)
        assert_no_space(info.value, small_root)
        eng._cleanup = cleanup  # type: ignore[method-assign]
        assert probe.temporary_files() == []
        assert json.loads(eng.layout.container(cid).state.read_bytes())["status"] == "running"
        (small_root / "filler").unlink()
        eng.stop(cid)
        state = eng.inspect(cid)["State"]
        assert (state["Status"], state["ExitCode"]) == ("dead", 137)
        assert probe.leaks(cid) == []
    finally:
        eng.close()


@pytest.mark.parametrize("pages", PAGES)
def test_start_with_little_space_left_fails_cleanly_or_runs(small_root: Path,
                                                            pages: int) -> None:
    """The disk fills somewhere inside the start (the state write, a step's files, the
    bundle, the logs): whatever fails, the stored state agrees with runc once the next
    engine has looked, and nothing is left behind."""
    eng = Engine(small_root, watch=False)
    probe = LeakProbe(eng.layout)
    try:
        image = eng.images.busybox().name
        cid = eng.create(image, ["/bin/sleep", "30"], publish=["127.0.0.1::80"])
        fill(small_root, leave_pages=pages)
        try:
            eng.start(cid)
            outcome = "started"
        except SystemFailure as exc:
            assert "No space left" in str(exc) or "injected" not in str(exc), exc
            outcome = f"failed: {exc}"
        assert probe.temporary_files() == []
        json.loads(eng.layout.container(cid).state.read_bytes())
    finally:
        eng.close()
    (small_root / "filler").unlink()
    again = Engine(small_root, watch=False)
    try:
        status = again.inspect(cid)["State"]["Status"]
        runc = again.runtime.state(cid)
        if status == "running":
            assert runc is not None and runc["status"] == "running", outcome
        else:
            assert status in ("dead", "created"), outcome  # created: refused before any step
            assert runc is None, outcome
            assert probe.leaks(cid) == [], outcome
        if status != "running":
            again.start(cid)
        assert again.inspect(cid)["State"]["Status"] == "running"
        again.remove(cid, force=True)
        assert probe.leaks(cid, removed=True) == []
    finally:
        again.close()


@pytest.mark.parametrize("pages", [0, 1, 2, 3])
def test_create_with_little_space_left_is_all_or_nothing(small_root: Path, pages: int) -> None:
    eng = Engine(small_root, watch=False)
    try:
        image = eng.images.busybox().name
        fill(small_root, leave_pages=pages)
        try:
            cid = eng.create(image, ["/bin/true"], name="late")
        except SystemFailure as exc:
            assert_no_space(exc, small_root)
            assert os.listdir(eng.layout.names) == []
            assert os.listdir(eng.layout.containers) == []
        else:
            assert os.readlink(eng.layout.names / "late") == cid
            assert eng.inspect("late")["State"]["Status"] == "created"
        assert LeakProbe(eng.layout).temporary_files() == []
    finally:
        eng.close()
