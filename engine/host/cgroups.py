"""The cgroup driver: the one module of the engine that reads or writes ``/sys/fs/cgroup``.

Three host layouts exist and each task differs between them:

* ``v1``: one hierarchy per controller (``/sys/fs/cgroup/memory``, ``.../pids``, ...);
* ``hybrid``: v1 controllers, plus a cgroup2 mount at ``/sys/fs/cgroup/unified`` that holds no
  controller we use (systemd's tracking only). runc joins the container there too;
* ``v2`` (unified): one tree, ``cgroup.controllers`` at its root; a controller works in a child
  only when every ancestor lists it in ``cgroup.subtree_control``; the freezer is the
  ``cgroup.freeze`` file of each cgroup and the device policy an eBPF program, not controllers.

runc makes the container's cgroup (``cgroupsPath`` ``/corral/<id>``) and writes the limits; the
engine checks before a start that the host can give what the container asks, reads OOM kills
and usage figures, thaws a cgroup whose runc state is gone, and removes the container's own
folders, never another's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidParameter, SystemFailure

ROOT = Path("/sys/fs/cgroup")
PARENT = "corral"
V1, HYBRID, V2 = "v1", "hybrid", "v2"
# Docker's floor for --memory (moby ``linuxMinMemory``), checked at create
MIN_MEMORY = 6 * 1024 * 1024
# on v2 the runtime's init is charged to the container's cgroup before the container's process
# runs: under about 16 MB it is killed there now and then (seen at 6 MB in the Debian 12 VM),
# and the start fails with runc's "cannot start a container that has stopped"
MIN_MEMORY_V2 = 16 * 1024 * 1024
REMOVE_WAIT = 2.0  # the last process may still be leaving the cgroup
DRAIN_WAIT = 10.0  # what a lost runtime left, killed and waited for


def detect(base: Path = ROOT) -> str:
    """The layout of the cgroup tree at ``base``: ``v1``, ``hybrid`` or ``v2``."""
    if (base / "cgroup.controllers").is_file():
        return V2
    if (base / "unified" / "cgroup.controllers").is_file():
        return HYBRID
    return V1


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""


def _keyed(text: str) -> dict[str, int]:
    """``key value`` lines (``memory.events``, ``cpu.stat``, ``memory.oom_control``)."""
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            out[key] = int(value)
    return out


def _number(text: str) -> int | None:
    """A limit file's value; None for ``max`` (v2) or the page-rounded ``unlimited`` of v1."""
    text = text.strip()
    if not text or text == "max":
        return None
    try:
        n = int(text)
    except ValueError:
        return None
    return None if n >= 1 << 62 else n


@dataclass(frozen=True)
class Needs:
    """What one container asks of the host's cgroups."""

    memory: int | None = None
    cpu: bool = False


