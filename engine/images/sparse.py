"""Files written with their holes kept: image imports must not turn a sparse file into data.

A 10 GB sparse file in a 2 MB folder, copied byte for byte, takes 10 GB of disk. Here a copy
reads only the source's data regions (``SEEK_DATA``/``SEEK_HOLE``) and every write skips
blocks of zeros, so holes stay holes (and runs of zeros in a plain tar member become holes);
the file gets its full length with ``ftruncate`` at the end.
"""

from __future__ import annotations

import errno
import os

__all__ = ["BLOCK", "copy_regions", "data_regions", "data_size", "write_at"]

BLOCK = 64 << 10  # the granularity of hole detection: a multiple of every file system's block
_CHUNK = 1 << 20
_ZEROS = bytes(BLOCK)


def write_at(fd: int, data: bytes | memoryview, offset: int) -> int:
    """Write ``data`` at ``offset``, leaving blocks of zeros unwritten; return bytes written.

    The file must be new (or its range a hole already): a skipped block reads as zeros only
    because nothing was there."""
    view = memoryview(data)
    written = 0
    pos = 0
    while pos < len(view):
        # Blocks aligned on the file's offsets, so a skipped one is a whole hole.
        end = min(len(view), pos + BLOCK - (offset + pos) % BLOCK)
        piece = view[pos:end]
        if piece != _ZEROS[: len(piece)]:
            done = 0
            while done < len(piece):
                done += os.pwrite(fd, piece[done:], offset + pos + done)
            written += len(piece)
        pos = end
    return written


def data_regions(fd: int, size: int) -> list[tuple[int, int]]:
    """The ``(start, end)`` ranges of ``fd`` that hold data; the whole file where the file
    system cannot tell."""
    regions: list[tuple[int, int]] = []
    pos = 0
    try:
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # only a hole from pos to the end
                    break
                raise
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
            if start >= size:
                break
            regions.append((start, end))
            pos = end
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
            raise
        return [(0, size)] if size else []
    return regions


def data_size(regions: list[tuple[int, int]]) -> int:
    return sum(end - start for start, end in regions)


def copy_regions(src: int, dst: int, regions: list[tuple[int, int]], size: int) -> int:
    """Copy ``regions`` of ``src`` into the new file ``dst``, then give ``dst`` the length
    ``size``; return the bytes of data written."""
    written = 0
    for start, end in regions:
        pos = start
        while pos < end:
            chunk = os.pread(src, min(_CHUNK, end - pos), pos)
            if not chunk:
                break  # the source shrank while we copied; the length below still holds
            written += write_at(dst, chunk, pos)
            pos += len(chunk)
    os.ftruncate(dst, size)
    return written
