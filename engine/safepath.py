"""Paths inside a container's root filesystem, resolved and made without leaving the root.

The image is untrusted: any component may be a symlink pointing anywhere. Links are resolved
as if the root were ``/`` (as moby's ``FollowSymlinkInScope``), and folders are made by walking
directory file descriptors opened with ``O_NOFOLLOW``, so nothing is created outside the root.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from pathlib import Path

from .errors import InvalidParameter

MAX_LINKS = 40


def scoped_parts(root: Path, unsafe: str) -> list[str]:
    """The components of ``unsafe`` under ``root`` once links are resolved inside the root."""
    todo = deque(p for p in unsafe.split("/") if p)
    resolved: list[str] = []
    links = 0
    while todo:
        part = todo.popleft()
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            resolved.append(part)
            continue
        except OSError as exc:
            raise InvalidParameter(f"cannot resolve {unsafe!r} in the container: {exc}") from exc
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > MAX_LINKS:
                raise InvalidParameter(f"too many symbolic links resolving {unsafe!r}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            todo.extendleft(reversed([p for p in target.split("/") if p]))
            continue
        resolved.append(part)
    return resolved


def mkdir_in_root(root: Path, unsafe: str, mode: int = 0o755) -> str:
    """Make the folder ``unsafe`` inside ``root``; return its path as seen from inside."""
    parts = scoped_parts(root, unsafe)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts:
            try:
                nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                              dir_fd=fd)
            except FileNotFoundError:
                os.mkdir(part, mode, dir_fd=fd)
                nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                              dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise InvalidParameter(
                        f"working directory {unsafe!r}: {part!r} is not a directory") from exc
                raise
            os.close(fd)
            fd = nfd
    finally:
        os.close(fd)
    return "/" + "/".join(parts)


def read_file_in_root(root: Path, unsafe: str, limit: int = 1 << 20) -> bytes | None:
    """A regular file's bytes read from inside ``root`` (None when missing or not regular)."""
    parts = scoped_parts(root, unsafe)
    if not parts:
        return None
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=fd)
            os.close(fd)
            fd = nfd
        ffd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                      dir_fd=fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        if not stat.S_ISREG(os.fstat(ffd).st_mode):
            return None  # a FIFO or a device must never be read: it could block or be endless
        return os.read(ffd, limit)
    finally:
        os.close(ffd)
