"""The user a container runs as, looked up in the image's /etc/passwd read as data."""

from __future__ import annotations

import stat
from pathlib import Path

from ..errors import InvalidParameter
from .safepath import read_file_in_root, stat_in_root

ACCOUNT_FILES = ("/etc/passwd", "/etc/group")
# Mounted by the runtime over whatever the image has there: a link into them reaches the
# kernel's files (/dev/zero, /proc/self/...), not the image's.
KERNEL_DIRS = ("dev", "proc", "sys")


def check_account_files(rootfs: Path) -> None:
    """Refuse a root whose /etc/passwd or /etc/group is there but not a regular file.

    runc reads both inside the container at every start and exec (for HOME and the groups),
    whatever the user: a FIFO would block it until a timeout, a link to /dev/zero feed it
    without end. Refused here, with an error that says why."""
    for path in ACCOUNT_FILES:
        inside, st = stat_in_root(rootfs, path)
        if inside.split("/")[1] in KERNEL_DIRS or (st is not None
                                                   and not stat.S_ISREG(st.st_mode)):
            where = f" (a link to {inside})" if inside != path else ""
            raise InvalidParameter(f"the container's {path}{where} is not a regular file: "
                                   "refusing to have it read")


def runtime_user(rootfs: Path, user: str | None) -> str | None:
    """``user[:group]`` as ``runc exec --user`` takes it (numbers): names are looked up here,
    as data, since runc exec only takes numbers; the account files are checked first."""
    check_account_files(rootfs)
    if not user:
        return None
    uid, gid, _home = resolve_user(rootfs, user)
    return f"{uid}:{gid}"


def _table(rootfs: Path, name: str) -> list[list[str]]:
    data = read_file_in_root(rootfs, f"/etc/{name}") or b""
    return [line.split(":") for line in data.decode(errors="replace").splitlines()
            if line and not line.startswith("#")]


def resolve_user(rootfs: Path, user: str) -> tuple[int, int, str]:
    """``user[:group]`` (names or numbers) -> (uid, gid, home)."""
    check_account_files(rootfs)
    who, _, group = (user or "0").partition(":")
    passwd = _table(rootfs, "passwd")
    uid, gid, home = None, 0, "/"
    for row in passwd:
        if len(row) >= 6 and (row[0] == who or (who.isdigit() and row[2] == who)):
            try:
                uid, gid, home = int(row[2]), int(row[3]), row[5] or "/"
            except ValueError:
                continue
            break
    if uid is None:
        if not who.isdigit():
            raise InvalidParameter(f"unable to find user {who}: no matching entries in passwd file")
        uid = int(who)
        home = "/root" if uid == 0 else "/"
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            rows = [r for r in _table(rootfs, "group") if len(r) >= 3 and r[0] == group]
            if not rows or not rows[0][2].isdigit():
                raise InvalidParameter(f"unable to find group {group}: no matching entries in "
                                       "group file")
            gid = int(rows[0][2])
    return uid, gid, home
