"""The network driver: bridges, network namespaces, veth pairs, addresses and routes.

This is the only module of corral that imports pyroute2. It knows nothing of containers or of
the state machine; the network step of the start plan calls it with names and addresses.

Speed, measured on the target machine (``bench/network_step.py``):

- ``IPRoute(netns=...)`` forks a child process per socket in pyroute2 0.9.7
  (``netns.create_socket`` runs a ``ChildProcess``). Instead a short-lived thread enters the
  namespace with ``setns`` (or makes a new one with ``unshare``), opens the netlink socket
  there and exits; the socket stays bound to that namespace and is handed to
  ``IPRoute(fileno=...)`` on the calling thread. A namespace change in a thread affects only
  that thread, and the thread dies right after, so the rest of the process never sees it.
- The container end of the veth is created directly inside its namespace
  (``IFLA_NET_NS_FD`` on the peer), already enslaved to the bridge and up, in one netlink
  request: moving a link into a namespace afterwards costs 15-48 ms on this kernel, and one
  request means the kernel creates the pair whole or not at all.
- Our sockets join no multicast group (``groups=0``): they only ask and read answers.

Opening a namespace here never creates it (``/run/netns/<name>`` is opened read-only), which
is what ``IPRoute(netns=name, flags=0)`` gives in undo paths, without the fork.

Deleting a namespace returns at once; the kernel destroys the links inside it some 15 ms
later. Undo therefore deletes the veth (synchronous) before the namespace.

pyroute2 is imported at the first request that needs it (about 75 ms: its package imports
every netlink family, on asyncio). Deleting a link, all that ``rm``, ``stop`` and conmon's exit
command ask of this module, is one ``RTM_DELLINK`` by name written here on a plain netlink
socket, so those commands never load pyroute2.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import ipaddress
import os
import re
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import InvalidParameter

from .netns import (
    _CLONE_NEWNET,
    _MS_BIND,
    _T,
    NetworkFailure,
    _check,
    _failure,
    _libc,
    _remove_netns,
    _share_netns_dir,
    _valid_netns,
    delete_netns,
    list_netns,
    netns_exists,
    netns_path,
    set_sysctl,
)

if TYPE_CHECKING:
    from pyroute2 import IPRoute

__all__ = [
    "NetworkFailure",
    "addresses_in",
    "bridge_ports",
    "configure_container",
    "create_netns",
    "create_veth",
    "delete_bridge",
    "delete_netns",
    "delete_veth",
    "ensure_bridge",
    "host_routes",
    "link_exists",
    "links_with_alias",
    "list_links",
    "list_netns",
    "netns_exists",
    "netns_path",
    "overlapping_route",
    "set_sysctl",
]

MAIN_TABLE = 254
# Since Linux 4.0 the loopback device has index 1 in every namespace (LOOPBACK_IFINDEX),
# which saves a lookup round trip inside the namespace.
LOOPBACK_INDEX = 1


# linux/netlink.h, linux/rtnetlink.h, linux/if_link.h
_NLMSG_ERROR = 2
_NLM_F_REQUEST = 1
_NLM_F_ACK = 4
_RTM_DELLINK = 17
_IFLA_IFNAME = 3
_NLMSG_HEADER = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
_IFINFOMSG = struct.Struct("=BxHiII")  # family, (pad), type, index, flags, change
_RTATTR = struct.Struct("=HH")  # length, type

_IFNAME = re.compile(r"[^\s/:]{1,15}")
_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")


# --- plumbing --------------------------------------------------------------------------------


@functools.cache
def _pyroute2() -> tuple[type[IPRoute], type[Exception]]:
    """pyroute2's ``IPRoute`` and ``NetlinkError``, imported at the first request that needs
    them."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    return IPRoute, NetlinkError


def _in_thread(target: Callable[[], _T]) -> _T:
    """Run ``target`` in a fresh thread and return its result or raise its error.

    Used for ``setns``/``unshare``: they change the namespace of the calling thread only, so
    a thread that does nothing else and then exits keeps the change away from the caller.
    """
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["result"] = target()
        except BaseException as e:  # noqa: BLE001 - handed to the caller below
            box["error"] = e

    thread = threading.Thread(target=run, name="corral-netns", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]  # type: ignore[return-value]


def _rtnl_socket() -> socket.socket:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC,
                         socket.NETLINK_ROUTE)


def _host() -> IPRoute:
    iproute, _ = _pyroute2()
    return iproute(groups=0)


def _open_netns(name: str) -> int:
    """An fd of the namespace; raises NetworkFailure when it does not exist (never creates)."""
    path = netns_path(name)
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as e:
        raise NetworkFailure(f"network namespace {name!r} does not exist", e.errno) from e
    except OSError as e:
        raise NetworkFailure(f"network namespace {name!r}: {e.strerror}", e.errno) from e


