"""The kernel's forwarding switches a bridge network needs (sysctls), set and restored.
"""

from __future__ import annotations

from pathlib import Path

from .nftrules import _check_ifname
from .ports import FirewallFailure


def _sysctl_file(key: str) -> Path:
    # an interface name may hold dots, which stay dots in its /proc/sys folder
    prefix, suffix = "net.ipv4.conf.", ".route_localnet"
    if key.startswith(prefix) and key.endswith(suffix):
        return Path("/proc/sys/net/ipv4/conf") / key[len(prefix):-len(suffix)] / suffix[1:]
    return Path("/proc/sys") / key.replace(".", "/")


def enable_forwarding(bridge: str) -> dict[str, str]:
    """Turn on IPv4 forwarding and ``route_localnet`` on ``bridge``; return the previous values
    for ``restore_sysctls``. A value already set is not rewritten: writing ``ip_forward`` resets
    every interface's ``accept_redirects``."""
    _check_ifname(bridge)
    previous: dict[str, str] = {}
    for key in ("net.ipv4.ip_forward", f"net.ipv4.conf.{bridge}.route_localnet"):
        path = _sysctl_file(key)
        try:
            old = path.read_text().strip()
            if old != "1":
                path.write_text("1\n")
        except OSError as exc:
            raise FirewallFailure(f"setting {key}: {exc}") from exc
        previous[key] = old
    return previous


def restore_sysctls(previous: dict[str, str]) -> None:
    """Put back what ``enable_forwarding`` changed. A bridge deleted since took its own
    settings with it, so its missing entry is no error."""
    for key, value in previous.items():
        path = _sysctl_file(key)
        try:
            if path.read_text().strip() != value:
                path.write_text(f"{value}\n")
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise FirewallFailure(f"restoring {key}: {exc}") from exc
