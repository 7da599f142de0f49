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

The keeper (``logkeeper``, one process per engine root) runs ``keep`` on each kept log; it
imports this module into a bare interpreter, so this module stays standard library only.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

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
