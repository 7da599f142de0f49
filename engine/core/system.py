"""``corral system reset`` and ``corral system prune``: a root's objects, torn down.

``reset`` stops and removes every container of a root, then every host object named from the
root's tag (the short hash of its path, ``Layout.run.name``): conmon processes and runc state
under ``/run/corral/<tag>``, health monitors, the log keeper, network namespaces and veths of
its containers, mounts under its containers folder and the run folder, its bridges (their
ifalias names the tag), the nftables table ``corral_<tag>``, the run folder itself, the network
definitions and leases; volumes only when asked. It works from the tag alone, so a root whose
folder was deleted by hand is still torn down. Images, volumes (by default) and the events
journal are kept.

``prune`` removes what Docker's ``system prune`` does: stopped containers and networks no
container uses.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .. import programs
from ..errors import CorralError
from ..host import mounts
from ..log import logger
from ..logs import keeper as logkeeper
from ..store import config as cfg
from ..store.paths import Layout

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["PruneReport", "ResetReport", "prune", "reset"]

CONMON_GONE_TIMEOUT = 5.0
STOPPED = ("created", "dead")  # what Docker's prune takes: created, exited, dead


@dataclass
class ResetReport:
    containers: list[str] = field(default_factory=list)
    processes: list[int] = field(default_factory=list)
    netns: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)  # veths and bridges
    mounts: list[str] = field(default_factory=list)
    firewall_table: str | None = None
    run_folder: str | None = None
    volumes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class PruneReport:
    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    reclaimed: int = 0  # bytes of the removed containers' own layers
    errors: list[str] = field(default_factory=list)


def reset(root: Path | str | None = None, *, volumes: bool = False,
          engine: Engine | None = None) -> ResetReport:
    """Tear down root ``root`` (default: ``$CORRAL_ROOT`` or /var/lib/corral), also when its
    folder is gone. ``engine``, an engine of that root, removes its containers first (the
    caller opens it: this module stays below the engine); without one, what a container left
    is swept with the host objects. Every step is tried; what failed is in ``errors``."""
    layout = Layout.for_root(root)
    report = ResetReport()
    if engine is not None and layout.root.is_dir():
        _remove_containers(engine, report)
    _sweep_host(layout, report)
    _remove_definitions(layout, report, volumes)
    return report


def _attempt(report: ResetReport, what: str, action: Callable[..., object],
             *args: object) -> bool:
    try:
        action(*args)
        return True
    except (CorralError, OSError) as exc:
        report.errors.append(f"{what}: {exc}")
        logger.warning("reset: {}: {}", what, exc)
        return False


def _remove_containers(eng: Engine, report: ResetReport) -> None:
    for info in eng.list(all=True):
        if _attempt(report, f"container {info['Id'][:12]}", eng.remove, info["Id"], True):
            report.containers.append(info["Id"])


def _sweep_host(layout: Layout, report: ResetReport) -> None:
    """What the root's containers may have left on the host, found from the tag alone."""
    from ..host import netlink as network
    from ..host.runc import Runtime, find_runtime
    from ..networks.store import bridge_alias
    from ..start import netsteps

    monitors = _root_processes(layout)
    cids = _container_ids(layout) | set(monitors.values())
    runtime = Runtime(find_runtime() or "runc", layout.runc_root)
    for cid in sorted(cids):
        if (layout.runc_root / cid).exists():  # kills what runs of it, removes its cgroups
            _attempt(report, f"runc delete {cid[:12]}", runtime.delete, cid)
    for pid in monitors:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            report.processes.append(pid)
    _wait_gone(list(monitors))
    keepers = logkeeper.keeper_pids(layout.logkeeper)  # the root's log keeper, one at most
    logkeeper.stop(layout.logkeeper)
    report.processes += keepers
    for cid in sorted(cids):
        report.processes += _kill_cgroup_members(cid)
        ns = netsteps.netns_name(cid)
        if network.netns_path(ns).exists() and _attempt(
                report, f"netns {ns}", network.delete_netns, ns):
            report.netns.append(ns)
        extra = netsteps.EXTRA_VETH_PREFIX + cid[:10]  # its veths on further networks
        for veth in [netsteps.veth_name(cid), *(n for n in _links() if n.startswith(extra))]:
            if Path("/sys/class/net", veth).exists() and _attempt(
                    report, f"veth {veth}", network.delete_veth, veth):
                report.links.append(veth)
    # only where the engine mounts: a root given as /mnt must not unmount the host's disks
    for point in sorted(mounts.mounted_under(layout.containers)
                        + mounts.mounted_under(layout.run), key=len, reverse=True):
        if _attempt(report, f"unmount {point}", mounts.unmount, Path(point)):
            report.mounts.append(point)
            if point.startswith(f"{layout.containers}/"):  # a mount point the engine made,
                with contextlib.suppress(OSError):  # left by an `rm -rf` of the root
                    os.rmdir(point)
    bridges = set(network.links_with_alias(bridge_alias(layout))) | _defined_bridges(layout)
    bridges |= _remove_firewall(layout, report)
    for bridge in sorted(bridges):
        for port in _bridge_ports(bridge):  # a veth whose container is not known any more
            if port.startswith((netsteps.VETH_PREFIX, netsteps.EXTRA_VETH_PREFIX)) and _attempt(
                    report, f"veth {port}", network.delete_veth, port):
                report.links.append(port)
        if _attempt(report, f"bridge {bridge}", network.delete_bridge, bridge):
            report.links.append(bridge)
    if layout.run.exists() and _attempt(report, f"run folder {layout.run}", shutil.rmtree,
                                        layout.run):
        report.run_folder = str(layout.run)


