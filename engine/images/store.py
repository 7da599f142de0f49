"""The image store: root filesystems under ``<root>/images/<id>/rootfs`` with their metadata.

Each image is a folder named by its 64-hex id holding ``rootfs/`` and ``image.json``
(``Id``, ``Name``, ``Created``, ``Size``, ``Source``). An import fills ``images/.tmp-<random>/``
and renames it into place, so a reader sees a whole image or none; every failure removes the
temporary folder. Names are unique: importing a name in use is a ``Conflict`` unless
``replace=True``, which removes the old image once the new one is in place.

Images carry no setuid or setgid bits and no device nodes, whatever their source.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from .. import programs
from ..errors import Conflict, InvalidParameter, NotFound, SystemFailure
from ..log import logger
from ..store import files as store
from . import sparse
from .unpack import DEFAULT_MAX_BYTES, DEFAULT_MAX_MEMBERS, unpack_tar

__all__ = ["BUSYBOX", "Image", "ImageStore", "validate_name"]

BUSYBOX = Path(programs.find("busybox") or "/usr/bin/busybox")
MAX_NAME_LENGTH = 255
TMP_PREFIX = ".tmp-"
METADATA = "image.json"

_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*(?::[a-zA-Z0-9][a-zA-Z0-9_.-]*)?")
_ID_RE = re.compile(r"[0-9a-f]{64}")
_ID_PREFIX_RE = re.compile(r"[0-9a-f]{1,64}")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_STRIPPED_BITS = stat.S_ISUID | stat.S_ISGID

_BUSYBOX_DIRS = (
    ("bin", 0o755),
    ("sbin", 0o755),
    ("usr", 0o755),
    ("usr/bin", 0o755),
    ("usr/sbin", 0o755),
    ("etc", 0o755),
    ("tmp", 0o1777),
    ("root", 0o700),
    ("proc", 0o555),
    ("sys", 0o555),
    ("dev", 0o755),
    ("var", 0o755),
)
_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_GROUP = "root:x:0:\nnobody:x:65534:\nnogroup:x:65534:\n"


@dataclass(frozen=True)
class Image:
    id: str
    name: str
    created: str
    size: int
    rootfs: Path
    source: str = ""

    @property
    def short_id(self) -> str:
        return self.id[:12]

    def to_dict(self) -> dict[str, Any]:
        """The image as ``docker image inspect`` shapes it (keys that apply here)."""
        return {
            "Id": self.id,
            "RepoTags": [self.name],
            "Name": self.name,
            "Created": self.created,
            "Size": self.size,
            "Source": self.source,
            "RootFS": {"Type": "dir", "Path": str(self.rootfs)},
        }


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid image name, else raise ``InvalidParameter``."""
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH or not _NAME_RE.fullmatch(name):
        raise InvalidParameter(f"invalid image name: {name!r}")
    return name


