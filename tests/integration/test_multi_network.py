"""A container on several networks: a veth, a lease and an address on each, names on each,
everything undone at stop and at a failed start. Traffic stays inside the bridges made here."""

from __future__ import annotations

import os
import subprocess

import pytest
from clirun import corral
from test_networking import HTTPD, run_in
from test_networking import fetch as wget

from engine import CorralError, StartFailed
from engine.start.netsteps import extra_veth_name, netns_name


@pytest.fixture
def two_networks(engine):
    engine.network_create("front")
    engine.network_create("back")
    yield engine.networks.get("front"), engine.networks.get("back")
    for name in ("front", "back"):
        for c in engine.list(all=True):
            engine.remove(c["Id"], force=True)
        engine.network_remove(name)


def test_container_on_two_networks_reaches_both_by_name(engine, busybox, two_networks,
                                                        probe) -> None:
    front, back = two_networks
    web = engine.create(busybox, HTTPD, name="web", network="front", aliases=["www"])
    db = engine.create(busybox, HTTPD, name="db", hostname="dbhost", network="back",
                       aliases=["database"])
    app = engine.create(busybox, ["/bin/sleep", "60"], name="app", network="front",
                        networks=[{"name": "back", "aliases": ["api"]}])
    for cid in (web, db, app):
        engine.start(cid)
    nets = engine.inspect(app)["NetworkSettings"]["Networks"]
    assert set(nets) == {"front", "back"}
    assert nets["back"]["Aliases"] == ["api"]
    _, addrs = run_in(engine, app, "ip", "-o", "-4", "addr")
    assert nets["front"]["IPAddress"] in addrs and "eth0" in addrs
    assert nets["back"]["IPAddress"] in addrs and "eth1" in addrs
    _, routes = run_in(engine, app, "ip", "route")
    assert f"default via {front.gateway} dev eth0" in routes  # one gateway: the first network
    assert wget(engine, app, "http://www/") == f"hello-from-{web[:12]}\n"
    assert wget(engine, app, "http://database/") == "hello-from-dbhost\n"
    # the members of the second network learn of the newcomer under its alias there
    _, hosts = run_in(engine, db, "cat", "/etc/hosts")
    assert f"{nets['back']['IPAddress']}\tapp api" in hosts
    leases = engine.network_inspect("back")["Containers"]
    assert leases[app]["IPv4Address"] == nets["back"]["IPAddress"]
    with pytest.raises(Exception, match="active endpoints"):
        engine.network_remove("back")
    engine.stop(app, timeout=1)
    assert not os.path.exists(f"/sys/class/net/{extra_veth_name(app, 1)}")
    assert app not in engine.network_inspect("back")["Containers"]
    _, hosts = run_in(engine, db, "cat", "/etc/hosts")
    assert "api" not in hosts
    assert engine.inspect(app)["NetworkSettings"]["Networks"] == {}
    engine.remove(app)
    assert probe.leaks(app, removed=True) == []


def test_failure_on_the_further_network_undoes_everything(engine, busybox, two_networks,
                                                          probe) -> None:
    cid = engine.create(busybox, ["/bin/sleep", "60"], network="front", networks=["back"])
    for point in ("network.networks", "network.files", "network.ports"):
        engine.fail_points = {point}
        with pytest.raises(StartFailed):
            engine.start(cid)
        assert probe.leaks(cid) == [], point
        assert not os.path.exists(f"/run/netns/{netns_name(cid)}")
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        assert f"vx{cid[:10]}" not in links
    engine.fail_points = set()
    engine.start(cid)
    engine.remove(cid, force=True)
    assert probe.leaks(cid, removed=True) == []


@pytest.mark.parametrize("kwargs, match", [
    ({"network": "host", "networks": ["back"]}, "cannot be combined"),
    ({"network": "front", "networks": ["front"]}, "given twice"),
    ({"network": "front", "networks": ["nope"]}, "network nope not found"),
    ({"network": "front", "networks": ["none"]}, "cannot be joined"),
    ({"network": "front", "networks": [{"name": "back", "mac": "x"}]}, "invalid network"),
])
def test_bad_further_networks_are_refused_at_create(engine, busybox, two_networks, kwargs,
                                                    match) -> None:
    with pytest.raises(CorralError, match=match):
        engine.create(busybox, ["true"], **kwargs)
    assert engine.list(all=True) == []


def test_cli_network_given_twice(root_dir, busybox) -> None:
    for name in ("n1", "n2"):
        assert corral(root_dir, "network", "create", name).returncode == 0
    out = corral(root_dir, "run", "--rm", "--network", "n1", "--network", "n2", "busybox",
                 "ip", "-o", "-4", "addr")
    assert out.returncode == 0, out.stderr
    assert "eth0" in out.stdout and "eth1" in out.stdout
    for name in ("n1", "n2"):
        assert corral(root_dir, "network", "rm", name).returncode == 0


