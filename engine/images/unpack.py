"""Safe extraction of tar archives: nothing lands outside the target, whatever the members say.

``unpack_tar`` reads the members itself (never ``extractall``) and holds to these rules:

- names are cleaned lexically: a leading ``/`` is dropped (absolute names are contained), ``.``
  and empty components go, a ``..`` that would climb above the target is refused;
- every path is reached from a directory file descriptor, one component at a time, with
  ``O_NOFOLLOW``: a symlink (or any non-directory) in the way of a member is refused, so nothing
  is ever written through a link, whatever it points to;
- hard links must name a file or link already extracted from this archive; they are made with
  ``linkat`` between directory descriptors without following a symlink source;
- character and block devices are skipped (as a rootless unpacker would), FIFOs are created;
- setuid and setgid bits are stripped; other modes, owners and mtimes are kept;
- a decompression bomb is bounded by ``max_bytes`` (file data, holes not counted) and
  ``max_members``, plus a cap on the decompressed stream and on each header record read;
- holes are kept: a GNU sparse member's holes are never read, and blocks of zeros in any
  member are left unwritten (``engine.images.sparse``), so a sparse file does not fill the disk.

Compression (gzip, bzip2, xz or none) is detected from the first bytes, so non-seekable
streams work too.
"""

from __future__ import annotations

import bz2
import contextlib
import errno
import gzip
import io
import lzma
import os
import shutil
import stat
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ..errors import InvalidParameter, SystemFailure
from ..log import logger
from . import sparse

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_MEMBERS", "unpack_tar"]

DEFAULT_MAX_BYTES = 4 << 30
DEFAULT_MAX_MEMBERS = 1_000_000

_CHUNK = 1 << 20
# A pax or GNU long-name record is read into memory whole by tarfile: cap each one.
_MAX_HEADER_RECORD = 1 << 20
# The decompressed stream may exceed the file data by headers and padding; this bounds the
# time spent on an archive made of nothing but headers.
_STREAM_OVERHEAD_PER_MEMBER = 2048
_STREAM_OVERHEAD = 16 << 20

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_STRIPPED_BITS = stat.S_ISUID | stat.S_ISGID
_HEADER_TYPES = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)
# Errors that come from what a member asks for, not from the host failing.
_MEMBER_ERRNOS = frozenset(
    {
        errno.ENAMETOOLONG,
        errno.EINVAL,
        errno.ENOENT,
        errno.EEXIST,
        errno.EPERM,
        errno.EMLINK,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.ELOOP,
    }
)
_GZIP_MAGIC = b"\x1f\x8b"
_BZIP2_MAGIC = b"BZh"
_XZ_MAGIC = b"\xfd7zXZ\x00"

Parts = tuple[str, ...]


def unpack_tar(
    source: Path | BinaryIO,
    target: Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS,
) -> int:
    """Extract the tar archive ``source`` (a path or a readable binary stream) into ``target``.

    ``target`` is created (mode 0755, its parent must exist) when missing; an existing
    ``target`` must be an empty directory, since a failure empties it again. On any error the
    target is left as it was found: removed if this call created it, emptied otherwise.
    A stream passed as ``source`` is read but not closed.

    Returns the number of file-data bytes written. Raises ``InvalidParameter`` for a corrupt
    archive, a member that breaks the rules above (the message names it) or a limit exceeded;
    ``SystemFailure`` when the host fails (disk full, ...).
    """
    target = Path(target)
    with _open_source(source) as raw:
        created = _prepare_target(target)
        try:
            return _Unpacker(target, max_bytes, max_members).run(raw)
        except BaseException:
            _discard(target, created)
            raise


@contextlib.contextmanager
def _open_source(source: Path | BinaryIO) -> Iterator[BinaryIO]:
    if not isinstance(source, str | os.PathLike):
        yield source
        return
    try:
        f = open(source, "rb")  # noqa: SIM115 - closed below, after the caller is done
    except OSError as exc:
        raise InvalidParameter(f"cannot read archive {source}: {exc.strerror or exc}") from exc
    with f:
        yield f


