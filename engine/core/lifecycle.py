"""The lifecycle verbs (start, stop, kill, pause, unpause, restart, remove): each a trigger
of the container's machine, fired under its lock.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal as _signal
import sys
import time

from states import DEAD, PAUSED, RUNNING

from ..errors import Conflict, NotFound, StartFailed, SystemFailure
from ..host import cgroups
from ..log import logger
from ..start import netsteps
from ..start.context import StartContext
from ..store import config as cfg
from ..store.container import Container
from .exitinfo import _forget_exit_file
from .exits import _wait_pid
from .transitions import _Transitions

PAUSE_LIMIT = 600.0  # a ``pause:<step>`` fail point holds the start this long at most


class LifecycleMixin:
    """The lifecycle verbs: each fires a trigger under the container's lock."""

    def _fail_point(self, step: str) -> bool:
        """Fail points, set by tests: ``<step>`` or ``network.<sub-step>`` fails that step after
        its do, ``undo:<name>`` fails its undo, ``pause:<name>`` holds the start there (after
        writing ``<root>/paused-at-<name>``) so a test can kill the engine at that point."""
        if f"pause:{step}" in self.fail_points:
            (self.layout.root / f"paused-at-{step}").touch()
            time.sleep(PAUSE_LIMIT)
        return step in self.fail_points

    def _undo_fail_point(self, step: str) -> bool:
        return self._fail_point(f"undo:{step}")

    def _context(self, c: Container, interactive: bool = False) -> StartContext:
        try:
            rootfs = self.images.get(c.config.image).rootfs
        except NotFound:
            rootfs = self.layout.root / "images" / c.config.image / "rootfs"
        ctx = StartContext(
            container=c, layout=self.layout, runtime=self.runtime, monitor=self.monitor,
            image_rootfs=rootfs, interactive=interactive,
            exit_command=[sys.executable, "-m", "engine.exited", str(self.layout.root), c.id],
            networks=self.networks, volumes=self.volumes, firewall=self.firewall,
            fail_point=self._fail_point,
            find_container=self.get)

        def join(ref: str) -> str:
            other = self.get(ref)
            netsteps.check_joinable(other.state.status, ref)
            ctx.ip = other.state.ip
            return f"/proc/{other.state.pid}/ns/net"

        ctx.join_network = join
        ctx.network_peers = lambda: self._all_peer_hosts(
            [c.config.network_mode, *(n["name"] for n in c.config.extra_networks)], c.id)
        return ctx

    def start(self, ref: str) -> None:
        """Start a created or dead container. ``NotModified`` when it is already running."""
        with self._locked(ref) as c:
            self._start_locked(c, self._context(c))

    def start_interactive(self, ref: str) -> StartContext:
        """Start with runc in the foreground, attached to this process's terminal (``run -it``);
        the caller waits with ``wait_interactive``."""
        with self._locked(ref) as c:
            ctx = self._context(c, interactive=True)
            self._start_locked(c, ctx)
            return ctx

    def wait_interactive(self, ctx: StartContext) -> int:
        assert ctx.foreground is not None
        code = ctx.foreground.wait()
        with self._locked(ctx.cid) as c:
            if c.state.status in (RUNNING, PAUSED):
                self._exit_locked(c, code)
            return c.state.exit_code

    def _start_locked(self, c: Container, ctx: StartContext) -> None:
        # what a failed undo left (a namespace, a lease) would make the steps' do fail
        if c.state.cleanup_pending and not self._finish_cleanup(c):
            raise SystemFailure(f"cannot start container {c.name}: the cleanup of its last "
                                f"run is incomplete: {c.state.error}")
        delegate = _Transitions(self, c, ctx)
        lc = self._lifecycle(c, delegate)
        self._fire(lc, "start")
        if delegate.failure is not None:
            f = delegate.failure
            raise StartFailed(f.step, str(f.cause)) from f.cause

    def stop(self, ref: str, timeout: float | None = None) -> None:
        """Send the stop signal, wait ``timeout`` seconds, then SIGKILL; clean up."""
        with self._locked(ref) as c:
            self._reconcile_locked(c)
            if c.state.status not in (RUNNING, PAUSED):
                if c.state.restart_pending:  # a stop during the backoff calls the restart off
                    c.state.restart_pending, c.state.manual_stop = False, True
                    self._save(c)
                return
            c.state.manual_stop = True
            try:
                self._save(c)  # first: a stop cut short by a crash must not restart it
            except SystemFailure as exc:
                # a full disk must not keep a container running: the signal goes first, the
                # record of the stop comes with the exit's
                logger.warning("container {}: stopping it all the same: {}", c.name, exc)
            grace = c.config.stop_timeout if timeout is None else timeout
            try:
                self._terminate_locked(c, c.config.stop_signal, grace)
            except SystemFailure as exc:
                if c.state.status != DEAD:
                    raise
                # stopped and cleaned up, as Docker's stop; conmon's exit file keeps the code
                # for the next look that can write the state
                logger.warning("container {} stopped, but not recorded yet: {}", c.name, exc)
            self._emit("stop", c)

    def _terminate_locked(self, c: Container, sig: int, grace: float) -> None:
        pid = c.state.pid
        self._emit("kill", c, signal=str(int(sig)))
        if not self.runtime.signal_process(c.id, pid, sig):
            self.runtime.kill(c.id, sig)
        if c.state.status == PAUSED:
            try:
                self.runtime.resume(c.id)  # a frozen process cannot act on its signal
            except SystemFailure:
                # runc's state is gone (a reboot, a lost run folder): thaw the cgroup itself
                with contextlib.suppress(SystemFailure):
                    cgroups.host().thaw(c.id)
        if sig != _signal.SIGKILL and not _wait_pid(pid, grace):
            self._emit("kill", c, signal=str(int(_signal.SIGKILL)))
            self.runtime.kill(c.id, _signal.SIGKILL, all_processes=True)
        _wait_pid(pid, 30)
        self._exit_locked(c, self._wait_exit_code(c))

    def kill(self, ref: str, signal: str | int = "KILL") -> None:
        sig = cfg.parse_signal(signal)
        with self._locked(ref) as c:
            self._reconcile_locked(c)
            if c.state.status not in (RUNNING, PAUSED):
                raise Conflict(f"Container {c.id} is not running")
            if sig == _signal.SIGKILL:
                self._terminate_locked(c, sig, 0)  # which tells the kill event
                return
            self._emit("kill", c, signal=str(sig))
            if not self.runtime.signal_process(c.id, c.state.pid, sig):
                self.runtime.kill(c.id, sig)

    def pause(self, ref: str) -> None:
        with self._locked(ref) as c:
            self._reconcile_locked(c)
            lc = self._lifecycle(c, _Transitions(self, c, None))
            self._fire(lc, "pause")

    def unpause(self, ref: str) -> None:
        with self._locked(ref) as c:
            self._reconcile_locked(c)
            lc = self._lifecycle(c, _Transitions(self, c, None))
            self._fire(lc, "unpause")

    def restart(self, ref: str, timeout: float | None = None) -> None:
        self.stop(ref, timeout)
        with self._locked(ref) as c:
            self._start_locked(c, self._context(c))
            self._emit("restart", c)

    def remove(self, ref: str, force: bool = False) -> None:
        with self._locked(ref) as c:
            self._reconcile_locked(c)
            if force and c.state.status in (RUNNING, PAUSED):
                self._terminate_locked(c, _signal.SIGKILL, 0)
            lc = self._lifecycle(c, _Transitions(self, c, None))
            self._fire(lc, "remove")

    def _finish_remove(self, c: Container) -> None:
        errors = self._cleanup(c)
        if errors:
            raise SystemFailure(f"cannot remove container {c.name}: {'; '.join(errors)}")
        _forget_exit_file(c)
        # rename first, so no reader ever sees a half-deleted folder as a container
        trash = self.layout.containers / f".trash-{c.id}"
        os.rename(c.paths.dir, trash)
        self._release_name(c.name, c.id)
        shutil.rmtree(trash, ignore_errors=True)
        self._emit("destroy", c)
