"""mount(2) and umount2(2) through libc, and a reader of the mount table.

A subprocess per mount would cost milliseconds on every start; the syscalls cost microseconds.
"""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

from ..errors import SystemFailure

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_BIND = 4096
MS_REC = 16384
MNT_DETACH = 2

# the symbols already loaded in this process (libc among them): find_library("c") would run
# ldconfig, ~2 ms of every command
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)


def mount(source: str, target: Path, fstype: str, flags: int = 0, data: str = "") -> None:
    rc = _libc.mount(source.encode(), os.fsencode(target), fstype.encode(), flags,
                     data.encode() if data else None)
    if rc != 0:
        err = ctypes.get_errno()
        raise SystemFailure(f"mount {fstype} on {target}: {os.strerror(err)}") from OSError(
            err, os.strerror(err))


def unmount(target: Path) -> None:
    """Detach ``target``; nothing to do when it is not mounted or gone (idempotent)."""
    while True:
        rc = _libc.umount2(os.fsencode(target), MNT_DETACH)
        if rc == 0:
            continue  # stacked mounts: peel them all
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOENT):
            return
        raise SystemFailure(f"unmount {target}: {os.strerror(err)}") from OSError(
            err, os.strerror(err))


def mounted_under(prefix: Path) -> list[str]:
    """Mount points at or below ``prefix``, from this process's mount table."""
    base = str(prefix).rstrip("/")
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            point = line.split(" ", 5)[4].encode().decode("unicode_escape")
            if point == base or point.startswith(base + "/"):
                found.append(point)
    return found
