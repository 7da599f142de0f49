"""One log keeper per engine root: the process that keeps every rotated log of the root.

A keeper per container cost a bare interpreter each (8 MB of Pss, 20 times conmon); one per
root costs that once and a few kilobytes per kept log. Its folder, ``<run>/logkeeper``:

- ``lock``: flocked by the living keeper for all its life. Whoever takes it finds that no
  keeper runs (a killed keeper's lock is released by the kernel, never left stale);
- ``pid``: the keeper's pid, for stopping it (``stop``);
- ``keep/<id>.<conmon pid>``: one entry per kept log, laid by the start of the container
  (renamed in) and removed by the keeper once that conmon is gone and the log's last pass
  made. A restart lays a new entry beside the old one; the passes of both are idempotent.

A container start lays its entry, then tests the lock: held, the keeper sees the entry
(inotify on ``keep``); free, it starts a keeper (``setsid --fork``: nobody's child, no zombie
in an embedding process). Two such starts at once start two keepers, and the one that does
not get the lock leaves. The keeper watches the folders of all kept logs with one inotify
descriptor and each conmon with a pidfd; it reads every entry when it starts, so a keeper
started after one was killed catches up on the rotations made meanwhile (up to two per log
lose nothing: ``logfiles``). With nothing left to keep it removes its pid file, releases
the lock and looks at ``keep`` once more: an entry laid before the release is seen there,
one laid after it finds the lock free and starts a keeper.

This file is also the keeper's program (``python -I -S keeper.py FOLDER``): it imports
nothing outside the standard library but ``logfiles``, itself stdlib only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import signal
import struct
import sys
import time
from pathlib import Path

if __package__:
    from . import files as logfiles
else:  # the keeper's process: -I leaves this folder off the path; the stdlib's names win
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))
    import files as logfiles  # type: ignore[no-redef]

# a log whose file was not empty when its conmon started is looked at each TICK until conmon
# rotates it: conmon counts from zero, and a write makes no event the keeper watches
TICK = 1.0
LOCK_TRIES = 50  # a starter holds the lock for microseconds; 10 ms apart
STOP_TIMEOUT = 5.0
_IN_MOVED_TO, _IN_CREATE = 0x80, 0x100
_IN_DELETE_SELF, _IN_MOVE_SELF, _IN_Q_OVERFLOW, _IN_IGNORED = 0x400, 0x800, 0x4000, 0x8000
_EVENT = struct.Struct("iIII")
_SCRIPT = os.path.abspath(__file__)


def _keep_dir(folder: Path) -> Path:
    return folder / "keep"


def _entries(folder: Path) -> list[str]:
    try:
        return sorted(n for n in os.listdir(_keep_dir(folder)) if not n.startswith("."))
    except FileNotFoundError:
        return []


def _try_lock(folder: Path, tries: int = 1) -> int | None:
    """The keeper's lock, taken (its descriptor), or None when someone holds it: a keeper
    (it has written its pid file), or for more than ``tries`` times 10 ms."""
    fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    for i in range(tries):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if i + 1 < tries and not keeper_pid(folder):  # a starter holds it for a moment
                time.sleep(0.01)
            else:
                break
    os.close(fd)
    return None


# -- the engine's side ------------------------------------------------------------------------


def register(folder: Path, *, cid: str, log: Path, max_files: int, max_size: int, ctl: Path,
             conmon_pid: int, base: int) -> None:
    """Have the root's keeper keep the log of ``cid`` (``base``: the bytes its file held when
    conmon started); starts the keeper if none runs. Raises OSError."""
    keep = _keep_dir(folder)
    keep.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = f"{cid}.{conmon_pid}"
    entry = {"cid": cid, "log": str(log), "max_files": max_files, "max_size": max_size,
             "ctl": str(ctl), "conmon_pid": conmon_pid, "base": base}
    # run-time folder (tmpfs), read by the keeper only: a rename suffices, no fsync
    tmp = keep / f".{name}.tmp"
    tmp.write_text(json.dumps(entry))
    os.rename(tmp, keep / name)
    ensure(folder)


def ensure(folder: Path) -> None:
    """Start the keeper when something is to be kept and none runs (it was killed, or is
    leaving). Raises OSError."""
    if not _entries(folder):
        return
    fd = _try_lock(folder)
    if fd is None:
        return  # a keeper holds it: it sees the entries
    try:
        # looked at again under the lock: a keeper that was leaving removed what it dropped
        if not _entries(folder):
            return
    finally:
        os.close(fd)
    # here: the keeper's own process needs neither (nor could it import the engine)
    import subprocess

    from .. import programs

    argv = [sys.executable, "-I", "-S", _SCRIPT, str(folder)]
    setsid = programs.find("setsid")
    # setsid --fork returns at once (1 ms); without util-linux the keeper forks itself
    subprocess.run([setsid, "--fork", *argv] if setsid else [*argv, "--fork"],
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True,
                   check=False)


def is_keeper(pid: int, folder: Path) -> bool:
    """Whether ``pid`` is a keeper of ``folder`` (not a reused pid)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    # a keeper started before engine/ had subpackages runs engine/logkeeper.py
    return (any(a.endswith((b"/logs/keeper.py", b"/logkeeper.py")) for a in argv)
            and os.fsencode(str(folder)) in argv)


