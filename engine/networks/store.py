"""Network definitions of one engine root: the default ``bridge`` network and user-defined
bridge networks, each with its subnet, gateway, Linux bridge and lease table.

Subnets are chosen so they overlap no host route and no other network (of any root: a
network's bridge exists, with its route, from the moment it is defined); the choice is made
under a host-wide lock so two engines never pick the same one.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Conflict, InvalidParameter, NotFound
from ..store.container import now_rfc3339
from ..store.files import atomic_write_json, file_lock, read_json
from ..store.paths import DEFAULT_ROOT, RUN_BASE, Layout
from .ipam import Leases

DEFAULT_NETWORK = "bridge"
DEFAULT_BRIDGE = "corral0"
DEFAULT_SUBNET = "10.88.0.0/16"
AUTO_POOL = ipaddress.ip_network("10.89.0.0/16")
AUTO_PREFIX = 24
BRIDGE_PREFIX = "cr"
NETWORK_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")
PREDEFINED = ("bridge", "host", "none")


@dataclass
class Network:
    name: str
    id: str
    subnet: str
    gateway: str
    bridge: str
    created: str
    driver: str = "bridge"
    labels: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def inspect(self, containers: dict[str, str]) -> dict[str, Any]:
        """Docker's ``network inspect`` shape; ``containers`` maps id -> address."""
        return {
            "Name": self.name, "Id": self.id, "Created": self.created, "Driver": self.driver,
            # empty for the default network before its first use: its subnet is chosen then
            "IPAM": {"Config": [{"Subnet": self.subnet, "Gateway": self.gateway}]
                     if self.subnet else []},
            "Options": {"com.docker.network.bridge.name": self.bridge},
            "Labels": dict(self.labels),
            "Containers": {cid: {"IPv4Address": ip} for cid, ip in containers.items()},
        }


def bridge_alias(layout: Layout, name: str = "") -> str:
    """The ifalias of a network's bridge: it names the root's tag, so the bridges of a root
    are found again when its folder is gone (``corral system reset``). With no ``name``, the
    prefix every bridge of the root has."""
    return f"corral {layout.run.name} {name}" if name else f"corral {layout.run.name} "


def _host_lock() -> Path:
    RUN_BASE.mkdir(parents=True, exist_ok=True)
    return RUN_BASE / "subnets.lock"


