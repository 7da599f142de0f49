"""Exits: the in-process watcher of conmon's exits, and the Engine's handling of an exit.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from states import ACTIVE, DEAD, undo_steps

from ..errors import CorralError, NotFound, SystemFailure
from ..host.conmon import is_conmon_of, read_exit_code
from ..host.runc import process_alive
from ..log import logger
from ..start import health
from ..start.context import StartContext
from ..start.steps import START_PLAN, kill_exec_sessions
from ..store.container import Container
from .exitinfo import (
    CLEANUP_INCOMPLETE,
    EXIT_FILE_POLL,
    EXIT_FILE_WAIT,
    LOST_EXIT_CODE,
    _Exit,
    _forget_exit_file,
)
from .transitions import _Transitions

if TYPE_CHECKING:
    from .engine import Engine


def spawn_detached(root: Path | str, cid: str) -> int:
    """Run this exit command for ``cid`` in a session of its own, as conmon would have: for
    an exit found by a command whose container's conmon is gone, so that a restart the policy
    asks for is waited for and made with no engine alive. Returns its pid."""
    import subprocess

    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.exited", str(root), cid],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True,
        # fail points are for the process a test set them on
        env={k: v for k, v in os.environ.items() if k != "CORRAL_FAIL_POINTS"})
    return proc.pid


def _wait_pid(pid: int, timeout: float) -> bool:
    """Wait until process ``pid`` is gone; True if it is."""
    if pid <= 0 or not process_alive(pid):
        return True
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    except OSError:
        fd = -1
    try:
        deadline = time.monotonic() + max(timeout, 0)
        while process_alive(pid):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if fd >= 0:
                select.select([fd], [], [], min(left, 0.5))
            else:
                time.sleep(min(left, 0.01))
        return True
    finally:
        if fd >= 0:
            os.close(fd)


class _ExitWatcher:
    """One thread that waits on the pidfds of conmon processes and handles their exits."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._fds: dict[int, str] = {}
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._closed = False
        self._thread: threading.Thread | None = None

    def add(self, c: Container) -> None:
        try:
            fd = os.pidfd_open(c.state.conmon_pid)
        except OSError:
            threading.Thread(target=self._handle, args=(c.id,), daemon=True).start()
            return
        os.set_inheritable(fd, False)
        with self._lock:
            if self._closed:
                os.close(fd)
                return
            self._fds[fd] = c.id
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="corral-exit-watcher",
                                                daemon=True)
                self._thread.start()
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"x")

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                fds = list(self._fds)
            ready, _, _ = select.select([self._wake_r, *fds], [], [])
            for fd in ready:
                if fd == self._wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                    continue
                with self._lock:
                    cid = self._fds.pop(fd, None)
                if cid is None:
                    continue  # close() took it, and closes it: closed twice, the number
                    # could by then belong to another file of the embedding process
                os.close(fd)
                self._handle(cid)

    def _handle(self, cid: str) -> None:
        try:
            delay = self.engine.container_exited(cid)
            if delay is not None:
                self.restart_later(cid, delay)
            c = self.engine.get(cid)
            if c.state.status == DEAD:
                # the exit may have been handled by conmon's exit command in another process:
                # this engine's hooks still hear of it, once
                self.engine._enter(c, DEAD)
        except NotFound:
            pass
        except Exception:
            logger.exception("handling the exit of {} failed", cid)

    def restart_later(self, cid: str, delay: float) -> None:
        """Start ``cid`` after ``delay`` seconds, if its restart is still pending then."""
        timer = threading.Timer(delay, self.engine.restart_pending, args=(cid,))
        timer.daemon = True
        timer.start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            fds, self._fds = list(self._fds), {}
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout=5)
        for fd in fds:
            os.close(fd)
        os.close(self._wake_r)
        os.close(self._wake_w)