def _new_id(name: str) -> str:
    return hashlib.sha256(secrets.token_bytes(32) + name.encode()).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class ImageStore:
    """Images under ``<root>/images``; the folder is created on first use."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.dir = self.root / "images"
        self._lock_path = self.root / "images.lock"

    # -- imports -------------------------------------------------------------------------

    def import_dir(self, src: Path, name: str, *, replace: bool = False,
                   max_bytes: int = DEFAULT_MAX_BYTES) -> Image:
        """Copy the tree ``src`` as a new image (symlinks are copied, never followed).

        Sparse files keep their holes; past ``max_bytes`` of file data (holes not counted)
        the import is refused with an error naming the file that crossed the limit."""
        src = Path(src)
        if self._inside(src):
            raise InvalidParameter(f"cannot import {src}: it contains the image store")

        def fill(rootfs: Path) -> int:
            try:
                _copy_tree(src, rootfs, max_bytes)
            except OSError as exc:
                raise SystemFailure(f"cannot copy {src}: {exc.strerror or exc}") from exc
            return _tree_size(rootfs)

        return self._import(name, str(src.absolute()), replace, fill)

    def import_tar(
        self,
        src: Path | BinaryIO,
        name: str,
        *,
        replace: bool = False,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_members: int = DEFAULT_MAX_MEMBERS,
    ) -> Image:
        """Unpack the tar archive ``src`` (plain, gzip, bzip2 or xz) as a new image."""
        if isinstance(src, str | os.PathLike):
            source = str(Path(src).absolute())
        else:
            source = str(getattr(src, "name", "<stream>"))

        def fill(rootfs: Path) -> int:
            return unpack_tar(src, rootfs, max_bytes=max_bytes, max_members=max_members)

        return self._import(name, source, replace, fill)

    def busybox(self, name: str = "busybox", *, replace: bool = False) -> Image:
        """An image built from the host's static busybox (Debian package busybox-static)."""
        return self._import(name, f"busybox:{BUSYBOX}", replace, _fill_busybox)

    # -- queries -------------------------------------------------------------------------

    def list(self) -> list[Image]:
        """Every complete image, oldest first; temporary and damaged folders are skipped."""
        try:
            entries = list(os.scandir(self.dir))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise SystemFailure(f"cannot list {self.dir}: {exc.strerror or exc}") from exc
        images = [img for img in map(_load, entries) if img is not None]
        images.sort(key=lambda img: (img.created, img.id))
        return images

    def get(self, ref: str) -> Image:
        """Find an image by exact name, full id or unique id prefix (``sha256:`` allowed)."""
        images = self.list()
        # Newest first: should a crash ever leave two images with one name, take the newest.
        for img in reversed(images):
            if img.name == ref:
                return img
        hexref = ref.removeprefix("sha256:")
        if _ID_PREFIX_RE.fullmatch(hexref):
            matches = [img for img in images if img.id.startswith(hexref)]
            if len(matches) == 1:
                return matches[0]
            if matches:
                raise InvalidParameter(
                    f"image id prefix {ref!r} is ambiguous: {len(matches)} images match"
                )
        raise NotFound(f"No such image: {ref}")

    def remove(self, ref: str) -> Image:
        """Remove an image; returns what it was (its ``rootfs`` no longer exists)."""
        image = self.get(ref)
        with self._locked():
            grave = self._bury(image)
            if grave is None:
                raise NotFound(f"No such image: {ref}")
        _rmtree(grave)
        return image

    # -- internals -----------------------------------------------------------------------

    def _import(self, name: str, source: str, replace: bool, fill: Callable[[Path], int]) -> Image:
        validate_name(name)
        if not replace:
            self._refuse_taken(name)  # early, before the slow part
        self._ensure_dir()
        try:
            tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=self.dir))
        except OSError as exc:
            raise SystemFailure(f"cannot create a folder in {self.dir}: {exc}") from exc
        grave: Path | None = None
        try:
            size = fill(tmp / "rootfs")
            image_id = _new_id(name)
            image = Image(
                id=image_id,
                name=name,
                created=_now(),
                size=size,
                rootfs=self.dir / image_id / "rootfs",
                source=source,
            )
            store.atomic_write_json(
                tmp / METADATA,
                {
                    "Id": image.id,
                    "Name": name,
                    "Created": image.created,
                    "Size": size,
                    "Source": source,
                },
            )
            with self._locked():
                old = self._by_name(name)
                if old is not None and not replace:
                    raise Conflict(f"image name {name} is already in use")
                # The old image leaves first, so no reader ever sees the name twice.
                if old is not None:
                    grave = self._bury(old)
                try:
                    os.rename(tmp, self.dir / image.id)
                except OSError as exc:
                    if old is not None and grave is not None:
                        os.rename(grave, self.dir / old.id)
                        grave = None
                    raise SystemFailure(
                        f"cannot store image {image.id}: {exc.strerror or exc}"
                    ) from exc
                _fsync_dir(self.dir)
        except BaseException:
            _rmtree(tmp)
            raise
        if grave is not None:
            _rmtree(grave)
        return image

    def _ensure_dir(self) -> None:
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise SystemFailure(f"cannot create {self.dir}: {exc.strerror or exc}") from exc

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # Outside images/ so that the folder holds nothing but images and imports in flight.
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(store.file_lock(self._lock_path))
            except OSError as exc:
                raise SystemFailure(f"cannot lock {self._lock_path}: {exc}") from exc
            yield

    def _by_name(self, name: str) -> Image | None:
        for img in reversed(self.list()):
            if img.name == name:
                return img
        return None

    def _refuse_taken(self, name: str) -> None:
        if self._by_name(name) is not None:
            raise Conflict(f"image name {name} is already in use")

    def _bury(self, image: Image) -> Path | None:
        """Rename the image's folder to a temporary name: it leaves ``list`` atomically."""
        grave = self.dir / f"{TMP_PREFIX}rm-{image.id}-{secrets.token_hex(4)}"
        try:
            os.rename(self.dir / image.id, grave)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SystemFailure(f"cannot remove image {image.id}: {exc.strerror or exc}") from exc
        return grave

    def _inside(self, src: Path) -> bool:
        """Whether the store lies within ``src`` (copying it would copy the copy)."""
        try:
            return self.dir.resolve().is_relative_to(src.resolve())
        except OSError:
            return False