class Cgroups:
    """The cgroup tasks of the engine on the host whose tree is mounted at ``base``."""

    def __init__(self, base: Path = ROOT, parent: str = PARENT) -> None:
        self.base = base
        self.parent = parent
        self.kind = detect(base)

    # -- where ------------------------------------------------------------------------------

    def cgroups_path(self, cid: str) -> str:
        """The ``linux.cgroupsPath`` runc is given (cgroupfs manager)."""
        return f"/{self.parent}/{cid}"

    def min_memory(self) -> int:
        """The smallest ``--memory`` a container starts with on this host."""
        return MIN_MEMORY_V2 if self.kind == V2 else MIN_MEMORY

    def default_cgroupns(self) -> str:
        """Docker's default: a private cgroup namespace on v2, the host's on v1 and hybrids."""
        return "private" if self.kind == V2 else "host"

    def _rel(self, cid: str) -> str:
        return f"{self.parent}/{cid}"

    def hierarchies(self) -> list[Path]:
        """The mounted hierarchies runc places a container in (v2: the one tree)."""
        if self.kind == V2:
            return [self.base]
        try:
            entries = sorted(os.scandir(self.base), key=lambda e: e.name)
        except OSError:
            return []
        # the v1 mounts and, on hybrids, ``unified``; symlinks (``cpu`` -> ``cpu,cpuacct``) and
        # the files of a cgroup2 root are not hierarchies of their own
        return [Path(e.path) for e in entries
                if e.is_dir(follow_symlinks=False) and (Path(e.path) / "cgroup.procs").exists()]

    def folder(self, controller: str, cid: str) -> Path:
        """The container's folder where ``controller``'s files are."""
        if self.kind == V2:
            return self.base / self._rel(cid)
        return self.base / controller / self._rel(cid)

    def folders(self, cid: str) -> list[Path]:
        """The container's cgroup folders that exist now (what the leak probe looks for)."""
        return [h / self._rel(cid) for h in self.hierarchies() if (h / self._rel(cid)).is_dir()]

    def holds(self, pid: int, cid: str) -> bool:
        """Is process ``pid`` in container ``cid``'s cgroup (so not a reused pid)?"""
        try:
            with open(f"/proc/{pid}/cgroup", encoding="ascii", errors="replace") as f:
                text = f.read()
        except OSError:
            return False
        return any(line.rsplit(":", 1)[-1].rstrip("/").endswith(f"/{cid}")
                   or f"/{cid}/" in line for line in text.splitlines())

    # -- before a start ---------------------------------------------------------------------

    def controllers_needed(self, needs: Needs) -> list[str]:
        # v2: the freezer is cgroup.freeze and the device policy an eBPF program, not
        # controllers
        needed = ["pids"] if self.kind == V2 else ["freezer", "pids", "devices"]
        if needs.memory:
            needed.append("memory")
        if needs.cpu:
            needed.append("cpu")
        return needed

    def verify(self, needs: Needs) -> None:
        """Refuse, naming the controller or value, what this host cannot give the container;
        on v2, enable the needed controllers down to the engine's parent. Nothing of the
        container is made here."""
        floor = self.min_memory()
        if needs.memory is not None and needs.memory < floor:
            raise InvalidParameter(f"invalid memory {needs.memory}: below the minimum of "
                                   f"{floor} bytes ({floor >> 20}MB) this host "
                                   f"(cgroup {self.kind}) accepts")
        needed = self.controllers_needed(needs)
        if self.kind == V2:
            self._verify_v2(needed)
            return
        missing = [n for n in needed if not (self.base / n / "cgroup.procs").exists()]
        if missing:
            raise SystemFailure(f"cgroup controllers not mounted: {', '.join(missing)}")
        for n in needed:
            self._check_parent(self.base / n / self.parent)

    def _check_parent(self, parent: Path) -> None:
        """The engine's parent is its own: a folder another user was given (a delegation), or
        one holding processes (a service's cgroup) is someone else's, and is not used."""
        try:
            st = parent.stat()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise SystemFailure(f"cgroup parent {parent}: {exc.strerror}") from exc
        if st.st_uid != os.geteuid():
            raise SystemFailure(f"cgroup parent {parent} exists and belongs to uid {st.st_uid}, "
                                "not to this engine")
        if _read(parent / "cgroup.procs").split():
            raise SystemFailure(f"cgroup parent {parent} exists and holds processes: it is "
                                "another program's cgroup, not this engine's")

    def _verify_v2(self, needed: list[str]) -> None:
        available = _read(self.base / "cgroup.controllers").split()
        missing = [n for n in needed if n not in available]
        if missing:
            raise SystemFailure(f"cgroup controller{'s' if len(missing) > 1 else ''} "
                                f"{', '.join(missing)} not available on this host (cgroup v2 "
                                f"offers: {' '.join(available) or 'none'})")
        parent = self.base / self.parent
        self._check_parent(parent)
        made = False
        if not parent.is_dir():
            try:
                parent.mkdir()
                made = True
            except FileExistsError:
                pass
            except OSError as exc:
                raise SystemFailure(f"cannot make cgroup parent {parent}: {exc.strerror}"
                                    ) from exc
        try:
            # every ancestor of the container's cgroup must pass the controller down
            self._enable(self.base, needed)
            self._enable(parent, needed)
        except SystemFailure:
            if made:
                with contextlib.suppress(OSError):
                    parent.rmdir()
            raise

    def _enable(self, cgroup: Path, needed: list[str]) -> None:
        control = cgroup / "cgroup.subtree_control"
        for name in needed:
            if name in _read(control).split():
                continue
            try:
                control.write_text(f"+{name}")
            except OSError as exc:
                # EBUSY: processes sit in the cgroup itself (no internal processes on v2);
                # ENOENT/EINVAL: the parent does not pass it down
                raise SystemFailure(f"cgroup controller {name} cannot be delegated to "
                                    f"{cgroup}: {exc.strerror}") from exc

    # -- pause ------------------------------------------------------------------------------

    def check_pause(self, cid: str) -> None:
        """Refuse a pause the host has no freezer for, before runc is asked."""
        if self.kind == V2:
            if not (self.folder("", cid) / "cgroup.freeze").exists():
                raise SystemFailure("pause: this kernel has no cgroup v2 freezer "
                                    "(cgroup.freeze, Linux 5.2 or later)")
        elif not (self.base / "freezer" / "cgroup.procs").exists():
            raise SystemFailure("pause: the cgroup freezer controller is not mounted")

    def frozen(self, cid: str) -> bool:
        if self.kind == V2:
            return _read(self.folder("", cid) / "cgroup.freeze").strip() == "1"
        return _read(self.folder("freezer", cid) / "freezer.state").strip() in (
            "FROZEN", "FREEZING")

    def thaw(self, cid: str) -> None:
        """Thaw the container's cgroup without runc (whose state may be gone: a reboot)."""
        if self.kind == V2:
            path, value = self.folder("", cid) / "cgroup.freeze", "0"
        else:
            path, value = self.folder("freezer", cid) / "freezer.state", "THAWED"
        try:
            path.write_text(value)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise SystemFailure(f"cannot thaw cgroup {path.parent}: {exc.strerror}") from exc

    # -- while and after it runs ------------------------------------------------------------

    def oom_kills(self, cid: str) -> int:
        """How many processes the kernel's OOM killer took in the container's cgroup."""
        if self.kind == V2:
            return _keyed(_read(self.folder("memory", cid) / "memory.events")).get("oom_kill", 0)
        return _keyed(_read(self.folder("memory", cid) / "memory.oom_control")).get("oom_kill", 0)

    def stats(self, cid: str) -> dict[str, int | None]:
        """The figures ``stats`` shows: memory in bytes, cpu time in ns, pids; None: no limit
        (or not readable)."""
        if self.kind == V2:
            d = self.folder("", cid)
            usage_usec = _keyed(_read(d / "cpu.stat")).get("usage_usec")
            return {
                "memory_usage": _number(_read(d / "memory.current")),
                "memory_limit": _number(_read(d / "memory.max")),
                "cpu_usage_ns": None if usage_usec is None else usage_usec * 1000,
                "pids_current": _number(_read(d / "pids.current")),
                "pids_limit": _number(_read(d / "pids.max")),
            }
        return {
            "memory_usage": _number(_read(self.folder("memory", cid) / "memory.usage_in_bytes")),
            "memory_limit": _number(_read(self.folder("memory", cid) / "memory.limit_in_bytes")),
            "cpu_usage_ns": _number(_read(self.folder("cpuacct", cid) / "cpuacct.usage")),
            "pids_current": _number(_read(self.folder("pids", cid) / "pids.current")),
            "pids_limit": _number(_read(self.folder("pids", cid) / "pids.max")),
        }

    def members(self, cid: str) -> list[int]:
        """The processes in the container's cgroup folders, those made below them included."""
        pids: set[int] = set()
        for top in self.folders(cid):
            for sub in [top, *(p for p in top.rglob("*") if p.is_dir())]:
                pids.update(int(x) for x in _read(sub / "cgroup.procs").split() if x.isdigit())
        return sorted(pids)

    # -- removal ----------------------------------------------------------------------------

    def remove(self, cid: str) -> None:
        """Remove the container's own cgroup folders (idempotent). Processes still in them
        (the runtime's state was lost, so ``runc delete`` could not kill them) are thawed and
        killed first: a frozen cgroup would keep them, and its folder, forever."""
        left = self.members(cid)
        if left:
            self._drain(cid, left)
        for hierarchy in self.hierarchies():
            top = hierarchy / self._rel(cid)
            if not top.is_dir():
                continue
            # deepest first: a container may have made cgroups of its own below
            for folder in sorted((p for p in top.rglob("*") if p.is_dir()),
                                 key=lambda p: len(p.parts), reverse=True) + [top]:
                self._rmdir(folder)

    def _drain(self, cid: str, pids: list[int]) -> None:
        self.thaw(cid)
        for pid in pids:
            try:
                fd = os.pidfd_open(pid)
            except OSError:
                continue
            try:
                if self.holds(pid, cid):  # not a pid reused since it was read
                    with contextlib.suppress(ProcessLookupError):
                        signal.pidfd_send_signal(fd, signal.SIGKILL)
            finally:
                os.close(fd)
        deadline = time.monotonic() + DRAIN_WAIT
        while self.members(cid) and time.monotonic() < deadline:
            time.sleep(0.01)

    @staticmethod
    def _rmdir(path: Path) -> None:
        deadline = time.monotonic() + REMOVE_WAIT
        while True:
            try:
                path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise SystemFailure(f"cannot remove cgroup {path}: {exc.strerror}") from exc
                time.sleep(0.01)


_host: Cgroups | None = None


def host() -> Cgroups:
    """The driver of this machine's tree (the layout is looked at once per process)."""
    global _host
    if _host is None:
        _host = Cgroups()
    return _host