def _prepare_target(target: Path) -> bool:
    """Make sure ``target`` is an empty directory; True when this call created it."""
    try:
        try:
            os.mkdir(target, 0o755)
            os.chmod(target, 0o755)  # mkdir obeys the umask
            return True
        except FileExistsError:
            pass
        is_dir = stat.S_ISDIR(os.lstat(target).st_mode)
        empty = is_dir and not os.listdir(target)
    except OSError as exc:
        raise SystemFailure(f"cannot prepare {target}: {exc.strerror or exc}") from exc
    if not is_dir:
        raise InvalidParameter(f"unpack target {target} is not a directory")
    if not empty:
        raise InvalidParameter(f"unpack target {target} is not empty")
    return False


def _discard(target: Path, created: bool) -> None:
    # rmtree works from directory descriptors and never follows the links we extracted.
    if created:
        shutil.rmtree(target, onerror=_log_rm_error)
        return
    with contextlib.suppress(OSError), os.scandir(target) as it:
        for entry in it:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, onerror=_log_rm_error)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _log_rm_error(func: object, path: str, exc_info: object) -> None:
    logger.warning("cleanup of a failed unpack: cannot remove {}: {}", path, exc_info)


class _Member(tarfile.TarInfo):
    """A TarInfo that refuses oversized header records before tarfile reads them whole."""

    __slots__ = ()

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _HEADER_TYPES and self.size > _MAX_HEADER_RECORD:
            raise InvalidParameter(
                f"corrupt archive: a header record of {self.size} bytes "
                f"(limit {_MAX_HEADER_RECORD})"
            )
        return super()._proc_member(tarfile_)


class _Prefixed(io.RawIOBase):
    """The sniffed ``head`` followed by the rest of ``raw``, for streams that cannot seek."""

    def __init__(self, head: bytes, raw: BinaryIO) -> None:
        self._head = head
        self._raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._raw.read(len(b))
        b[: len(data)] = data
        return len(data)


class _Bounded(io.RawIOBase):
    """The decompressed stream, capped at ``limit`` bytes; decoder errors become ours."""

    def __init__(self, inner: BinaryIO, limit: int) -> None:
        self._inner = inner
        self._limit = limit
        self._count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        try:
            data = self._inner.read(len(b))
        except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
            raise InvalidParameter(f"corrupt archive: {exc}") from exc
        self._count += len(data)
        if self._count > self._limit:
            raise InvalidParameter(
                f"archive expands beyond {self._limit} bytes of tar stream; refusing it"
            )
        b[: len(data)] = data
        return len(data)


def _decompressed(raw: BinaryIO, stack: contextlib.ExitStack) -> BinaryIO:
    head = b""
    while len(head) < 6:
        try:
            more = raw.read(6 - len(head))
        except OSError as exc:
            raise InvalidParameter(f"cannot read archive: {exc.strerror or exc}") from exc
        if not more:
            break
        head += more
    stream: BinaryIO = io.BufferedReader(_Prefixed(head, raw), _CHUNK)  # type: ignore[arg-type]
    if head.startswith(_GZIP_MAGIC):
        return stack.enter_context(gzip.GzipFile(fileobj=stream, mode="rb"))
    if head.startswith(_BZIP2_MAGIC):
        return stack.enter_context(bz2.BZ2File(stream))
    if head.startswith(_XZ_MAGIC):
        return stack.enter_context(lzma.LZMAFile(stream))
    return stream


def _clean(name: str, member: str) -> Parts:
    """``name`` as components below the target; refuses a ``..`` that climbs out of it."""
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise InvalidParameter(
                    f"archive member {member!r}: path {name!r} leads outside the target"
                )
            parts.pop()
            continue
        parts.append(part)
    return tuple(parts)


def _mode(m: tarfile.TarInfo) -> int:
    return m.mode & 0o7777 & ~_STRIPPED_BITS


