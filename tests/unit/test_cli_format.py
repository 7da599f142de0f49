"""What ps, inspect, events and port print (engine.cli.format), on made-up records."""

from __future__ import annotations

import time

import pytest

from engine.cli.format import (
    ContainerFilter,
    display_ports,
    event_filter,
    event_lines_format,
    event_stamp,
    inspect_lines,
    port_lines,
    ps_lines,
    tabwrite,
)
from engine.errors import InvalidParameter, NotFound
from engine.store.events import Event

NOW = time.time()


def _info(name: str, state: str = "running", **extra: object) -> dict:
    created = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(NOW - 30))
    started = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(NOW - 20))
    return {"Id": name * 32 if len(name) == 2 else (name * 64)[:64], "Name": name,
            "Image": "busybox", "ImageID": "f" * 64, "Command": "sleep 30", "Created": created,
            "State": state, "ExitCode": 0, "Health": "", "StartedAt": started,
            "FinishedAt": started, "Labels": {}, "Ports": [], "Expose": [],
            "Network": "bridge", "Mounts": []} | extra


def test_ports_column_as_docker() -> None:
    ports = [{"host_ip": None, "proto": "tcp", "container_port": 80, "host_port": 8080},
             {"host_ip": None, "proto": "tcp", "container_port": 81, "host_port": 8081},
             {"host_ip": "127.0.0.1", "proto": "udp", "container_port": 53, "host_port": 5353}]
    assert display_ports(ports, ["90/tcp", "80/tcp"]) == (
        "0.0.0.0:8080-8081->80-81/tcp, 127.0.0.1:5353->53/udp, 90/tcp")
    assert display_ports([]) == ""


def test_ps_default_table_and_templates() -> None:
    web = _info("web", Ports=[{"host_ip": None, "proto": "tcp", "container_port": 80,
                               "host_port": 8080}], Labels={"tier": "front"},
                Command="sh -c 'while true; do sleep 1; done'")
    lines = ps_lines([web], None, quiet=False, trunc=True, size=False, now=NOW,
                     size_of=lambda i: (0, 0))
    assert lines[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS",
                                "PORTS", "NAMES"]
    assert '"sh -c \'while true; …"' in lines[1]  # 20 wide with the ellipsis
    assert "0.0.0.0:8080->80/tcp" in lines[1] and lines[1].endswith("web")
    assert "30 seconds ago" in lines[1] and "Up 20 seconds" in lines[1]
    sized = ps_lines([web], None, quiet=False, trunc=True, size=True, now=NOW,
                     size_of=lambda i: (0, 1_234_567))
    assert sized[0].endswith("SIZE") and sized[1].endswith("0B (virtual 1.23MB)")
    assert ps_lines([web], '{{.Names}} {{.Label "tier"}} {{.State}}', quiet=False,
                    trunc=True, size=False, now=NOW, size_of=lambda i: (0, 0)) == [
                        "web front running"]
    table = ps_lines([web], "table {{.ID}}\\t{{.Names}}", quiet=False, trunc=True,
                     size=False, now=NOW, size_of=lambda i: (0, 0))
    assert table == ["CONTAINER ID   NAMES", f"{web['Id'][:12]}   web"]
    (js,) = ps_lines([web], "{{json .}}", quiet=False, trunc=True, size=False, now=NOW,
                     size_of=lambda i: (0, 0))
    assert '"Names":"web"' in js and '"Ports":"0.0.0.0:8080-\\u003e80/tcp"' in js
    assert ps_lines([web], "{{.Names}}", quiet=True, trunc=True, size=False, now=NOW,
                    size_of=lambda i: (0, 0)) == [web["Id"][:12]]


def test_tabwriter_pads_as_docker() -> None:
    assert tabwrite(["A\tB\tC", "longer value\tx\ty"]) == [
        "A              B         C", "longer value   x         y"]


