"""A container's log as a set of files, and the keeper that rotates them beside conmon.

conmon (2.1.6, Debian 12's) caps a log with ``--log-size-max`` by replacing it: it opens
``ctr.log.tmp`` (``O_CREAT|O_TRUNC``, following symlinks) and renames that over ``ctr.log``,
so whatever the old file held is gone. Docker keeps ``max-file`` files. We keep them
without copying a byte and without racing conmon's writes:

- the output always lives in a numbered file (``ctr.log.7``; the higher, the newer), and
  ``ctr.log`` is a symlink to the newest one;
- the keeper keeps ``ctr.log.tmp`` a dangling symlink to the next number. conmon's rotation
  then creates ``ctr.log.8`` through it, and its rename replaces only the symlink
  ``ctr.log``: ``ctr.log.7`` stays whole, under its own name;
- the keeper, woken by the rename (inotify), then lays the next ``ctr.log.tmp`` and deletes
  the oldest files beyond ``max-file``. Should conmon rotate twice before the keeper looks,
  the second rotation makes a regular ``ctr.log``, which the keeper gives a number with a
  hard link; only a third rotation before it looks (more than twice ``max-size`` written
  while it waits for the CPU) loses a file. A log never holds more than ``max-file`` files
  of at most ``max-size`` (a record longer than ``max-size`` fills a file alone), however
  fast it is written.

conmon counts its bytes from zero when it starts, so a restarted container appends to a
file that may already be full: the keeper asks conmon to reopen (the ``ctl`` FIFO's
message 2, which runs the same rotation) when the newest file passes ``max-size``.

This file is also the keeper's program: it imports nothing outside the standard library and
runs as a script, so that each keeper costs a bare interpreter (about 8 MB, 15 ms).
"""

from __future__ import annotations

import contextlib
import os
import select
import stat
import subprocess
import sys
from pathlib import Path

# The keeper wakes at each rename in the log's folder (inotify: conmon's rotation is one);
# the tick is for what makes no event (a restarted container's file passing max-size).
TICK = 1.0
_IN_MOVED_TO, _IN_CREATE = 0x80, 0x100
REOPEN_LOGS = b"2 0 0\n"  # conmon's REOPEN_LOGS_EVENT on the control FIFO