class _Unpacker:
    def __init__(self, target: Path, max_bytes: int, max_members: int) -> None:
        self.target = target
        self.max_bytes = max_bytes
        self.max_members = max_members
        self.written = 0
        self.root = -1
        # Non-directories extracted so far: the only valid hard-link sources.
        self.files: set[Parts] = set()
        # Directory modes and mtimes are applied at the end: adding entries changes the mtime.
        self.dirs: dict[Parts, tuple[int, float]] = {}
        self.as_root = os.geteuid() == 0

    def run(self, raw: BinaryIO) -> int:
        limit = self.max_bytes + self.max_members * _STREAM_OVERHEAD_PER_MEMBER + _STREAM_OVERHEAD
        with contextlib.ExitStack() as stack:
            stream = _Bounded(_decompressed(raw, stack), limit)
            self.root = os.open(self.target, _DIR_FLAGS)
            stack.callback(os.close, self.root)
            try:
                tf = stack.enter_context(tarfile.open(fileobj=stream, mode="r|", tarinfo=_Member))
            except (tarfile.TarError, EOFError) as exc:
                raise InvalidParameter(f"corrupt archive: {exc}") from exc
            count = 0
            while True:
                try:
                    member = tf.next()
                except (tarfile.TarError, EOFError) as exc:
                    raise InvalidParameter(f"corrupt archive: {exc}") from exc
                if member is None:
                    break
                # Stream mode keeps every TarInfo it has read; we need none of them.
                tf.members.clear()
                count += 1
                if count > self.max_members:
                    raise InvalidParameter(
                        f"archive has more than {self.max_members} members; refusing it"
                    )
                self._member(tf, member)
            self._finish_dirs()
        return self.written

    def _member(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        try:
            self._extract(tf, m)
        except (ValueError, tarfile.TarError, EOFError) as exc:  # NUL in a name, short data
            raise InvalidParameter(f"archive member {m.name!r}: {exc}") from exc
        except OSError as exc:
            cls = InvalidParameter if exc.errno in _MEMBER_ERRNOS else SystemFailure
            raise cls(f"archive member {m.name!r}: {exc.strerror or exc}") from exc

    def _extract(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        if m.ischr() or m.isblk():
            logger.debug("unpack: skipping device node {!r}", m.name)
            return
        if not (m.isreg() or m.isdir() or m.issym() or m.islnk() or m.isfifo()):
            logger.debug("unpack: skipping member {!r} of type {!r}", m.name, m.type)
            return
        parts = _clean(m.name, m.name)
        if not parts:
            if not m.isdir():
                raise InvalidParameter(f"archive member {m.name!r}: names the target itself")
            self._own(self.root, m)
            self.dirs[parts] = (_mode(m), m.mtime)
            return
        parent = self._open_dir(parts[:-1], m.name, create=True)
        try:
            leaf = parts[-1]
            if m.isdir():
                self._dir(parent, leaf, parts, m)
                return
            if m.isreg():
                self._file(tf, parent, leaf, m)
            elif m.issym():
                self._remove(parent, leaf)
                os.symlink(m.linkname, leaf, dir_fd=parent)
                self._own_leaf(parent, leaf, m)
            elif m.islnk():
                if not self._hardlink(parent, leaf, parts, m):
                    return
            else:
                self._remove(parent, leaf)
                os.mkfifo(leaf, 0o600, dir_fd=parent)
                self._own_leaf(parent, leaf, m)
                # The FIFO was just made by us in a directory we hold: chmod cannot be misled.
                os.chmod(leaf, _mode(m), dir_fd=parent)
            self.dirs.pop(parts, None)
            self.files.add(parts)
        finally:
            os.close(parent)

    def _open_dir(self, parts: Parts, member: str, *, create: bool) -> int:
        """A descriptor of the directory ``parts``, reached without following any link."""
        fd = os.dup(self.root)
        try:
            for i, part in enumerate(parts):
                try:
                    nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    # Implicit parents, as tar makes them; their metadata may come later.
                    os.mkdir(part, 0o755, dir_fd=fd)
                    nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    where = "/".join(parts[: i + 1])
                    raise InvalidParameter(
                        f"archive member {member!r}: {where!r} is a symlink or not a "
                        "directory; refusing to write through it"
                    ) from exc
                os.close(fd)
                fd = nfd
            return fd
        except BaseException:
            os.close(fd)
            raise

    def _remove(self, parent: int, leaf: str) -> None:
        """Make room for a new entry: a later member replaces an earlier one, as in tar."""
        try:
            st = os.stat(leaf, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(leaf, dir_fd=parent)
        else:
            os.unlink(leaf, dir_fd=parent)

    def _dir(self, parent: int, leaf: str, parts: Parts, m: tarfile.TarInfo) -> None:
        try:
            st = os.stat(leaf, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is None or not stat.S_ISDIR(st.st_mode):
            if st is not None:
                os.unlink(leaf, dir_fd=parent)
            os.mkdir(leaf, 0o700, dir_fd=parent)
        fd = os.open(leaf, _DIR_FLAGS, dir_fd=parent)
        try:
            self._own(fd, m)
        finally:
            os.close(fd)
        self.files.discard(parts)
        self.dirs[parts] = (_mode(m), m.mtime)

    def _file(self, tf: tarfile.TarFile, parent: int, leaf: str, m: tarfile.TarInfo) -> None:
        # A GNU sparse member stores only its data regions; holes cost nothing to read or keep.
        regions = [(off, off + n) for off, n in m.sparse or () if n] if m.sparse else [
            (0, m.size)]
        size = sparse.data_size(regions)
        if self.written + size > self.max_bytes:
            raise InvalidParameter(
                f"archive member {m.name!r} ({size} bytes of data, {m.size} with holes): "
                f"archive expands beyond {self.max_bytes} bytes of file data; refusing it"
            )
        self._remove(parent, leaf)
        fd = os.open(leaf, _FILE_FLAGS, 0o600, dir_fd=parent)
        try:
            data = tf.extractfile(m)
            # The raw member reader: its seek only moves its position within the member, which
            # works on a stream (the buffered wrapper's seek asks for a seekable file).
            raw = getattr(data, "raw", data)
            for start, end in regions if data is not None else ():
                raw.seek(start)
                pos = start
                while pos < end:
                    chunk = raw.read(min(_CHUNK, end - pos))
                    if not chunk:
                        raise InvalidParameter(f"archive member {m.name!r}: data is truncated")
                    sparse.write_at(fd, chunk, pos)
                    pos += len(chunk)
                    self.written += len(chunk)
            os.ftruncate(fd, m.size)
            self._own(fd, m)
            # After chown, which would clear setuid anyway; we strip it in any case.
            os.fchmod(fd, _mode(m))
            with contextlib.suppress(OSError, OverflowError, ValueError):
                os.utime(fd, (m.mtime, m.mtime))
        finally:
            os.close(fd)

    def _hardlink(self, parent: int, leaf: str, parts: Parts, m: tarfile.TarInfo) -> bool:
        source = _clean(m.linkname, m.name)
        if source not in self.files:
            raise InvalidParameter(
                f"archive member {m.name!r}: hard link target {m.linkname!r} is not a file "
                "extracted earlier from this archive"
            )
        if source == parts:
            return False
        src_parent = self._open_dir(source[:-1], m.name, create=False)
        try:
            self._remove(parent, leaf)
            # follow_symlinks=False: a symlink source is linked as the symlink itself.
            os.link(
                source[-1],
                leaf,
                src_dir_fd=src_parent,
                dst_dir_fd=parent,
                follow_symlinks=False,
            )
        finally:
            os.close(src_parent)
        return True

    def _own(self, fd: int, m: tarfile.TarInfo) -> None:
        if self.as_root:
            os.fchown(fd, m.uid, m.gid)

    def _own_leaf(self, parent: int, leaf: str, m: tarfile.TarInfo) -> None:
        if self.as_root:
            os.chown(leaf, m.uid, m.gid, dir_fd=parent, follow_symlinks=False)
        with contextlib.suppress(OSError, OverflowError, ValueError):
            os.utime(leaf, (m.mtime, m.mtime), dir_fd=parent, follow_symlinks=False)

    def _finish_dirs(self) -> None:
        for parts, (mode, mtime) in self.dirs.items():
            try:
                fd = self._open_dir(parts, "/".join(parts), create=False)
            except (InvalidParameter, OSError):
                continue  # replaced by a later member
            try:
                os.fchmod(fd, mode)
                with contextlib.suppress(OSError, OverflowError, ValueError):
                    os.utime(fd, (mtime, mtime))
            finally:
                os.close(fd)
