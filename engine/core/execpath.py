"""Where an exec's command is in a running container, found before runc is asked to run it.

runc looks the command up itself (Go's ``exec.LookPath`` in the container) and, when it is
missing, writes its own log line and exits 255; the caller cannot tell that apart from a
command of its own that exits 255. Looking first, from the host, through the container's root
with links resolved inside it, gives Docker's answer instead: one line, exit 127 when the
command is not found, 126 when it cannot be executed.
"""

from __future__ import annotations

import stat
from pathlib import Path

from ..errors import ExecFailed
from ..host.safepath import stat_in_root
from ..store.config import DEFAULT_PATH

EXIT_CANNOT_INVOKE = 126
EXIT_NOT_FOUND = 127
_PREFIX = "OCI runtime exec failed: exec failed: unable to start container process: exec: "


def _failed(name: str, reason: str, code: int) -> ExecFailed:
    return ExecFailed(f'{_PREFIX}"{name}": {reason}', code)


def _problem(rootfs: Path, path: str) -> str | None:
    """Why ``path`` cannot be executed (Go's ``findExecutable``), or None when it can."""
    _, st = stat_in_root(rootfs, path)
    if st is None:
        return "no such file or directory"
    if stat.S_ISDIR(st.st_mode):
        return "is a directory"
    if not st.st_mode & 0o111:
        return "permission denied"
    return None


def path_variable(*envs: list[str] | tuple[str, ...]) -> str:
    """The ``PATH`` the command will see: the last one set in ``envs``, else Docker's."""
    found = DEFAULT_PATH
    for env in envs:
        for item in env:
            if item.startswith("PATH="):
                found = item[len("PATH="):]
    return found


def check_command(rootfs: Path, name: str, path: str, cwd: str) -> None:
    """Raise ``ExecFailed`` when ``name`` cannot be run in the container at ``rootfs``."""
    if "/" in name:
        full = name if name.startswith("/") else f"{cwd.rstrip('/')}/{name}"
        problem = _problem(rootfs, full)
        if problem is None:
            return
        if problem == "no such file or directory":
            raise _failed(name, f"stat {name}: {problem}", EXIT_NOT_FOUND)
        raise _failed(name, problem, EXIT_CANNOT_INVOKE)
    for folder in path.split(":"):
        base = folder or "."
        candidate = base if base.startswith("/") else f"{cwd.rstrip('/')}/{base}"
        if _problem(rootfs, f"{candidate.rstrip('/')}/{name}") is None:
            return
    raise _failed(name, "executable file not found in $PATH", EXIT_NOT_FOUND)
