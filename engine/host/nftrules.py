"""What the nft driver tells nft: the table's name and tags, the checks of what goes into a
rule, the rules' text. No nft is run here.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

from ..errors import InvalidParameter

TABLE_PREFIX = "corral_"
FAMILY = "inet"
# Host-wide, like iptables' /run/xtables.lock: host ports are shared by every engine root, so
# the check "is this port free" and the rule that takes it must not interleave between roots.
DEFAULT_LOCK = Path("/run/lock/corral-firewall.lock")
CTR_TAG = "ctr "
NET_TAG = "net "
BASE_TAG = "corral base 1"  # bump when BASE_RULES change, so ensure_base rebuilds them
TABLE_COMMENT = "managed by corral; rules are added and removed by the engine"

BASE_RULES: dict[str, list[str]] = {
    # only packets for this host: a container's own traffic elsewhere on the same port passes
    "prerouting": ["fib daddr type local jump published"],
    "output": ["fib daddr type local jump published"],
    "postrouting": [
        # a container cannot answer a loopback source: hide it behind the bridge address
        "oifname @bridges ct status dnat ip saddr 127.0.0.0/8 masquerade",
        "jump outbound",
    ],
    "forward": [
        "ct state established,related accept",
        "iifname @bridges accept",
        "oifname @bridges ct status dnat accept",
    ],
}

_TABLE_RE = re.compile(r"corral_[A-Za-z0-9_]{1,48}")
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_IFNAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,15}")


def table_name(tag: str) -> str:
    """The table of the engine root whose short hash is ``tag``."""
    name = TABLE_PREFIX + tag
    if not _TABLE_RE.fullmatch(name):
        raise InvalidParameter(f"invalid firewall table tag: {tag!r}")
    return name


def _check_id(container_id: str) -> str:
    if not _ID_RE.fullmatch(container_id):
        raise InvalidParameter(f"invalid container id for a port rule: {container_id!r}")
    return container_id


def _check_ifname(name: str) -> str:
    if not _IFNAME_RE.fullmatch(name) or name in (".", ".."):
        raise InvalidParameter(f"invalid bridge name: {name!r}")
    return name


def _check_subnet(subnet: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(subnet, strict=False)
    except ValueError:
        raise InvalidParameter(f"invalid subnet: {subnet!r}") from None


def _check_ip(address: str, what: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        raise InvalidParameter(f"invalid {what}: {address!r}") from None


def _mapping(rule: dict[str, Any]) -> dict[str, Any] | None:
    """A published port read back from one of the rules ``_port_rule`` writes."""
    comment = rule.get("comment", "")
    if not comment.startswith(CTR_TAG):
        return None
    found: dict[str, Any] = {"container_id": comment[len(CTR_TAG):], "host_ip": None}
    for expr in rule.get("expr", []):
        match = expr.get("match")
        if match and "payload" in match.get("left", {}):
            payload = match["left"]["payload"]
            if payload.get("field") == "daddr":
                found["host_ip"] = str(match["right"])
            elif payload.get("field") == "dport":
                found["proto"] = payload.get("protocol")
                found["host_port"] = int(match["right"])
        elif "dnat" in expr:
            found["container_ip"] = str(expr["dnat"].get("addr"))
            found["container_port"] = int(expr["dnat"].get("port", 0))
    if not {"proto", "host_port", "container_ip"} <= found.keys():
        return None  # not a rule of ours after all
    found["handle"] = rule.get("handle")
    return found


def _overlaps(a_ip: str | None, a_v6: bool, b_ip: str | None, b_v6: bool) -> bool:
    if a_v6 != b_v6:
        return False
    return a_ip is None or b_ip is None or a_ip == b_ip


def _outbound_bridge(rule: dict[str, Any]) -> str | None:
    for expr in rule.get("expr", []):
        match = expr.get("match")
        if match and match.get("left", {}).get("meta", {}).get("key") == "oifname":
            return str(match["right"])
    return None


def _masquerade_rules(network: ipaddress.IPv4Network | ipaddress.IPv6Network,
                      bridge: str) -> list[str]:
    family = "ip6" if network.version == 6 else "ip"
    comment = f'comment "{NET_TAG}{network}"'
    return [
        f'{family} saddr {network} oifname != "{bridge}" masquerade {comment}',
        # hairpin: a container reaching a published port through a host address is DNATed back
        # onto its own bridge; unmasqueraded, the answer would come straight from the peer (or
        # from itself, a martian) and be dropped. iifname is no help here: postrouting has none.
        f'{family} saddr {network} oifname "{bridge}" ct status dnat masquerade {comment}',
    ]


def _port_rule(table: str, container_id: str, proto: str, host_ip: str | None, host_port: int,
               target: ipaddress.IPv4Address | ipaddress.IPv6Address, container_port: int) -> str:
    family = "ip6" if target.version == 6 else "ip"
    # a wildcard rule still names its family, so an IPv6 packet never meets an IPv4 DNAT
    match = (f"{family} daddr {host_ip}" if host_ip
             else f"meta nfproto {'ipv6' if target.version == 6 else 'ipv4'}")
    to = f"[{target}]:{container_port}" if target.version == 6 else f"{target}:{container_port}"
    return (f"add rule {table} published {match} {proto} dport {host_port} "
            f'dnat {family} to {to} comment "{CTR_TAG}{container_id}"')
