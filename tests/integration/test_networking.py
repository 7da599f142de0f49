"""Bridge networking with real namespaces, veths, a bridge and nftables. Traffic goes only to
addresses inside the namespaces and bridges these tests create, and to loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time

import pytest
from waiting import wait_for

from engine import Conflict, InvalidParameter, NotFound, StartFailed
from engine.start.netsteps import SUB_STEP_NAMES, netns_name, veth_name

HTTPD = ["/bin/sh", "-c", "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && "
         "exec httpd -f -p 80 -h /www"]




def run_in(engine, cid: str, *argv: str) -> tuple[int, str]:
    result = engine.exec(cid, list(argv), capture=True)
    return result.exit_code, result.output.decode()


def fetch(engine, cid: str, url: str) -> str:
    code, out = 1, ""
    for _ in range(50):  # httpd may still be starting
        code, out = run_in(engine, cid, "wget", "-q", "-O", "-", url)  # -T crashes this busybox
        if code == 0:
            return out
        time.sleep(0.1)
    raise AssertionError(f"wget {url} failed ({code}): {out}")


def test_two_containers_reach_each_other_by_address_and_link_alias(engine, busybox,
                                                                    probe) -> None:
    server = engine.create(busybox, HTTPD, name="web", hostname="web", expose=["80"])
    engine.start(server)
    ip = engine.inspect(server)["NetworkSettings"]["IPAddress"]
    assert ip
    client = engine.create(busybox, ["/bin/sleep", "60"], name="client",
                           links=["web:site"], env=["MINE=1"])
    engine.start(client)
    # explicit ports: the static busybox's wget cannot look up the "http" service name
    assert fetch(engine, client, f"http://{ip}:80/") == "hello-from-web\n"
    assert fetch(engine, client, "http://site:80/") == "hello-from-web\n"

    _, env = run_in(engine, client, "env")
    env_map = dict(line.split("=", 1) for line in env.splitlines() if "=" in line)
    assert env_map["SITE_NAME"] == "/client/site"
    assert env_map["SITE_PORT"] == f"tcp://{ip}:80"
    assert env_map["SITE_PORT_80_TCP"] == f"tcp://{ip}:80"
    assert env_map["SITE_PORT_80_TCP_ADDR"] == ip
    assert env_map["SITE_PORT_80_TCP_PORT"] == "80"
    assert env_map["SITE_PORT_80_TCP_PROTO"] == "tcp"
    _, hosts = run_in(engine, client, "cat", "/etc/hosts")
    assert f"{ip}\tsite web" in hosts

    for cid in (client, server):
        engine.remove(cid, force=True)
        assert probe.leaks(cid, removed=True) == []


def test_container_has_eth0_default_route_and_hosts(engine, busybox) -> None:
    cid = engine.create(busybox, ["/bin/sleep", "60"], dns=["10.0.0.53"])
    engine.start(cid)
    ip = engine.inspect(cid)["NetworkSettings"]["IPAddress"]
    net = engine.network_inspect("bridge")
    gateway = net["IPAM"]["Config"][0]["Gateway"]
    _, addr = run_in(engine, cid, "ip", "-o", "-4", "addr", "show", "eth0")
    assert f"inet {ip}/" in addr
    _, route = run_in(engine, cid, "ip", "route")
    assert f"default via {gateway} dev eth0" in route
    _, hosts = run_in(engine, cid, "cat", "/etc/hosts")
    assert f"{ip}\t{cid[:12]}" in hosts and "127.0.0.1\tlocalhost" in hosts
    _, resolv = run_in(engine, cid, "cat", "/etc/resolv.conf")
    assert "nameserver 10.0.0.53" in resolv and "127.0.0." not in resolv
    assert net["Containers"] == {cid: {"IPv4Address": ip}}
    engine.remove(cid, force=True)


def test_published_port_answers_on_loopback(engine, busybox, probe) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cid = engine.create(busybox, HTTPD, hostname="pub", publish=[f"{port}:80"])
    engine.start(cid)
    assert engine.inspect(cid)["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"] == str(port)

    def answers() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
                return b"hello-from-pub" in conn.recv(4096)
        except OSError:
            return False

    wait_for(answers)
    engine.remove(cid, force=True)
    assert probe.leaks(cid, removed=True) == []


def test_port_already_allocated_fails_the_start_cleanly(engine, busybox, probe) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    first = engine.create(busybox, ["/bin/sleep", "60"], publish=[f"{port}:80"])
    engine.start(first)
    second = engine.create(busybox, ["/bin/sleep", "60"], publish=[f"{port}:80"])
    with pytest.raises(StartFailed, match="port is already allocated") as info:
        engine.start(second)
    assert info.value.step == "network"
    assert probe.leaks(second) == []
    engine.remove(first, force=True)


def test_container_mode_shares_the_namespace(engine, busybox) -> None:
    owner = engine.create(busybox, ["/bin/sleep", "60"], name="owner")
    engine.start(owner)
    guest = engine.create(busybox, ["/bin/sleep", "60"], network="container:owner")
    engine.start(guest)
    ip = engine.inspect(owner)["NetworkSettings"]["IPAddress"]
    _, mine = run_in(engine, guest, "ip", "-o", "-4", "addr", "show", "eth0")
    assert f"inet {ip}/" in mine
    engine.remove(guest, force=True)
    engine.remove(owner, force=True)


def test_container_mode_needs_a_running_container(engine, busybox, probe) -> None:
    engine.create(busybox, ["/bin/true"], name="sleeper")
    guest = engine.create(busybox, ["/bin/true"], network="container:sleeper")
    with pytest.raises(StartFailed, match="cannot join network of a non running container"):
        engine.start(guest)
    assert probe.leaks(guest) == []


def test_link_to_a_stopped_container_is_refused(engine, busybox, probe) -> None:
    engine.create(busybox, ["/bin/true"], name="down")
    cid = engine.create(busybox, ["/bin/true"], links=["down:alias"])
    with pytest.raises(StartFailed, match="Cannot link to a non running container"):
        engine.start(cid)
    assert probe.leaks(cid) == []


@pytest.mark.parametrize("sub", SUB_STEP_NAMES)
def test_failure_at_each_network_sub_step_leaves_nothing(engine, busybox, probe,
                                                         sub: str) -> None:
    cid = engine.create(busybox, ["/bin/sleep", "60"], publish=["80"])
    engine.fail_points = {f"network.{sub}"}
    with pytest.raises(StartFailed) as info:
        engine.start(cid)
    assert info.value.step == "network" and sub in str(info.value)
    assert engine.inspect(cid)["State"]["ExitCode"] == 128
    assert probe.leaks(cid) == []
    assert not os.path.exists(f"/run/netns/{netns_name(cid)}")
    assert not os.path.exists(f"/sys/class/net/{veth_name(cid)}")
    engine.fail_points = set()
    engine.start(cid)
    engine.remove(cid, force=True)
    assert probe.leaks(cid, removed=True) == []


def test_masquerade_rule_is_installed_and_removed(engine, busybox) -> None:
    cid = engine.create(busybox, ["/bin/sleep", "60"])
    engine.start(cid)
    subnet = engine.network_inspect("bridge")["IPAM"]["Config"][0]["Subnet"]
    table = engine.firewall().table
    listing = subprocess.run(["nft", "list", "table", "inet", table], capture_output=True,
                             text=True).stdout
    assert "masquerade" in listing and subnet.split("/")[0] in listing
    engine.remove(cid, force=True)
    engine.network_prune(include_default=True)
    gone = subprocess.run(["nft", "list", "table", "inet", table], capture_output=True)
    assert gone.returncode != 0


def test_hundred_starts_return_leases_and_links_to_where_they_were(engine, busybox) -> None:
    warm = engine.create(busybox, ["/bin/true"])  # the bridge and firewall exist from here on
    engine.start(warm)
    engine.wait(warm, timeout=10)
    # only the ports of this engine's bridge: other roots' veths come and go meanwhile
    bridge = engine.networks.get("bridge").bridge
    ours = lambda: sorted(os.listdir(f"/sys/class/net/{bridge}/brif"))  # noqa: E731
    links_before = ours()
    leases = engine.networks.leases(engine.networks.get("bridge"))
    assert leases.table() == {}
    for _ in range(100):
        cid = engine.create(busybox, ["/bin/sleep", "60"])
        engine.start(cid)
        engine.remove(cid, force=True)
    assert leases.table() == {}
    assert ours() == links_before


def test_user_defined_network_lifecycle(engine, busybox) -> None:
    net = engine.network_create("backend", subnet="10.214.77.0/24")
    assert net.gateway == "10.214.77.1"
    cid = engine.create(busybox, ["/bin/sleep", "60"], network="backend", ip="10.214.77.50")
    engine.start(cid)
    assert engine.inspect(cid)["NetworkSettings"]["IPAddress"] == "10.214.77.50"
    with pytest.raises(Conflict, match="has active endpoints"):
        engine.network_remove("backend")
    assert [n.name for n in engine.network_list()] == ["bridge", "backend"]
    engine.remove(cid, force=True)
    engine.network_remove("backend")
    assert not os.path.exists(f"/sys/class/net/{net.bridge}")
    with pytest.raises(NotFound, match="network backend not found"):
        engine.network_inspect("backend")


@pytest.mark.parametrize("kwargs,error,match", [
    ({"subnet": "192.0.2.0/24"}, Conflict, "overlaps the host route"),
    ({"subnet": "10.300.0.0/24"}, InvalidParameter, "invalid subnet"),
    ({"subnet": "10.214.9.0/24", "gateway": "10.214.10.1"}, InvalidParameter,
     "invalid gateway"),
])
def test_bad_network_definitions(engine, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        engine.network_create("badnet", **kwargs)
    assert [n.name for n in engine.networks.list()] == []


@pytest.mark.parametrize("kwargs,error,match", [
    ({"network": "nosuchnet"}, NotFound, "network nosuchnet not found"),
    ({"ip": "10.254.254.254"}, InvalidParameter, "not a free host address"),
    ({"publish": ["8080:80", "8080:81"]}, InvalidParameter, "duplicate published port"),
    ({"publish": ["99999:80"]}, InvalidParameter, "99999"),
    ({"links": ["bad/name"]}, InvalidParameter, "invalid link specification"),
    ({"network": "container:ghost"}, NotFound, "No such container: ghost"),
    ({"links": ["ghost:alias"]}, NotFound, "No such container: ghost"),
    ({"network": "host", "publish": ["80:80"]}, InvalidParameter, "need a bridge network"),
])
def test_bad_network_options_write_nothing(engine, busybox, kwargs, error, match) -> None:
    before = sorted(os.listdir(engine.layout.containers))
    with pytest.raises(error, match=match):
        engine.create(busybox, ["/bin/true"], **kwargs)
    assert sorted(os.listdir(engine.layout.containers)) == before


def test_cli_network_commands(root_dir) -> None:
    import sys

    corral = [sys.executable, "-m", "engine", "--root", str(root_dir)]

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(corral + list(args), capture_output=True, text=True)

    assert run("network", "create", "--subnet", "10.214.88.0/24", "front").returncode == 0
    assert "front" in run("network", "ls").stdout
    info = json.loads(run("network", "inspect", "front").stdout)
    assert info[0]["IPAM"]["Config"][0]["Subnet"] == "10.214.88.0/24"
    bad = run("network", "create", "--subnet", "nonsense", "x")
    assert bad.returncode == 1 and bad.stderr.startswith("Error") and "nonsense" in bad.stderr
    assert run("network", "rm", "front").returncode == 0
    gone = run("network", "rm", "front")
    assert gone.returncode == 1 and "not found" in gone.stderr


def test_full_subnet_is_a_clear_error_and_leaks_nothing(engine, busybox, probe) -> None:
    engine.network_create("tiny", subnet="10.214.66.0/30")  # one address besides the gateway
    first = engine.create(busybox, ["/bin/sleep", "60"], network="tiny")
    engine.start(first)
    second = engine.create(busybox, ["/bin/sleep", "60"], network="tiny")
    with pytest.raises(StartFailed, match="no address left in subnet 10.214.66.0/30"):
        engine.start(second)
    assert probe.leaks(second) == []
    engine.remove(first, force=True)
    engine.start(second)  # the address came back
    engine.remove(second, force=True)


def test_leases_of_gone_containers_are_reclaimed_at_engine_start(engine, busybox) -> None:
    from engine import Engine

    leases = engine.networks.leases(engine.networks.get("bridge"))
    leases.lease("f" * 64)  # a container that no longer exists
    cid = engine.create(busybox, ["/bin/sleep", "60"])
    engine.start(cid)
    again = Engine(engine.layout.root, watch=False)
    try:
        assert list(leases.table().values()) == [cid]
    finally:
        again.close()
    engine.remove(cid, force=True)


def test_container_reaches_its_own_published_port_through_the_gateway(engine, busybox) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cid = engine.create(busybox, HTTPD, hostname="self", publish=[f"{port}:80"])
    engine.start(cid)
    gateway = engine.network_inspect("bridge")["IPAM"]["Config"][0]["Gateway"]
    assert fetch(engine, cid, f"http://{gateway}:{port}/") == "hello-from-self\n"
    engine.remove(cid, force=True)


def test_members_of_a_user_network_find_each_other_by_name_and_alias(engine, busybox) -> None:
    engine.network_create("proj", subnet="10.214.55.0/24")
    db = engine.create(busybox, HTTPD, name="proj-db-1", hostname="dbhost",
                       network="proj", aliases=["db"])
    engine.start(db)
    app = engine.create(busybox, ["/bin/sleep", "60"], name="proj-app-1", network="proj",
                        aliases=["app"])
    engine.start(app)
    db_ip = engine.inspect(db)["NetworkSettings"]["IPAddress"]
    assert fetch(engine, app, "http://db:80/") == "hello-from-dbhost\n"
    # the member that started first learns of the later one too
    _, hosts = run_in(engine, db, "cat", "/etc/hosts")
    app_ip = engine.inspect(app)["NetworkSettings"]["IPAddress"]
    assert f"{app_ip}\tproj-app-1 app" in hosts
    engine.stop(app, timeout=1)
    _, hosts = run_in(engine, db, "cat", "/etc/hosts")
    assert "proj-app-1" not in hosts and db_ip in hosts
    for cid in (app, db):
        engine.remove(cid, force=True)
    engine.network_remove("proj")


def test_default_bridge_subnet_and_gateway_are_configurable(root_dir, monkeypatch) -> None:
    from engine import Engine

    monkeypatch.setenv("CORRAL_BRIDGE_SUBNET", "10.214.99.0/24")
    monkeypatch.setenv("CORRAL_BRIDGE_GATEWAY", "10.214.99.254")
    eng = Engine(root_dir, watch=False)
    try:
        cfg = eng.network_inspect("bridge")["IPAM"]["Config"][0]
        assert cfg == {"Subnet": "10.214.99.0/24", "Gateway": "10.214.99.254"}
    finally:
        eng.close()
