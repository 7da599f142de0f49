"""The network driver against the real kernel: bridges, namespaces, veth pairs, addresses,
routes. Root, no mocks.

Every test names what it makes with its own random token (bridge ``ctst<token>``, host veth
ends ``vtst<token><n>``, namespaces ``corral-test-<token>-<n>``), on a /24 under 10.213.0.0/16
that no host route touches, so traffic stays inside the bridge. The ``net`` fixture deletes
all of it after the test, pass or fail, then checks with ``ip`` that nothing is left.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from engine.errors import InvalidParameter, SystemFailure
from engine.host import netlink as network
from engine.host.netns import NetworkFailure


def ip(*args: str, check: bool = True) -> str:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True).stdout


def free_subnet() -> ipaddress.IPv4Network:
    taken = [ipaddress.ip_network(line.split()[0])
             for line in ip("-4", "route", "show", "table", "all").splitlines()
             if line and line.split()[0][0].isdigit()]
    for _ in range(100):
        subnet = ipaddress.IPv4Network(f"10.213.{secrets.randbelow(256)}.0/24")
        if not any(subnet.overlaps(t) for t in taken):
            return subnet
    raise RuntimeError("no free /24 under 10.213.0.0/16")


@dataclass
class Net:
    """What one test makes, named after its token, and deleted after it."""

    token: str
    subnet: ipaddress.IPv4Network
    netns: list[str] = field(default_factory=list)
    veths: list[str] = field(default_factory=list)
    bridges: list[str] = field(default_factory=list)

    @property
    def bridge(self) -> str:
        return f"ctst{self.token}"

    @property
    def gateway(self) -> str:
        return str(self.subnet[1])

    @property
    def gateway_cidr(self) -> str:
        return f"{self.subnet[1]}/{self.subnet.prefixlen}"

    def cidr(self, n: int) -> str:
        return f"{self.subnet[n]}/{self.subnet.prefixlen}"

    def ns_name(self, n: int) -> str:
        name = f"corral-test-{self.token}-{n}"
        self.netns.append(name)
        return name

    def veth_name(self, n: int) -> str:
        name = f"vtst{self.token}{n}"
        self.veths.append(name)
        return name

    def make_bridge(self) -> str:
        self.bridges.append(self.bridge)
        network.ensure_bridge(self.bridge, self.gateway_cidr)
        return self.bridge

    def container(self, n: int, *, configure: bool = True) -> tuple[str, str]:
        """A namespace wired to the bridge, with address ``subnet[n]``: (netns, host end)."""
        ns, host = self.ns_name(n), self.veth_name(n)
        network.create_netns(ns)
        network.create_veth(host, ns, self.bridge)
        if configure:
            network.configure_container(ns, address_cidr=self.cidr(n), gateway=self.gateway)
        return ns, host


def leftovers(token: str) -> list[str]:
    found = [f"netns {line.split()[0]}" for line in ip("netns", "list").splitlines()
             if token in line]
    found += [f"link {line.split(':')[1].strip()}" for line in ip("-o", "link").splitlines()
              if token in line]
    return found


@pytest.fixture
def net() -> Iterator[Net]:
    made = Net(token=secrets.token_hex(2), subnet=free_subnet())
    yield made
    # veth first: deleted at once; a namespace's own links go some 15 ms after it
    for name in made.veths:
        with contextlib.suppress(Exception):
            network.delete_veth(name)
    for name in made.netns:
        with contextlib.suppress(Exception):
            network.delete_netns(name)
    for name in made.bridges:
        with contextlib.suppress(Exception):
            network.delete_bridge(name)
    deadline = time.monotonic() + 2
    while (left := leftovers(made.token)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not left, f"left behind: {left}"


def link_line(name: str, netns: str | None = None) -> str:
    args = ["-n", netns] if netns else []
    return ip(*args, "-o", "link", "show", "dev", name)


def flags(line: str) -> set[str]:
    return set(line.split("<", 1)[1].split(">", 1)[0].split(","))


# --- bridges ---------------------------------------------------------------------------------


def test_bridge_is_made_idempotently_and_deleted(net: Net) -> None:
    net.make_bridge()
    network.ensure_bridge(net.bridge, net.gateway_cidr)  # again: nothing changes, no error

    assert network.link_exists(net.bridge)
    assert net.bridge in network.list_links(prefix="ctst")
    assert "UP" in flags(link_line(net.bridge))
    assert ip("-d", "-o", "link", "show", "dev", net.bridge).count("bridge") >= 1
    addresses = ip("-4", "-o", "addr", "show", "dev", net.bridge)
    assert addresses.count(f"inet {net.gateway_cidr}") == 1
    assert network.bridge_ports(net.bridge) == []

    network.delete_bridge(net.bridge)
    network.delete_bridge(net.bridge)  # again: already gone is fine
    assert not network.link_exists(net.bridge)


def test_two_processes_racing_to_make_the_bridge_both_succeed(net: Net) -> None:
    net.bridges.append(net.bridge)
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def make() -> None:
        try:
            barrier.wait()
            network.ensure_bridge(net.bridge, net.gateway_cidr)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=make) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert ip("-4", "-o", "addr", "show", "dev", net.bridge).count("inet ") == 1


def test_ensure_bridge_refuses_a_link_that_is_not_a_bridge(net: Net) -> None:
    name = net.veth_name(0)
    ip("link", "add", name, "type", "veth", "peer", "name", f"{name}p")
    with pytest.raises(NetworkFailure, match=name):
        network.ensure_bridge(name, net.gateway_cidr)
    assert "inet " not in ip("-o", "addr", "show", "dev", name)


def test_bridge_ports_of_a_missing_bridge_fail_naming_it(net: Net) -> None:
    with pytest.raises(NetworkFailure, match=net.bridge):
        network.bridge_ports(net.bridge)


# --- namespaces ------------------------------------------------------------------------------


def test_netns_is_made_with_lo_up_and_deleted_idempotently(net: Net) -> None:
    ns = net.ns_name(0)
    path = network.create_netns(ns)

    assert path == network.netns_path(ns) and path.exists()
    assert network.netns_exists(ns)
    assert ns in network.list_netns()
    assert ns in ip("netns", "list")
    assert "UP" in flags(link_line("lo", ns))
    # a different namespace from ours: only lo inside
    assert [line.split(":")[1].strip() for line in ip("-n", ns, "-o", "link").splitlines()] \
        == ["lo"]

    with pytest.raises(NetworkFailure, match=ns) as raised:
        network.create_netns(ns)
    assert raised.value.code == errno.EEXIST

    network.delete_netns(ns)
    network.delete_netns(ns)
    assert not network.netns_exists(ns)
    assert ns not in network.list_netns()


def test_deleting_a_missing_netns_is_fine(net: Net) -> None:
    network.delete_netns(f"corral-test-{net.token}-never")


def test_bad_netns_names_are_refused() -> None:
    for bad in ("", "..", "a/b"):
        with pytest.raises(InvalidParameter):
            network.create_netns(bad)


# --- veth pairs ------------------------------------------------------------------------------


def test_veth_container_end_is_eth0_inside_and_host_end_on_the_bridge(net: Net) -> None:
    net.make_bridge()
    ns, host = net.container(0, configure=False)

    inside = link_line("eth0", ns)
    assert "eth0@" in inside
    host_line = link_line(host)
    assert f"master {net.bridge}" in host_line
    assert "UP" in flags(host_line)
    assert network.bridge_ports(net.bridge) == [host]
    # the container end is not in the host namespace
    assert not network.link_exists("eth0") or "eth0@" not in link_line("eth0")
    assert ip("-o", "link", "show", "dev", host).count("mtu 1500") == 1


def test_veth_mtu_and_mac_apply_to_the_container_end(net: Net) -> None:
    net.make_bridge()
    ns, host = net.ns_name(0), net.veth_name(0)
    network.create_netns(ns)
    network.create_veth(host, ns, net.bridge, mtu=1400, mac="02:42:0A:D5:00:02")

    inside = ip("-n", ns, "-o", "link", "show", "dev", "eth0")
    assert "mtu 1400" in inside
    assert "link/ether 02:42:0a:d5:00:02" in inside
    assert "mtu 1400" in link_line(host)


def test_delete_veth_removes_both_ends(net: Net) -> None:
    net.make_bridge()
    ns, host = net.container(0, configure=False)

    network.delete_veth(host)
    network.delete_veth(host)  # again: already gone is fine

    assert not network.link_exists(host)
    assert subprocess.run(["ip", "-n", ns, "link", "show", "dev", "eth0"],
                          capture_output=True).returncode != 0
    assert network.bridge_ports(net.bridge) == []


def test_deleting_links_does_not_load_pyroute2(net: Net) -> None:
    host, peer = net.veth_name(0), net.veth_name(1)
    ip("link", "add", host, "type", "veth", "peer", "name", peer)
    script = ("import sys; from engine.host import netlink as network; "
              f"network.delete_veth({host!r}); network.delete_bridge({net.bridge!r}); "
              "print('pyroute2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout
    assert out == "False\n"
    assert not network.link_exists(host)
    assert not network.link_exists(peer)


def test_a_delete_the_kernel_refuses_fails_naming_the_link() -> None:
    # the kernel never deletes a loopback device (it has no dellink operation)
    with pytest.raises(NetworkFailure, match="veth 'lo'") as caught:
        network.delete_veth("lo")
    assert caught.value.code == errno.EOPNOTSUPP
    assert network.link_exists("lo")


# --- inside the namespace --------------------------------------------------------------------


def test_configure_container_gives_the_address_and_the_default_route(net: Net) -> None:
    net.make_bridge()
    ns, _ = net.container(2)
    # again: idempotent
    network.configure_container(ns, address_cidr=net.cidr(2), gateway=net.gateway)

    assert network.addresses_in(ns) == [net.cidr(2)]
    assert "UP" in flags(link_line("eth0", ns))
    assert "UP" in flags(link_line("lo", ns))
    routes = ip("-n", ns, "-4", "route", "show", "default").splitlines()
    assert len(routes) == 1 and f"default via {net.gateway} dev eth0" in routes[0]


def test_configure_container_without_gateway_adds_no_default_route(net: Net) -> None:
    net.make_bridge()
    ns, _ = net.container(3, configure=False)
    network.configure_container(ns, address_cidr=net.cidr(3), gateway=None)

    assert network.addresses_in(ns) == [net.cidr(3)]
    assert ip("-n", ns, "-4", "route", "show", "default").strip() == ""


def test_two_namespaces_on_one_bridge_reach_each_other_and_the_gateway(net: Net) -> None:
    net.make_bridge()
    ns_a, _ = net.container(2)
    ns_b, _ = net.container(3)

    def ping(ns: str, target: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", ns, "busybox", "ping", "-c1", "-W1",
                               target], capture_output=True, text=True)

    for ns, target in ((ns_a, str(net.subnet[3])), (ns_b, str(net.subnet[2])),
                       (ns_a, net.gateway), (ns_b, net.gateway)):
        done = ping(ns, target)
        assert done.returncode == 0, f"{ns} -> {target}: {done.stdout}{done.stderr}"


# --- host routes -----------------------------------------------------------------------------


def test_host_routes_match_ip_route() -> None:
    listed = set(network.host_routes())
    for line in ip("-4", "route", "show", "table", "main").splitlines():
        words = line.split()
        dst = "0.0.0.0/0" if words[0] == "default" else str(ipaddress.ip_network(words[0]))
        if "dev" in words:
            assert (dst, words[words.index("dev") + 1]) in listed


def test_overlapping_route_detects_an_existing_route_and_accepts_a_free_subnet(net: Net
                                                                              ) -> None:
    assert ("192.0.2.0/24", "eth0") in network.host_routes()  # the host's own subnet
    found = network.overlapping_route("192.0.2.0/24")
    assert found is not None and "192.0.2.0/24" in found
    assert network.overlapping_route("192.0.2.128/25") is not None
    assert network.overlapping_route("192.0.0.0/16") is not None
    # the default route overlaps everything and does not count
    assert network.overlapping_route(str(net.subnet)) is None

    net.make_bridge()
    found = network.overlapping_route(str(net.subnet))
    assert found is not None and net.bridge in found
    assert network.overlapping_route(str(net.subnet), ignore_devices={net.bridge}) is None


def test_overlapping_route_refuses_an_invalid_subnet() -> None:
    for bad in ("10.213.0.0/33", "not-a-subnet", "10.213.0.0"):
        with pytest.raises(InvalidParameter):
            network.overlapping_route(bad)


# --- sysctl ----------------------------------------------------------------------------------


def test_set_sysctl_returns_the_previous_value(net: Net) -> None:
    net.make_bridge()
    key = f"net.ipv4.conf.{net.bridge}.route_localnet"
    path = Path(f"/proc/sys/net/ipv4/conf/{net.bridge}/route_localnet")
    assert network.set_sysctl(key, "1") == "0"
    assert path.read_text().strip() == "1"
    assert network.set_sysctl(key, "0") == "1"
    # ip_forward is the host's: write back what it is, never change it here
    current = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    assert network.set_sysctl("net.ipv4.ip_forward", current) == current
    with pytest.raises(NetworkFailure, match="route_localnet"):
        network.set_sysctl(f"net.ipv4.conf.{net.bridge}x.route_localnet", "1")
    with pytest.raises(InvalidParameter):
        network.set_sysctl("net/../../etc", "1")


# --- errors leave nothing behind -------------------------------------------------------------


def test_veth_to_a_missing_bridge_fails_naming_it_and_makes_nothing(net: Net) -> None:
    ns, host = net.ns_name(0), net.veth_name(0)
    network.create_netns(ns)

    with pytest.raises(NetworkFailure, match=net.bridge) as raised:
        network.create_veth(host, ns, net.bridge)
    assert isinstance(raised.value, SystemFailure)
    assert not network.link_exists(host)
    assert ip("-n", ns, "-o", "link").count(": eth0") == 0


def test_veth_to_a_missing_netns_fails_naming_it_and_makes_nothing(net: Net) -> None:
    net.make_bridge()
    ns, host = net.ns_name(0), net.veth_name(0)

    with pytest.raises(NetworkFailure, match=ns):
        network.create_veth(host, ns, net.bridge)
    assert not network.link_exists(host)
    assert not network.netns_exists(ns)


def test_veth_whose_container_name_is_taken_leaves_no_half_pair(net: Net) -> None:
    net.make_bridge()
    ns, _ = net.container(2, configure=False)
    second = net.veth_name(1)

    with pytest.raises(NetworkFailure, match=second) as raised:
        network.create_veth(second, ns, net.bridge)  # eth0 exists in ns already
    assert raised.value.code == errno.EEXIST
    assert not network.link_exists(second)
    assert len(network.bridge_ports(net.bridge)) == 1


def test_veth_whose_host_name_is_taken_keeps_the_existing_link(net: Net) -> None:
    net.make_bridge()
    ns_a, host = net.container(2, configure=False)
    ns_b = net.ns_name(1)
    network.create_netns(ns_b)

    with pytest.raises(NetworkFailure, match=host):
        network.create_veth(host, ns_b, net.bridge)
    assert network.link_exists(host)  # not ours to delete
    assert network.bridge_ports(net.bridge) == [host]
    assert subprocess.run(["ip", "-n", ns_b, "link", "show", "dev", "eth0"],
                          capture_output=True).returncode != 0


def test_bad_veth_arguments_are_refused_before_anything_is_made(net: Net) -> None:
    net.make_bridge()
    ns, host = net.ns_name(0), net.veth_name(0)
    network.create_netns(ns)
    with pytest.raises(InvalidParameter):
        network.create_veth(host, ns, net.bridge, mac="not-a-mac")
    with pytest.raises(InvalidParameter):
        network.create_veth("x" * 16, ns, net.bridge)
    with pytest.raises(InvalidParameter):
        network.create_veth(host, ns, net.bridge, mtu=10)
    assert not network.link_exists(host)


def test_working_in_a_missing_netns_fails_and_does_not_create_it(net: Net) -> None:
    ns = net.ns_name(0)
    with pytest.raises(NetworkFailure, match=ns):
        network.configure_container(ns, address_cidr=net.cidr(2), gateway=net.gateway)
    with pytest.raises(NetworkFailure, match=ns):
        network.addresses_in(ns)
    assert not network.netns_exists(ns)


def test_configure_container_errors_name_the_object(net: Net) -> None:
    ns = net.ns_name(0)
    network.create_netns(ns)
    with pytest.raises(NetworkFailure, match=f"'eth0'.*{ns}"):
        network.configure_container(ns, address_cidr=net.cidr(2), gateway=net.gateway)
    with pytest.raises(InvalidParameter):
        network.configure_container(ns, address_cidr="10.213.0.300/24", gateway=None)
    with pytest.raises(InvalidParameter):
        network.configure_container(ns, address_cidr=net.cidr(2), gateway="nowhere")
