"""Published ports (``-p``): parsed into mappings, host ports checked free and chosen, as
Docker's port allocator does.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from dataclasses import dataclass

from ..errors import Conflict, InvalidParameter, SystemFailure

PROTOCOLS = ("tcp", "udp")


_RANDOM_PORT_TRIES = 20


class FirewallFailure(SystemFailure):
    """nft failed; the message is nft's own."""


@dataclass(frozen=True)
class PortMapping:
    """One ``-p`` value. ``host_port`` 0 asks for a free port chosen when it is added;
    ``host_ip`` None means every host address."""

    container_port: int
    proto: str = "tcp"
    host_ip: str | None = None
    host_port: int = 0


def _port(text: str, spec: str, what: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise InvalidParameter(
            f'invalid port specification: "{spec}": {what} must be a number from 1 to 65535')
    return int(text)


def parse_publish(spec: str) -> PortMapping:
    """Docker's ``-p [hostip:][hostport:]containerport[/tcp|udp]``; an IPv6 host address goes in
    brackets (``[::1]:8080:80``). No host port (``80``, ``127.0.0.1::80``) means a free one."""
    body, slash, proto = spec.partition("/")
    proto = proto.lower() if slash else "tcp"
    if proto not in PROTOCOLS:
        raise InvalidParameter(
            f'invalid port specification: "{spec}": protocol must be tcp or udp')
    host_ip: str | None = None
    if body.startswith("["):
        address, bracket, rest = body[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise InvalidParameter(f'invalid port specification: "{spec}"')
        host_ip, body = address, rest[1:]
        parts = body.split(":")
        if len(parts) != 2:
            raise InvalidParameter(f'invalid port specification: "{spec}"')
        host_port_text, container_text = parts
    else:
        parts = body.split(":")
        if len(parts) == 1:
            host_port_text, container_text = "", parts[0]
        elif len(parts) == 2:
            host_port_text, container_text = parts
        elif len(parts) == 3:
            host_ip, host_port_text, container_text = parts
        else:
            raise InvalidParameter(f'invalid port specification: "{spec}"')
    if host_ip is not None:
        try:
            host_ip = str(ipaddress.ip_address(host_ip))
        except ValueError:
            raise InvalidParameter(
                f'invalid port specification: "{spec}": invalid IP address {host_ip!r}') from None
        if ipaddress.ip_address(host_ip).is_unspecified:
            host_ip = None  # 0.0.0.0 is Docker's spelling of "every address"
    if "-" in host_port_text or "-" in container_text:
        raise InvalidParameter(
            f'invalid port specification: "{spec}": port ranges are not supported')
    container_port = _port(container_text, spec, "container port")
    # no host port, or 0 (Docker's spelling too): a free one
    host_port = (_port(host_port_text, spec, "host port")
                 if host_port_text and host_port_text != "0" else 0)
    return PortMapping(container_port=container_port, proto=proto, host_ip=host_ip,
                       host_port=host_port)


def _show(host_ip: str | None, port: int) -> str:
    address = host_ip or "0.0.0.0"
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _allocated(host_ip: str | None, port: int) -> Conflict:
    return Conflict(f"Bind for {_show(host_ip, port)} failed: port is already allocated")


def _probe_socket(proto: str, host_ip: str | None, port: int, v6: bool) -> socket.socket:
    family = socket.AF_INET6 if v6 else socket.AF_INET
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(family, kind)
    try:
        if v6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if proto == "tcp":
            # Linux still refuses the bind when a socket listens on the port, but lets it pass
            # over TIME_WAIT leftovers of past connections, which are no owner of the port.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host_ip or ("::" if v6 else "0.0.0.0"), port))
    except BaseException:
        sock.close()
        raise
    return sock


def _host_port_free(proto: str, host_ip: str | None, port: int, v6: bool) -> bool:
    try:
        _probe_socket(proto, host_ip, port, v6).close()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return False
        if exc.errno == errno.EADDRNOTAVAIL:
            raise InvalidParameter(
                f"cannot publish on {host_ip}: not an address of this host") from exc
        raise FirewallFailure(f"checking host port {_show(host_ip, port)}: {exc}") from exc
    return True


def _free_host_port(proto: str, host_ip: str | None, v6: bool) -> int:
    """A port from the kernel's ephemeral range that nothing on the host holds, as Docker picks
    one for ``-p 80``."""
    try:
        sock = _probe_socket(proto, host_ip, 0, v6)
    except OSError as exc:
        raise FirewallFailure(f"choosing a host port: {exc}") from exc
    with sock:
        return int(sock.getsockname()[1])
