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
from engine.netsteps import extra_veth_name, netns_name


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
