"""The only caller of runc. Each call maps runc's failure to ``RuntimeFailure`` once, with
runc's own last error from its JSON log (as containerd's ``getLastRuntimeError``). A signal to
a container's first process is sent here directly when that process can be told apart from a
reused pid (``signal_process``), which spares a runc process per stop or kill."""

from __future__ import annotations

import json
import os
import shutil
import signal as signal_module
import subprocess
from pathlib import Path
from typing import Any

from ..errors import SystemFailure
from ..programs import PROGRAMS, find
from . import cgroups

DEFAULT_RUNTIME = "runc"


class RuntimeFailure(SystemFailure):
    pass


def find_runtime(name: str = DEFAULT_RUNTIME) -> str | None:
    """runc from the registry of programs; another OCI runtime (``crun``...) by its name."""
    if name in PROGRAMS:
        return find(name)
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")


def last_runtime_error(log: Path) -> str:
    """The last error runc wrote to its JSON log, or ''."""
    try:
        lines = log.read_bytes().splitlines()[-20:]
    except OSError:
        return ""
    for raw in reversed(lines):
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if entry.get("level") in ("error", "fatal"):
            return str(entry.get("msg", "")).strip()
    return ""


class Runtime:
    def __init__(self, binary: str, state_root: Path) -> None:
        self.binary = binary
        self.state_root = state_root

    def global_args(self, log: Path | None = None) -> list[str]:
        args = [self.binary, f"--root={self.state_root}"]
        if log is not None:
            args += [f"--log={log}", "--log-format=json"]
        return args

    def _run(self, args: list[str], what: str, log: Path | None = None,
             ok_missing: bool = False) -> str:
        try:
            proc = subprocess.run(self.global_args(log) + args, capture_output=True,
                                  stdin=subprocess.DEVNULL, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeFailure(f"runc {what}: {exc}") from exc
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()
            if ok_missing and ("does not exist" in err or "not exist" in err):
                return ""
            detail = (last_runtime_error(log) if log else "") or (
                err.splitlines()[-1] if err else f"exit status {proc.returncode}")
            raise RuntimeFailure(f"runc {what}: {detail}")
        return proc.stdout.decode(errors="replace")

    def state(self, cid: str) -> dict[str, Any] | None:
        """runc's view of the container, or None when runc does not know it."""
        path = self.state_root / cid / "state.json"
        if not path.exists():
            return None
        out = self._run(["state", cid], "state", ok_missing=True)
        return json.loads(out) if out else None

    def start(self, cid: str, log: Path | None = None) -> None:
        self._run(["start", cid], "start", log)

    def kill(self, cid: str, signal: int | str, *, all_processes: bool = False,
             ok_missing: bool = True) -> None:
        args = ["kill"] + (["--all"] if all_processes else []) + [cid, str(signal)]
        try:
            self._run(args, "kill", ok_missing=ok_missing)
        except RuntimeFailure as exc:
            # a container that has just stopped cannot be signalled: nothing to do
            if ok_missing and "not running" in str(exc):
                return
            raise

    def signal_process(self, cid: str, pid: int, signal: int) -> bool:
        """Send ``signal`` to the container's first process ``pid`` without a ``runc kill``
        (a process, about 10 ms). The pidfd is opened before the process is checked to be in
        the container's cgroup, so a pid reused since is never signalled. False when the
        process is not the container's any more: the caller may ask runc."""
        if pid <= 0:
            return False
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return False
        try:
            if not cgroups.host().holds(pid, cid):
                return False
            try:
                signal_module.pidfd_send_signal(fd, signal)
            except ProcessLookupError:
                return False
            except OSError as exc:
                raise RuntimeFailure(f"signal {signal} to {cid[:12]}: {exc}") from exc
            return True
        finally:
            os.close(fd)

    def pause(self, cid: str) -> None:
        self._run(["pause", cid], "pause")

    def resume(self, cid: str) -> None:
        self._run(["resume", cid], "resume")

    def delete(self, cid: str) -> None:
        """Force-delete; nothing to do when runc does not know the container (idempotent)."""
        if not (self.state_root / cid).exists():
            return
        self._run(["delete", "--force", cid], "delete", ok_missing=True)

    def exec_args(self, cid: str, argv: list[str], *, tty: bool, env: list[str],
                  cwd: str | None, user: str | None, pid_file: Path | None) -> list[str]:
        """The command line of ``runc exec`` (run in the foreground by its caller)."""
        args = self.global_args() + ["exec"]
        if tty:
            args.append("--tty")
        for e in env:
            args += ["--env", e]
        if cwd:
            args += ["--cwd", cwd]
        if user:
            args += ["--user", user]
        if pid_file:
            args += ["--pid-file", str(pid_file)]
        return args + [cid, *argv]

    def run_args(self, cid: str, bundle: Path, pid_file: Path) -> list[str]:
        """The command line of a foreground ``runc run`` (interactive containers)."""
        return self.global_args() + ["run", "--bundle", str(bundle), "--pid-file",
                                     str(pid_file), cid]


def process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False
