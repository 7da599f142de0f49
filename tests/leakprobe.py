"""The leak probe: what a container may have left on the host after a failure or a removal.

Reusable by any test: ``LeakProbe(layout).leaks(cid)`` lists every leftover it finds (mounts
under the engine's root, network namespaces, cgroups, runc state, conmon or container
processes, bundles, exit files, sockets, temporary files, the root's log keeper once nothing
is left to keep); an empty list means clean.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from engine.host import cgroups
from engine.logs import keeper as logkeeper
from engine.store.paths import Layout


def _mount_points() -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        return [line.split(" ", 5)[4].encode().decode("unicode_escape") for line in f]


def _cmdlines() -> dict[int, bytes]:
    out = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                out[int(entry.name)] = Path(f"/proc/{entry.name}/cmdline").read_bytes()
            except OSError:
                continue
    return out


def processes_mentioning(text: str) -> list[str]:
    """``pid: command line`` of each process (but this one) whose command line holds ``text``."""
    return [f"{pid}: {' '.join(a.decode(errors='replace') for a in cmd.split(bytes(1)))}"
            for pid, cmd in _cmdlines().items() if pid != os.getpid() and text.encode() in cmd]


def _cgroup_members(cid: str) -> list[int]:
    """Live processes in the container's cgroups. A zombie holds nothing but its pid, and
    reaping it is the job of its parent (init, once conmon is gone), not the engine's."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if cid not in Path(f"/proc/{entry.name}/cgroup").read_text():
                    continue
                stat = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[0] != "Z":
                found.append(int(entry.name))
    return found


def keeper_pids(layout: Layout) -> list[int]:
    """The log keepers of the root (one at most, when any container's log is kept)."""
    return logkeeper.keeper_pids(layout.logkeeper)


def kept(layout: Layout, cid: str) -> list[str]:
    """The keeper's entries for ``cid`` (one per conmon of it whose log is kept)."""
    try:
        return [n for n in os.listdir(layout.logkeeper / "keep") if n.startswith(cid + ".")]
    except FileNotFoundError:
        return []


# the keeper drops a log within milliseconds of its conmon's end, and then leaves if it was the
# last; on a loaded machine that may take a while, which is not a leak
KEEPER_GRACE = 5.0


class LeakProbe:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def mounts(self) -> list[str]:
        root = str(self.layout.root)
        run = str(self.layout.run)
        return [m for m in _mount_points()
                if m.startswith(root + "/") or m.startswith(run + "/")]

    def network_leaks(self, cid: str) -> list[str]:
        """The veth, bridge port, address lease and firewall rules of ``cid``."""
        import json
        import subprocess

        found = []
        # the first network's veth, and those of further networks (vx<id10><nn>)
        veths = ["vc" + cid[:11], *(p.name for p in Path("/sys/class/net").glob(
            f"vx{cid[:10]}??"))]
        for veth in veths:
            if Path(f"/sys/class/net/{veth}").exists():
                found.append(f"veth {veth}")
            for bridge in Path("/sys/class/net").glob("*/brif"):
                if (bridge / veth).exists():
                    found.append(f"bridge port {bridge.parent.name}/{veth}")
        for table in (self.layout.root / "networks").glob("*.leases.json"):
            try:
                leases = json.loads(table.read_text())
            except (OSError, ValueError):
                continue
            found += [f"lease {ip} in {table.name}" for ip, owner in leases.items()
                      if owner == cid]
        listing = subprocess.run(["nft", "list", "table", "inet", self.firewall_table],
                                 capture_output=True, text=True).stdout
        found += [f"firewall rule {line.strip()}" for line in listing.splitlines()
                  if cid[:12] in line]
        return found

    @property
    def firewall_table(self) -> str:
        return f"corral_{self.layout.run.name}"

    def temporary_files(self) -> list[str]:
        found = []
        for dirpath, dirnames, filenames in os.walk(self.layout.root):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                if name == "ctr.log.tmp" and os.path.islink(path):
                    continue  # the log keeper's pointer to the next file (engine/logs/files.py)
                if name.endswith(".tmp") or name.startswith((".tmp-", ".trash-")):
                    found.append(path)
            # the image layers and container layers are the user's files, not ours
            dirnames[:] = [d for d in dirnames if d not in ("rootfs", "diff")]
        return found

    def keeper_leaks(self, cid: str) -> list[str]:
        """A keep entry of ``cid`` with no conmon of it alive; a keeper of a root with no
        container left."""
        def found() -> list[str]:
            out = []
            if not any(b"conmon" in cmd.split(b"\0")[0] and cid.encode() in cmd
                       for cmd in _cmdlines().values()):
                out += [f"log keeper entry {n}" for n in kept(self.layout, cid)]
            if not (self.layout.containers.is_dir() and any(self.layout.containers.iterdir())):
                out += [f"log keeper process {pid} (no container left)"
                        for pid in keeper_pids(self.layout)]
            return out

        deadline = time.monotonic() + KEEPER_GRACE
        while (out := found()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return out

    def leaks(self, cid: str, *, removed: bool = False) -> list[str]:
        """Leftovers of container ``cid``; with ``removed``, its folder must be gone too."""
        found: list[str] = []
        cpaths = self.layout.container(cid)
        own = str(cpaths.dir)
        found += [f"mount {m}" for m in self.mounts() if m == own or m.startswith(own + "/")]
        for ns in (Path("/run/netns").iterdir() if Path("/run/netns").is_dir() else ()):
            if cid[:12] in ns.name:
                found.append(f"netns {ns.name}")
        # the container's own folders under the engine's parent, in every hierarchy (v1,
        # hybrid) or in the one tree (v2); a walk of the whole tree would race with other
        # containers' cgroups being removed meanwhile
        found += [f"cgroup {folder}" for folder in cgroups.host().folders(cid)]
        if (self.layout.runc_root / cid).exists():
            found.append(f"runc state {self.layout.runc_root / cid}")
        for pid, cmd in _cmdlines().items():
            if b"conmon" in cmd.split(b"\0")[0] and cid.encode() in cmd:
                found.append(f"conmon process {pid}")
        found += [f"container process {pid}" for pid in _cgroup_members(cid)]
        for path in (cpaths.bundle, cpaths.rootfs, cpaths.shm, cpaths.exit_file,
                     cpaths.pidfile, cpaths.conmon_pid, self.layout.sockets / cid):
            if path.exists():
                found.append(f"file {path}")
        found += self.network_leaks(cid)
        found += self.keeper_leaks(cid)
        if removed and cpaths.dir.exists():
            found.append(f"container folder {cpaths.dir}")
        found += [f"temporary file {t}" for t in self.temporary_files()]
        return found
