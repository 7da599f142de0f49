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

from ..errors import InvalidParameter

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


def _open_path_in_root(root: Path, parts: list[str]) -> int:
    """An ``O_PATH`` descriptor of ``root/parts``, every component reached without following a
    link; raises ``OSError``. ``O_PATH`` opens nothing: a device node's driver never sees it."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=fd)
            os.close(fd)
            fd = nfd
        return os.open(parts[-1], os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    finally:
        os.close(fd)


def stat_in_root(root: Path, unsafe: str) -> tuple[str, os.stat_result | None]:
    """Where ``unsafe`` leads inside ``root`` (as seen from inside) and what is there (None
    when nothing is, or a link was swapped in meanwhile), without opening it."""
    parts = scoped_parts(root, unsafe)
    if not parts:
        return "/", os.stat(root)
    try:
        pfd = _open_path_in_root(root, parts)
    except OSError:
        return "/" + "/".join(parts), None
    try:
        return "/" + "/".join(parts), os.fstat(pfd)
    finally:
        os.close(pfd)


def read_file_in_root(root: Path, unsafe: str, limit: int = 1 << 20) -> bytes | None:
    """A regular file's bytes read from inside ``root`` (None when missing or not regular)."""
    parts = scoped_parts(root, unsafe)
    if not parts:
        return None
    try:
        pfd = _open_path_in_root(root, parts)
    except OSError:
        return None
    try:
        # A FIFO or a device must never be opened: it could block, be endless, or act on
        # open (a container may mknod one in its own layer). Only then is the file opened,
        # through the descriptor, so it is the very inode that was checked.
        if not stat.S_ISREG(os.fstat(pfd).st_mode):
            return None
        ffd = os.open(f"/proc/self/fd/{pfd}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    finally:
        os.close(pfd)
    try:
        return os.read(ffd, limit)
    finally:
        os.close(ffd)


def shadow_non_directories(lower: Path, upper: Path, names: tuple[str, ...]) -> None:
    """Make ``upper/<name>`` a real folder wherever ``lower/<name>`` (the image) or
    ``upper/<name>`` (the container's own layer) is something else, such as a symlink.

    runc makes files below the mount points ``/dev``, ``/proc`` and ``/sys`` by joining paths
    without resolving them in the root (the ``/dev/fd`` and ``/dev/ptmx`` links, ``/dev/ptmx``
    removed first): an image whose ``/dev`` links to a host folder would have runc write and
    delete there. As moby's init layer, an upper folder hides whatever the image has. Both
    folders belong to the engine and each name is one component, so nothing is followed.
    """
    for name in names:
        try:
            if stat.S_ISDIR(os.lstat(upper / name).st_mode):
                continue
            os.unlink(upper / name)  # a link, file or whiteout left by an earlier run
        except FileNotFoundError:
            try:
                if stat.S_ISDIR(os.lstat(lower / name).st_mode):
                    continue
            except FileNotFoundError:
                continue  # runc makes it, inside the root
        os.mkdir(upper / name, 0o755)
