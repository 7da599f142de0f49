"""The only spawner of conmon, the per-container monitor that outlives the engine.

conmon waits for a byte on the start pipe, runs ``runc create``, reports the container's pid
(or runc's error) on the sync pipe, then daemonizes: it keeps the exit code in the exit
directory and the output in a k8s-file log, and runs the exit command, even when no corral
process is alive.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .. import programs
from ..errors import SystemFailure
from ..logs import files as logfiles
from ..logs import keeper as logkeeper
from .runc import last_runtime_error, process_alive

SYNC_TIMEOUT = 30.0


class MonitorFailure(SystemFailure):
    pass


def find_conmon() -> str | None:
    return programs.find("conmon")


@dataclass(frozen=True)
class MonitorSpec:
    cid: str
    bundle: Path
    log: Path
    pidfile: Path
    conmon_pidfile: Path
    runtime_log: Path
    exit_dir: Path
    socket_dir: Path
    exit_command: list[str]
    terminal: bool = False
    log_max_size: int | None = None  # conmon's --log-size-max; None: no cap
    log_max_files: int = 1  # more than one: the root's keeper keeps them (logkeeper)


class Monitor:
    def __init__(self, conmon: str, runtime: str, runtime_root: Path, keeper: Path) -> None:
        self.conmon = conmon
        self.runtime = runtime
        self.runtime_root = runtime_root
        self.keeper = keeper  # the root's log keeper's folder (logkeeper)

    def _args(self, m: MonitorSpec) -> list[str]:
        args = [
            self.conmon, "--api-version", "1", "-c", m.cid, "-u", m.cid, "-n", m.cid[:12],
            "-r", self.runtime, "-b", str(m.bundle), "-p", str(m.pidfile),
            "-P", str(m.conmon_pidfile), "-l", f"k8s-file:{m.log}",
            "--exit-dir", str(m.exit_dir), "--socket-dir-path", str(m.socket_dir),
            "--runtime-arg", f"--root={self.runtime_root}",
            "--runtime-arg", f"--log={m.runtime_log}", "--runtime-arg", "--log-format=json",
            "--log-level", "error",
        ]
        if m.log_max_size is not None:
            args += ["--log-size-max", str(m.log_max_size)]
        if m.terminal:
            args.append("-t")  # conmon holds the pseudo-terminal's master for runc
        if m.exit_command:
            args += ["--exit-command", m.exit_command[0]]
            for a in m.exit_command[1:]:
                args += ["--exit-command-arg", a]
        return args

    def spawn(self, m: MonitorSpec) -> tuple[int, int]:
        """Start conmon and let it create the container; return (conmon pid, container pid)."""
        m.socket_dir.mkdir(parents=True, exist_ok=True)
        rotates = m.log_max_size is not None and m.log_max_files > 1
        base = 0
        if rotates:
            try:
                logfiles.prepare(m.log)
                base = os.stat(m.log).st_size
            except OSError as exc:
                raise MonitorFailure(f"cannot prepare the log {m.log}: {exc}") from exc
        sync_r, sync_w = os.pipe2(os.O_CLOEXEC)
        start_r, start_w = os.pipe2(os.O_CLOEXEC)
        # fail points are set for one engine process, not for the exit commands it leaves
        # behind: one of those pausing in a cleanup would hold the container's lock
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("_OCI_") and k != "CORRAL_FAIL_POINTS"}
        env.update(_OCI_SYNCPIPE=str(sync_w), _OCI_STARTPIPE=str(start_r))
        try:
            try:
                # conmon and the container must not hold the caller's stdio: a pipe that a
                # caller waits on would then never close. conmon writes an 'oom' file into
                # its working folder when the container is OOM-killed: the bundle (removed
                # whole by its undo), never the caller's folder
                proc = subprocess.Popen(
                    self._args(m), env=env, pass_fds=(sync_w, start_r), cwd=m.bundle,
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL)
            except OSError as exc:
                raise MonitorFailure(f"cannot run conmon: {exc}") from exc
            os.close(sync_w)
            sync_w = -1
            os.close(start_r)
            start_r = -1
            os.write(start_w, b"0")
            try:
                message = self._read_sync(sync_r, m)
            except MonitorFailure:
                _stop_failed(m)
                raise
            proc.wait()  # the foreground conmon exits once its daemon is on its own
        finally:
            for fd in (sync_r, sync_w, start_r, start_w):
                if fd >= 0:
                    os.close(fd)
        pid = int(message.get("data", -1))
        if pid <= 0:
            detail = (last_runtime_error(m.runtime_log) or message.get("message")
                      or "runtime create failed")
            _stop_failed(m)
            raise MonitorFailure(f"runc create: {detail}")
        conmon_pid = read_pid(m.conmon_pidfile)
        if not rotates or m.log_max_size is None:
            with contextlib.suppress(OSError):  # a keeper killed meanwhile comes back
                logkeeper.ensure(self.keeper)
            return conmon_pid, pid
        try:
            logkeeper.register(self.keeper, cid=m.cid, log=m.log, max_files=m.log_max_files,
                               max_size=m.log_max_size, ctl=m.bundle / "ctl",
                               conmon_pid=conmon_pid, base=base)
        except OSError as exc:
            stop_conmon(conmon_pid, m.cid)
            raise MonitorFailure(f"cannot start the log keeper: {exc}") from exc
        return conmon_pid, pid

    def _read_sync(self, fd: int, m: MonitorSpec) -> dict:
        data = b""
        deadline = time.monotonic() + SYNC_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise MonitorFailure(f"conmon gave no answer in {SYNC_TIMEOUT:.0f}s")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
            try:
                return json.loads(data)
            except ValueError:
                continue
        if not data:
            detail = last_runtime_error(m.runtime_log) or "conmon exited without a word"
            raise MonitorFailure(f"conmon: {detail}")
        raise MonitorFailure(f"conmon: unreadable answer {data[:200]!r}")


def read_pid(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def is_conmon_of(pid: int, cid: str) -> bool:
    """True when ``pid`` is alive and is the conmon of ``cid`` (not a reused pid)."""
    if not process_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and cmdline[0].endswith(b"conmon") and cid.encode() in cmdline


def _stop_failed(m: MonitorSpec) -> None:
    """After a failed create, conmon lives on to run the exit command; no caller knows its pid
    when it could not write its pid file (a full disk): find it by its command line."""
    stop_conmon(read_pid(m.conmon_pidfile) or find_conmon_of(m.cid), m.cid)


def find_conmon_of(cid: str) -> int:
    """The pid of a conmon of ``cid``, or 0."""
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and is_conmon_of(int(entry.name), cid):
            return int(entry.name)
    return 0


def stop_conmon(pid: int, cid: str) -> None:
    """Kill the conmon of ``cid`` if it is still there (idempotent)."""
    if is_conmon_of(pid, cid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def read_exit_code(exit_file: Path) -> int | None:
    try:
        return int(exit_file.read_text().strip())
    except (OSError, ValueError):
        return None