def test_network_connect_and_disconnect_a_running_container(engine, busybox, two_networks,
                                                            probe) -> None:
    db = engine.create(busybox, HTTPD, name="db", hostname="dbhost", network="back")
    app = engine.create(busybox, ["/bin/sleep", "60"], name="app", network="front")
    for cid in (db, app):
        engine.start(cid)
    engine.network_connect("back", "app", aliases=["api"])
    nets = engine.inspect(app)["NetworkSettings"]["Networks"]
    assert set(nets) == {"front", "back"} and nets["back"]["Aliases"] == ["api"]
    assert wget(engine, app, "http://dbhost/") == "hello-from-dbhost\n"
    _, hosts = run_in(engine, db, "cat", "/etc/hosts")
    assert f"{nets['back']['IPAddress']}\tapp api" in hosts
    with pytest.raises(CorralError, match="already exists in network back"):
        engine.network_connect("back", "app")
    with pytest.raises(CorralError, match="first network"):
        engine.network_disconnect("front", "app")
    # a restart keeps the network: it is in the container's config
    engine.stop(app, timeout=1)
    engine.start(app)
    assert set(engine.inspect(app)["NetworkSettings"]["Networks"]) == {"front", "back"}
    engine.network_disconnect("back", "app")
    assert set(engine.inspect(app)["NetworkSettings"]["Networks"]) == {"front"}
    _, links = run_in(engine, app, "ip", "-o", "link")
    assert "eth1" not in links
    _, hosts = run_in(engine, db, "cat", "/etc/hosts")
    assert "api" not in hosts
    assert app not in engine.network_inspect("back")["Containers"]
    with pytest.raises(CorralError, match="not connected"):
        engine.network_disconnect("back", "app")
    engine.remove(app, force=True)
    assert probe.leaks(app, removed=True) == []


def test_network_connect_of_a_created_container_applies_at_start(root_dir, busybox) -> None:
    for name in ("c1", "c2"):
        assert corral(root_dir, "network", "create", name).returncode == 0
    assert corral(root_dir, "create", "--name", "box", "--network", "c1", "busybox",
                  "sleep", "60").returncode == 0
    out = corral(root_dir, "network", "connect", "--alias", "b", "c2", "box")
    assert out.returncode == 0, out.stderr
    assert corral(root_dir, "start", "box").returncode == 0
    out = corral(root_dir, "exec", "box", "ip", "-o", "-4", "addr")
    assert "eth0" in out.stdout and "eth1" in out.stdout
    out = corral(root_dir, "network", "disconnect", "c2", "box")
    assert out.returncode == 0, out.stderr
    assert "eth1" not in corral(root_dir, "exec", "box", "ip", "-o", "link").stdout
    assert corral(root_dir, "rm", "-f", "box").returncode == 0
    for name in ("c1", "c2"):
        assert corral(root_dir, "network", "rm", name).returncode == 0


def test_refused_connect_changes_nothing(engine, busybox, two_networks, probe) -> None:
    db = engine.create(busybox, ["/bin/sleep", "60"], network="back")
    app = engine.create(busybox, ["/bin/sleep", "60"], network="front")
    for cid in (db, app):
        engine.start(cid)
    taken = engine.inspect(db)["NetworkSettings"]["IPAddress"]
    with pytest.raises(CorralError, match=taken):
        engine.network_connect("back", app, ip=taken)
    with pytest.raises(CorralError, match="cannot join other networks"):
        host = engine.create(busybox, ["true"], network="host")
        engine.network_connect("back", host)
    assert set(engine.inspect(app)["NetworkSettings"]["Networks"]) == {"front"}
    assert engine.inspect(app)["HostConfig"]["NetworkMode"] == "front"
    assert app not in engine.network_inspect("back")["Containers"]
    left = probe.network_leaks(app)
    assert not [x for x in left if "back.leases" in x or f"vx{app[:10]}" in x], left


def test_connect_and_disconnect_are_events(engine, busybox, two_networks) -> None:
    app = engine.create(busybox, ["/bin/sleep", "60"], network="front", networks=["back"])
    seen: list[tuple[str, str]] = []
    engine.subscribe(lambda ev: seen.append((ev.action, ev.attributes.get("name", "")))
                     if ev.type == "network" else None)
    engine.start(app)
    assert sorted(seen) == [("connect", "back"), ("connect", "front")]
    seen.clear()
    engine.network_disconnect("back", app)
    engine.network_connect("back", app)
    assert seen == [("disconnect", "back"), ("connect", "back")]
    seen.clear()
    engine.stop(app, timeout=1)
    assert sorted(seen) == [("disconnect", "back"), ("disconnect", "front")]