def _socket_in(name: str) -> socket.socket:
    """A netlink route socket living in namespace ``name``, made without forking."""
    fd = _open_netns(name)
    try:
        def enter() -> socket.socket:
            _check(_libc().setns(fd, _CLONE_NEWNET), "setns")
            return _rtnl_socket()

        with _failure(f"network namespace {name!r}"):
            return _in_thread(enter)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _inside(name: str) -> Iterator[IPRoute]:
    """``IPRoute`` for namespace ``name`` (which must exist); closes it after."""
    iproute, _ = _pyroute2()
    sock = _socket_in(name)
    try:
        ipr = iproute(fileno=sock.detach(), groups=0)
    except BaseException:
        sock.close()
        raise
    with ipr:
        yield ipr


def _index(ipr: IPRoute, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return found[0] if found else None


def _kind(msg: object) -> str | None:
    info = msg.get_attr("IFLA_LINKINFO")  # type: ignore[attr-defined]
    return info.get_attr("IFLA_INFO_KIND") if info is not None else None


def _valid_ifname(name: str, what: str = "interface name") -> None:
    if not _IFNAME.fullmatch(name or "") or name in (".", ".."):
        raise InvalidParameter(f"invalid {what} {name!r}: 1 to 15 characters, "
                               "no space, '/' or ':'")


def _interface(cidr: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    try:
        iface = ipaddress.ip_interface(cidr)
    except ValueError as e:
        raise InvalidParameter(f"invalid address {cidr!r}: {e}") from e
    if "/" not in cidr:
        raise InvalidParameter(f"invalid address {cidr!r}: the prefix length is missing")
    return iface


# --- bridges ---------------------------------------------------------------------------------


def ensure_bridge(name: str, gateway_cidr: str, mtu: int = 1500, alias: str | None = None) -> None:
    """Make bridge ``name`` exist, hold ``gateway_cidr`` and be up. Idempotent, and safe when
    several processes do it at once (whoever loses the race finds it made). ``alias`` (the
    link's ifalias) tags its owner, for ``links_with_alias``."""
    _valid_ifname(name, "bridge name")
    gateway = _interface(gateway_cidr)
    _, netlink_error = _pyroute2()
    with _failure(f"bridge {name!r}"), _host() as ipr:
        try:
            ipr.link("add", ifname=name, kind="bridge", mtu=mtu)
        except netlink_error as e:
            if e.code != errno.EEXIST:
                raise
        (link,) = ipr.link("get", ifname=name)
        if _kind(link) != "bridge":
            raise NetworkFailure(f"bridge {name!r}: a link of that name exists and is not a "
                                 f"bridge ({_kind(link) or 'unknown kind'})", errno.EEXIST)
        index = link["index"]
        try:
            ipr.addr("add", index=index, address=str(gateway.ip),
                     prefixlen=gateway.network.prefixlen)
        except netlink_error as e:
            if e.code != errno.EEXIST:
                raise
        if alias is not None:
            ipr.link("set", index=index, ifalias=alias)
        ipr.link("set", index=index, state="up")


def links_with_alias(prefix: str) -> list[str]:
    """Names of the host's links whose ifalias starts with ``prefix`` (read from sysfs, so
    without pyroute2)."""
    found = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir("/sys/class/net"):
            with contextlib.suppress(OSError):
                if Path(entry.path, "ifalias").read_text().startswith(prefix):
                    found.append(entry.name)
    return sorted(found)


def delete_bridge(name: str) -> None:
    """Delete bridge ``name``; nothing to do when it is gone. Its ports are released, not
    deleted."""
    _valid_ifname(name, "bridge name")
    _delete_link(name, "bridge")


def bridge_ports(name: str) -> list[str]:
    """Names of the links enslaved to bridge ``name``."""
    _valid_ifname(name, "bridge name")
    with _failure(f"bridge {name!r}"), _host() as ipr:
        index = _index(ipr, name)
        if index is None:
            raise NetworkFailure(f"bridge {name!r} does not exist", errno.ENODEV)
        return sorted(link.get_attr("IFLA_IFNAME") for link in ipr.get_links()
                      if link.get_attr("IFLA_MASTER") == index)


def _delete_link(name: str, what: str) -> None:
    with _failure(f"{what} {name!r}"):
        try:
            _rtnl_delete_link(name)
        except OSError as e:
            if e.errno != errno.ENODEV:  # gone already
                raise


def _rtnl_delete_link(name: str) -> None:
    """``RTM_DELLINK`` of the host's link ``name`` and wait for the kernel's answer, which
    comes once the link is gone. Raises OSError with the kernel's errno."""
    ifname = name.encode() + b"\0"
    attr = _RTATTR.pack(_RTATTR.size + len(ifname), _IFLA_IFNAME) + ifname
    attr += b"\0" * (-len(attr) % 4)
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr
    seq = 1
    request = _NLMSG_HEADER.pack(_NLMSG_HEADER.size + len(body), _RTM_DELLINK,
                                 _NLM_F_REQUEST | _NLM_F_ACK, seq, 0) + body
    with _rtnl_socket() as sock:
        sock.sendto(request, (0, 0))
        while True:
            answer = sock.recv(65536)
            offset = 0
            while offset + _NLMSG_HEADER.size <= len(answer):
                length, kind, _flags, got_seq, _port = _NLMSG_HEADER.unpack_from(answer, offset)
                if kind == _NLMSG_ERROR and got_seq == seq:
                    (error,) = struct.unpack_from("=i", answer, offset + _NLMSG_HEADER.size)
                    if error:
                        raise OSError(-error, os.strerror(-error))
                    return
                if length < _NLMSG_HEADER.size:
                    break
                offset += (length + 3) & ~3


# --- namespaces ------------------------------------------------------------------------------


def create_netns(name: str) -> Path:
    """Create network namespace ``name`` as ``ip netns add`` does (an nsfs bind mount on
    /run/netns/<name>), with ``lo`` up. Fails if it exists. Returns its path."""
    _valid_netns(name)
    path = netns_path(name)
    libc = _libc()
    what = f"network namespace {name!r}"
    with _failure(what):
        _share_netns_dir(libc)
        try:
            os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0))
        except FileExistsError as e:
            raise NetworkFailure(f"{what} already exists", errno.EEXIST) from e
    iproute, _ = _pyroute2()
    try:
        def make() -> socket.socket:
            _check(libc.unshare(_CLONE_NEWNET), "unshare")
            # /proc/self is the thread group leader; this thread's namespace is the new one
            own = f"/proc/self/task/{threading.get_native_id()}/ns/net".encode()
            _check(libc.mount(own, bytes(path), b"none", _MS_BIND, None), "bind mount")
            return _rtnl_socket()

        with _failure(what):
            sock = _in_thread(make)
            with iproute(fileno=sock.detach(), groups=0) as ipr:
                ipr.link("set", index=LOOPBACK_INDEX, state="up")
    except BaseException:
        _remove_netns(name, libc)
        raise
    return path


