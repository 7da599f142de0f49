"""Where a container's cgroup files are, on this host's layout (v1 and hybrid: one hierarchy
per controller; v2: one tree), seen from the host or from inside the container."""

from __future__ import annotations

from pathlib import Path

from engine.host import cgroups

# the file of each limit, by layout
LIMIT_FILES = {
    "memory": {cgroups.V2: "memory.max", "v1": "memory.limit_in_bytes"},
    "pids": {cgroups.V2: "pids.max", "v1": "pids.max"},
}


def _v2() -> bool:
    return cgroups.host().kind == cgroups.V2


def limit_file(controller: str) -> str:
    return LIMIT_FILES[controller][cgroups.V2 if _v2() else "v1"]


def in_container(controller: str, name: str) -> str:
    """The path of a cgroup file of the container's own cgroup, from inside it."""
    return f"/sys/fs/cgroup/{name}" if _v2() else f"/sys/fs/cgroup/{controller}/{name}"


def on_host(cid: str, controller: str) -> Path:
    """The container's folder holding ``controller``'s files, from the host."""
    return cgroups.host().folder(controller, cid)


def frozen_state(cid: str) -> str:
    """FROZEN or THAWED, whichever the layout spells it."""
    return "FROZEN" if cgroups.host().frozen(cid) else "THAWED"
