"""Address leases of one network, persisted with the engine's state under a file lock.

A lease lives as long as its container's process: taken by the network step, given back by
its undo, by remove, and by reconciliation when the container is no longer active.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path

from ..errors import InvalidParameter, SystemFailure
from ..store.files import atomic_write_json, file_lock, read_json


class SubnetFull(SystemFailure):
    pass


class Leases:
    def __init__(self, path: Path, subnet: str, gateway: str) -> None:
        self.path = path
        self.lock = path.with_suffix(".lock")
        self.subnet = ipaddress.ip_network(subnet)
        self.gateway = ipaddress.ip_address(gateway)

    def _read(self) -> dict[str, str]:
        try:
            data = read_json(self.path)
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise SystemFailure(f"lease table {self.path} is unreadable: {exc}") from exc
        return {str(k): str(v) for k, v in data.items()}

    def table(self) -> dict[str, str]:
        """address -> container id."""
        with file_lock(self.lock):
            return self._read()

    def lease(self, cid: str, wanted: str | None = None) -> str:
        """An address for ``cid`` (the one it already holds, ``wanted``, or the lowest free)."""
        with file_lock(self.lock):
            table = self._read()
            for ip, owner in table.items():
                if owner == cid and (wanted is None or ip == wanted):
                    return ip
            if wanted is not None:
                ip = self.check_static(wanted)
                if ip in table:
                    raise InvalidParameter(f"address {wanted} is already in use")
            else:
                ip = self._first_free(table)
            table[ip] = cid
            atomic_write_json(self.path, table)
            return ip

    def check_static(self, wanted: str) -> str:
        try:
            addr = ipaddress.ip_address(wanted)
        except ValueError as exc:
            raise InvalidParameter(f"invalid IP address: {wanted!r}") from exc
        if addr not in self.subnet or addr in (self.subnet.network_address,
                                                self.subnet.broadcast_address, self.gateway):
            raise InvalidParameter(f"invalid address {wanted}: it is not a free host address "
                                   f"of the subnet {self.subnet}")
        return str(addr)

    def _first_free(self, table: dict[str, str]) -> str:
        for addr in self.subnet.hosts():
            if addr != self.gateway and str(addr) not in table:
                return str(addr)
        raise SubnetFull(f"no address left in subnet {self.subnet}: all "
                         f"{self.subnet.num_addresses - 3} are leased")

    def release(self, cid: str) -> None:
        """Give back every address ``cid`` holds (idempotent)."""
        with file_lock(self.lock):
            table = self._read()
            kept = {ip: owner for ip, owner in table.items() if owner != cid}
            if kept != table:
                atomic_write_json(self.path, kept)

    def reclaim(self, still_active: Callable[[str], bool]) -> list[str]:
        """Give back the leases of containers that are gone or not running; return them."""
        with file_lock(self.lock):
            table = self._read()
            kept = {ip: owner for ip, owner in table.items() if still_active(owner)}
            if kept != table:
                atomic_write_json(self.path, kept)
            return sorted(set(table) - set(kept))
