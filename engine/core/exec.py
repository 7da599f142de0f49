"""What runs and what is written inside a running container: exec, logs, health results.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from states import ACTIVE, PAUSED, RUNNING

from ..errors import Conflict, InvalidParameter, NotFound, SystemFailure
from ..host.conmon import read_exit_code
from ..host.users import runtime_user
from ..logs import keeper as logkeeper
from ..logs.reader import LogRecord, read_logs
from ..start import health
from ..start.steps import kill_exec_sessions
from ..store import config as cfg
from ..store.container import Container
from ..store.files import read_json
from .exitinfo import EXIT_FILE_POLL


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: bytes = b""


class ExecMixin:
    """exec, logs and health results of a running container."""

    def logs(self, ref: str, *, follow: bool = False, tail: int | None = None,
             since: Any = None, until: Any = None) -> Iterator[LogRecord]:
        c = self._load(self._resolve(ref))
        with contextlib.suppress(OSError):  # a killed keeper comes back to catch up
            logkeeper.ensure(self.layout.logkeeper)

        def stopped() -> bool:
            try:
                state = read_json(c.paths.state)
            except (OSError, ValueError):
                return True
            if state.get("status") not in ACTIVE:
                return True
            return read_exit_code(c.paths.exit_file) is not None

        if not follow or not c.state.conmon_pid:
            return read_logs(c.paths.log, follow=follow, tail=tail, since=since, until=until,
                             stop=stopped)
        return self._follow_logs(c, stopped, tail=tail, since=since, until=until)

    def _follow_logs(self, c: Container, stopped: Callable[[], bool],
                     **filters: Any) -> Iterator[LogRecord]:
        """Follow, woken as soon as the container's process ends instead of at the next poll.

        conmon drains the output and writes the exit file right after the process ends, then
        runs the exit command and waits for it before it exits itself; so the follower waits
        on the process (then polls briefly for the exit file), not on conmon, and an attached
        ``run`` goes on to handle the exit at once, while the exit command waits for the
        container's lock. conmon's own end also wakes it (a process that could not be
        watched)."""
        fds = []
        for pid in (c.state.pid, c.state.conmon_pid):
            with contextlib.suppress(OSError):  # gone already, or no pidfds: polling alone
                fds.append(os.pidfd_open(pid))
        ended: list[int] = []

        def pause(timeout: float) -> None:
            waiting = [fd for fd in fds if fd not in ended]
            if ended:  # the process has ended: the exit file follows within a few ms
                timeout = min(timeout, EXIT_FILE_POLL)
            if not waiting:
                time.sleep(timeout)
                return
            ready, _, _ = select.select(waiting, [], [], timeout)
            ended.extend(ready)

        try:
            yield from read_logs(c.paths.log, follow=True, stop=stopped, pause=pause,
                                 **filters)
        finally:
            for fd in fds:
                os.close(fd)

    def exec(self, ref: str, argv: list[str], *, tty: bool = False,
             env: list[str] | tuple[str, ...] = (), workdir: str | None = None,
             user: str | None = None, capture: bool = False,
             timeout: float | None = None, relay_tty: bool = False) -> ExecResult:
        """Run ``argv`` in a running container through the runtime; the session is tracked
        with the container and ended by its cleanup. Past ``timeout`` seconds the command is
        killed and the exit code is 124 (as ``timeout(1)``). A command that cannot be run
        raises ``ExecFailed`` (127 not found, 126 not executable). ``relay_tty``: with
        ``tty``, the runtime gets a terminal of its own, copied to our stdout (we have none).
        """
        from . import execpath

        if not argv:
            raise InvalidParameter("no command specified for exec")
        env_list = cfg.parse_env(list(env))
        if tty and not any(e.startswith("TERM=") for e in env_list):
            env_list.append("TERM=xterm")  # as Docker's daemon gives an exec with a TTY
        exec_id = cfg.new_id()
        with self._locked(ref) as c:
            self._reconcile_locked(c)
            if c.state.status != RUNNING:
                raise Conflict(f"Container {c.id} is not running" if c.state.status != PAUSED
                               else f"Container {c.id} is paused, unpause the container "
                               "before exec")
            execpath.check_command(c.paths.rootfs, argv[0],
                                   execpath.path_variable(c.config.env, env_list),
                                   workdir or c.config.working_dir or "/")
            pid_file = c.paths.dir / f"exec-{exec_id[:12]}.pid"
            args = self.runtime.exec_args(c.id, argv, tty=tty, env=env_list, cwd=workdir,
                                          user=runtime_user(c.paths.rootfs, user),
                                          pid_file=pid_file)
            command = " ".join(argv)
            self._emit(f"exec_create: {command}", c, execID=exec_id)
            master = None
            try:
                if tty and relay_tty and not capture:
                    from ..host.pty import spawn

                    proc, master = spawn(args)
                else:
                    proc = subprocess.Popen(args, stdout=subprocess.PIPE if capture else None,
                                            stderr=subprocess.STDOUT if capture else None,
                                            stdin=subprocess.DEVNULL if capture else None)
            except OSError as exc:
                raise SystemFailure(f"exec: {exc}") from exc
            self._emit(f"exec_start: {command}", c, execID=exec_id)
            c.state.exec_sessions.append({"id": exec_id, "pid": proc.pid, "cmd": argv,
                                          "pid_file": str(pid_file)})
            self._save(c)
            cid = c.id
        try:
            if master is not None:
                from ..host.pty import copy_out

                copy_out(proc, master)
            output = proc.communicate(timeout=timeout)[0] if capture else b""
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # runc exec passes signals on, but SIGKILL cannot be passed: kill both ends
            kill_exec_sessions([{"pid": proc.pid, "pid_file": str(pid_file)}])
            output = (proc.communicate()[0] or b"") if capture else b""
            code = 124
        with contextlib.suppress(FileNotFoundError):
            pid_file.unlink()
        with contextlib.suppress(NotFound), self._locked(cid) as c:
            c.state.exec_sessions = [e for e in c.state.exec_sessions if e["id"] != exec_id]
            self._save(c)
            self._emit("exec_die", c, execID=exec_id, exitCode=str(code))
        return ExecResult(code, output or b"")

    def record_health(self, ref: str, *, exit_code: int, output: str, start: str, end: str,
                      in_start_period: bool) -> str:
        """Record one health check's result; emit ``health_status`` when the status changes."""
        with self._locked(ref) as c:
            hc = c.config.healthcheck
            if hc is None or c.state.status not in (RUNNING, PAUSED):
                return c.state.health.get("Status", "")
            before = c.state.health.get("Status")
            c.state.health = health.apply_result(c.state.health, hc, exit_code=exit_code,
                                                 output=output, start=start, end=end,
                                                 in_start_period=in_start_period)
            self._save(c)
            status = c.state.health["Status"]
            if status != before:
                self._emit(f"health_status: {status}", c)
            return status
