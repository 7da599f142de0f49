"""Leave the host as the benchmark found it.

``HostGuard.snapshot()`` records, before any engine runs, what Docker, Podman and the raw floor
may change: network links, nftables/iptables tables, namespaces, sysctls (``ip_forward``, the
bridge netfilter switches, the ``all``/``default`` interface settings), top-level cgroups,
mounts, and the files those engines drop outside their private roots (``/etc/docker/key.json``,
``/var/lib/containers/cache``, ``/run/containers/networks``...). ``restore()`` puts each back:
it kills, by process id, every process whose command line names one of this run's private
folders; unmounts what is mounted under them; deletes the links, namespaces, firewall tables and
chains, cgroups and files that were not there before and that an engine of this run makes; and
writes back every sysctl that changed. ``leftovers()`` reports what still differs.

Only names that the engines of this run make are ever deleted (``docker0``, ``br-*``, ``veth*``,
``podman<N>``, ``DOCKER*``/``NETAVARK*`` chains, our own ``cbX<token>`` names), so what other
programs make on the same host meanwhile is left alone.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import find_pids, processes

SYSCTL_FILES = (
    "net/ipv4/ip_forward",
    "net/ipv6/conf/all/forwarding",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "net/bridge/bridge-nf-call-arptables",
)
SYSCTL_DIRS = ("net/ipv4/conf/all", "net/ipv4/conf/default", "net/ipv6/conf/all",
               "net/ipv6/conf/default")
# files and folders Docker, containerd and Podman make outside the roots we give them
ENGINE_PATHS = (
    "/etc/docker/key.json", "/etc/docker/daemon.json", "/var/lib/docker", "/run/docker",
    "/var/run/docker.sock", "/run/docker.sock", "/run/containerd", "/var/lib/containerd",
    "/var/lib/containers", "/run/containers", "/run/libpod", "/var/lib/cni", "/etc/cni",
    "/run/cni", "/etc/containers/networks", "/root/.docker", "/root/.config/containers",
    "/root/.local/share/containers", "/var/lib/containers/cache",
    "/run/containers/networks", "/run/crun", "/run/runc",
)
IPTABLES_TABLES = ("filter", "nat", "mangle", "raw", "security")
ENGINE_CHAIN_RE = re.compile(r"^(DOCKER|NETAVARK|CNI-|PODMAN)")
CGROUP_NAME_RE = re.compile(r"^(docker|libpod_parent|cbench-.*|machine\.slice)$")
NETNS_RE = re.compile(r"^(netns-|cni-)")


def engine_link(name: str, own_prefixes: tuple[str, ...]) -> bool:
    """A link name that an engine of this run makes (never one another program made)."""
    return bool(re.match(r"^(docker0|br-[0-9a-f]{12}|veth[0-9a-f]+|veth\d+|podman\d+|"
                         r"cni-podman\d+)$", name)) or name.startswith(own_prefixes)


def _sh(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, check=False)


def links() -> set[str]:
    try:
        return set(os.listdir("/sys/class/net"))
    except OSError:
        return set()


def nft_tables() -> set[tuple[str, str]]:
    out = _sh("nft", "list", "tables").stdout
    return {(w[1], w[2]) for w in (line.split() for line in out.splitlines())
            if len(w) == 3 and w[0] == "table"}


def iptables_rules(binary: str) -> list[str]:
    """``-S`` of every table, counters and comments dropped, for a before/after diff."""
    rules = []
    for table in IPTABLES_TABLES:
        proc = _sh(binary, "-w", "-t", table, "-S")
        if proc.returncode == 0:
            rules += [f"{table} {line}" for line in proc.stdout.splitlines()]
    return rules


def read_sysctls() -> dict[str, str]:
    values: dict[str, str] = {}
    paths = [Path("/proc/sys") / f for f in SYSCTL_FILES]
    for d in SYSCTL_DIRS:
        with contextlib.suppress(OSError):
            paths += sorted((Path("/proc/sys") / d).iterdir())
    for p in paths:
        with contextlib.suppress(OSError):
            if os.access(p, os.W_OK):
                values[str(p)] = p.read_text().strip()
    return values


def cgroup_tops() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    base = Path("/sys/fs/cgroup")
    with contextlib.suppress(OSError):
        for ctrl in base.iterdir():
            if ctrl.is_dir():
                with contextlib.suppress(OSError):
                    out[str(ctrl)] = {e.name for e in os.scandir(ctrl) if e.is_dir()}
    return out


def mount_points() -> list[str]:
    points = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) > 1:
                points.append(parts[1].replace("\\040", " "))
    return points


def netns_names() -> set[str]:
    try:
        return set(os.listdir("/run/netns"))
    except OSError:
        return set()


@dataclass
class Snapshot:
    links: set[str] = field(default_factory=set)
    nft: set[tuple[str, str]] = field(default_factory=set)
    iptables: list[str] = field(default_factory=list)
    ip6tables: list[str] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)
    cgroups: dict[str, set[str]] = field(default_factory=dict)
    paths: set[str] = field(default_factory=set)
    netns: set[str] = field(default_factory=set)
    mounts: set[str] = field(default_factory=set)
    pids: set[int] = field(default_factory=set)


class HostGuard:
    """Snapshot the host, then put back what this run changed, whatever happened meanwhile."""

    def __init__(self, markers: list[str], own_prefixes: tuple[str, ...]) -> None:
        self.markers = markers            # private folders: a process naming one is ours
        self.own_prefixes = own_prefixes  # names of links/namespaces the floor makes
        self.before = Snapshot()
        self.actions: list[str] = []

    def snapshot(self) -> None:
        self.before = Snapshot(
            links=links(), nft=nft_tables(), iptables=iptables_rules("iptables"),
            ip6tables=iptables_rules("ip6tables"), sysctls=read_sysctls(),
            cgroups=cgroup_tops(), paths={p for p in ENGINE_PATHS if os.path.lexists(p)},
            netns=netns_names(), mounts=set(mount_points()),
            pids={pid for pid, _, _ in processes()})

    # -- restore -------------------------------------------------------------------------------

    def _note(self, text: str) -> None:
        self.actions.append(text)

    def kill_ours(self) -> None:
        """SIGKILL, by pid, every process whose command line names a private folder of ours."""
        for _ in range(3):
            pids = [p for m in self.markers for p in find_pids(m)]
            pids = [p for p in dict.fromkeys(pids) if p != os.getpid()]
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    self._note(f"killed leftover process {pid}")
            time.sleep(0.3)

    def unmount_ours(self) -> None:
        new = [m for m in mount_points() if m not in self.before.mounts]
        ours = [m for m in new
                if any(m == k or m.startswith(k.rstrip("/") + "/") for k in self.markers)
                or m.startswith("/run/netns/") and NETNS_RE.match(os.path.basename(m))
                or m.startswith(("/run/docker", "/var/lib/docker", "/run/containers",
                                 "/var/lib/containers", "/run/containerd"))]
        for m in sorted(set(ours), key=len, reverse=True):
            if _sh("umount", "-l", m).returncode == 0:
                self._note(f"unmounted {m}")

    def restore(self) -> None:
        b = self.before
        self.kill_ours()
        self.unmount_ours()
        # namespaces: Podman's netns-*, and the floor's own
        for name in netns_names() - b.netns:
            if NETNS_RE.match(name) or name.startswith(self.own_prefixes):
                _sh("umount", "-l", f"/run/netns/{name}")
                with contextlib.suppress(OSError):
                    os.unlink(f"/run/netns/{name}")
                    self._note(f"deleted netns {name}")
        for name in sorted(links() - b.links):
            if engine_link(name, self.own_prefixes) and \
                    _sh("ip", "link", "del", name).returncode == 0:
                self._note(f"deleted link {name}")
        self._restore_firewall()
        now = read_sysctls()
        for path, value in b.sysctls.items():
            if now.get(path, value) != value:
                with contextlib.suppress(OSError):
                    Path(path).write_text(value + "\n")
                    self._note(f"sysctl {path[len('/proc/sys/'):]} back to {value}")
        removed: dict[str, int] = {}
        for ctrl, names in cgroup_tops().items():
            for name in names - b.cgroups.get(ctrl, set()):
                if CGROUP_NAME_RE.match(name) and _rmdir_tree(Path(ctrl) / name):
                    removed[name] = removed.get(name, 0) + 1
        for name, count in sorted(removed.items()):
            self._note(f"removed cgroup /{name} ({count} hierarchies)")
        for path in ENGINE_PATHS:
            if path not in b.paths and os.path.lexists(path):
                if any(path.startswith(p + "/") for p in ENGINE_PATHS
                       if p not in b.paths and p != path and os.path.lexists(p)):
                    continue  # its parent goes too
                _remove_path(path)
                self._note(f"removed {path}")

    def _restore_firewall(self) -> None:
        b = self.before
        for family, name in sorted(nft_tables() - b.nft):
            if family in ("ip", "ip6") and name in IPTABLES_TABLES and \
                    _sh("nft", "delete", "table", family, name).returncode == 0:
                self._note(f"deleted nftables table {family} {name}")
        # tables there before: take out only the engines' chains and the jumps to them
        for binary, before in (("iptables", b.iptables), ("ip6tables", b.ip6tables)):
            for line in iptables_rules(binary):
                if line in before:
                    continue
                table, rule = line.split(" ", 1)
                words = rule.split()
                if words[0] == "-A" and (ENGINE_CHAIN_RE.match(words[1]) or any(
                        ENGINE_CHAIN_RE.match(w) for w in words[2:])):
                    _sh(binary, "-w", "-t", table, "-D", *words[1:])
            for line in iptables_rules(binary):
                table, rule = line.split(" ", 1)
                words = rule.split()
                if words[0] == "-N" and ENGINE_CHAIN_RE.match(words[1]) and line not in before:
                    _sh(binary, "-w", "-t", table, "-F", words[1])
                    if _sh(binary, "-w", "-t", table, "-X", words[1]).returncode == 0:
                        self._note(f"deleted {binary} chain {table}/{words[1]}")

    # -- check -------------------------------------------------------------------------------

    def leftovers(self) -> list[str]:
        """What still differs from the snapshot in what this run may have touched."""
        b = self.before
        out = []
        for name in sorted(links() - b.links):
            if engine_link(name, self.own_prefixes):
                out.append(f"link {name}")
        for family, name in sorted(nft_tables() - b.nft):
            if family in ("ip", "ip6") and name in IPTABLES_TABLES:
                out.append(f"nftables table {family} {name}")
        for binary, before in (("iptables", b.iptables), ("ip6tables", b.ip6tables)):
            out += [f"{binary}: {line}" for line in iptables_rules(binary)
                    if line not in before and ENGINE_CHAIN_RE.search(line)]
        now = read_sysctls()
        out += [f"sysctl {p} = {now.get(p)} (was {v})" for p, v in b.sysctls.items()
                if now.get(p, v) != v]
        for m in self.markers:
            out += [f"process {pid}" for pid in find_pids(m) if pid != os.getpid()]
            out += [f"mount {p}" for p in mount_points() if p.startswith(m)]
        out += [f"path {p}" for p in ENGINE_PATHS if p not in b.paths and os.path.lexists(p)]
        for ctrl, names in cgroup_tops().items():
            out += [f"cgroup {ctrl}/{n}" for n in names - b.cgroups.get(ctrl, set())
                    if CGROUP_NAME_RE.match(n)]
        return out


def _rmdir_tree(path: Path) -> bool:
    """rmdir a cgroup folder and the folders below it, deepest first (cgroups hold no files
    that can be unlinked); True when it is gone."""
    for _ in range(20):
        for root, dirs, _files in sorted(os.walk(path), key=lambda t: len(t[0]), reverse=True):
            for d in dirs:
                with contextlib.suppress(OSError):
                    os.rmdir(os.path.join(root, d))
        with contextlib.suppress(OSError):
            os.rmdir(path)
        if not path.exists():
            return True
        time.sleep(0.1)
    return False


def _remove_path(path: str) -> None:
    p = Path(path)
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            p.unlink()
