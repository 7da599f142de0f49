"""Capabilities added and dropped, namespaced sysctls: seen from inside real containers, and
refused at create (nothing written) when Docker would refuse them."""

from __future__ import annotations

import pytest
from clirun import corral

from engine import InvalidParameter
from engine.start.spec import ALL_CAPABILITIES


def caps_inside(engine, busybox, **kwargs) -> set[str]:
    cid = engine.create(busybox, ["/bin/sh", "-c", "grep CapEff /proc/self/status"], **kwargs)
    engine.start(cid)
    engine.wait(cid, timeout=20)
    text = "".join(r.text for r in engine.logs(cid))
    engine.remove(cid, force=True)
    mask = int(text.split()[1], 16)
    return {c for bit, c in enumerate(ALL_CAPABILITIES) if mask >> bit & 1}


def test_cap_add_and_cap_drop(engine, busybox) -> None:
    default = caps_inside(engine, busybox)
    assert "CAP_NET_ADMIN" not in default and "CAP_CHOWN" in default
    changed = caps_inside(engine, busybox, cap_add=["NET_ADMIN"], cap_drop=["chown"])
    assert changed == (default | {"CAP_NET_ADMIN"}) - {"CAP_CHOWN"}
    assert caps_inside(engine, busybox, cap_drop=["ALL"], cap_add=["CAP_KILL"]) == {"CAP_KILL"}
    assert "CAP_SYS_ADMIN" in caps_inside(engine, busybox, cap_add=["ALL"])


def test_added_capability_works_inside(engine, busybox) -> None:
    cmd = ["/bin/sh", "-c", "ip addr add 10.254.254.254/32 dev lo && echo made"]
    for kwargs, expected in (({}, ""), ({"cap_add": ["NET_ADMIN"]}, "made")):
        cid = engine.create(busybox, cmd, **kwargs)
        engine.start(cid)
        engine.wait(cid, timeout=20)
        out = "".join(r.text for r in engine.logs(cid) if r.stream == "stdout").strip()
        engine.remove(cid, force=True)
        assert out == expected


def test_namespaced_sysctls_are_set_inside(engine, busybox) -> None:
    cid = engine.create(busybox, ["/bin/sh", "-c",
                                  "cat /proc/sys/net/ipv4/ip_unprivileged_port_start "
                                  "/proc/sys/kernel/shmmni /proc/sys/fs/mqueue/msg_max"],
                        sysctls={"net.ipv4.ip_unprivileged_port_start": 80,
                                 "kernel.shmmni": "1024", "fs.mqueue.msg_max": 20})
    engine.start(cid)
    engine.wait(cid, timeout=20)
    assert [r.text.strip() for r in engine.logs(cid)] == ["80", "1024", "20"]
    assert engine.inspect(cid)["HostConfig"]["Sysctls"]["kernel.shmmni"] == "1024"
    engine.remove(cid, force=True)


@pytest.mark.parametrize("kwargs, match", [
    ({"sysctls": {"kernel.domainname": "x"}}, "sysctl 'kernel.domainname' is not allowed"),
    ({"sysctls": {"vm.swappiness": "1"}}, "sysctl 'vm.swappiness' is not allowed"),
    ({"sysctls": {"net.ipv4.ip_forward": "1"}, "network": "host"},
     "not allowed with the host network namespace"),
    ({"sysctls": {"kernel.shmmax": "1"}, "ipc": "host"},
     "not allowed with the host IPC namespace"),
    ({"sysctls": {"net..x": "1"}}, "invalid sysctl name"),
    ({"sysctls": {"net.ipv4/../x": "1"}}, "invalid sysctl name"),
    ({"cap_add": ["CAP_FLY"]}, "unknown capability: 'CAP_FLY'"),
    ({"cap_drop": ["nope"]}, "unknown capability: 'nope'"),
])
def test_refused_at_create(engine, busybox, kwargs, match) -> None:
    with pytest.raises(InvalidParameter, match=match):
        engine.create(busybox, ["true"], **kwargs)
    assert engine.list(all=True) == []


def test_cli_flags(root_dir, busybox) -> None:
    out = corral(root_dir, "run", "--rm", "--cap-add", "NET_ADMIN", "--cap-drop", "ALL",
                 "--sysctl", "net.ipv4.ping_group_range=0 1", "busybox", "sh", "-c",
                 "grep CapEff /proc/self/status; cat /proc/sys/net/ipv4/ping_group_range")
    assert out.returncode == 0, out.stderr
    assert "0000000000001000" in out.stdout  # CAP_NET_ADMIN alone
    assert out.stdout.split()[-2:] == ["0", "1"]
    bad = corral(root_dir, "create", "--sysctl", "kernel.hostname=x", "busybox")
    assert bad.returncode != 0 and "sysctl 'kernel.hostname' is not allowed" in bad.stderr
    bad = corral(root_dir, "create", "--sysctl", "novalue", "busybox")
    assert bad.returncode != 0 and "invalid sysctl 'novalue': expected KEY=VALUE" in bad.stderr
