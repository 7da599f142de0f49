"""Network namespaces as files under /run/netns (made shared, bind mounted, removed) and the
sysctls of a namespace, through libc: no netlink, no pyroute2. The errors of the network
drivers.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

from ..errors import InvalidParameter, SystemFailure

NETNS_DIR = Path("/run/netns")


_CLONE_NEWNET = 0x40000000
_MS_BIND = 4096
_MS_REC = 16384
_MS_SHARED = 1 << 20
_MNT_DETACH = 2


_SYSCTL_KEY = re.compile(r"[A-Za-z0-9_.\-]+")

_T = TypeVar("_T")


class NetworkFailure(SystemFailure):
    """The kernel refused a network operation; ``code`` is the errno when there is one."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


@contextlib.contextmanager
def _failure(what: str) -> Iterator[None]:
    """Map pyroute2 and OS errors, once, to NetworkFailure naming ``what``."""
    try:
        yield
    except NetworkFailure:
        raise
    except OSError as e:
        raise NetworkFailure(f"{what}: {e.strerror or e}", e.errno) from e
    except Exception as e:
        code = _netlink_code(e)
        if code is None:
            raise
        raise NetworkFailure(f"{what}: {os.strerror(code)}", code) from e


def _netlink_code(e: BaseException) -> int | None:
    """The errno of a pyroute2 ``NetlinkError``; None for anything else (and always None
    while pyroute2 is not loaded, since then nothing could have raised one)."""
    exceptions = sys.modules.get("pyroute2.netlink.exceptions")
    if exceptions is not None and isinstance(e, exceptions.NetlinkError):
        return e.code
    return None


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def _valid_netns(name: str) -> None:
    if not name or "/" in name or name in (".", "..") or "\0" in name:
        raise InvalidParameter(f"invalid network namespace name {name!r}")


def netns_path(name: str) -> Path:
    return NETNS_DIR / name


def netns_exists(name: str) -> bool:
    _valid_netns(name)
    return netns_path(name).exists()


def list_netns() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def _share_netns_dir(libc: ctypes.CDLL) -> None:
    """Make /run/netns a shared mount, as ``ip netns add`` does, so that a namespace mounted
    or unmounted later propagates to mount namespaces cloned from this one (containers,
    ``ip netns exec``), instead of pinning the namespace there."""
    NETNS_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    target = bytes(NETNS_DIR)
    if libc.mount(b"", target, b"none", _MS_SHARED | _MS_REC, None) == 0:
        return
    # not a mount point yet: bind it on itself, then share it
    _check(libc.mount(target, target, b"none", _MS_BIND | _MS_REC, None), "bind /run/netns")
    _check(libc.mount(b"", target, b"none", _MS_SHARED | _MS_REC, None), "share /run/netns")


def _remove_netns(name: str, libc: ctypes.CDLL) -> None:
    path = netns_path(name)
    if libc.umount2(bytes(path), _MNT_DETACH) != 0:
        code = ctypes.get_errno()
        # EINVAL: not a mount point (a half-made one); ENOENT: gone already
        if code not in (errno.EINVAL, errno.ENOENT):
            raise OSError(code, os.strerror(code), str(path))
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def delete_netns(name: str) -> None:
    """Delete network namespace ``name`` (unmount and unlink); nothing to do when it is gone.
    The kernel destroys the links inside it shortly after this returns."""
    _valid_netns(name)
    with _failure(f"network namespace {name!r}"):
        _remove_netns(name, _libc())


def _sysctl_path(key: str) -> Path:
    if not _SYSCTL_KEY.fullmatch(key) or ".." in key or key.startswith("."):
        raise InvalidParameter(f"invalid sysctl key {key!r}")
    parts = key.split(".")
    # an interface name may hold dots: net.ipv4.conf.<ifname>.<setting>
    if len(parts) > 5 and parts[:3] == ["net", "ipv4", "conf"]:
        parts = [*parts[:3], ".".join(parts[3:-1]), parts[-1]]
    return Path("/proc/sys", *parts)


def set_sysctl(key: str, value: str) -> str:
    """Set sysctl ``key`` (dotted, as ``sysctl`` names it) to ``value``; returns the value it
    had, so that the caller can restore it."""
    path = _sysctl_path(key)
    with _failure(f"sysctl {key}"):
        previous = path.read_text().strip()
        if previous != value:
            path.write_text(value)
        return previous