# --- veth pairs ------------------------------------------------------------------------------


def create_veth(host_ifname: str, netns: str, bridge: str, *, container_ifname: str = "eth0",
                mtu: int = 1500, mac: str | None = None) -> None:
    """Create a veth pair: ``host_ifname`` on ``bridge`` and up in the host namespace, its peer
    ``container_ifname`` created directly inside ``netns``. Leaves no link on failure."""
    _valid_ifname(host_ifname)
    _valid_ifname(container_ifname)
    _valid_ifname(bridge, "bridge name")
    _valid_netns(netns)
    if mac is not None and not _MAC.fullmatch(mac):
        raise InvalidParameter(f"invalid MAC address {mac!r}")
    if not 68 <= mtu <= 65535:
        raise InvalidParameter(f"invalid MTU {mtu}: 68 to 65535")
    what = f"veth {host_ifname!r} (peer {container_ifname!r} in {netns!r}, bridge {bridge!r})"
    _, netlink_error = _pyroute2()
    fd = _open_netns(netns)
    try:
        with _failure(what), _host() as ipr:
            try:
                (link,) = ipr.link("get", ifname=bridge)
            except netlink_error as e:
                if e.code == errno.ENODEV:
                    raise NetworkFailure(f"{what}: bridge {bridge!r} does not exist",
                                         e.code) from e
                raise
            if _kind(link) != "bridge":
                raise NetworkFailure(f"{what}: {bridge!r} is not a bridge")
            peer: dict[str, object] = {"ifname": container_ifname, "net_ns_fd": fd, "mtu": mtu}
            if mac is not None:
                peer["address"] = mac.lower()
            try:
                # one request: the kernel makes the pair, enslaves and raises the host end,
                # or undoes all of it
                ipr.link("add", ifname=host_ifname, kind="veth", mtu=mtu, peer=peer,
                         master=link["index"], state="up")
            except netlink_error as e:
                if e.code == errno.EEXIST:
                    # the name belongs to someone else, or the peer name is taken inside
                    raise NetworkFailure(f"{what}: a link of that name already exists",
                                         e.code) from e
                # if ever the kernel left a half-made pair, the host end holds it
                with contextlib.suppress(OSError):
                    _rtnl_delete_link(host_ifname)
                raise
    finally:
        os.close(fd)


