"""``corral image import`` of folders and archives holding sparse files: holes are kept, and a
tree past ``--max-size`` bytes of file data is refused with one line naming the file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from engine import Engine

REPO = Path(__file__).resolve().parents[2]
MiB, GiB = 1 << 20, 1 << 30


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine", "--root", str(root), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=120,
                          stdin=subprocess.DEVNULL)


def _sparse_tree(top: Path) -> Path:
    top.mkdir()
    (top / "bin").mkdir()
    (top / "bin" / "busybox").write_bytes(Path("/usr/bin/busybox").read_bytes())
    os.chmod(top / "bin" / "busybox", 0o755)
    with open(top / "disk.img", "wb") as f:
        f.truncate(10 * GiB)
        f.seek(3 * GiB)
        f.write(b"data")
    return top


def test_sparse_folder_and_archive_keep_holes(engine: Engine, root_dir: Path,
                                              tmp_path: Path) -> None:
    src = _sparse_tree(tmp_path / "tree")
    archive = tmp_path / "tree.tar"
    subprocess.run(["tar", "--sparse", "-cf", str(archive), "-C", str(src), "."], check=True)
    for source, name in ((src, "sparse-dir"), (archive, "sparse-tar")):
        r = _cli(root_dir, "image", "import", str(source), name)
        assert r.returncode == 0, r.stderr
        disk = engine.images.get(name).rootfs / "disk.img"
        assert disk.stat().st_size == 10 * GiB
        assert disk.stat().st_blocks * 512 < MiB, name
    # a container reads the file as it was
    cid = engine.create("sparse-tar", ["/bin/busybox", "sh", "-c",
                                       "/bin/busybox dd if=/disk.img bs=1 skip=3221225472 "
                                       "count=4 2>/dev/null"], network="none")
    engine.start(cid)
    assert engine.wait(cid, timeout=60) == 0
    assert "".join(r.text for r in engine.logs(cid)) == "data"
    engine.remove(cid, force=True)


def test_import_past_max_size_refused_in_one_line(engine: Engine, root_dir: Path,
                                                  tmp_path: Path) -> None:
    src = tmp_path / "fat"
    (src / "opt").mkdir(parents=True)
    (src / "opt" / "blob").write_bytes(os.urandom(3 * MiB))
    archive = tmp_path / "fat.tar"
    subprocess.run(["tar", "-cf", str(archive), "-C", str(src), "."], check=True)
    for source, named in ((src, "opt/blob (3145728 bytes of data"),
                          (archive, "'./opt/blob' (3145728 bytes of data")):
        r = _cli(root_dir, "image", "import", "--max-size", "2m", str(source), "fat")
        lines = r.stderr.splitlines()
        assert r.returncode != 0 and len(lines) == 1, r.stderr
        assert named in lines[0] and "2097152 bytes" in lines[0], lines[0]
    assert engine.images.list() == []
    r = _cli(root_dir, "image", "import", "--max-size", "zero", str(src), "fat")
    assert r.returncode != 0 and "--max-size" in r.stderr