class NetworkStore:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.dir = layout.root / "networks"

    def _path(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def leases(self, net: Network) -> Leases:
        return Leases(self.dir / f"{net.name}.leases.json", net.subnet, net.gateway)

    def _load(self, name: str) -> Network | None:
        try:
            return Network(**read_json(self._path(name)))
        except (FileNotFoundError, NotADirectoryError):
            return None

    def list(self) -> list[Network]:
        out = []
        with contextlib.suppress(FileNotFoundError):
            for entry in sorted(os.scandir(self.dir), key=lambda e: e.name):
                if entry.name.endswith(".json") and not entry.name.endswith(".leases.json"):
                    with contextlib.suppress(ValueError, TypeError, OSError):
                        out.append(Network(**read_json(Path(entry.path))))
        return out

    def get(self, ref: str) -> Network:
        if ref == DEFAULT_NETWORK:
            return self.default()
        if NETWORK_NAME_RE.match(ref):
            net = self._load(ref)
            if net is not None:
                return net
        found = [n for n in self.list() if n.id.startswith(ref)] if ref else []
        if len(found) == 1:
            return found[0]
        raise NotFound(f"network {ref} not found")

    def default(self, *, define: bool = True) -> Network:
        """The default bridge network, defined (and its bridge made) on first use. With
        ``define=False`` nothing is made: a network not defined yet comes back as it will be,
        with its subnet empty unless one was chosen (for listings, which must not make it)."""
        net = self._load(DEFAULT_NETWORK)
        if net is not None:
            return net
        default_root = self.layout.root == Path(os.path.abspath(DEFAULT_ROOT))
        bridge = os.environ.get("CORRAL_BRIDGE") or (
            DEFAULT_BRIDGE if default_root else self._bridge_name(DEFAULT_NETWORK))
        # as dockerd's --bip: the default network's subnet and gateway can be chosen, once,
        # before its first use; otherwise a free one is picked
        subnet = os.environ.get("CORRAL_BRIDGE_SUBNET") or None
        gateway = os.environ.get("CORRAL_BRIDGE_GATEWAY") or None
        if not define:
            return Network(name=DEFAULT_NETWORK, id=self._id(DEFAULT_NETWORK), subnet=subnet or "",
                           gateway=gateway or "", bridge=bridge, created="")
        return self._define(DEFAULT_NETWORK, subnet, gateway, {}, bridge=bridge,
                            preferred=DEFAULT_SUBNET if default_root else None)

    def create(self, name: str, subnet: str | None = None, gateway: str | None = None,
               labels: dict[str, str] | None = None) -> Network:
        if not NETWORK_NAME_RE.match(name or ""):
            raise InvalidParameter(f"invalid network name: {name!r}")
        if name in PREDEFINED:
            raise Conflict(f"network name {name} is reserved: it is a pre-defined network")
        if self._load(name) is not None:
            raise Conflict(f"network with name {name} already exists")
        return self._define(name, subnet, gateway, labels or {}, self._bridge_name(name))

    def _id(self, name: str) -> str:
        # the default network's id is known before it is defined, so a listing can show it
        if name == DEFAULT_NETWORK:
            return hashlib.sha256(f"{self.layout.root}\0{name}\0id".encode()).hexdigest()
        return hashlib.sha256(os.urandom(32)).hexdigest()

    def _bridge_name(self, name: str) -> str:
        digest = hashlib.sha256(f"{self.layout.root}\0{name}".encode()).hexdigest()
        return BRIDGE_PREFIX + digest[:10]

    def _define(self, name: str, subnet: str | None, gateway: str | None,
                labels: dict[str, str], bridge: str, preferred: str | None = None) -> Network:
        from ..host import netlink as netdriver  # pyroute2 is imported only for bridge networks

        self.dir.mkdir(parents=True, exist_ok=True)
        with file_lock(_host_lock()), file_lock(self.dir / ".lock"):
            existing = self._load(name)
            if existing is not None:
                if name == DEFAULT_NETWORK:
                    return existing
                raise Conflict(f"network with name {name} already exists")
            taken = [ipaddress.ip_network(n.subnet) for n in self.list()]
            if subnet is not None:
                net_subnet = _parse_subnet(subnet)
                clash = next((t for t in taken if t.overlaps(net_subnet)), None)
                if clash is not None:
                    raise Conflict(f"invalid subnet {subnet}: it overlaps network {clash}")
                route = netdriver.overlapping_route(str(net_subnet))
                if route is not None:
                    raise Conflict(f"invalid subnet {subnet}: it overlaps the host route "
                                   f"{route}")
            else:
                net_subnet = _pick_subnet(taken, preferred, netdriver.overlapping_route)
            gw = _gateway(net_subnet, gateway)
            net = Network(name=name, id=self._id(name),
                          subnet=str(net_subnet), gateway=gw, bridge=bridge,
                          created=now_rfc3339(), labels=labels)
            netdriver.ensure_bridge(bridge, f"{gw}/{net_subnet.prefixlen}",
                                    alias=bridge_alias(self.layout, name))
            try:
                atomic_write_json(self._path(name), net.to_dict())
            except BaseException:
                netdriver.delete_bridge(bridge)
                raise
            return net

    def remove(self, net: Network, in_use: Callable[[Network], list[str]]) -> None:
        """Delete a network with no container attached; its bridge goes with it."""
        from ..host import netlink as netdriver

        users = in_use(net)
        if users:
            raise Conflict(f"error while removing network: network {net.name} id {net.id} "
                           f"has active endpoints ({', '.join(u[:12] for u in users)})")
        with file_lock(self.dir / ".lock"):
            netdriver.delete_bridge(net.bridge)
            for path in (self._path(net.name), self.dir / f"{net.name}.leases.json",
                         self.dir / f"{net.name}.leases.lock"):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def all_leases(self) -> Iterator[tuple[Network, Leases]]:
        for net in self.list():
            yield net, self.leases(net)


def _parse_subnet(value: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise InvalidParameter(f"invalid subnet: {value!r}: {exc}") from exc
    if net.version != 4 or net.prefixlen > 30:
        raise InvalidParameter(f"invalid subnet: {value!r}: an IPv4 subnet of /30 or larger "
                               "is needed")
    return net


def _gateway(subnet: ipaddress.IPv4Network, gateway: str | None) -> str:
    if gateway is None:
        return str(next(subnet.hosts()))
    try:
        gw = ipaddress.ip_address(gateway)
    except ValueError as exc:
        raise InvalidParameter(f"invalid gateway: {gateway!r}") from exc
    if gw not in subnet or gw in (subnet.network_address, subnet.broadcast_address):
        raise InvalidParameter(f"invalid gateway: {gateway} is not a host address of {subnet}")
    return str(gw)


def _pick_subnet(taken: list[Any], preferred: str | None,
                 overlapping_route: Callable[[str], str | None]) -> ipaddress.IPv4Network:
    candidates: list[Any] = [ipaddress.ip_network(preferred)] if preferred else []
    candidates += list(AUTO_POOL.subnets(new_prefix=AUTO_PREFIX))
    for cand in candidates:
        if any(t.overlaps(cand) for t in taken):
            continue
        if overlapping_route(str(cand)) is None:
            return cand
    raise Conflict("no free subnet left in the pool 10.89.0.0/16: give one with --subnet")
