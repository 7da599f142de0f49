"""The files the engine makes for a container: /etc/hosts, /etc/resolv.conf, /etc/hostname."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

LOCALHOST_LINES = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)


def hosts_content(hostname: str, address: str | None = None,
                  extra: list[tuple[str, str]] | None = None) -> str:
    lines = [LOCALHOST_LINES]
    for ip, names in extra or []:
        lines.append(f"{ip}\t{names}\n")
    if address:
        lines.append(f"{address}\t{hostname}\n")
    return "".join(lines)


def _is_loopback(value: str) -> bool:
    try:
        return ipaddress.ip_address(value.split("%")[0]).is_loopback
    except ValueError:
        return False


def resolv_content(host_resolv: str, dns: list[str] | None = None,
                   keep_loopback: bool = False) -> str:
    """The host's resolv.conf without loopback name servers (unreachable from a namespace)."""
    out = []
    for line in host_resolv.splitlines():
        fields = line.split()
        if dns and fields[:1] == ["nameserver"]:
            continue
        if fields[:1] == ["nameserver"] and len(fields) > 1 and not keep_loopback \
                and _is_loopback(fields[1]):
            continue
        out.append(line)
    out.extend(f"nameserver {d}" for d in dns or [])
    return "\n".join(out) + "\n"


def read_host_resolv(path: Path = Path("/etc/resolv.conf")) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def rewrite_in_place(path: Path, text: str) -> None:
    """Replace a bind-mounted file's content without a new inode (a rename would leave the
    container looking at the old file); a reader never sees it empty."""
    data = text.encode()
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)