def _load(entry: os.DirEntry[str]) -> Image | None:
    if not _ID_RE.fullmatch(entry.name):
        return None  # temporary folders, the lock, strays
    try:
        if not entry.is_dir(follow_symlinks=False):
            return None
        meta = store.read_json(Path(entry.path) / METADATA)
        rootfs = Path(entry.path) / "rootfs"
        if not stat.S_ISDIR(os.lstat(rootfs).st_mode):
            return None
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("Id") != entry.name:
        return None
    name, created, size, source = (meta.get(k) for k in ("Name", "Created", "Size", "Source"))
    if not (
        isinstance(name, str)
        and _NAME_RE.fullmatch(name)
        and isinstance(created, str)
        and type(size) is int
        and isinstance(source, str)
    ):
        return None
    return Image(id=entry.name, name=name, created=created, size=size, rootfs=rootfs, source=source)


def _rmtree(path: Path) -> None:
    def log(func: object, p: str, exc_info: object) -> None:
        logger.warning("image store: cannot remove {}: {}", p, exc_info)

    if os.path.lexists(path):
        shutil.rmtree(path, onerror=log)


def _fsync_dir(path: Path) -> None:
    # Best effort: the rename is done, and reporting a failure now would misstate the result.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        logger.warning("image store: cannot fsync {}: {}", path, exc)