def _tmp(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def _numbered(path: Path) -> list[tuple[int, Path]]:
    prefix = path.name + "."
    try:
        names = os.listdir(path.parent)
    except FileNotFoundError:
        return []
    found = [(int(n[len(prefix):]), path.parent / n) for n in names
             if n.startswith(prefix) and n[len(prefix):].isdigit()]
    return sorted(found)


def identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path`` (symlinks followed), None when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def log_files(path: Path) -> list[Path]:
    """The files of the log at ``path``, oldest first (the last is the one being written).

    A log that was never rotated is ``path`` alone; a regular ``path`` that the keeper has
    not numbered yet comes after the numbered files.
    """
    path = Path(path)
    files = [p for _, p in _numbered(path)]
    current = identity(path)
    if current is not None and current not in {identity(p) for p in files}:
        files.append(path)
    return files


def prepare(path: Path) -> None:
    """Before conmon starts: the output goes to a numbered file that ``path`` points at."""
    path = Path(path)
    if not os.path.lexists(path):
        numbered = _numbered(path)
        target = path.with_name(f"{path.name}.{numbered[-1][0] + 1 if numbered else 1}")
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
        os.symlink(target.name, path)
    keep(path, max_files=0, max_size=0)  # a regular file from an earlier start gets a number


def keep(path: Path, *, max_files: int, max_size: int, ctl: Path | None = None) -> None:
    """One pass of the keeper (idempotent; ``max_files`` 0 deletes nothing)."""
    numbered = _numbered(path)
    ids = {identity(p): n for n, p in numbered}
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in ids:
        # conmon rotated twice since the last look: the file it writes has no number yet
        n = (numbered[-1][0] if numbered else 0) + 1
        with contextlib.suppress(FileExistsError, FileNotFoundError):
            os.link(path, path.with_name(f"{path.name}.{n}"), follow_symlinks=False)
        numbered = _numbered(path)
    tmp = _tmp(path)
    try:
        tmp_st = os.lstat(tmp)
    except FileNotFoundError:
        tmp_st = None
    if tmp_st is None:
        n = (numbered[-1][0] if numbered else 0) + 1
        # conmon may be creating a regular .tmp at this very moment: then ours fails, and
        # the next pass numbers the file it made
        with contextlib.suppress(FileExistsError):
            os.symlink(f"{path.name}.{n}", tmp)
    elif stat.S_ISLNK(tmp_st.st_mode) and ctl is not None and max_size > 0:
        try:
            size = os.stat(path).st_size
        except OSError:
            size = 0
        if size > max_size:
            _reopen(ctl)
    if max_files > 0:
        live = {identity(path), identity(tmp)}
        for _, old in numbered[:-max_files] if len(numbered) > max_files else []:
            if identity(old) not in live:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(old)


def _reopen(ctl: Path) -> None:
    try:
        fd = os.open(ctl, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return  # conmon is gone, or not listening yet: the next pass asks again
    try:
        os.write(fd, REOPEN_LOGS)
    except OSError:
        pass
    finally:
        os.close(fd)


def spawn_keeper(path: Path, *, max_files: int, max_size: int, ctl: Path,
                 conmon_pid: int) -> None:
    """Start the keeper of the log at ``path``; it ends soon after conmon ``conmon_pid``.

    The keeper is nobody's child (the caller may be a long-lived embedder, which would
    otherwise hold a zombie from each container's stop): ``setsid --fork`` (util-linux) starts
    it and returns at once (1 ms); without it, the keeper forks itself and the caller waits
    for its interpreter to start (10 ms).
    """
    argv = [sys.executable, "-I", "-S", __file__, str(path), str(max_files), str(max_size),
            str(ctl), str(conmon_pid)]
    from . import programs  # here: run as the keeper's script, this file imports no engine

    setsid = programs.find("setsid")
    subprocess.run([setsid, "--fork", *argv] if setsid else [*argv, "--fork"],
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True,
                   check=False)


def _watch(folder: Path) -> int:
    """An inotify descriptor woken by renames into ``folder``, or -1 (then ticks alone)."""
    import ctypes  # here: the reader of logs imports this module too, and needs none of it

    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return -1
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if fd >= 0 and libc.inotify_add_watch(fd, os.fsencode(folder),
                                          _IN_MOVED_TO | _IN_CREATE) < 0:
        os.close(fd)
        return -1
    return fd


def _run(path: Path, max_files: int, max_size: int, ctl: Path, conmon_pid: int) -> None:
    try:
        pidfd = os.pidfd_open(conmon_pid)
    except OSError:
        pidfd = -1
    watch = _watch(path.parent)
    try:
        while True:
            keep(path, max_files=max_files, max_size=max_size, ctl=ctl)
            if pidfd < 0:
                return
            ready, _, _ = select.select([pidfd] + [watch] * (watch >= 0), [], [], TICK)
            if pidfd in ready:  # conmon is gone and has written all: a last pass
                keep(path, max_files=max_files, max_size=max_size)
                return
            if watch in ready:
                with contextlib.suppress(BlockingIOError):
                    while os.read(watch, 4096):
                        pass
    finally:
        for fd in (pidfd, watch):
            if fd >= 0:
                os.close(fd)


def main(argv: list[str]) -> int:
    if argv[-1:] == ["--fork"]:
        argv = argv[:-1]
        if os.fork():
            return 0
    path, max_files, max_size, ctl, conmon_pid = argv
    with contextlib.suppress(Exception):  # nobody reads a keeper's errors
        _run(Path(path), int(max_files), int(max_size), Path(ctl), int(conmon_pid))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
