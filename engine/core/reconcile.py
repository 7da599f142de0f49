"""Reconciliation: the stored state made to agree with the host after crashes and reboots.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from states import ACTIVE, DEAD, PAUSED, REMOVING, RUNNING, STARTING

from ..errors import CorralError, NotFound
from ..host import mounts
from ..host.conmon import is_conmon_of
from ..log import logger
from ..store import config as cfg
from ..store.container import Container, now_rfc3339
from ..store.files import atomic_write_json, file_lock, read_json
from . import fsck
from .exitinfo import CLEANUP_INCOMPLETE, START_FAILED_EXIT_CODE, _stop_marker


class ReconcileMixin:
    """The stored state made to agree with the host (at start, and per command)."""

    def _reconcile_locked(self, c: Container, *, restart_followed: bool = False) -> None:
        """Bring ``c`` in line with what runs. An exit found here whose restart policy asks for
        a start gets a process that waits the backoff out, when nobody else will: conmon's exit
        command follows it if conmon lives; ``restart_followed``: the caller does."""
        status = c.state.status
        if status in (RUNNING, PAUSED):
            seen = self._observed_exit(c)
            if seen is not None:
                monitored = is_conmon_of(c.state.conmon_pid, c.id)
                c.state.manual_stop |= _stop_marker(c).exists()
                self._exit_locked(c, seen.code, seen.error, rebooted=seen.rebooted)
                if c.state.restart_pending and not (monitored or restart_followed):
                    self._follow_restart(c)
        elif status == STARTING:
            # we hold the lock, so the process that was starting it is gone: finish its undo
            errors = self._cleanup(c)
            c.state.status = DEAD
            c.state.exit_code = START_FAILED_EXIT_CODE
            c.state.error = "start interrupted: the engine stopped during start"
            if errors:
                c.state.error += f"; {CLEANUP_INCOMPLETE}: {'; '.join(errors)}"
            c.state.cleanup_pending = bool(errors)
            c.state.pid = c.state.conmon_pid = 0
            c.state.finished_at = now_rfc3339()
            self._save(c)
            self._emit("die", c, exitCode=str(c.state.exit_code))
        elif status == REMOVING:
            self._finish_remove(c)
        elif c.state.cleanup_pending:
            self._finish_cleanup(c)

    def reconcile(self) -> None:
        """Bring stored state in line with what runc and conmon say; finish broken starts,
        removals and cleanups. Containers another process is acting on are left to it.

        The first engine since boot also makes the restarts that were waiting out their
        backoff when the host went down (their waiting processes went with it)."""
        booted = not self._reconciled_marker.exists()
        self._check_store()
        if (self.layout.run / "firewall").is_dir():
            self.firewall().forget()  # looked at again once per engine, as dockerd does
        for cid in self._ids():
            paths = self.layout.container(cid)
            try:
                state = read_json(paths.state)
            except (OSError, ValueError):
                continue
            if not isinstance(state, dict):
                continue
            orphaned_restart = booted and state.get("status") == DEAD \
                and bool(state.get("restart_pending"))
            if state.get("status") not in (*ACTIVE, REMOVING) \
                    and not state.get("cleanup_pending") and not orphaned_restart:
                continue
            try:
                with file_lock(paths.lock, blocking=False) as got:
                    if not got:
                        continue
                    c = self._load(cid)
                    self._reconcile_locked(c)
                    if self._watcher and c.state.status in (RUNNING, PAUSED):
                        self._watcher.add(c)
                    if orphaned_restart and c.state.status == DEAD and c.state.restart_pending:
                        # as dockerd's start: at once, with the backoff begun anew
                        c.state.restart_delay = 0.0
                        self._save(c)
                        self._follow_restart(c)
            except (CorralError, OSError) as exc:
                logger.warning("reconcile of {} failed: {}", cid, exc)
        try:
            self._sweep_orphans()
            self._reclaim_leases()
        except (CorralError, OSError) as exc:
            logger.warning("sweep of orphaned runtime state failed: {}", exc)
            return
        if not self._ids():
            return  # nothing to remember: a root with no container has no run folder
        with contextlib.suppress(OSError, CorralError):
            self.layout.run.mkdir(parents=True, exist_ok=True, mode=0o700)
            atomic_write_json(self._reconciled_marker, {"time": now_rfc3339()})

    @property
    def _reconciled_marker(self) -> Path:
        """In the run folder, so a reboot (which empties /run) removes it."""
        return self.layout.run / "reconciled"

    def _check_store(self) -> None:
        """Remove what interrupted writes left; set aside, with a warning, each container
        folder that cannot be read, once what it held is torn down (see ``fsck``)."""
        try:
            for path in fsck.sweep_strays(self.layout):
                logger.warning("removed {}, left by an interrupted write", path)
        except (CorralError, OSError) as exc:  # the engine starts all the same
            logger.warning("sweep of stray temporary files failed: {}", exc)
        for cid in self._ids():
            paths = self.layout.container(cid)
            if fsck.entry_problem(paths, cid) is None:
                continue
            try:
                with file_lock(paths.lock, blocking=False) as got:
                    # under the lock, look again: another process may have just removed it
                    problem = fsck.entry_problem(paths, cid)
                    if not got or problem is None or not paths.dir.is_dir():
                        continue
                    config, state = fsck.recover(paths, cid)
                    c = Container(config, state, paths)
                    self._cleanup(c)
                    with contextlib.suppress(CorralError, OSError):
                        self.firewall().remove_ports(cid)  # the stand-in config has no ports
                    dest = fsck.set_aside(self.layout, cid)
                logger.warning("container {}: {}; set aside in {}", cid, problem, dest)
            except FileNotFoundError:
                continue  # removed meanwhile
            except (CorralError, OSError) as exc:
                logger.warning("container {}: {}; cannot set it aside: {}", cid,
                               fsck.entry_problem(paths, cid), exc)

    def _reclaim_leases(self) -> None:
        def active(cid: str) -> bool:
            try:
                return read_json(self.layout.container(cid).state).get("status") in ACTIVE
            except (OSError, ValueError):
                return False

        for net, leases in self.networks.all_leases():
            for ip in leases.reclaim(active):
                logger.warning("network {}: reclaimed the lease of {}", net.name, ip)

    def _sweep_orphans(self) -> None:
        """runc state and mounts whose container is not active: what a crash left behind."""
        known = set(self._ids())
        candidates = set()
        with contextlib.suppress(FileNotFoundError):
            candidates |= {e.name for e in os.scandir(self.layout.runc_root)}
        prefix = str(self.layout.containers) + "/"
        for point in mounts.mounted_under(self.layout.containers):
            candidates.add(point[len(prefix):].split("/", 1)[0])
        for cid in candidates:
            if cid not in known:
                if cfg.ID_RE.match(cid):
                    self.runtime.delete(cid)
                continue
            paths = self.layout.container(cid)
            with file_lock(paths.lock, blocking=False) as got:
                if not got:
                    continue
                c = self._load(cid)
                if c.state.status not in ACTIVE:
                    logger.warning("container {}: cleaning up what a crash left", c.name)
                    self._cleanup(c)

    def _looked_at(self, c: Container) -> Container:
        """``c`` with an exit seen but not handled yet handled now; shown as seen when it
        cannot be recorded (a full disk), though the record waits for the next look."""
        seen = self._observed_exit(c)
        if seen is None:
            return c
        try:
            with self._locked(c.id) as locked:
                self._reconcile_locked(locked)
            return self._load(c.id)
        except NotFound:
            raise  # removed meanwhile
        except CorralError:
            c.state.status, c.state.exit_code, c.state.pid = DEAD, seen.code, 0
            return c
