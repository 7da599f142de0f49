"""engine.images.unpack: hostile archives leave the host untouched, and the target as it
was found."""

from __future__ import annotations

import gzip
import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from engine.errors import InvalidParameter
from engine.images.unpack import unpack_tar

MiB = 1 << 20


def _info(name: str, type_: bytes = tarfile.REGTYPE, **attrs: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = type_
    info.mode = 0o755 if type_ == tarfile.DIRTYPE else 0o644
    info.mtime = 1_600_000_000
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


def _tar(*members: tuple[tarfile.TarInfo, bytes | None], mode: str = "w") -> bytes:
    """An archive of ``(TarInfo, data)`` pairs; names are written exactly as given."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    return buf.getvalue()


def _file(name: str, data: bytes = b"x", **attrs: object) -> tuple[tarfile.TarInfo, bytes]:
    return _info(name, **attrs), data


def _link(name: str, target: str, type_: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    return _info(name, type_, linkname=target), None


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A folder beside the target standing for the host, with a sentinel file in it."""
    outside = tmp_path / "host"
    outside.mkdir()
    (outside / "sentinel").write_text("original")
    return outside


@pytest.fixture
def target(tmp_path: Path) -> Path:
    return tmp_path / "rootfs"


def _host_unchanged(host: Path) -> None:
    assert sorted(p.name for p in host.iterdir()) == ["sentinel"]
    assert (host / "sentinel").read_text() == "original"
    assert os.stat(host / "sentinel").st_nlink == 1


def _snapshot(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


# -- ordinary archives ----------------------------------------------------------------------


def test_plain_archive_round_trip(target: Path) -> None:
    data = _tar(
        (_info("etc", tarfile.DIRTYPE, mode=0o750, uid=12, gid=34), None),
        _file("etc/hosts", b"127.0.0.1 localhost\n", mode=0o640, uid=1000, gid=1001),
        _link("etc/link", "hosts"),
        _file("usr/bin/tool", b"#!/bin/sh\n", mode=0o755),  # implicit parents
    )
    written = unpack_tar(io.BytesIO(data), target)
    assert written == len(b"127.0.0.1 localhost\n") + len(b"#!/bin/sh\n")
    st = os.stat(target / "etc" / "hosts")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1001, 0o640)
    assert st.st_mtime == 1_600_000_000
    d = os.stat(target / "etc")
    assert (d.st_uid, d.st_gid, stat.S_IMODE(d.st_mode)) == (12, 34, 0o750)
    assert d.st_mtime == 1_600_000_000  # set after its children were written
    assert os.readlink(target / "etc" / "link") == "hosts"
    assert (target / "usr" / "bin" / "tool").read_bytes() == b"#!/bin/sh\n"


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_compressions_are_detected(target: Path, tmp_path: Path, mode: str) -> None:
    archive = tmp_path / "a.tar"
    archive.write_bytes(_tar(_file("a/b", b"hello"), mode=mode))
    assert unpack_tar(archive, target) == 5
    assert (target / "a" / "b").read_bytes() == b"hello"


def test_non_seekable_stream(target: Path) -> None:
    data = gzip.compress(_tar(_file("f", b"data")))
    r, w = os.pipe()
    os.write(w, data)
    os.close(w)
    with open(r, "rb", buffering=0) as stream:
        assert unpack_tar(stream, target) == 4
    assert (target / "f").read_bytes() == b"data"


def test_existing_target_must_be_empty(target: Path) -> None:
    target.mkdir()
    (target / "keep").write_text("mine")
    with pytest.raises(InvalidParameter, match="not empty"):
        unpack_tar(io.BytesIO(_tar(_file("f"))), target)
    assert (target / "keep").read_text() == "mine"


def test_failure_empties_an_existing_target(target: Path) -> None:
    target.mkdir()
    data = _tar(_file("ok"), _file("../escape"))
    with pytest.raises(InvalidParameter):
        unpack_tar(io.BytesIO(data), target)
    assert target.is_dir() and _snapshot(target) == []


def test_later_member_replaces_earlier(target: Path) -> None:
    data = _tar(_file("f", b"one"), _file("f", b"two"), _file("d/x"), _file("d", b"file now"))
    unpack_tar(io.BytesIO(data), target)
    assert (target / "f").read_bytes() == b"two"
    assert (target / "d").read_bytes() == b"file now"


# -- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../sentinel", "a/../../sentinel", "./../host/sentinel", ".."])
def test_dotdot_escape_refused(target: Path, host: Path, name: str) -> None:
    with pytest.raises(InvalidParameter, match="leads outside the target") as err:
        unpack_tar(io.BytesIO(_tar(_file(name, b"pwned"))), target)
    assert repr(name) in str(err.value)
    _host_unchanged(host)
    assert not target.exists()


def test_dotdot_inside_is_allowed(target: Path) -> None:
    unpack_tar(io.BytesIO(_tar(_file("a/../b", b"ok"))), target)
    assert (target / "b").read_bytes() == b"ok"
    assert not (target / "a").exists()


def test_absolute_names_are_contained(target: Path, host: Path) -> None:
    unpack_tar(io.BytesIO(_tar(_file(f"{host}/sentinel", b"pwned"), _file("/etc/x"))), target)
    _host_unchanged(host)
    assert (target / str(host).lstrip("/") / "sentinel").read_bytes() == b"pwned"
    assert (target / "etc" / "x").is_file()


def test_file_naming_the_target_itself_refused(target: Path) -> None:
    with pytest.raises(InvalidParameter, match="names the target itself"):
        unpack_tar(io.BytesIO(_tar(_file("./", b"x"))), target)


def test_dot_directory_member_sets_target_mode(target: Path) -> None:
    unpack_tar(io.BytesIO(_tar((_info(".", tarfile.DIRTYPE, mode=0o711), None))), target)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o711


# -- symlinks and hard links ----------------------------------------------------------------


def test_write_through_symlink_to_dir_refused(target: Path, host: Path) -> None:
    data = _tar(_link("evil", str(host)), _file("evil/pwned", b"pwned"))
    with pytest.raises(InvalidParameter, match="refusing to write through") as err:
        unpack_tar(io.BytesIO(data), target)
    assert "evil/pwned" in str(err.value)
    _host_unchanged(host)
    assert not target.exists()


def test_write_through_relative_symlink_refused(target: Path, host: Path) -> None:
    data = _tar(_link("up", "../host"), _file("up/sentinel", b"pwned"))
    with pytest.raises(InvalidParameter):
        unpack_tar(io.BytesIO(data), target)
    _host_unchanged(host)


def test_deep_symlink_parent_refused(target: Path, host: Path) -> None:
    data = _tar(_file("a/b/c"), _link("a/b2", str(host)), _file("a/b2/x/y", b"pwned"))
    with pytest.raises(InvalidParameter, match="'a/b2'"):
        unpack_tar(io.BytesIO(data), target)
    _host_unchanged(host)


def test_file_over_symlink_replaces_the_link(target: Path, host: Path) -> None:
    data = _tar(_link("evil", str(host / "sentinel")), _file("evil", b"pwned"))
    unpack_tar(io.BytesIO(data), target)
    _host_unchanged(host)
    assert not (target / "evil").is_symlink()
    assert (target / "evil").read_bytes() == b"pwned"


def test_directory_over_symlink_replaces_the_link(target: Path, host: Path) -> None:
    data = _tar(_link("d", str(host)), (_info("d", tarfile.DIRTYPE), None), _file("d/f"))
    unpack_tar(io.BytesIO(data), target)
    _host_unchanged(host)
    assert (target / "d").is_dir() and not (target / "d").is_symlink()


def test_symlink_pointing_out_is_kept_as_is(target: Path, host: Path) -> None:
    unpack_tar(io.BytesIO(_tar(_link("l", str(host / "sentinel")))), target)
    assert os.readlink(target / "l") == str(host / "sentinel")
    _host_unchanged(host)


@pytest.mark.parametrize("linkname", ["../host/sentinel", "/etc/passwd", "missing", "a/../.."])
def test_hard_link_out_of_root_refused(target: Path, host: Path, linkname: str) -> None:
    data = _tar(_link("hl", linkname, tarfile.LNKTYPE))
    with pytest.raises(InvalidParameter) as err:
        unpack_tar(io.BytesIO(data), target)
    assert "'hl'" in str(err.value)
    _host_unchanged(host)
    assert not target.exists()


def test_hard_link_to_absolute_host_path_refused(target: Path, host: Path) -> None:
    data = _tar(_link("hl", str(host / "sentinel"), tarfile.LNKTYPE))
    with pytest.raises(InvalidParameter, match="not a file extracted earlier"):
        unpack_tar(io.BytesIO(data), target)
    _host_unchanged(host)


def test_hard_link_inside_works(target: Path) -> None:
    data = _tar(_file("a", b"data"), _link("sub/b", "a", tarfile.LNKTYPE))
    unpack_tar(io.BytesIO(data), target)
    assert os.path.samefile(target / "a", target / "sub" / "b")


def test_hard_link_to_symlink_pointing_out(target: Path, host: Path) -> None:
    data = _tar(
        _link("evil", str(host / "sentinel")),
        _link("hl", "evil", tarfile.LNKTYPE),
        _file("hl", b"pwned"),  # replaces the link; must not write through it
    )
    unpack_tar(io.BytesIO(data), target)
    _host_unchanged(host)
    assert os.readlink(target / "evil") == str(host / "sentinel")


def test_hard_link_to_symlink_links_the_symlink(target: Path, host: Path) -> None:
    data = _tar(_link("evil", str(host / "sentinel")), _link("hl", "evil", tarfile.LNKTYPE))
    unpack_tar(io.BytesIO(data), target)
    assert (target / "hl").is_symlink()
    assert os.lstat(target / "hl").st_ino == os.lstat(target / "evil").st_ino
    _host_unchanged(host)


def test_hard_link_to_dir_symlink_then_write_through_refused(target: Path, host: Path) -> None:
    data = _tar(
        _link("d", str(host)),
        _link("d2", "d", tarfile.LNKTYPE),
        _file("d2/pwned", b"pwned"),
    )
    with pytest.raises(InvalidParameter, match="refusing to write through"):
        unpack_tar(io.BytesIO(data), target)
    _host_unchanged(host)


def test_hard_link_to_directory_refused(target: Path) -> None:
    data = _tar((_info("d", tarfile.DIRTYPE), None), _link("hl", "d", tarfile.LNKTYPE))
    with pytest.raises(InvalidParameter, match="not a file extracted earlier"):
        unpack_tar(io.BytesIO(data), target)


# -- special files and modes ----------------------------------------------------------------


def test_device_nodes_skipped_fifos_created(target: Path) -> None:
    data = _tar(
        (_info("dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0), None),
        (_info("dev/mem", tarfile.CHRTYPE, devmajor=1, devminor=1), None),
        (_info("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3), None),
        (_info("run/fifo", tarfile.FIFOTYPE, mode=0o620), None),
    )
    unpack_tar(io.BytesIO(data), target)
    assert not os.path.lexists(target / "dev" / "sda")
    assert not os.path.lexists(target / "dev" / "mem")
    assert not os.path.lexists(target / "dev" / "null")
    st = os.lstat(target / "run" / "fifo")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o620


def test_setuid_setgid_stripped_sticky_kept(target: Path) -> None:
    data = _tar(
        _file("bin/su", b"\x7fELF", mode=0o4755),
        _file("bin/wall", b"\x7fELF", mode=0o2755),
        (_info("shared", tarfile.DIRTYPE, mode=0o2775), None),
        (_info("tmp", tarfile.DIRTYPE, mode=0o1777), None),
        (_info("fifo", tarfile.FIFOTYPE, mode=0o6644), None),
    )
    unpack_tar(io.BytesIO(data), target)
    assert stat.S_IMODE(os.stat(target / "bin" / "su").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(target / "bin" / "wall").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(target / "shared").st_mode) == 0o775
    assert stat.S_IMODE(os.stat(target / "tmp").st_mode) == 0o1777
    assert stat.S_IMODE(os.lstat(target / "fifo").st_mode) == 0o644


# -- limits and corruption ------------------------------------------------------------------


class _Zeros(io.RawIOBase):
    """``size`` zero bytes without holding them in memory."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n


def test_gzip_bomb_bounded(target: Path, tmp_path: Path) -> None:
    archive = tmp_path / "bomb.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        info = _info("zeros")
        info.size = 64 * MiB
        tf.addfile(info, _Zeros(info.size))
    assert archive.stat().st_size < MiB  # small on disk, 64 MiB unpacked
    with pytest.raises(InvalidParameter, match="expands beyond") as err:
        unpack_tar(archive, target, max_bytes=MiB)
    assert "'zeros'" in str(err.value)
    assert not target.exists()


def test_bomb_over_several_members(target: Path) -> None:
    data = gzip.compress(_tar(*(_file(f"f{i}", bytes(400 * 1024)) for i in range(4))))
    with pytest.raises(InvalidParameter, match="expands beyond"):
        unpack_tar(io.BytesIO(data), target, max_bytes=MiB)
    assert not target.exists()


def test_exact_limit_allowed(target: Path) -> None:
    assert unpack_tar(io.BytesIO(_tar(_file("f", bytes(1000)))), target, max_bytes=1000) == 1000


def test_oversized_pax_header_refused(target: Path) -> None:
    info = _info("f")
    info.pax_headers = {"comment": "x" * (2 * MiB)}
    data = gzip.compress(_tar((info, b"")))
    with pytest.raises(InvalidParameter, match="header record"):
        unpack_tar(io.BytesIO(data), target)
    assert not target.exists()


def test_too_many_members(target: Path) -> None:
    data = _tar(*(_file(f"f{i}") for i in range(11)))
    with pytest.raises(InvalidParameter, match="more than 10 members"):
        unpack_tar(io.BytesIO(data), target, max_members=10)
    assert not target.exists()
    unpack_tar(io.BytesIO(data), target, max_members=11)


def test_member_count_includes_skipped_members(target: Path) -> None:
    data = _tar(*((_info(f"c{i}", tarfile.CHRTYPE), None) for i in range(5)))
    with pytest.raises(InvalidParameter, match="more than 4 members"):
        unpack_tar(io.BytesIO(data), target, max_members=4)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"this is not a tar archive at all" * 40,
        b"\x1f\x8b\x08\x00garbage after a gzip magic" * 10,
        b"BZh9 not really bzip2" * 10,
        b"\xfd7zXZ\x00 not really xz" * 10,
    ],
    ids=["empty", "text", "gzip", "bzip2", "xz"],
)
def test_corrupt_archive(target: Path, data: bytes) -> None:
    with pytest.raises(InvalidParameter, match="corrupt archive"):
        unpack_tar(io.BytesIO(data), target)
    assert not target.exists()


def test_truncated_gzip(target: Path) -> None:
    data = gzip.compress(_tar(_file("a", bytes(range(256)) * 4096)))
    with pytest.raises(InvalidParameter):
        unpack_tar(io.BytesIO(data[: len(data) // 2]), target)
    assert not target.exists()


def test_truncated_member_data(target: Path) -> None:
    data = _tar(_file("a", b"y" * 4096))
    with pytest.raises(InvalidParameter):
        unpack_tar(io.BytesIO(data[: 512 + 1000]), target)
    assert not target.exists()


def test_missing_source(target: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidParameter, match="cannot read archive"):
        unpack_tar(tmp_path / "nope.tar", target)
    assert not target.exists()


# -- holes ----------------------------------------------------------------------------------

GiB = 1 << 30


def _sparse_file(path: Path, size: int, data_at: int, data: bytes) -> None:
    with open(path, "wb") as f:
        f.truncate(size)
        f.seek(data_at)
        f.write(data)


def _allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


@pytest.mark.parametrize("fmt", ["gnu", "posix"])
def test_gnu_sparse_member_keeps_its_holes(target: Path, tmp_path: Path, fmt: str) -> None:
    # GNU tar's own sparse formats (old GNU 'S' members and pax GNU.sparse 1.0); tarfile
    # cannot write them, so the archive is made by tar, as an image exporter would make it
    src = tmp_path / "src"
    src.mkdir()
    _sparse_file(src / "big", 10 * GiB, 5 * GiB, b"middle")
    archive = tmp_path / "sparse.tar"
    subprocess.run(["tar", "--sparse", f"--format={fmt}", "-cf", str(archive), "-C", str(src),
                    "big"], check=True)
    assert archive.stat().st_size < MiB
    written = unpack_tar(archive, target, max_bytes=MiB)  # 10 GiB long, a few bytes of data
    assert written < MiB
    big = target / "big"
    assert big.stat().st_size == 10 * GiB
    assert _allocated(big) < MiB
    with open(big, "rb") as f:
        f.seek(5 * GiB)
        assert f.read(6) == b"middle"
        f.seek(5 * GiB - 4096)
        assert f.read(4096) == bytes(4096)


def test_zeros_in_a_plain_member_become_holes(target: Path) -> None:
    data = bytes(8 * MiB) + b"end"
    unpack_tar(io.BytesIO(_tar(_file("f", data))), target)
    assert (target / "f").read_bytes() == data
    assert _allocated(target / "f") < MiB


def test_sparse_data_past_the_limit_names_member_and_sizes(target: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _sparse_file(src / "big", GiB, 0, os.urandom(2 * MiB))
    archive = tmp_path / "sparse.tar"
    subprocess.run(["tar", "--sparse", "-cf", str(archive), "-C", str(src), "big"], check=True)
    with pytest.raises(InvalidParameter) as err:
        unpack_tar(archive, target, max_bytes=MiB)
    assert f"'big' ({2 * MiB} bytes of data, {GiB} with holes)" in str(err.value)
    assert f"beyond {MiB} bytes" in str(err.value)
    assert not target.exists()
