"""The user a container runs as, looked up in the image's /etc/passwd read as data."""

from __future__ import annotations

from pathlib import Path

from .errors import InvalidParameter
from .safepath import read_file_in_root


def _table(rootfs: Path, name: str) -> list[list[str]]:
    data = read_file_in_root(rootfs, f"/etc/{name}") or b""
    return [line.split(":") for line in data.decode(errors="replace").splitlines()
            if line and not line.startswith("#")]


def resolve_user(rootfs: Path, user: str) -> tuple[int, int, str]:
    """``user[:group]`` (names or numbers) -> (uid, gid, home)."""
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
