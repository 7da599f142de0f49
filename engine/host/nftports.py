"""The firewall's published ports: DNAT rules per container, free host ports chosen.
"""

from __future__ import annotations

from typing import Any

from ..errors import Conflict, InvalidParameter
from .nftrules import (
    CTR_TAG,
    FAMILY,
    TABLE_PREFIX,
    _check_id,
    _check_ip,
    _mapping,
    _overlaps,
    _port_rule,
)
from .ports import (
    _RANDOM_PORT_TRIES,
    PROTOCOLS,
    FirewallFailure,
    PortMapping,
    _allocated,
    _free_host_port,
    _host_port_free,
    _show,
)


class _PublishedPorts:
    """The firewall's published ports."""

    def add_port(self, container_id: str, proto: str, host_ip: str | None, host_port: int,
                 container_ip: str, container_port: int) -> dict[str, Any]:
        """Publish one port; ``host_port`` 0 picks a free one. Returns the mapping installed."""
        mapping = PortMapping(container_port=container_port, proto=proto, host_ip=host_ip,
                              host_port=host_port)
        return self.add_ports(container_id, container_ip, [mapping])[0]

    def add_ports(self, container_id: str, container_ip: str,
                  mappings: list[PortMapping]) -> list[dict[str, Any]]:
        """Publish all of a container's ports in one transaction: either every one is installed
        or none. Refused with ``Conflict`` ("port is already allocated") when a mapping of any
        engine root, or a socket listening on the host, holds a port."""
        _check_id(container_id)
        target = _check_ip(container_ip, "container address")
        v6 = target.version == 6
        wanted = [self._normalize(m, v6) for m in mappings]
        t = self._ref
        with self._locked():
            taken = self._all_published()
            if self.table not in taken:
                raise FirewallFailure(f"table {self._ref} is not set up (ensure_base first)")
            held = [(p["proto"], p["host_ip"], p["host_port"], ":" in p["container_ip"])
                    for ports in taken.values() for p in ports]
            installed: list[dict[str, Any]] = []
            cmds: list[str] = []
            for m in wanted:
                host_port = m.host_port or self._pick_port(m, v6, held)
                for proto, ip, port, other_v6 in held:
                    if (proto == m.proto and port == host_port
                            and _overlaps(ip, other_v6, m.host_ip, v6)):
                        raise _allocated(m.host_ip, host_port)
                if m.host_port and not _host_port_free(m.proto, m.host_ip, host_port, v6):
                    raise _allocated(m.host_ip, host_port)
                held.append((m.proto, m.host_ip, host_port, v6))
                cmds.append(_port_rule(t, container_id, m.proto, m.host_ip, host_port,
                                       target, m.container_port))
                installed.append({"container_id": container_id, "proto": m.proto,
                                  "host_ip": m.host_ip, "host_port": host_port,
                                  "container_ip": str(target),
                                  "container_port": m.container_port})
            self._apply(cmds)
        return installed

    def _normalize(self, m: PortMapping, v6: bool) -> PortMapping:
        if m.proto not in PROTOCOLS:
            raise InvalidParameter(f"invalid protocol {m.proto!r}: expected tcp or udp")
        if not isinstance(m.container_port, int) or not 1 <= m.container_port <= 65535:
            raise InvalidParameter(f"invalid container port: {m.container_port!r}")
        # 0 is no port but the request for a free one
        if not isinstance(m.host_port, int) or not 0 <= m.host_port <= 65535:
            raise InvalidParameter(f"invalid host port: {m.host_port!r}")
        host_ip = m.host_ip
        if host_ip is not None:
            address = _check_ip(host_ip, "host address")
            if address.is_unspecified:
                host_ip = None
            elif (address.version == 6) != v6:
                raise InvalidParameter(
                    f"cannot publish {_show(host_ip, m.host_port)} to an IPv"
                    f"{6 if v6 else 4} container address: address families differ")
            else:
                host_ip = str(address)
        return PortMapping(m.container_port, m.proto, host_ip, m.host_port)

    def _pick_port(self, m: PortMapping, v6: bool,
                   held: list[tuple[str, str | None, int, bool]]) -> int:
        for _ in range(_RANDOM_PORT_TRIES):
            port = _free_host_port(m.proto, m.host_ip, v6)
            if not any(p == m.proto and n == port and _overlaps(i, h6, m.host_ip, v6)
                       for p, i, n, h6 in held):
                return port
        raise Conflict(f"no free host port for {m.container_port}/{m.proto}")

    def _all_published(self) -> dict[str, list[dict[str, Any]]]:
        """Published ports of every engine root's table (host ports are one host-wide
        resource), keyed by table; this table is present, maybe empty, when it exists."""
        found: dict[str, list[dict[str, Any]]] = {}
        for o in self._objects(self._run(["-j", "list", "ruleset", FAMILY])):
            if "table" in o and o["table"].get("name", "").startswith(TABLE_PREFIX):
                found.setdefault(o["table"]["name"], [])
            rule = o.get("rule")
            if (rule and rule.get("table", "").startswith(TABLE_PREFIX)
                    and rule.get("chain") == "published"):
                mapping = _mapping(rule)
                if mapping is not None:
                    found.setdefault(rule["table"], []).append(mapping)
        return found

    def remove_ports(self, container_id: str) -> int:
        """Remove every rule tagged with ``container_id``; returns how many. Idempotent, and a
        missing table counts as nothing to remove."""
        _check_id(container_id)
        if self._cannot_run():
            return 0
        with self._locked():
            rules = [r for r in self._rules("published", self._listing())
                     if r.get("comment") == f"{CTR_TAG}{container_id}"]
            self._apply([f"delete rule {self._ref} published handle {r['handle']}"
                         for r in rules])
        return len(rules)

    def ports(self) -> list[dict[str, Any]]:
        """The installed mappings: container_id, proto, host_ip (None: every address),
        host_port, container_ip, container_port."""
        out = []
        for rule in self._rules("published", self._listing()):
            mapping = _mapping(rule)
            if mapping is not None:
                mapping.pop("handle", None)
                out.append(mapping)
        return out