def set_hairpin(host_ifname: str, on: bool = True) -> None:
    """Let a container reach its own published port through a host address: the bridge must
    send a frame back out of the port it came in on (Docker does this without its proxy)."""
    _valid_ifname(host_ifname)
    path = Path(f"/sys/class/net/{host_ifname}/brport/hairpin_mode")
    try:
        path.write_text("1" if on else "0")
    except OSError as exc:
        raise NetworkFailure(f"cannot set hairpin mode on {host_ifname!r}: {exc.strerror}",
                             exc.errno or 0) from exc


def delete_veth(host_ifname: str) -> None:
    """Delete the veth pair by its host end (the peer goes with it); nothing to do when it is
    gone."""
    _valid_ifname(host_ifname)
    _delete_link(host_ifname, "veth")


# --- inside the container's namespace --------------------------------------------------------


def configure_container(netns: str, *, ifname: str = "eth0", address_cidr: str,
                        gateway: str | None) -> None:
    """Inside ``netns``: ``address_cidr`` on ``ifname``, ``ifname`` and ``lo`` up, the default
    route via ``gateway`` (none when it is None). One socket, one namespace entry; idempotent."""
    _valid_netns(netns)
    _valid_ifname(ifname)
    address = _interface(address_cidr)
    via = None
    if gateway is not None:
        try:
            via = ipaddress.ip_address(gateway)
        except ValueError as e:
            raise InvalidParameter(f"invalid gateway {gateway!r}: {e}") from e
        if via.version != address.version:
            raise InvalidParameter(f"gateway {gateway} and address {address_cidr} differ in "
                                   "IP version")
    what = f"interface {ifname!r} in network namespace {netns!r}"
    _, netlink_error = _pyroute2()
    with _failure(what), _inside(netns) as ipr:
        index = _index(ipr, ifname)
        if index is None:
            raise NetworkFailure(f"{what} does not exist", errno.ENODEV)
        try:
            ipr.addr("add", index=index, address=str(address.ip),
                     prefixlen=address.network.prefixlen)
        except netlink_error as e:
            if e.code != errno.EEXIST:
                raise
        ipr.link("set", index=index, state="up")
        ipr.link("set", index=LOOPBACK_INDEX, state="up")
        if via is not None:
            family = socket.AF_INET if via.version == 4 else socket.AF_INET6
            ipr.route("replace", dst="default", gateway=str(via), oif=index, family=family)


def addresses_in(netns: str, ifname: str = "eth0") -> list[str]:
    """The IPv4 addresses (CIDR) of ``ifname`` inside ``netns``."""
    _valid_netns(netns)
    _valid_ifname(ifname)
    what = f"interface {ifname!r} in network namespace {netns!r}"
    with _failure(what), _inside(netns) as ipr:
        index = _index(ipr, ifname)
        if index is None:
            raise NetworkFailure(f"{what} does not exist", errno.ENODEV)
        return [f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
                for a in ipr.get_addr(family=socket.AF_INET, index=index)]


# --- host ------------------------------------------------------------------------------------


def host_routes() -> list[tuple[str, str]]:
    """IPv4 routes of the host's main table as (destination CIDR, device name)."""
    with _failure("host routes"), _host() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        out = []
        for route in ipr.get_routes(family=socket.AF_INET, table=MAIN_TABLE):
            dst = route.get_attr("RTA_DST") or "0.0.0.0"
            device = names.get(route.get_attr("RTA_OIF"), "")
            out.append((f"{dst}/{route['dst_len']}", device))
        return out


def overlapping_route(cidr: str, ignore_devices: set[str] | frozenset[str] = frozenset()
                      ) -> str | None:
    """A description of a host route overlapping subnet ``cidr``, or None. Default routes do
    not count (they overlap everything), nor routes through ``ignore_devices`` (our own
    bridges)."""
    try:
        subnet = ipaddress.ip_network(cidr, strict=False)
    except ValueError as e:
        raise InvalidParameter(f"invalid subnet {cidr!r}: {e}") from e
    if "/" not in cidr:
        raise InvalidParameter(f"invalid subnet {cidr!r}: the prefix length is missing")
    for dst, device in host_routes():
        network = ipaddress.ip_network(dst, strict=False)
        if network.prefixlen == 0 or device in ignore_devices:
            continue
        if network.version == subnet.version and network.overlaps(subnet):
            return f"{dst} dev {device}" if device else dst
    return None


def link_exists(name: str) -> bool:
    """Whether a link ``name`` exists in the host namespace."""
    _valid_ifname(name)
    with _failure(f"link {name!r}"), _host() as ipr:
        return _index(ipr, name) is not None


def list_links(prefix: str = "") -> list[str]:
    """Names of the host namespace's links that start with ``prefix``."""
    with _failure("host links"), _host() as ipr:
        return sorted(name for link in ipr.get_links()
                      if (name := link.get_attr("IFLA_IFNAME")).startswith(prefix))