def _tree_size(top: Path) -> int:
    """Bytes of regular files under ``top``, each hard-linked inode counted once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _dirs, files in os.walk(top):
        for f in files:
            st = os.lstat(os.path.join(dirpath, f))
            if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def _fill_busybox(rootfs: Path) -> int:
    try:
        listing = subprocess.run(
            [str(BUSYBOX), "--list-full"],
            capture_output=True,
            check=True,
            text=True,
            timeout=30,
        ).stdout
    except FileNotFoundError as exc:
        raise programs.ProgramMissing(
            f"{BUSYBOX} not found: install the Debian package "
            f"{programs.PROGRAMS['busybox'].package}") from exc
    except (OSError, subprocess.SubprocessError) as exc:
        raise SystemFailure(f"cannot list the applets of {BUSYBOX}: {exc}") from exc
    try:
        os.mkdir(rootfs, 0o755)
        os.chmod(rootfs, 0o755)  # mkdir obeys the umask
        for rel, mode in _BUSYBOX_DIRS:
            path = rootfs / rel
            path.mkdir()
            os.chmod(path, mode)
        binary = rootfs / "bin" / "busybox"
        shutil.copyfile(BUSYBOX, binary)
        os.chmod(binary, 0o755)
        for line in listing.splitlines():
            rel = line.strip()
            parts = rel.split("/")
            if not rel or rel.startswith("/") or {"", ".", ".."} & set(parts):
                logger.debug("busybox image: ignoring applet path {!r}", rel)
                continue
            link = rootfs / rel
            if os.path.lexists(link):
                continue  # bin/busybox itself, or a path listed twice
            link.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            # Hard links, as in Docker's busybox image: no symlink for anyone to follow.
            os.link(binary, link)
        (rootfs / "etc" / "passwd").write_text(_PASSWD)
        (rootfs / "etc" / "group").write_text(_GROUP)
        os.chmod(rootfs / "etc" / "passwd", 0o644)
        os.chmod(rootfs / "etc" / "group", 0o644)
        return _tree_size(rootfs)
    except OSError as exc:
        raise SystemFailure(f"cannot build the busybox image: {exc.strerror or exc}") from exc


def _copy_tree(src: Path, dst: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
    """Copy ``src`` to the new folder ``dst``, reading ``src`` through directory descriptors.

    Below ``src`` nothing is followed: symlinks are copied as symlinks, and an entry swapped
    for a symlink while we copy is refused by ``O_NOFOLLOW`` instead of read through.
    """
    try:
        # The top folder is the caller's choice and may itself be reached through a link.
        sfd = os.open(src, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise InvalidParameter(f"cannot import {src}: {exc.strerror or exc}") from exc
    try:
        os.mkdir(dst, 0o700)
        _TreeCopier(src, max_bytes).copy_dir(sfd, str(dst), "")
        _copy_meta(str(dst), os.fstat(sfd))
    finally:
        os.close(sfd)


class _TreeCopier:
    def __init__(self, src: Path, max_bytes: int) -> None:
        self.src = src
        self.max_bytes = max_bytes
        self.data = 0  # bytes of file data copied so far, holes not counted
        # Hard-linked inodes: the first copy made of each, to link the others to.
        self.copies: dict[tuple[int, int], str] = {}

    def copy_dir(self, sfd: int, dpath: str, rel: str) -> None:
        with os.scandir(sfd) as it:
            entries = list(it)
        for entry in entries:
            st = entry.stat(follow_symlinks=False)
            dest = os.path.join(dpath, entry.name)
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                os.mkdir(dest, 0o700)
                cfd = os.open(entry.name, _DIR_FLAGS, dir_fd=sfd)
                try:
                    self.copy_dir(cfd, dest, os.path.join(rel, entry.name))
                finally:
                    os.close(cfd)
                _copy_meta(dest, st)
            elif stat.S_ISLNK(mode):
                os.symlink(os.readlink(entry.name, dir_fd=sfd), dest)
                _copy_meta(dest, st)
            elif stat.S_ISREG(mode) or stat.S_ISFIFO(mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in self.copies:
                    os.link(self.copies[key], dest, follow_symlinks=False)
                    continue
                if stat.S_ISREG(mode):
                    self._copy_file(sfd, entry.name, dest, os.path.join(rel, entry.name))
                else:
                    os.mkfifo(dest, 0o600)
                _copy_meta(dest, st)
                if st.st_nlink > 1:
                    self.copies[key] = dest
            else:
                logger.debug("image import: skipping device or socket {}", dest)

    def _copy_file(self, sfd: int, name: str, dest: str, rel: str) -> None:
        # O_NONBLOCK: should the entry have become a FIFO, opening it must not hang.
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=sfd)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise InvalidParameter(f"cannot import {dest}: changed while being copied")
            regions = sparse.data_regions(fd, st.st_size)
            size = sparse.data_size(regions)
            if self.data + size > self.max_bytes:
                raise InvalidParameter(
                    f"cannot import {self.src}: {rel} ({size} bytes of data, "
                    f"{st.st_size} with holes) takes the image past its limit of "
                    f"{self.max_bytes} bytes of file data; refusing it")
            self.data += size
            dfd = os.open(dest, _NEW_FILE_FLAGS, 0o600)
            try:
                sparse.copy_regions(fd, dfd, regions, st.st_size)
            finally:
                os.close(dfd)
        finally:
            os.close(fd)


def _copy_meta(path: str, st: os.stat_result) -> None:
    is_link = stat.S_ISLNK(st.st_mode)
    if os.geteuid() == 0:
        os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
    if not is_link:
        # After chown, which may clear setuid by itself; images never carry it.
        os.chmod(path, stat.S_IMODE(st.st_mode) & ~_STRIPPED_BITS)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