def test_ps_filters_combine_as_docker() -> None:
    a = _info("aa", Labels={"env": "prod", "tier": "db"}, Image="redis")
    b = _info("bb", state="dead", ExitCode=3, Labels={"env": "dev"})
    c = _info("cc", state="created", StartedAt="0001-01-01T00:00:00Z")
    everything = [a, b, c]

    def kept(*items: str) -> list[str]:
        f = ContainerFilter(list(items))
        return [i["Name"] for i in everything if f(i)]

    assert kept("name=a") == ["aa"]
    assert kept("name=aa", "name=bb") == ["aa", "bb"]          # one key: OR
    assert kept("label=env=prod", "label=tier") == ["aa"]      # labels: all must match
    assert kept("label=env", "status=exited") == ["bb"]        # keys: AND
    assert kept("status=created") == ["cc"]
    assert kept("exited=3") == ["bb"] and kept("exited=0") == []
    assert kept("ancestor=redis") == ["aa"] and kept("ancestor=busybox:latest") == ["bb", "cc"]
    assert kept(f"id={a['Id'][:6]}") == ["aa"]
    assert ContainerFilter(["status=running"]).wants_all
    a["Created"], b["Created"], c["Created"] = "2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z", \
        "2026-01-01T00:00:03Z"
    f = ContainerFilter(["since=aa", "before=cc"])
    f.bind(everything)
    assert [i["Name"] for i in everything if f(i)] == ["bb"]
    with pytest.raises(NotFound, match="No such container: zz"):
        ContainerFilter(["since=zz"]).bind(everything)
    for bad, message in (("colour=red", "invalid filter 'colour'"),
                         ("status=sleeping", "invalid filter 'status=sleeping'"),
                         ("exited=x", "invalid filter 'exited=x'"),
                         ("name", "expected name=value")):
        with pytest.raises(InvalidParameter, match=message):
            ContainerFilter([bad])


def test_inspect_format_errors_name_the_key() -> None:
    obj = {"State": {"Status": "running"}, "Config": {"Labels": {}}}
    assert inspect_lines([obj, obj], "{{.State.Status}}") == ["running", "running"]
    with pytest.raises(InvalidParameter, match='map has no entry for key "Stat"'):
        inspect_lines([obj], "{{.Stat}}")


def test_event_lines_filters_and_stamps() -> None:
    ev = Event(1796029200.123456789, "container", "exec_start: sh -c true", "ab" * 32,
               {"name": "web", "image": "busybox", "env": "prod", "execID": "e1"})
    net = Event(1796029200.5, "network", "connect", "cd" * 32,
                {"name": "bridge", "container": "ab" * 32, "type": "bridge"})
    assert event_stamp(1796029200_123456789).endswith(".123456789Z") or \
        event_stamp(1796029200_123456789)[-6] in "+-"
    assert event_lines_format(None)(net).endswith(
        f"network connect {'cd' * 32} (container={'ab' * 32}, name=bridge, type=bridge)")
    assert event_lines_format("{{.Action}} {{.Actor.Attributes.name}} {{.Status}}")(ev) == \
        "exec_start: sh -c true web exec_start: sh -c true"
    assert event_lines_format("json")(net).startswith('{"Type":"network"')
    assert event_filter(["event=exec_start"])(ev) and not event_filter(["event=exec"])(ev)
    assert event_filter(["container=we"])(ev) and not event_filter(["container=web"])(net)
    assert event_filter(["network=bridge"])(net) and not event_filter(["network=bridge"])(ev)
    assert event_filter(["label=env=prod", "type=container"])(ev)
    assert not event_filter(["label=env=prod", "label=tier"])(ev)
    assert event_filter(["type=network", "type=container"])(net)
    with pytest.raises(InvalidParameter, match="invalid filter 'colour'"):
        event_filter(["colour=red"])


def test_port_lines() -> None:
    info = {"Name": "/web", "State": {"Running": True},
            "NetworkSettings": {"Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "32768"}],
                                          "53/udp": [{"HostIp": "0.0.0.0", "HostPort": "53"}]}}}
    assert port_lines(info, None) == ["53/udp -> 0.0.0.0:53", "80/tcp -> 0.0.0.0:32768"]
    assert port_lines(info, "80") == ["0.0.0.0:32768"]
    with pytest.raises(InvalidParameter, match="No public port '81/tcp' published for web"):
        port_lines(info, "81")
