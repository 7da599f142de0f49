"""conmon's exit command: ``python -m engine.exited ROOT ID``.

Every container exit runs it, also when the exit is handled already: by the CLI attached to a
``run`` (woken by the process's end, it handles the exit and, with ``--rm``, removes the
container), by ``rm -f``, or by an embedded engine's watcher. Importing the engine costs about
100 ms of CPU, which on a small machine competes with that handling, and conmon waits for this
command before it exits; so this first stage waits for whoever holds the container's lock (a
flock, no import), reads the stored state, and hands over to the engine (``corral
container-exited``) only when something is left to do: the container still looks active, or
its restart policy asked for a start that this process is to make.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from pathlib import Path

from .store.paths import Layout, container_gone

# the states package would import transitions, which this first stage avoids
ACTIVE = ("starting", "running", "paused", "removing")


def needs_engine(root: str, cid: str) -> bool:
    """Whether the exit of ``cid`` under ``root`` still needs the engine."""
    if container_gone(root, cid):
        return False
    layout = Layout.for_root(root)
    _wait_for_lock(layout.container(cid).lock)
    try:
        with open(layout.container(cid).state, "rb") as f:
            state = json.load(f)
    except (FileNotFoundError, NotADirectoryError):
        return False  # removed already
    except (OSError, ValueError):
        return True  # unreadable: the engine knows how to set it aside
    if not isinstance(state, dict):
        return True
    return state.get("status") in ACTIVE or bool(state.get("restart_pending")) \
        or bool(state.get("cleanup_pending"))


def _wait_for_lock(path: Path) -> None:
    """Wait until no process holds the container's lock: one that does may be handling this
    very exit. Never creates the file (a removal may be emptying the folder)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return  # no lock file: removed already, or never locked
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    finally:
        os.close(fd)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m engine.exited ROOT ID", file=sys.stderr)
        return 2
    root, cid = argv
    if not needs_engine(root, cid):
        return 0
    from .cli.main import run

    sys.argv = ["corral", "--root", root, "container-exited", cid]
    run()
    return 0  # not reached: run() leaves the process


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