def keeper_pids(folder: Path) -> list[int]:
    """Every keeper process of ``folder``: the one holding the lock, and one just started
    that has not taken it yet (or is about to find it taken and leave)."""
    return [int(e.name) for e in os.scandir("/proc")
            if e.name.isdigit() and is_keeper(int(e.name), folder)]


def keeper_pid(folder: Path) -> int:
    """The pid of the running keeper of ``folder``, or 0."""
    try:
        pid = int((folder / "pid").read_text().strip() or 0)
    except (OSError, ValueError):
        return 0
    return pid if pid > 0 and is_keeper(pid, folder) else 0


def stop(folder: Path, timeout: float = STOP_TIMEOUT) -> None:
    """End every keeper of ``folder`` (a root's teardown), also one still starting;
    idempotent. Its entries stay: the caller removes the run folder."""
    deadline = time.monotonic() + timeout
    sig = signal.SIGTERM
    while pids := keeper_pids(folder):
        if time.monotonic() > deadline:
            if sig == signal.SIGKILL:
                return
            sig, deadline = signal.SIGKILL, time.monotonic() + timeout
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        time.sleep(0.02)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(folder / "pid")


# -- the keeper's side ------------------------------------------------------------------------


class _Kept:
    """One kept log, as its entry says."""

    def __init__(self, name: str, entry: dict) -> None:
        self.name = name
        self.cid = str(entry["cid"])
        self.log = Path(entry["log"])
        self.max_files = int(entry["max_files"])
        self.max_size = int(entry["max_size"])
        self.ctl = Path(entry["ctl"])
        self.conmon_pid = int(entry["conmon_pid"])
        # conmon started on a file holding bytes: until it rotates, it may let it pass max-size
        self.first = logfiles.identity(self.log) if int(entry.get("base", 0)) > 0 else None
        self.pidfd = -1
        self.wd = -1

    @property
    def unrotated(self) -> bool:
        if self.first is not None and logfiles.identity(self.log) != self.first:
            self.first = None
        return self.first is not None

    def watch_conmon(self) -> bool:
        """A pidfd on its conmon; False when that conmon is gone (or the pid is another's)."""
        try:
            self.pidfd = os.pidfd_open(self.conmon_pid)
        except OSError:
            return False
        try:  # checked after the pidfd is open: a pid reused before is caught here
            argv = Path(f"/proc/{self.conmon_pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            argv = [b""]
        return argv[0].endswith(b"conmon") and self.cid.encode() in argv

    def oversize(self) -> bool:
        try:
            return os.stat(self.log).st_size > self.max_size
        except OSError:
            return False

    def pass_(self, *, last: bool = False) -> None:
        # one log's trouble (its folder being removed) must not end the keeping of all
        with contextlib.suppress(Exception):
            logfiles.keep(self.log, max_files=self.max_files, max_size=self.max_size,
                          ctl=None if last else self.ctl)


class _Inotify:
    """One descriptor for all watches; without one (out of instances) every watch is -1 and
    the keeper looks at everything each TICK instead."""

    def __init__(self) -> None:
        import ctypes  # here: the engine's side imports this module and needs none of it

        try:
            self._libc = ctypes.CDLL(None, use_errno=True)
            self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            self.fd = -1

    def add(self, folder: Path, mask: int) -> int:
        if self.fd < 0:
            return -1
        return self._libc.inotify_add_watch(self.fd, os.fsencode(str(folder)), mask)

    def remove(self, wd: int) -> None:
        self._libc.inotify_rm_watch(self.fd, wd)

    def read(self) -> list[tuple[int, int]]:
        """(watch, mask) of the events waiting."""
        out = []
        with contextlib.suppress(BlockingIOError):
            while data := os.read(self.fd, 65536):
                off = 0
                while off + _EVENT.size <= len(data):
                    wd, mask, _, size = _EVENT.unpack_from(data, off)
                    out.append((wd, mask))
                    off += _EVENT.size + size
        return out


class Keeper:
    def __init__(self, folder: Path, lock_fd: int) -> None:
        self.folder = folder
        self.lock_fd = lock_fd
        self.kept: dict[str, _Kept] = {}
        self.by_wd: dict[int, set[str]] = {}
        self.inotify = _Inotify()
        self.keep_wd = self.inotify.add(_keep_dir(folder), _IN_MOVED_TO | _IN_DELETE_SELF
                                        | _IN_MOVE_SELF)
        self.poll = select.poll()
        if self.inotify.fd >= 0:
            self.poll.register(self.inotify.fd, select.POLLIN)
        self.by_pidfd: dict[int, str] = {}
        self.stuck: set[str] = set()  # entries it could not remove: not a reason to stay
        self._write_pid()

    def _write_pid(self) -> None:
        tmp = self.folder / f".pid.{os.getpid()}"
        tmp.write_text(f"{os.getpid()}\n")
        os.rename(tmp, self.folder / "pid")

    def rescan(self) -> None:
        for name in _entries(self.folder):
            if name not in self.kept and name not in self.stuck:
                self._add(name)

    def _add(self, name: str) -> None:
        try:
            entry = json.loads((_keep_dir(self.folder) / name).read_text())
            k = _Kept(name, entry)
        except (OSError, ValueError, KeyError, TypeError):
            self._remove_entry(name)  # unreadable: nothing to keep by it
            return
        self.kept[name] = k
        if not k.watch_conmon():
            self._drop(k)  # gone while no keeper looked: what it left, kept
            return
        self.poll.register(k.pidfd, select.POLLIN)
        self.by_pidfd[k.pidfd] = name
        k.wd = self.inotify.add(k.log.parent, _IN_MOVED_TO | _IN_CREATE)
        if k.wd >= 0:
            self.by_wd.setdefault(k.wd, set()).add(name)
        k.pass_()

    def _drop(self, k: _Kept) -> None:
        """Its conmon is gone and has written all: a last pass, and it is kept no more."""
        k.pass_(last=True)
        self.kept.pop(k.name, None)
        if k.pidfd >= 0:
            self.by_pidfd.pop(k.pidfd, None)
            with contextlib.suppress(KeyError):
                self.poll.unregister(k.pidfd)
            os.close(k.pidfd)
        names = self.by_wd.get(k.wd)
        if names is not None:
            names.discard(k.name)
            if not names:
                del self.by_wd[k.wd]
                self.inotify.remove(k.wd)
        self._remove_entry(k.name)

    def _remove_entry(self, name: str) -> None:
        try:
            os.unlink(_keep_dir(self.folder) / name)
        except FileNotFoundError:
            pass
        except OSError:
            self.stuck.add(name)

    def _leave(self) -> bool:
        """Nothing kept: release the lock; True to go on keeping (an entry came meanwhile)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.folder / "pid")
        os.close(self.lock_fd)
        if not set(_entries(self.folder)) - self.stuck:
            return False
        fd = _try_lock(self.folder, LOCK_TRIES)
        if fd is None:
            return False  # a keeper its starter started has it
        self.lock_fd = fd
        self._write_pid()
        self.rescan()
        return True

    def run(self) -> None:
        self.rescan()
        while True:
            if not self.kept and not self._leave():
                return
            ticking = [k for k in self.kept.values() if k.wd < 0 or k.unrotated]
            blind = self.keep_wd < 0
            ready = self.poll.poll(TICK * 1000 if ticking or blind else None)
            touched: set[str] = set()
            for fd, _ in ready:
                if fd == self.inotify.fd:
                    continue
                name = self.by_pidfd.get(fd)
                if name in self.kept:
                    self._drop(self.kept[name])
            if any(fd == self.inotify.fd for fd, _ in ready):
                for wd, mask in self.inotify.read():
                    if wd == self.keep_wd:
                        if mask & (_IN_DELETE_SELF | _IN_MOVE_SELF | _IN_IGNORED):
                            return  # the root's run folder was torn down
                        self.rescan()
                    elif mask & _IN_Q_OVERFLOW:
                        touched |= set(self.kept)
                        self.rescan()
                    elif mask & _IN_IGNORED:
                        self.by_wd.pop(wd, None)  # its folder was removed
                    else:
                        touched |= self.by_wd.get(wd, set())
            if not ready:  # a tick: a full pass only where one is needed
                touched |= {k.name for k in ticking if k.wd < 0 or k.oversize()}
                if blind:
                    self.rescan()
            for name in touched:
                if name in self.kept:
                    self.kept[name].pass_()


def main(argv: list[str]) -> int:
    if argv[-1:] == ["--fork"]:
        argv = argv[:-1]
        if os.fork():
            return 0
        os.setsid()
    os.chdir("/")  # hold no mount busy
    folder = Path(argv[0])
    with contextlib.suppress(Exception):  # nobody reads a keeper's errors
        fd = _try_lock(folder, LOCK_TRIES)
        if fd is not None:
            Keeper(folder, fd).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