def _remove_firewall(layout: Layout, report: ResetReport) -> set[str]:
    """Drop the table; return the bridges it named. Without nft there is no table to drop:
    none could have been made."""
    from ..host.nft import Firewall
    from ..host.nftrules import table_name

    nft = programs.find("nft")
    if nft is None or not os.access(nft, os.X_OK):
        return set()
    fw = Firewall(table_name(layout.run.name), nft=nft)
    try:
        if not fw.exists():
            return set()
        bridges = set(fw.bridges())
        fw.delete()
        report.firewall_table = fw.table
        return bridges
    except CorralError as exc:
        report.errors.append(f"firewall table {fw.table}: {exc}")
        return set()


def _defined_bridges(layout: Layout) -> set[str]:
    """Bridges the root's network definitions name (while its folder is there), and the
    default network's bridge when its name comes from the root's path: both also when they
    were made before bridges carried an alias."""
    from ..networks.store import DEFAULT_NETWORK, NetworkStore

    store = NetworkStore(layout)
    names = {n.bridge for n in store.list()} | {store._bridge_name(DEFAULT_NETWORK)}
    return {b for b in names if Path("/sys/class/net", b, "bridge").is_dir()}


def _links() -> list[str]:
    try:
        return os.listdir("/sys/class/net")
    except OSError:
        return []


def _bridge_ports(bridge: str) -> list[str]:
    try:
        return sorted(os.listdir(f"/sys/class/net/{bridge}/brif"))
    except OSError:
        return []


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _root_processes(layout: Layout) -> dict[int, str]:
    """pid -> container id of every conmon of this root (its runc root is in the run folder,
    which names the tag) and of every health monitor of the root (``--root ROOT
    health-monitor ID``)."""
    from ..start.health import MONITOR_COMMAND

    marker = f"--root={layout.runc_root}"
    monitor = ["--root", str(layout.root), MONITOR_COMMAND]
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        argv = _cmdline(int(entry.name))
        with contextlib.suppress(ValueError, IndexError):
            if argv and "conmon" in os.path.basename(argv[0]) and marker in argv:
                cid = argv[argv.index("-c") + 1]
            elif argv[-4:-1] == monitor:
                cid = argv[-1]
            else:
                continue
            if cfg.ID_RE.match(cid):
                found[int(entry.name)] = cid
    return found


def _container_ids(layout: Layout) -> set[str]:
    ids = set()
    for folder in (layout.runc_root, layout.exits, layout.sockets, layout.containers):
        with contextlib.suppress(OSError):
            ids |= {e.name for e in os.scandir(folder) if cfg.ID_RE.match(e.name)}
    prefix = str(layout.containers) + "/"
    for point in mounts.mounted_under(layout.containers):
        cid = point[len(prefix):].split("/", 1)[0]
        if cfg.ID_RE.match(cid):
            ids.add(cid)
    return ids


def _wait_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + CONMON_GONE_TIMEOUT
    for pid in pids:
        while Path(f"/proc/{pid}").exists() and _state(pid) != "Z":
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def _kill_cgroup_members(cid: str) -> list[int]:
    """Processes left in the container's cgroups when runc's state was lost: killed (thawed
    first: a frozen process takes SIGKILL only once thawed), and the cgroups removed."""
    from ..host import cgroups

    driver = cgroups.host()
    killed = driver.members(cid)
    with contextlib.suppress(CorralError, OSError):
        driver.remove(cid)
    _wait_gone(killed)
    return killed


def _remove_definitions(layout: Layout, report: ResetReport, volumes: bool) -> None:
    """Network definitions and leases (their bridges are gone), volumes when asked."""
    _attempt(report, "networks", shutil.rmtree, layout.root / "networks", True)
    if volumes:
        folder = layout.root / "volumes"
        with contextlib.suppress(FileNotFoundError):
            report.volumes = sorted(e.name for e in os.scandir(folder)
                                    if e.is_dir() and not e.name.startswith("."))
        _attempt(report, "volumes", shutil.rmtree, folder, True)


def prune(eng: Engine) -> PruneReport:
    """Docker's ``system prune``: stopped containers, then networks no container uses."""
    report = PruneReport()
    for info in eng.list(all=True):
        if info["State"] not in STOPPED:
            continue
        size = _tree_size(eng.layout.container(info["Id"]).diff)
        try:
            eng.remove(info["Id"])
        except CorralError as exc:
            report.errors.append(f"container {info['Id'][:12]}: {exc}")
            continue
        report.containers.append(info["Id"])
        report.reclaimed += size
    try:
        report.networks = eng.network_prune()
    except CorralError as exc:
        report.errors.append(f"networks: {exc}")
    return report


def _tree_size(top: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(top):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
    return total
