"""Where everything lives: one root directory and a run directory derived from it.

Two roots never share anything: the run directory's name is made from the root's path, so
runc's state, conmon's sockets and exit files of one root are out of reach of another.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ROOT = Path("/var/lib/corral")
RUN_BASE = Path("/run/corral")


def default_root() -> Path:
    return Path(os.environ.get("CORRAL_ROOT") or DEFAULT_ROOT)


@dataclass(frozen=True)
class Layout:
    root: Path
    run: Path

    @classmethod
    def for_root(cls, root: Path | str | None = None) -> Layout:
        root = Path(root) if root else default_root()
        root = Path(os.path.abspath(root))
        tag = hashlib.sha256(str(root).encode()).hexdigest()[:12]
        return cls(root=root, run=RUN_BASE / tag)

    @property
    def containers(self) -> Path:
        return self.root / "containers"

    @property
    def names(self) -> Path:
        return self.root / "names"

    @property
    def events(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def runc_root(self) -> Path:
        return self.run / "runc"

    @property
    def exits(self) -> Path:
        return self.run / "exits"

    @property
    def sockets(self) -> Path:
        return self.run / "socket"

    @property
    def logkeeper(self) -> Path:
        return self.run / "logkeeper"  # the root's log keeper (engine/logs/keeper.py)

    def container(self, cid: str) -> ContainerPaths:
        return ContainerPaths(self.containers / cid, self.exits / cid)

    def ensure(self) -> None:
        for d in (self.containers, self.names):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)

    def ensure_run(self) -> None:
        """The run folder, made by the first start: a root with nothing started leaves none
        (a failed first start, a listing, a ``network create``)."""
        for d in (self.runc_root, self.exits, self.sockets):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)


@dataclass(frozen=True)
class ContainerPaths:
    dir: Path
    exit_file: Path

    config = property(lambda self: self.dir / "config.json")
    state = property(lambda self: self.dir / "state.json")
    lock = property(lambda self: self.dir / "lock")
    diff = property(lambda self: self.dir / "diff")      # the container's own writable layer
    work = property(lambda self: self.dir / "work")      # overlayfs scratch space
    rootfs = property(lambda self: self.dir / "rootfs")  # the overlay mount point
    shm = property(lambda self: self.dir / "shm")
    bundle = property(lambda self: self.dir / "bundle")
    log = property(lambda self: self.dir / "ctr.log")
    hosts = property(lambda self: self.dir / "hosts")
    resolv = property(lambda self: self.dir / "resolv.conf")
    hostname = property(lambda self: self.dir / "hostname")
    conmon_pid = property(lambda self: self.dir / "conmon.pid")
    pidfile = property(lambda self: self.dir / "pidfile")
    runtime_log = property(lambda self: self.dir / "runtime.log")


def container_gone(root: str | None, cid: str) -> bool:
    """Whether container ``cid`` (or its root's run folder: torn down) is gone already, a
    removal having got there first; a background command for it has nothing to act on."""
    layout = Layout.for_root(root)
    return not (layout.run.is_dir() and (layout.containers / cid).is_dir())
