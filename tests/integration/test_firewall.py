"""engine.host.nft against the real nft and real network namespaces.

A "container" here is made with plain ``ip`` commands: a namespace, a bridge on the host, a
veth pair, and a busybox listener inside. Traffic goes only to loopback, to the host's own
addresses and to the namespaces the tests create; masquerade is checked in the rule listing,
never with traffic. Every fixture tears down what it made, even when the test fails.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from engine import Conflict, InvalidParameter, SystemFailure
from engine.host.forwarding import enable_forwarding, restore_sysctls
from engine.host.nft import Firewall
from engine.host.ports import FirewallFailure, PortMapping, parse_publish

NFT = "/usr/sbin/nft"
BUSYBOX = "/usr/bin/busybox"
LISTEN_PORT = 8080


def run(*args: str, check: bool = True) -> str:
    proc = subprocess.run(list(args), capture_output=True, text=True, check=False, timeout=30)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def nft_tables() -> str:
    return run(NFT, "list", "tables")


def nft_table(fw: Firewall) -> str:
    return run(NFT, "list", "table", "inet", fw.table)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fetch(address: str, port: int, timeout: float = 3.0) -> bytes:
    with socket.create_connection((address, port), timeout=timeout) as conn:
        data = b""
        while chunk := conn.recv(64):
            data += chunk
    return data


def fetch_from(namespace: str, address: str, port: int) -> str:
    """Connect from inside a namespace (a client "container")."""
    script = (
        "import socket,sys\n"
        f"c = socket.create_connection(({address!r}, {port}), timeout=3)\n"
        "data = b''\n"
        "while chunk := c.recv(64): data += chunk\n"
        "sys.stdout.write(data.decode())\n"
    )
    return run("ip", "netns", "exec", namespace, sys.executable, "-c", script)


# --- sandboxes --------------------------------------------------------------------------------

@dataclass
class Sandbox:
    """One fake container: namespace, bridge, veth; the namespace holds 10.214.<n>.2."""

    tag: str
    n: int
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def ns(self) -> str:
        return f"corral-fwtest-{self.tag}"

    @property
    def bridge(self) -> str:
        return f"cfw{self.tag[:4]}"

    @property
    def veth(self) -> str:
        return f"cfwv{self.tag[:4]}"

    @property
    def subnet(self) -> str:
        return f"10.214.{self.n}.0/24"

    @property
    def gateway(self) -> str:
        return f"10.214.{self.n}.1"

    @property
    def address(self) -> str:
        return f"10.214.{self.n}.2"

    def create(self) -> None:
        run("ip", "netns", "add", self.ns)
        run("ip", "link", "add", self.bridge, "type", "bridge")
        run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")
        # the container end is made inside the namespace, as the engine does
        run("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0",
            "netns", self.ns)
        # hairpin on the bridge port, as Docker sets it: without it the bridge will not send a
        # container's own packet, DNATed back to it, out of the port it came in by
        run("ip", "link", "set", self.veth, "master", self.bridge, "up")
        run("ip", "link", "set", self.veth, "type", "bridge_slave", "hairpin", "on")
        inside = ("ip", "netns", "exec", self.ns, "ip")
        run(*inside, "link", "set", "lo", "up")
        run(*inside, "addr", "add", f"{self.address}/24", "dev", "eth0")
        run(*inside, "link", "set", "eth0", "up")
        run(*inside, "route", "add", "default", "via", self.gateway)

    def listen(self, port: int = LISTEN_PORT) -> None:
        """A persistent busybox listener answering "hello" to every connection."""
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, BUSYBOX, "nc", "-ll", "-p", str(port),
             "-e", "/bin/echo", "hello"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        # ip netns exec execs the listener, so /proc/<pid>/net is the namespace's own; busybox
        # listens on a dual-stack IPv6 socket
        wanted = f":{port:04X} "
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            for table in ("tcp", "tcp6"):
                with contextlib.suppress(OSError):
                    lines = Path(f"/proc/{proc.pid}/net/{table}").read_text().splitlines()
                    # field 1 is the local address, field 3 the state (0A: listening)
                    if any(f[1].endswith(wanted.strip()) and f[3] == "0A"
                           for f in (ln.split() for ln in lines[1:])):
                        return
            time.sleep(0.01)
        raise AssertionError(f"listener in {self.ns} did not come up")

    def destroy(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        run("ip", "netns", "del", self.ns, check=False)
        run("ip", "link", "del", self.veth, check=False)
        run("ip", "link", "del", self.bridge, check=False)


def _used_subnets() -> set[int]:
    used = set()
    for line in run("ip", "-o", "-4", "route", "show", "table", "all").splitlines():
        head = line.split()[0]
        with contextlib.suppress(ValueError):
            network = ipaddress.ip_network(head if head != "local" else line.split()[1],
                                           strict=False)
            if network.subnet_of(ipaddress.ip_network("10.214.0.0/16")):
                used.add(int(network.network_address.packed[2]))
    return used


@pytest.fixture
def make_sandbox() -> Iterator[Callable[[], Sandbox]]:
    made: list[Sandbox] = []

    def make() -> Sandbox:
        taken = _used_subnets() | {s.n for s in made}
        n = random.choice([i for i in range(1, 255) if i not in taken])
        box = Sandbox(tag=uuid.uuid4().hex[:8], n=n)
        made.append(box)
        box.create()
        return box

    yield make
    for box in reversed(made):
        box.destroy()
    names = run("ip", "netns", "list")
    assert not [b.ns for b in made if b.ns in names], "test namespaces left behind"


@pytest.fixture
def sandbox(make_sandbox: Callable[[], Sandbox]) -> Sandbox:
    return make_sandbox()


@pytest.fixture
def make_fw() -> Iterator[Callable[[], Firewall]]:
    made: list[Firewall] = []

    def make() -> Firewall:
        fw = Firewall(f"corral_fwtest_{uuid.uuid4().hex[:8]}")
        made.append(fw)
        return fw

    yield make
    for fw in made:
        with contextlib.suppress(Exception):
            fw.delete()
        run(NFT, "delete", "table", "inet", fw.table, check=False)
    tables = nft_tables()
    assert not [fw.table for fw in made if fw.table in tables], "test tables left behind"


@pytest.fixture
def fw(make_fw: Callable[[], Firewall]) -> Firewall:
    return make_fw()


@pytest.fixture
def forwarding() -> Iterator[Callable[[str], None]]:
    """Enable forwarding for bridges; the sysctls are put back after the test."""
    saved: list[dict[str, str]] = []

    def enable(bridge: str) -> None:
        saved.append(enable_forwarding(bridge))

    before = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    yield enable
    for previous in reversed(saved):
        restore_sysctls(previous)
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == before


# --- table ------------------------------------------------------------------------------------

def test_table_created_idempotent_and_deleted(fw: Firewall) -> None:
    assert not fw.exists()
    fw.ensure_base(["10.214.250.0/24"], ["cfwbase"])
    assert f"table inet {fw.table}" in nft_tables()
    listing = nft_table(fw)
    for chain in ("prerouting", "output", "postrouting", "forward", "published", "outbound"):
        assert f"chain {chain} {{" in listing
    assert "type nat hook prerouting priority dstnat" in listing
    assert "type nat hook output priority -100" in listing
    assert "type nat hook postrouting priority srcnat" in listing
    assert "ip saddr 127.0.0.0/8 masquerade" in listing
    assert "ct state established,related accept" in listing

    fw.add_port("keep", "tcp", None, free_port(), "10.214.250.2", 80)
    with_handles = run(NFT, "-a", "list", "table", "inet", fw.table)
    fw.ensure_base(["10.214.250.0/24"], ["cfwbase"])
    # not even rewritten: the same rules under the same handles, the port kept
    assert run(NFT, "-a", "list", "table", "inet", fw.table) == with_handles

    # a base chain someone emptied is rebuilt, and published ports survive that
    with_port = nft_table(fw)
    run(NFT, "flush", "chain", "inet", fw.table, "forward")
    fw.ensure_base(["10.214.250.0/24"], ["cfwbase"])
    assert nft_table(fw) == with_port

    fw.delete()
    assert fw.table not in nft_tables()
    assert fw.table not in run(NFT, "list", "ruleset")
    fw.delete()  # idempotent
    assert not fw.exists()


def test_memo_skips_the_listing_until_forgotten(fw: Firewall, tmp_path: Path) -> None:
    fw.memo = tmp_path / "memo"
    fw.ensure_base(["10.214.248.0/24"], ["cfwmemo"])
    assert fw.masquerade_subnets() == ["10.214.248.0/24"]
    run(NFT, "delete", "table", "inet", fw.table)
    fw.ensure_base(["10.214.248.0/24"], ["cfwmemo"])  # remembered: nft is not asked
    assert not fw.exists()
    fw.ensure_base(["10.214.247.0/24"], ["cfwmemo"])  # another subnet on it: looked at
    assert fw.masquerade_subnets() == ["10.214.247.0/24"]

    fw.forget()
    fw.ensure_base(["10.214.248.0/24"], ["cfwmemo"])
    assert sorted(fw.masquerade_subnets()) == ["10.214.247.0/24", "10.214.248.0/24"]
    fw.remove_masquerade("10.214.248.0/24")  # forgets too, so the next start re-adds it
    fw.ensure_base(["10.214.248.0/24"], ["cfwmemo"])
    assert "10.214.248.0/24" in fw.masquerade_subnets()
    fw.delete()
    assert list((tmp_path / "memo").iterdir()) == []


def test_masquerade_installed_and_removed(fw: Firewall) -> None:
    fw.ensure_base(["10.214.251.0/24", "10.214.252.0/24"], ["cfwmasqa", "cfwmasqb"])
    listing = nft_table(fw)
    assert 'ip saddr 10.214.251.0/24 oifname != "cfwmasqa" masquerade' in listing
    assert 'ip saddr 10.214.252.0/24 oifname != "cfwmasqb" masquerade' in listing
    assert sorted(fw.masquerade_subnets()) == ["10.214.251.0/24", "10.214.252.0/24"]
    assert fw.bridges() == ["cfwmasqa", "cfwmasqb"]

    fw.remove_masquerade("10.214.251.0/24")
    listing = nft_table(fw)
    assert "10.214.251.0/24" not in listing
    assert '"cfwmasqa"' not in listing
    assert fw.masquerade_subnets() == ["10.214.252.0/24"]
    assert fw.bridges() == ["cfwmasqb"]
    fw.remove_masquerade("10.214.251.0/24")  # idempotent

    fw.add_masquerade("10.214.253.0/24", "cfwmasqc")
    assert sorted(fw.masquerade_subnets()) == ["10.214.252.0/24", "10.214.253.0/24"]


def test_port_rule_added_then_removed_by_container_id(fw: Firewall) -> None:
    fw.ensure_base(["10.214.249.0/24"], ["cfwports"])
    hp1, hp2, hp3 = free_port(), free_port(socket.SOCK_DGRAM), free_port()
    fw.add_port("c1", "tcp", None, hp1, "10.214.249.2", 80)
    fw.add_port("c1", "udp", "127.0.0.1", hp2, "10.214.249.2", 53)
    fw.add_port("c2", "tcp", None, hp3, "10.214.249.3", 80)
    assert sorted(fw.ports(), key=lambda p: p["host_port"]) == sorted([
        {"container_id": "c1", "proto": "tcp", "host_ip": None, "host_port": hp1,
         "container_ip": "10.214.249.2", "container_port": 80},
        {"container_id": "c1", "proto": "udp", "host_ip": "127.0.0.1", "host_port": hp2,
         "container_ip": "10.214.249.2", "container_port": 53},
        {"container_id": "c2", "proto": "tcp", "host_ip": None, "host_port": hp3,
         "container_ip": "10.214.249.3", "container_port": 80},
    ], key=lambda p: p["host_port"])
    listing = nft_table(fw)
    assert f'tcp dport {hp1} dnat ip to 10.214.249.2:80 comment "ctr c1"' in listing
    assert f'ip daddr 127.0.0.1 udp dport {hp2} dnat ip to 10.214.249.2:53' in listing

    assert fw.remove_ports("c1") == 2
    listing = nft_table(fw)
    assert '"ctr c1"' not in listing
    assert '"ctr c2"' in listing
    assert [p["container_id"] for p in fw.ports()] == ["c2"]
    assert fw.remove_ports("c1") == 0  # idempotent
    fw.delete()
    assert fw.remove_ports("c2") == 0  # and harmless without a table


def test_add_ports_is_all_or_nothing(fw: Firewall) -> None:
    fw.ensure_base(["10.214.248.0/24"], ["cfwbatch"])
    taken, free = free_port(), free_port()
    fw.add_port("owner", "tcp", None, taken, "10.214.248.2", 80)
    batch = [PortMapping(81, "tcp", None, free), PortMapping(82, "tcp", None, taken)]
    with pytest.raises(Conflict):
        fw.add_ports("late", "10.214.248.3", batch)
    assert [p["container_id"] for p in fw.ports()] == ["owner"]
    # the same host port twice within one request is a conflict too
    with pytest.raises(Conflict):
        fw.add_ports("twice", "10.214.248.3", [PortMapping(1, "tcp", None, free),
                                                PortMapping(2, "tcp", None, free)])
    assert [p["container_id"] for p in fw.ports()] == ["owner"]


def test_racing_requests_for_one_port_leave_one_winner(fw: Firewall) -> None:
    fw.ensure_base(["10.214.239.0/24"], ["cfwrace"])
    hp = free_port()
    outcomes: list[str] = []

    def claim(i: int) -> None:
        try:
            fw.add_port(f"racer{i}", "tcp", None, hp, f"10.214.239.{i + 2}", 80)
            outcomes.append("won")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict"] * 5 + ["won"]
    assert len(fw.ports()) == 1


# --- traffic ----------------------------------------------------------------------------------

def test_published_port_answers_on_loopback_and_host_address(
        fw: Firewall, sandbox: Sandbox, forwarding: Callable[[str], None]) -> None:
    sandbox.listen()
    fw.ensure_base([sandbox.subnet], [sandbox.bridge])
    forwarding(sandbox.bridge)
    hp = free_port()
    fw.add_port("web", "tcp", None, hp, sandbox.address, LISTEN_PORT)

    assert fetch("127.0.0.1", hp) == b"hello\n"
    # a host address on the bridge the test made: tests send nothing to any other address
    assert fetch(sandbox.gateway, hp) == b"hello\n"

    fw.remove_ports("web")
    with pytest.raises(ConnectionRefusedError):
        fetch("127.0.0.1", hp)


def test_published_port_on_one_host_address_only(
        fw: Firewall, sandbox: Sandbox, forwarding: Callable[[str], None]) -> None:
    sandbox.listen()
    fw.ensure_base([sandbox.subnet], [sandbox.bridge])
    forwarding(sandbox.bridge)
    hp = free_port()
    fw.add_port("lo-only", "tcp", "127.0.0.1", hp, sandbox.address, LISTEN_PORT)
    assert fetch("127.0.0.1", hp) == b"hello\n"
    with pytest.raises(ConnectionRefusedError):
        fetch(sandbox.gateway, hp)


def test_random_host_port_answers(
        fw: Firewall, sandbox: Sandbox, forwarding: Callable[[str], None]) -> None:
    sandbox.listen()
    fw.ensure_base([sandbox.subnet], [sandbox.bridge])
    forwarding(sandbox.bridge)
    mapping = parse_publish(str(LISTEN_PORT))
    installed = fw.add_ports("rand", sandbox.address, [mapping])[0]
    assert 1024 <= installed["host_port"] <= 65535
    assert fw.ports()[0]["host_port"] == installed["host_port"]
    assert fetch("127.0.0.1", installed["host_port"]) == b"hello\n"


def test_published_port_from_another_namespace_and_hairpin(
        fw: Firewall, make_sandbox: Callable[[], Sandbox],
        forwarding: Callable[[str], None]) -> None:
    server, client = make_sandbox(), make_sandbox()
    server.listen()
    fw.ensure_base([server.subnet], [server.bridge])
    forwarding(server.bridge)
    forwarding(client.bridge)
    hp = free_port()
    fw.add_port("srv", "tcp", None, hp, server.address, LISTEN_PORT)
    # prerouting: a client elsewhere reaches the port on a host address (its gateway)
    assert fetch_from(client.ns, client.gateway, hp) == "hello\n"
    # hairpin: the container reaches its own published port through the host
    assert fetch_from(server.ns, server.gateway, hp) == "hello\n"


def test_enable_forwarding_and_restore(sandbox: Sandbox) -> None:
    forward = Path("/proc/sys/net/ipv4/ip_forward")
    localnet = Path(f"/proc/sys/net/ipv4/conf/{sandbox.bridge}/route_localnet")
    before = forward.read_text(), localnet.read_text()
    previous = enable_forwarding(sandbox.bridge)
    try:
        assert previous == {"net.ipv4.ip_forward": before[0].strip(),
                            f"net.ipv4.conf.{sandbox.bridge}.route_localnet": before[1].strip()}
        assert forward.read_text().strip() == "1"
        assert localnet.read_text().strip() == "1"
    finally:
        restore_sysctls(previous)
    assert (forward.read_text(), localnet.read_text()) == before
    with pytest.raises(InvalidParameter):
        enable_forwarding("../all")


# --- conflicts --------------------------------------------------------------------------------

def test_port_used_by_another_mapping_is_allocated(fw: Firewall) -> None:
    fw.ensure_base(["10.214.247.0/24"], ["cfwconf"])
    hp = free_port()
    fw.add_port("first", "tcp", None, hp, "10.214.247.2", 80)
    with pytest.raises(Conflict) as info:
        fw.add_port("second", "tcp", None, hp, "10.214.247.3", 80)
    assert str(info.value) == f"Bind for 0.0.0.0:{hp} failed: port is already allocated"
    with pytest.raises(Conflict, match="port is already allocated"):
        fw.add_port("second", "tcp", "127.0.0.1", hp, "10.214.247.3", 80)
    assert [p["container_id"] for p in fw.ports()] == ["first"]
    # another protocol on the same number is another port
    fw.add_port("second", "udp", None, hp, "10.214.247.3", 80)

    hp2 = free_port()
    fw.add_port("a", "tcp", "127.0.0.1", hp2, "10.214.247.4", 80)
    fw.add_port("b", "tcp", "127.0.0.2", hp2, "10.214.247.5", 80)  # other address: free
    with pytest.raises(Conflict, match=f"Bind for 0.0.0.0:{hp2} failed"):
        fw.add_port("c", "tcp", None, hp2, "10.214.247.6", 80)


@pytest.mark.parametrize(("listen_on", "publish_on"), [
    ("127.0.0.1", None), ("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "127.0.0.1"),
    ("0.0.0.0", None),
])
def test_port_held_by_host_listener_is_allocated(
        fw: Firewall, listen_on: str, publish_on: str | None) -> None:
    fw.ensure_base(["10.214.246.0/24"], ["cfwhost"])
    with socket.socket() as listener:
        listener.bind((listen_on, 0))
        listener.listen()
        hp = listener.getsockname()[1]
        with pytest.raises(Conflict, match="port is already allocated"):
            fw.add_port("late", "tcp", publish_on, hp, "10.214.246.2", 80)
    assert fw.ports() == []


def test_udp_port_held_by_host_socket_is_allocated(fw: Firewall) -> None:
    fw.ensure_base(["10.214.245.0/24"], ["cfwudp"])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as bound:
        bound.bind(("127.0.0.1", 0))
        hp = bound.getsockname()[1]
        with pytest.raises(Conflict, match="port is already allocated"):
            fw.add_port("late", "udp", None, hp, "10.214.245.2", 53)
        fw.add_port("tcp-ok", "tcp", None, hp, "10.214.245.2", 80)
    assert [p["proto"] for p in fw.ports()] == ["tcp"]


def test_two_tables_do_not_interfere(make_fw: Callable[[], Firewall]) -> None:
    one, two = make_fw(), make_fw()
    one.ensure_base(["10.214.243.0/24"], ["cfwone"])
    two.ensure_base(["10.214.244.0/24"], ["cfwtwo"])
    hp1, hp2 = free_port(), free_port()
    one.add_port("same-id", "tcp", None, hp1, "10.214.243.2", 80)
    two.add_port("same-id", "tcp", None, hp2, "10.214.244.2", 80)
    two_before = nft_table(two)

    assert one.remove_ports("same-id") == 1
    assert nft_table(two) == two_before
    assert [p["host_port"] for p in two.ports()] == [hp2]
    one.remove_masquerade("10.214.243.0/24")
    assert two.masquerade_subnets() == ["10.214.244.0/24"]

    # a host port is one host-wide resource: another root's mapping holds it too
    with pytest.raises(Conflict, match="port is already allocated"):
        one.add_port("other", "tcp", None, hp2, "10.214.243.3", 80)

    one.delete()
    assert nft_table(two) == two_before
    assert two.table in nft_tables() and one.table not in nft_tables()


def test_delete_removes_everything(
        fw: Firewall, sandbox: Sandbox, forwarding: Callable[[str], None]) -> None:
    sandbox.listen()
    fw.ensure_base([sandbox.subnet], [sandbox.bridge])
    forwarding(sandbox.bridge)
    hp = free_port()
    fw.add_port("gone", "tcp", None, hp, sandbox.address, LISTEN_PORT)
    assert fetch("127.0.0.1", hp) == b"hello\n"
    fw.delete()
    assert fw.table not in run(NFT, "list", "ruleset")
    assert fw.ports() == [] and fw.masquerade_subnets() == []
    with pytest.raises(ConnectionRefusedError):
        fetch("127.0.0.1", hp)


# --- errors -----------------------------------------------------------------------------------

def test_nft_error_is_a_firewall_failure_with_nfts_words(fw: Firewall) -> None:
    with pytest.raises(FirewallFailure, match="not set up"):
        fw.add_port("early", "tcp", None, free_port(), "10.214.242.2", 80)
    fw.ensure_base(["10.214.242.0/24"], ["cfwerr"])
    # someone took the chain away under the engine: nft's own refusal comes through
    run(NFT, "flush", "table", "inet", fw.table)
    run(NFT, "delete", "chain", "inet", fw.table, "published")
    with pytest.raises(SystemFailure) as info:
        fw.add_port("late", "tcp", None, free_port(), "10.214.242.2", 80)
    assert isinstance(info.value, FirewallFailure)
    assert "No such file or directory" in str(info.value)
    assert "^" not in str(info.value)


@pytest.mark.parametrize(("args", "message"), [
    (("x\" ; flush ruleset ; \"", "tcp", None, 1, "10.0.0.2", 80), "invalid container id"),
    (("ok", "sctp", None, 1, "10.0.0.2", 80), "invalid protocol"),
    (("ok", "tcp", None, 70000, "10.0.0.2", 80), "invalid host port"),
    (("ok", "tcp", None, 1, "10.0.0.2", 0), "invalid container port"),
    (("ok", "tcp", None, 1, "10.0.0.999", 80), "invalid container address"),
    (("ok", "tcp", "::1", 1, "10.0.0.2", 80), "address families differ"),
    (("ok", "tcp", "127.0.0.1 accept", 1, "10.0.0.2", 80), "invalid host address"),
])
def test_bad_port_requests_are_invalid(fw: Firewall, args: tuple, message: str) -> None:
    fw.ensure_base(["10.214.241.0/24"], ["cfwbad"])
    with pytest.raises(InvalidParameter, match=message):
        fw.add_port(*args)
    assert fw.ports() == []


def test_bad_names_are_invalid() -> None:
    with pytest.raises(InvalidParameter):
        Firewall("filter")
    with pytest.raises(InvalidParameter):
        Firewall("corral_x; flush ruleset")
    fw = Firewall("corral_fwtest_never")
    with pytest.raises(InvalidParameter):
        fw.ensure_base(["10.214.240.0/24"], ['br" accept'])
    with pytest.raises(InvalidParameter):
        fw.ensure_base(["10.214.240.0/33"], ["cfwx"])
    with pytest.raises(InvalidParameter):
        fw.ensure_base(["10.214.240.0/24"], [])
    assert not fw.exists()


# --- parse_publish ----------------------------------------------------------------------------

@pytest.mark.parametrize(("spec", "expected"), [
    ("80", PortMapping(80)),
    ("8080:80", PortMapping(80, "tcp", None, 8080)),
    ("8080:80/udp", PortMapping(80, "udp", None, 8080)),
    ("8080:80/TCP", PortMapping(80, "tcp", None, 8080)),
    ("127.0.0.1:8080:80", PortMapping(80, "tcp", "127.0.0.1", 8080)),
    ("127.0.0.1::80", PortMapping(80, "tcp", "127.0.0.1", 0)),
    (":80/udp", PortMapping(80, "udp", None, 0)),
    ("0.0.0.0:8080:80", PortMapping(80, "tcp", None, 8080)),
    ("[::1]:8080:80", PortMapping(80, "tcp", "::1", 8080)),
    ("[::1]::53/udp", PortMapping(53, "udp", "::1", 0)),
    ("65535:1", PortMapping(1, "tcp", None, 65535)),
    ("0:80", PortMapping(80, "tcp", None, 0)),  # Docker's spelling of "a free port" too
    ("127.0.0.1:0:80", PortMapping(80, "tcp", "127.0.0.1", 0)),
])
def test_parse_publish_valid(spec: str, expected: PortMapping) -> None:
    assert parse_publish(spec) == expected


@pytest.mark.parametrize("spec", [
    "", "abc", "0", "65536", "8080:0", "8080:", "8080:80/sctp", "8080:80/",
    "1.2.3.4.5:8080:80", "localhost:8080:80", "::1:8080:80", "[::1]8080:80", "[::1:8080:80",
    "a:b:c:d", "8000-8010:80", "-1:80", "+80", " 80", "8080:80/udp/tcp",
])
def test_parse_publish_invalid(spec: str) -> None:
    with pytest.raises(InvalidParameter) as info:
        parse_publish(spec)
    assert str(info.value).startswith(f'invalid port specification: "{spec}"')


def test_no_test_leftovers() -> None:
    """Runs last in this file: nothing of ours in nft or in the namespace list."""
    assert "corral_fwtest_" not in nft_tables()
    assert "corral-fwtest-" not in run("ip", "netns", "list")
    assert os.path.exists(NFT)