class ExitsMixin:
    """The handling of an exit: reconcile it, undo the start's resources, restart."""

    def _exit_locked(self, c: Container, exit_code: int, error: str = "", *,
                     rebooted: bool = False) -> None:
        lc = self._lifecycle(c, _Transitions(self, c, self._context(c)))
        self._fire(lc, "exit", exit_code=exit_code, error=error, rebooted=rebooted)

    def _cleanup(self, c: Container, ctx: StartContext | None = None, *,
                 keep_exit_file: bool = False) -> list[str]:
        """Undo every start step (idempotent); return what could not be undone.

        conmon's exit file goes last, unless kept (``keep_exit_file``) for the caller to remove
        when it records the exit: a crash in the cleanup leaves the code to the next look."""
        kill_exec_sessions(c.state.exec_sessions)
        c.state.exec_sessions = []
        health.stop_monitor(c.state.health_pid, c.id)
        c.state.health_pid = 0
        ctx = ctx or self._context(c)
        ctx.conmon_pid = c.state.conmon_pid
        errors = undo_steps(list(reversed(START_PLAN)), ctx, fail_point=self._undo_fail_point)
        for step, exc in errors:
            logger.error("container {}: cleanup of step {} failed: {}", c.name, step, exc)
        if not keep_exit_file:
            _forget_exit_file(c)
        return [f"{step}: {exc}" for step, exc in errors]

    def _finish_cleanup(self, c: Container) -> bool:
        """Retry the cleanup an undo left incomplete; True once nothing is left."""
        errors = self._cleanup(c)
        if errors:
            return False
        c.state.cleanup_pending = False
        c.state.error = c.state.error.partition(CLEANUP_INCOMPLETE)[0].rstrip("; ")
        self._save(c)
        logger.info("container {}: cleanup finished", c.name)
        return True

    def _observed_exit(self, c: Container) -> _Exit | None:
        """The exit of an active container, if it has exited."""
        code = read_exit_code(c.paths.exit_file)
        if code is not None:
            return _Exit(code)
        if c.state.conmon_pid:
            if is_conmon_of(c.state.conmon_pid, c.id):
                return None
            code = read_exit_code(c.paths.exit_file)  # conmon may have just written it
            if code is not None:
                return _Exit(code)
            if not (self.layout.runc_root / c.id).exists():
                # runc's state went with the run folder: the host rebooted (or it was
                # emptied as a reboot does)
                return _Exit(LOST_EXIT_CODE, "runtime state lost", rebooted=True)
            return _Exit(LOST_EXIT_CODE, "monitor lost")
        if process_alive(c.state.pid):
            return None
        return _Exit(LOST_EXIT_CODE, "process lost")

    def container_exited(self, ref: str, *, follow_restart: bool = False) -> float | None:
        """Handle the exit of a container (run by conmon's exit command, or by the watcher).

        Returns the delay after which its restart policy wants it started again, if any; with
        ``follow_restart`` (conmon's exit command) wait that long here and restart it, so the
        policy holds with no engine process alive."""
        with self._locked(ref) as c:
            self._reconcile_locked(c, restart_followed=True)
            delay = c.state.restart_delay if c.state.restart_pending else None
            cid = c.id
        if delay is not None and follow_restart:
            time.sleep(delay)
            self.restart_pending(cid)
        return delay

    def _follow_restart(self, c: Container) -> None:
        """Give the start ``c``'s restart policy asked for to a process that waits the
        backoff out: this engine's watcher, or else a detached exit command (conmon's would
        have, had conmon lived)."""
        if self._watcher is not None:
            self._watcher.restart_later(c.id, c.state.restart_delay)
            return
        from .exits import spawn_detached

        try:
            # the exit command takes a root without its run folder for one torn down, and
            # after a reboot this command may not have made it yet
            self.layout.run.mkdir(parents=True, exist_ok=True, mode=0o700)
            spawn_detached(self.layout.root, c.id)
        except OSError as exc:
            logger.warning("container {}: cannot follow its restart: {}", c.name, exc)

    def restart_pending(self, ref: str) -> bool:
        """Start a container whose restart policy asked for it, unless that was called off
        (stopped or removed meanwhile, or already restarted by another process)."""
        try:
            with self._locked(ref) as c:
                if not c.state.restart_pending or c.state.status != DEAD \
                        or c.state.manual_stop:
                    return False
                c.state.restart_pending = False
                c.state.restart_count += 1
                self._save(c)
                self._emit("restart", c)
                self._start_locked(c, self._context(c))
                return True
        except NotFound:
            return False
        except CorralError as exc:
            logger.warning("restart of {} failed: {}", ref, exc)
            return False

    def _wait_exit_code(self, c: Container) -> int:
        """The code conmon wrote once the process ended (it writes it just after reaping)."""
        deadline = time.monotonic() + EXIT_FILE_WAIT
        while True:
            code = read_exit_code(c.paths.exit_file)
            if code is not None:
                return code
            monitored = c.state.conmon_pid and is_conmon_of(c.state.conmon_pid, c.id)
            if not monitored or time.monotonic() > deadline:
                code = read_exit_code(c.paths.exit_file)
                return LOST_EXIT_CODE if code is None else code
            time.sleep(EXIT_FILE_POLL)

    def wait(self, ref: str, timeout: float | None = None) -> int:
        """Block until the container is not running; return its exit code."""
        deadline = None if timeout is None else time.monotonic() + timeout
        cid = self._resolve(ref)
        while True:
            try:
                with self._locked(cid) as c:
                    self._reconcile_locked(c)
                    if c.state.status not in ACTIVE:
                        return c.state.exit_code
                    conmon, pid = c.state.conmon_pid, c.state.pid
            except NotFound:
                # removed on exit (--rm), maybe by conmon's exit command: the journal knows
                code = self._last_exit_code(cid)
                if code is None:
                    raise
                return code
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise SystemFailure(f"timed out waiting for container {ref}")
            _wait_pid(conmon or pid, min(left, 1.0) if left is not None else 1.0)

    def _last_exit_code(self, cid: str) -> int | None:
        code = None
        for ev in self.journal.read():
            if ev.id == cid and ev.action == "die":
                with contextlib.suppress(KeyError, ValueError):
                    code = int(ev.attributes["exitCode"])
        return code
