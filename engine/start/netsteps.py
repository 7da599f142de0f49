"""The sub-steps of the network step (moby's ``initializeNetworking``), each a (do, undo) pair.

bridge:  lease -> namespace -> veth -> address -> routes -> networks -> files -> ports
host, none, container:<name>:  files (and, for container:<name>, the other's namespace)

Every name is derived from the container's id (namespace ``corral-<id12>``, host-side veth
``vc<id11>``, ``vx<id10><nn>`` on a further network), and leases and port rules are keyed by
the id, so an undo needs nothing but the id (and the stored config): it works after a partial
do and in a new process after a crash. Fail points are named
``network.<sub-step>`` (and ``undo:network.<sub-step>`` for the undo).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from states import run_steps

from ..errors import Conflict
from ..host import hostfiles

if TYPE_CHECKING:
    from .context import StartContext

NETNS_PREFIX = "corral-"
VETH_PREFIX = "vc"
EXTRA_VETH_PREFIX = "vx"
MAX_EXTRA_NETWORKS = 255  # two hex digits in the veth's name


def netns_name(cid: str) -> str:
    return NETNS_PREFIX + cid[:12]


def veth_name(cid: str) -> str:
    return VETH_PREFIX + cid[:11]


def extra_veth_name(cid: str, index: int) -> str:
    return f"{EXTRA_VETH_PREFIX}{cid[:10]}{index:02x}"


def is_bridge_mode(mode: str) -> bool:
    return mode not in ("host", "none") and not mode.startswith("container:")


class Lease:
    name = "lease"

    def do(self, ctx: StartContext) -> None:
        net = ctx.net
        assert net is not None
        ctx.ip = ctx.networks.leases(net).lease(ctx.cid, ctx.container.config.ip or None)

    def undo(self, ctx: StartContext) -> None:
        for _net, leases in ctx.networks.all_leases():
            leases.release(ctx.cid)
        ctx.ip = ""


class Namespace:
    name = "namespace"

    def do(self, ctx: StartContext) -> None:
        from ..host import netlink as network

        ctx.network = str(network.create_netns(netns_name(ctx.cid)))

    def undo(self, ctx: StartContext) -> None:
        from ..host import netlink as network

        network.delete_netns(netns_name(ctx.cid))


class Veth:
    name = "veth"

    def do(self, ctx: StartContext) -> None:
        from ..host import netlink as network

        net = ctx.net
        assert net is not None
        iface = ipaddress.ip_interface(f"{net.gateway}/{net.subnet.split('/')[1]}")
        network.ensure_bridge(net.bridge, str(iface))
        network.create_veth(veth_name(ctx.cid), netns_name(ctx.cid), net.bridge)
        if ctx.container.config.ports:
            network.set_hairpin(veth_name(ctx.cid))

    def undo(self, ctx: StartContext) -> None:
        from ..host import netlink as network

        # deleted here, synchronously: the kernel's own removal after the namespace goes
        # lags by ~15 ms, and a port of the bridge must not outlive the undo
        network.delete_veth(veth_name(ctx.cid))


class Address:
    name = "address"

    def do(self, ctx: StartContext) -> None:
        from ..host import netlink as network

        net = ctx.net
        assert net is not None
        prefix = net.subnet.split("/")[1]
        network.configure_container(netns_name(ctx.cid), address_cidr=f"{ctx.ip}/{prefix}",
                                    gateway=None)

    def undo(self, ctx: StartContext) -> None:
        return None  # the address goes with the namespace


class Routes:
    name = "routes"

    def do(self, ctx: StartContext) -> None:
        from ..host import netlink as network

        net = ctx.net
        assert net is not None
        prefix = net.subnet.split("/")[1]
        network.configure_container(netns_name(ctx.cid), address_cidr=f"{ctx.ip}/{prefix}",
                                    gateway=net.gateway)

    def undo(self, ctx: StartContext) -> None:
        return None  # the routes go with the namespace


class Networks:
    """The further networks (``--network`` given again, a service on several networks,
    ``network connect``): on each a lease, a veth (``eth<n>`` inside) and an address; the
    default route stays on the first network, as Docker keeps one gateway."""

    name = "networks"

    def do(self, ctx: StartContext) -> None:
        extras = ctx.container.config.extra_networks
        if not extras:
            return  # the one-network start pays nothing here
        for index, spec in further_networks(extras):
            ctx.extra_ips[spec["name"]] = join_further(ctx, spec, index)

    def undo(self, ctx: StartContext) -> None:
        extras = ctx.container.config.extra_networks
        if not extras:
            return
        from ..host import netlink as network

        for index, _spec in further_networks(extras):
            network.delete_veth(extra_veth_name(ctx.cid, index))
        ctx.extra_ips = {}  # the leases go with the lease sub-step's undo (every network)


def further_networks(extras: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """(interface index, spec) of each further network: the index stored by ``network
    connect``, else the position (eth1, eth2, ... as given at create)."""
    return [(spec.get("index") or i, spec) for i, spec in enumerate(extras, start=1)]


def free_index(extras: list[dict[str, Any]]) -> int:
    used = {i for i, _ in further_networks(extras)}
    return next(i for i in range(1, MAX_EXTRA_NETWORKS + 2) if i not in used)


def join_further(ctx: StartContext, spec: dict[str, Any], index: int) -> str:
    """Lease, veth ``eth<index>`` and address on the further network of ``spec``; its ip."""
    from ..host import netlink as network

    assert ctx.networks is not None
    net = ctx.networks.get(spec["name"])
    ip = ctx.networks.leases(net).lease(ctx.cid, spec.get("ip") or None)
    prefix = net.subnet.split("/")[1]
    network.ensure_bridge(net.bridge, f"{net.gateway}/{prefix}")
    network.create_veth(extra_veth_name(ctx.cid, index), netns_name(ctx.cid), net.bridge,
                        container_ifname=f"eth{index}")
    network.configure_container(netns_name(ctx.cid), ifname=f"eth{index}",
                                address_cidr=f"{ip}/{prefix}", gateway=None)
    return ip


def leave_further(ctx: StartContext, spec: dict[str, Any], index: int) -> None:
    """Undo ``join_further``: the veth (its peer goes with it) and the lease."""
    from ..host import netlink as network

    assert ctx.networks is not None
    network.delete_veth(extra_veth_name(ctx.cid, index))
    ctx.networks.leases(ctx.networks.get(spec["name"])).release(ctx.cid)


class Files:
    """/etc/hosts, /etc/resolv.conf and /etc/hostname, made on the host side (never written
    through whatever the image has at those paths) and bind-mounted by the mounts step."""

    name = "files"

    def do(self, ctx: StartContext) -> None:
        c = ctx.container.config
        p = ctx.paths
        host = c.network_mode == "host"
        name = hostname_of(ctx)
        if host:
            hosts = _read("/etc/hosts") or hostfiles.hosts_content(name)
        else:
            own = [(ip, name) for ip in ctx.extra_ips.values()]
            hosts = hostfiles.hosts_content(name, ctx.ip or None, ctx.network_peers() + own)
        _write(p.hosts, hosts)
        _write(p.resolv, hostfiles.resolv_content(hostfiles.read_host_resolv(), c.dns,
                                                  keep_loopback=host))
        _write(p.hostname, name + "\n")

    def undo(self, ctx: StartContext) -> None:
        for f in (ctx.paths.hosts, ctx.paths.resolv, ctx.paths.hostname):
            with contextlib.suppress(FileNotFoundError):
                f.unlink()


class Ports:
    """Published ports and the masquerade of the network's subnet, in the engine's table."""

    name = "ports"

    def do(self, ctx: StartContext) -> None:
        net = ctx.net
        assert net is not None
        from ..host.forwarding import enable_forwarding
        from ..host.ports import PortMapping

        fw = ctx.firewall()
        nets = [net]
        if ctx.extra_ips:
            assert ctx.networks is not None
            nets += [ctx.networks.get(name) for name in ctx.extra_ips]
        fw.ensure_base([n.subnet for n in nets], [n.bridge for n in nets])
        for n in nets:
            enable_forwarding(n.bridge)
        ports = ctx.container.config.ports
        if ports:  # all or none, in one transaction
            ctx.published = fw.add_ports(ctx.cid, ctx.ip, [PortMapping(**p) for p in ports])

    def undo(self, ctx: StartContext) -> None:
        if ctx.container.config.ports:
            ctx.firewall().remove_ports(ctx.cid)


BRIDGE_PLAN = (Lease(), Namespace(), Veth(), Address(), Routes(), Networks(), Files(),
               Ports())
OTHER_PLAN = (Files(),)
SUB_STEP_NAMES = tuple(s.name for s in BRIDGE_PLAN)


def plan_for(mode: str) -> tuple[Any, ...]:
    return BRIDGE_PLAN if is_bridge_mode(mode) else OTHER_PLAN


def initialize(ctx: StartContext) -> None:
    """Run the network sub-steps for the container's mode (undone in reverse on a failure)."""
    mode = ctx.container.config.network_mode
    if mode == "host":
        ctx.network = "host"
    elif mode == "none":
        ctx.network = "new"  # runc makes the namespace and brings lo up
    elif mode.startswith("container:"):
        ctx.network = ctx.join_network(mode.split(":", 1)[1])
    else:
        ctx.net = ctx.networks.get(mode)
    fail_point = ctx.fail_point
    run_steps(plan_for(mode), ctx,
              fail_point=(lambda name: fail_point(f"network.{name}")) if fail_point else None,
              undo_fail_point=_undo_fail_point(ctx))


def _undo_fail_point(ctx: StartContext) -> Any:
    fail_point = ctx.fail_point
    return (lambda name: fail_point(f"undo:network.{name}")) if fail_point else None


def undo(ctx: StartContext) -> list[tuple[str, BaseException]]:
    """Undo every sub-step of the container's mode, in reverse; return the failures."""
    from states import undo_steps

    return undo_steps(list(reversed(plan_for(ctx.container.config.network_mode))), ctx,
                      fail_point=_undo_fail_point(ctx))


def hostname_of(ctx: StartContext) -> str:
    c = ctx.container.config
    if c.hostname:
        return c.hostname
    if c.network_mode == "host":
        return os.uname().nodename
    return c.id[:12]


def check_joinable(status: str, ref: str) -> None:
    if status != "running":
        raise Conflict(f"cannot join network of a non running container: {ref}")


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    os.chmod(path, 0o644)
