"""engine.images.store: imports are atomic, names are checked, lookups behave as Docker's."""

from __future__ import annotations

import functools
import io
import json
import os
import re
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.errors import Conflict, InvalidParameter, NotFound, SystemFailure
from engine.images import store as images
from engine.images.store import Image, ImageStore


def needs_busybox(test):
    """busybox-static is installed by ``make test``: without it the test fails, never skips."""

    def check(*args, **kwargs):
        assert images.BUSYBOX.exists(), "needs /usr/bin/busybox (busybox-static)"
        return test(*args, **kwargs)

    return functools.wraps(test)(check)


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "root")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "hostname").write_text("box\n")
    (src / "bin").mkdir()
    (src / "bin" / "tool").write_bytes(b"#!/bin/sh\necho hi\n")
    os.chmod(src / "bin" / "tool", 0o4755)
    os.link(src / "bin" / "tool", src / "bin" / "tool2")
    os.symlink("/etc/passwd", src / "etc" / "abs-link")
    os.symlink("../bin", src / "etc" / "rel-link")
    os.symlink(tmp_path, src / "outside")
    os.mkfifo(src / "fifo")
    os.utime(src / "etc" / "hostname", (1_500_000_000, 1_500_000_000))
    return src


def _tar_bytes(*files: tuple[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _images_dir_empty(store: ImageStore) -> bool:
    return not store.dir.exists() or list(store.dir.iterdir()) == []


@pytest.fixture
def fixed_ids(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Ids handed out in order, so tests can make prefixes collide."""
    ids: list[str] = []
    monkeypatch.setattr(images, "_new_id", lambda name: ids.pop(0))
    yield ids


# -- busybox --------------------------------------------------------------------------------


@needs_busybox
def test_busybox_image(store: ImageStore) -> None:
    img = store.busybox()
    root = img.rootfs
    assert img.name == "busybox" and re.fullmatch(r"[0-9a-f]{64}", img.id)
    sh = root / "bin" / "sh"
    assert sh.is_file() and os.access(sh, os.X_OK)
    assert os.path.samefile(sh, root / "bin" / "busybox")
    passwd = (root / "etc" / "passwd").read_text().splitlines()
    assert "root:x:0:0:root:/root:/bin/sh" in passwd
    assert any(line.startswith("nobody:x:65534:65534:") for line in passwd)
    group = (root / "etc" / "group").read_text().splitlines()
    assert "root:x:0:" in group and any(g.startswith("nobody:x:65534:") for g in group)
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "proc", "sys", "dev", "var"):
        assert (root / d).is_dir(), d
    assert stat.S_IMODE(os.stat(root / "tmp").st_mode) == 0o1777
    applets = subprocess.run(
        [str(images.BUSYBOX), "--list-full"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        assert os.path.samefile(root / applet, root / "bin" / "busybox"), applet
    assert img.size == images.BUSYBOX.stat().st_size + len(images._PASSWD) + len(images._GROUP)
    # A static binary runs on the host as well: proves the copy is whole.
    out = subprocess.run([str(sh), "-c", "echo hello"], capture_output=True, text=True)
    assert out.stdout == "hello\n"


@needs_busybox
def test_busybox_missing_binary(store: ImageStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "BUSYBOX", Path("/nonexistent/busybox"))
    with pytest.raises(SystemFailure, match="busybox-static"):
        store.busybox()
    assert _images_dir_empty(store)


# -- import_dir -----------------------------------------------------------------------------


def test_import_dir_copies_tree(store: ImageStore, tree: Path, tmp_path: Path) -> None:
    img = store.import_dir(tree, "mytree:1.0")
    root = img.rootfs
    assert root == store.dir / img.id / "rootfs"
    assert (root / "etc" / "hostname").read_text() == "box\n"
    assert os.stat(root / "etc" / "hostname").st_mtime == 1_500_000_000
    # Symlinks are copied as symlinks, never followed.
    assert os.readlink(root / "etc" / "abs-link") == "/etc/passwd"
    assert os.readlink(root / "etc" / "rel-link") == "../bin"
    assert os.readlink(root / "outside") == str(tmp_path)
    assert os.path.samefile(root / "bin" / "tool", root / "bin" / "tool2")
    assert stat.S_IMODE(os.stat(root / "bin" / "tool").st_mode) == 0o755  # setuid stripped
    assert stat.S_ISFIFO(os.lstat(root / "fifo").st_mode)
    assert img.size == len("box\n") + len(b"#!/bin/sh\necho hi\n")
    assert img.source == str(tree)
    meta = json.loads((store.dir / img.id / "image.json").read_text())
    assert meta == {
        "Id": img.id,
        "Name": "mytree:1.0",
        "Created": img.created,
        "Size": img.size,
        "Source": str(tree),
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", img.created)


def test_import_dir_missing_source(store: ImageStore, tmp_path: Path) -> None:
    with pytest.raises(InvalidParameter, match="cannot import"):
        store.import_dir(tmp_path / "nope", "x")
    assert _images_dir_empty(store)


def test_import_dir_refuses_the_store_itself(store: ImageStore, tree: Path) -> None:
    store.import_dir(tree, "a")
    with pytest.raises(InvalidParameter, match="contains the image store"):
        store.import_dir(store.root, "b")


# -- import_tar -----------------------------------------------------------------------------


def test_import_tar_path_and_stream(store: ImageStore, tmp_path: Path) -> None:
    archive = tmp_path / "img.tar.gz"
    archive.write_bytes(_tar_bytes(("etc/os-release", b"ID=test\n")))
    a = store.import_tar(archive, "from-path")
    b = store.import_tar(io.BytesIO(archive.read_bytes()), "from-stream")
    assert (a.rootfs / "etc" / "os-release").read_bytes() == b"ID=test\n"
    assert (b.rootfs / "etc" / "os-release").read_bytes() == b"ID=test\n"
    assert a.size == b.size == 8
    assert a.source == str(archive)


@pytest.mark.parametrize(
    "data",
    [
        b"not a tar",
        _tar_bytes(("../escape", b"x")),
        _tar_bytes(("big", bytes(4096))),
    ],
    ids=["corrupt", "escape", "too-big"],
)
def test_failed_import_leaves_nothing(store: ImageStore, tmp_path: Path, data: bytes) -> None:
    with pytest.raises(InvalidParameter):
        store.import_tar(io.BytesIO(data), "broken", max_bytes=1024)
    assert store.dir.is_dir() and list(store.dir.iterdir()) == []
    assert store.list() == []
    assert not (tmp_path / "escape").exists()


def test_failure_writing_metadata_leaves_nothing(
    store: ImageStore, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(path: Path, obj: object) -> None:
        raise SystemFailure("disk full")

    monkeypatch.setattr(images.store, "atomic_write_json", boom)
    with pytest.raises(SystemFailure, match="disk full"):
        store.import_dir(tree, "x")
    assert list(store.dir.iterdir()) == []


def test_failure_during_copy_leaves_nothing(
    store: ImageStore, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(images.sparse, "copy_regions", boom)
    with pytest.raises(SystemFailure, match="No space left"):
        store.import_dir(tree, "x")
    assert list(store.dir.iterdir()) == []


# -- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["../x", "a/b", "", "a" * 300, ".hidden", "-x", "a:", ":tag", "a:b:c", "a b", "é", "x\n"],
)
def test_invalid_names(store: ImageStore, tree: Path, name: str) -> None:
    with pytest.raises(InvalidParameter, match=re.escape(f"invalid image name: {name!r}")):
        store.import_dir(tree, name)
    assert _images_dir_empty(store)


@pytest.mark.parametrize("name", ["busybox", "busybox:1.36", "my_img.v2-x:latest", "a" * 255])
def test_valid_names(name: str) -> None:
    assert images.validate_name(name) == name


def test_name_in_use(store: ImageStore, tree: Path) -> None:
    first = store.import_dir(tree, "app")
    with pytest.raises(Conflict, match="image name app is already in use"):
        store.import_dir(tree, "app")
    assert [img.id for img in store.list()] == [first.id]
    assert sorted(p.name for p in store.dir.iterdir()) == [first.id]


def test_replace_removes_the_old_image(store: ImageStore, tree: Path) -> None:
    first = store.import_dir(tree, "app")
    second = store.import_dir(tree, "app", replace=True)
    assert second.id != first.id
    assert [img.id for img in store.list()] == [second.id]
    assert not (store.dir / first.id).exists()
    assert store.get("app") == second


# -- get, list, remove ----------------------------------------------------------------------


def test_get_by_name_id_and_prefix(store: ImageStore, tree: Path) -> None:
    img = store.import_dir(tree, "app")
    assert store.get("app") == img
    assert store.get(img.id) == img
    assert store.get(img.id[:12]) == img
    assert store.get(img.id[:1]) == img
    assert store.get(f"sha256:{img.id}") == img


def test_ambiguous_prefix(store: ImageStore, tree: Path, fixed_ids: list[str]) -> None:
    fixed_ids += ["abc1" + "0" * 60, "abc2" + "0" * 60]
    a = store.import_dir(tree, "a")
    b = store.import_dir(tree, "b")
    with pytest.raises(InvalidParameter, match="ambiguous"):
        store.get("abc")
    assert store.get("abc1") == a
    assert store.get("abc2") == b


def test_name_wins_over_id_prefix(store: ImageStore, tree: Path, fixed_ids: list[str]) -> None:
    fixed_ids += ["abc" + "0" * 61, "def" + "0" * 61]
    store.import_dir(tree, "x")
    named = store.import_dir(tree, "abc")
    assert store.get("abc") == named


@pytest.mark.parametrize("ref", ["nope", "", "0" * 64, "zz"])
def test_not_found_message(store: ImageStore, tree: Path, ref: str) -> None:
    store.import_dir(tree, "app")
    with pytest.raises(NotFound) as err:
        store.get(ref)
    assert str(err.value) == f"No such image: {ref}"


def test_list_on_a_fresh_root(store: ImageStore) -> None:
    assert store.list() == []


def test_list_skips_damaged_and_temporary_folders(store: ImageStore, tree: Path) -> None:
    good = store.import_dir(tree, "good")
    d = store.dir
    (d / ".tmp-abcdef").mkdir()  # an import in flight
    (d / ("1" * 64)).mkdir()  # no image.json
    (d / ("2" * 64)).mkdir()
    (d / ("2" * 64) / "image.json").write_text("{half a docu")
    (d / ("3" * 64) / "rootfs").mkdir(parents=True)
    (d / ("3" * 64) / "image.json").write_text(json.dumps({"Id": "3" * 64, "Name": 5}))
    (d / ("4" * 64) / "rootfs").mkdir(parents=True)  # Id does not match the folder
    (d / ("4" * 64) / "image.json").write_text(
        json.dumps({"Id": "5" * 64, "Name": "x", "Created": "", "Size": 0, "Source": ""})
    )
    (d / ("6" * 64)).mkdir()  # metadata but no rootfs
    (d / ("6" * 64) / "image.json").write_text(
        json.dumps({"Id": "6" * 64, "Name": "y", "Created": "", "Size": 0, "Source": ""})
    )
    (d / ("7" * 64)).write_text("a stray file")
    (d / "README").write_text("stray")
    assert store.list() == [good]
    assert store.get("good") == good


def test_remove(store: ImageStore, tree: Path) -> None:
    keep = store.import_dir(tree, "keep")
    img = store.import_dir(tree, "gone")
    assert store.remove(img.id[:10]) == img
    assert not (store.dir / img.id).exists()
    assert store.list() == [keep]
    assert sorted(p.name for p in store.dir.iterdir()) == [keep.id]
    with pytest.raises(NotFound, match="No such image: gone"):
        store.get("gone")
    with pytest.raises(NotFound, match="No such image: gone"):
        store.remove("gone")


def test_to_dict(store: ImageStore, tree: Path) -> None:
    img = store.import_dir(tree, "app:v1")
    d = img.to_dict()
    assert d["Id"] == img.id and d["RepoTags"] == ["app:v1"]
    assert d["Created"] == img.created and d["Size"] == img.size
    assert d["RootFS"] == {"Type": "dir", "Path": str(img.rootfs)}
    assert json.loads(json.dumps(d)) == d
    assert isinstance(img, Image) and img.short_id == img.id[:12]


# -- size limit and holes -------------------------------------------------------------------


def test_import_dir_keeps_holes(store: ImageStore, tmp_path: Path) -> None:
    # a 2 MB folder holding a 10 GB sparse file once filled the disk
    src = tmp_path / "sparse"
    src.mkdir()
    (src / "data").write_bytes(os.urandom(2 << 20))
    with open(src / "big", "wb") as f:
        f.truncate(10 << 30)
        f.seek(7 << 30)
        f.write(b"seven")
    image = store.import_dir(src, "sparse", max_bytes=4 << 20)
    big = image.rootfs / "big"
    assert big.stat().st_size == 10 << 30
    assert big.stat().st_blocks * 512 < 1 << 20
    with open(big, "rb") as f:
        f.seek(7 << 30)
        assert f.read(5) == b"seven"
    assert (image.rootfs / "data").read_bytes() == (src / "data").read_bytes()


def test_import_dir_over_the_limit_refused_naming_the_file(store: ImageStore,
                                                           tmp_path: Path) -> None:
    src = tmp_path / "fat"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "blob").write_bytes(os.urandom(3 << 20))
    with pytest.raises(InvalidParameter) as err:
        store.import_dir(src, "fat", max_bytes=2 << 20)
    text = str(err.value)
    assert f"sub/blob ({3 << 20} bytes of data, {3 << 20} with holes)" in text
    assert f"limit of {2 << 20} bytes" in text
    assert store.list() == []
    assert [p.name for p in store.dir.iterdir() if p.name.startswith(".tmp-")] == []
