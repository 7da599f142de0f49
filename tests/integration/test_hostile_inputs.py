"""Hostile inputs: each is refused or contained, and nothing outside the engine's root changes.

Every test owns a sentinel folder on the host (``/var/tmp/corral-sentinel-<random>``) that the
hostile names, links and archive members aim at; it must be byte for byte unchanged afterwards
(contents, modes, link counts, entries). Besides, ``/etc`` and the folder holding the engine's
root must gain nothing, and ``/tmp`` and ``/var/tmp`` nothing a hostile input could have made
(other processes write there at the same time, so only names of ours are looked for).

Images are real, built with ``Engine.images.import_dir`` or ``corral image import``; containers
are real (runc, conmon, overlayfs), with ``network="none"`` since networking is not the point.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import pytest

from engine import Engine, InvalidParameter, NotFound, StartFailed
from engine.errors import CorralError

REPO = Path(__file__).resolve().parents[2]
BUSYBOX = Path("/usr/bin/busybox")
APPLETS = ("sh", "cat", "echo", "ls", "id", "pwd", "true", "sleep", "rm", "ln", "mkfifo",
           "mknod", "head", "wc", "printf", "[", "test", "env")
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
GROUP = "root:x:0:\nnobody:x:65534:\n"
BOUND = 10  # seconds: no hostile input may make an operation hang longer
# Names a hostile input could make appear outside the root: parts of the hostile names, what
# the engine writes in its folders, what runc makes below /dev.
FOREIGN_NAMES = frozenset({
    "etc", "a", "b", "x", "config.json", "state.json", "lock", "volume.json", "_data",
    "rootfs", "diff", "work", "bundle", "fd", "ptmx", "stdin", "stdout", "stderr", "core",
    "hosts", "resolv.conf", "hostname", "passwd", "group", "new", "pwned", "shm", "pts",
    "mqueue", "console",
})


# -- the host side: a sentinel and a watch over folders outside the root -----------------------

def _tree(top: Path) -> dict[str, tuple]:
    """Everything under ``top``: type, mode, link count, size and content or link target."""
    out: dict[str, tuple] = {}
    st = os.lstat(top)
    out["."] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_nlink)
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                data: object = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                data = path.read_bytes()
            else:
                data = None
            out[str(path.relative_to(top))] = (stat.S_IFMT(st.st_mode),
                                               stat.S_IMODE(st.st_mode), st.st_nlink, data)
    return out


@dataclass
class Sentinel:
    """A folder on the host that hostile inputs aim at, with a file of known content."""

    dir: Path
    token: str
    before: dict[str, tuple] = field(default_factory=dict)

    @property
    def file(self) -> Path:
        return self.dir / "sentinel"

    def rel(self) -> str:
        """The folder as a relative path that climbs far above any root."""
        return "../" * 24 + str(self.dir).lstrip("/")

    def assert_unchanged(self) -> None:
        assert _tree(self.dir) == self.before, f"the sentinel folder {self.dir} changed"


@pytest.fixture
def sentinel() -> Iterator[Sentinel]:
    token = uuid.uuid4().hex
    top = Path("/var/tmp") / f"corral-sentinel-{token[:12]}"
    top.mkdir(mode=0o755)
    try:
        (top / "sentinel").write_text(f"sentinel {token}\n")
        # a passwd with a user the image lacks: found only if the host's file were read
        (top / "passwd").write_text("someone:x:4242:4242:someone:/:/bin/sh\n")
        (top / "sub").mkdir()
        s = Sentinel(top, token)
        s.before = _tree(top)
        yield s
    finally:
        shutil.rmtree(top, ignore_errors=True)


class Outside:
    """What exists outside the engine's root before a test, to compare with after it."""

    def __init__(self, root: Path, scratch: Path) -> None:
        self.root, self.scratch = root, scratch
        self.etc = set(os.listdir("/etc"))
        self.tops = {d: set(os.listdir(d)) for d in ("/tmp", "/var/tmp")}
        self.parent = self._parent()

    def _parent(self) -> dict[str, tuple]:
        skip = {self.root.name, self.scratch.name}
        tree = {}
        for entry in os.scandir(self.root.parent):
            if entry.name not in skip:
                tree.update({f"{entry.name}/{k}": v for k, v in _tree(Path(entry.path)).items()})
        return tree

    def assert_nothing_new(self) -> None:
        assert set(os.listdir("/etc")) == self.etc
        assert self._parent() == self.parent, f"something appeared next to {self.root}"
        for d, before in self.tops.items():
            new = set(os.listdir(d)) - before
            ours = {n for n in new if n in FOREIGN_NAMES or "root=" in n}
            assert not ours, f"{d} gained {sorted(ours)}"


@pytest.fixture
def scratch(root_dir: Path) -> Path:
    """A work folder next to the root (sources of images, archives), left out of the watch."""
    path = root_dir.parent / "scratch"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def outside(root_dir: Path, scratch: Path, sentinel: Sentinel) -> Outside:
    return Outside(root_dir, scratch)


# -- helpers -------------------------------------------------------------------------------------

@contextlib.contextmanager
def bounded(seconds: float = BOUND) -> Iterator[None]:
    """Fail with TimeoutError if the block takes longer than ``seconds``: SIGALRM interrupts
    even a blocking open of a FIFO, and the engine's locks are released on the way out."""

    def expire(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"still running after {seconds}s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def minimal_rootfs(dst: Path) -> Path:
    """A small busybox root (one copy of the binary, applets as hard links) to make hostile."""
    for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "root", "var/tmp"):
        (dst / d).mkdir(parents=True)
    os.chmod(dst / "tmp", 0o1777)
    shutil.copyfile(BUSYBOX, dst / "bin" / "busybox")
    os.chmod(dst / "bin" / "busybox", 0o755)
    for applet in APPLETS:
        os.link(dst / "bin" / "busybox", dst / "bin" / applet)
    (dst / "etc" / "passwd").write_text(PASSWD)
    (dst / "etc" / "group").write_text(GROUP)
    return dst


def replace(path: Path, make: Callable[[Path], None]) -> None:
    """Replace whatever is at ``path`` (file, link or folder) with what ``make`` makes."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    make(path)


def hostile_image(engine: Engine, scratch: Path, changes: dict[str, Callable[[Path], None]]) -> str:
    src = minimal_rootfs(scratch / unique("src"))
    for rel, make in changes.items():
        replace(src / rel, make)
    name = unique("hostile")
    engine.images.import_dir(src, name)
    shutil.rmtree(src)
    return name


def symlink_to(target: str) -> Callable[[Path], None]:
    return lambda path: os.symlink(target, path)


@dataclass
class Outcome:
    started: bool
    output: str = ""
    error: str = ""


def attempt(engine: Engine, probe, image: str, script: str, starts: int = 1,
            **kwargs: object) -> Outcome:
    """Create a container of ``image`` running ``script``, start it ``starts`` times (each
    start after the previous run ended), remove it; refused or not, nothing may be left."""
    cid = engine.create(image, ["sh", "-c", script], network="none", name=unique("hostile"),
                        **kwargs)  # type: ignore[arg-type]
    outcome = Outcome(started=True)
    try:
        for _ in range(starts):
            with bounded():
                try:
                    engine.start(cid)
                except StartFailed as exc:
                    outcome = Outcome(started=False, error=str(exc))
                    break
                engine.wait(cid, timeout=BOUND)
        if outcome.started:
            outcome.output = "".join(r.text for r in engine.logs(cid))
        else:
            assert probe.leaks(cid) == [], "a refused start left something behind"
    finally:
        engine.remove(cid, force=True)
    assert probe.leaks(cid, removed=True) == []
    return outcome


# -- names and ids used as paths -----------------------------------------------------------------

HOSTILE_REFS = ["../../etc", "a/b", "-root=/tmp", "a\0b", "x" * 4096, "..", "SENTINEL/x",
                "RELATIVE"]


def _ref(ref: str, sentinel: Sentinel) -> str:
    return {"SENTINEL/x": f"{sentinel.dir}/x", "RELATIVE": sentinel.rel()}.get(ref, ref)


@pytest.mark.parametrize("raw", HOSTILE_REFS, ids=["dotdot-etc", "slash", "option", "nul",
                                                   "4KiB", "dotdot", "absolute", "relative"])
def test_names_and_ids_used_as_paths(engine: Engine, busybox: str, probe, sentinel: Sentinel,
                                     outside: Outside, scratch: Path, raw: str) -> None:
    ref = _ref(raw, sentinel)
    source = minimal_rootfs(scratch / unique("src"))
    listing = sorted(os.listdir(engine.layout.containers)), sorted(os.listdir(engine.layout.names))
    refused = (InvalidParameter, NotFound)
    operations: list[tuple[str, Callable[[], object]]] = [
        ("create --name", lambda: engine.create(busybox, ["true"], name=ref)),
        ("start", lambda: engine.start(ref)),
        ("stop", lambda: engine.stop(ref, timeout=0)),
        ("kill", lambda: engine.kill(ref)),
        ("pause", lambda: engine.pause(ref)),
        ("inspect", lambda: engine.inspect(ref)),
        ("remove", lambda: engine.remove(ref, force=True)),
        ("logs", lambda: list(engine.logs(ref))),
        ("exec", lambda: engine.exec(ref, ["true"], timeout=BOUND)),
        ("wait", lambda: engine.wait(ref, timeout=1)),
        ("image import", lambda: engine.images.import_dir(source, ref)),
        ("image get", lambda: engine.images.get(ref)),
        ("image remove", lambda: engine.image_remove(ref)),
        ("create image", lambda: engine.create(ref, ["true"])),
        ("volume create", lambda: engine.volume_create(ref)),
        ("volume inspect", lambda: engine.volume_inspect(ref)),
        ("volume remove", lambda: engine.volume_remove(ref)),
        ("network create", lambda: engine.network_create(ref)),
        ("network inspect", lambda: engine.network_inspect(ref)),
        ("network remove", lambda: engine.network_remove(ref)),
        ("create --network", lambda: engine.create(busybox, ["true"], network=ref)),
    ]
    if not ref.startswith("/"):  # "/path:/target" is a bind mount, not a volume name
        operations.append(("create -v", lambda: engine.create(busybox, ["true"],
                                                              volumes=[f"{ref}:/data"])))
    for what, op in operations:
        with bounded(), pytest.raises(refused):
            op()
            pytest.fail(f"{what} accepted {ref[:64]!r}")
    assert (sorted(os.listdir(engine.layout.containers)),
            sorted(os.listdir(engine.layout.names))) == listing
    assert [i.name for i in engine.images.list()] == [busybox]
    assert engine.volume_list() == []
    assert probe.temporary_files() == []
    sentinel.assert_unchanged()
    outside.assert_nothing_new()


class Corral:
    """``corral --root ROOT ...`` as a separate process, as a user runs it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "engine", "--root", str(self.root), *args],
                              capture_output=True, text=True, cwd=REPO, timeout=60,
                              stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("raw", ["../../etc", "a/b", "SENTINEL/x"])
def test_names_used_as_paths_through_the_cli(engine: Engine, busybox: str, sentinel: Sentinel,
                                             outside: Outside, scratch: Path, raw: str) -> None:
    ref = _ref(raw, sentinel)
    source = minimal_rootfs(scratch / unique("src"))
    corral = Corral(engine.layout.root)
    commands = [("create", "--name", ref, busybox, "true"), ("start", ref), ("inspect", ref),
                ("logs", ref), ("exec", ref, "true"), ("rm", "-f", ref),
                ("image", "import", str(source), ref), ("volume", "create", ref),
                ("network", "create", ref)]
    for args in commands:
        r = corral(*args)
        assert r.returncode != 0, f"corral {' '.join(args)} accepted {ref!r}"
        assert r.stderr.strip() and "Traceback" not in r.stderr, r.stderr
    assert [i.name for i in engine.images.list()] == [busybox]
    sentinel.assert_unchanged()
    outside.assert_nothing_new()


# -- environment and working directory -----------------------------------------------------------

BAD_ENV = ["=x", "=KEY=value", "A\nB=1", "A\0B=1", "A=1\0", "\n=1"]


def test_environment_keys_refused(engine: Engine, busybox: str, probe, sentinel: Sentinel,
                                  outside: Outside) -> None:
    for item in BAD_ENV:
        with pytest.raises(InvalidParameter, match="invalid environment variable"):
            engine.create(busybox, ["true"], env=[item])
    cid = engine.create(busybox, ["sleep", "300"], network="none", name=unique("env"))
    try:
        engine.start(cid)
        for item in BAD_ENV:
            with bounded(), pytest.raises(InvalidParameter, match="invalid environment"):
                engine.exec(cid, ["true"], env=[item], timeout=BOUND)
        # a newline in a value stays in that value: it cannot smuggle a second variable in
        res = engine.exec(cid, ["sh", "-c", 'echo "[${SMUGGLED:-none}]"'],
                          env=["SAFE=x\nSMUGGLED=1"], capture=True, timeout=BOUND)
        assert res.output == b"[none]\n"
    finally:
        engine.remove(cid, force=True)
    assert engine.list(all=True) == []
    assert probe.leaks(cid, removed=True) == []
    sentinel.assert_unchanged()
    outside.assert_nothing_new()


FD_NUMBERS = range(10)


def test_working_directory_proc_self_fd(engine: Engine, busybox: str, probe, sentinel: Sentinel,
                                        outside: Outside) -> None:
    # CVE-2024-21626: a working directory of /proc/self/fd/N, N an fd runc leaked, was a host
    # folder. Whatever N, the start fails cleanly or the process is inside the container: its
    # relative climb to the sentinel finds nothing.
    peek = f"cat {sentinel.rel()}/sentinel; pwd"
    for n in FD_NUMBERS:
        out = attempt(engine, probe, busybox, peek, working_dir=f"/proc/self/fd/{n}")
        assert sentinel.token not in out.output + out.error
    with pytest.raises(InvalidParameter, match="absolute path"):
        engine.create(busybox, ["true"], working_dir="../../..")
    out = attempt(engine, probe, busybox, peek, working_dir="/../../..")
    # stdout (pwd) and stderr (cat's error) are two streams: their order in the log may vary
    assert out.started and sentinel.token not in out.output
    assert "/" in out.output.splitlines()
    cid = engine.create(busybox, ["sleep", "300"], network="none", name=unique("wd"))
    try:
        engine.start(cid)
        for workdir in [*(f"/proc/self/fd/{n}" for n in FD_NUMBERS), "../../..", "/../../.."]:
            with bounded():
                res = engine.exec(cid, ["sh", "-c", peek], workdir=workdir, capture=True,
                                  timeout=BOUND)
            assert sentinel.token.encode() not in res.output, workdir
    finally:
        engine.remove(cid, force=True)
    assert probe.leaks(cid, removed=True) == []
    sentinel.assert_unchanged()
    outside.assert_nothing_new()


# -- images whose paths link out of the root -----------------------------------------------------

# Writes through every path the engine or runc touches; harmless where they are what they seem.
WRITE_THROUGH = ("for f in /dev/pwned /proc/pwned /sys/pwned /etc/hosts /etc/resolv.conf "
                 "/etc/hostname /data/pwned /data/in/pwned pwned; do "
                 "echo pwned 2>/dev/null > $f; done; cat SENTINEL 2>/dev/null; pwd; echo end")

LINK_CASES = {
    "proc": ({"proc": "SENT"}, {}),
    "dev": ({"dev": "SENT"}, {}),
    "dev-relative": ({"dev": "REL"}, {}),
    "sys": ({"sys": "SENT"}, {}),
    "etc-hosts": ({"etc/hosts": "SENT/sentinel"}, {}),
    "etc-resolv.conf": ({"etc/resolv.conf": "SENT/sentinel"}, {}),
    "etc-hostname": ({"etc/hostname": "SENT/hostname"}, {}),
    "etc": ({"etc": "SENT"}, {}),
    "etc-relative": ({"etc": "REL"}, {}),
    "volume-target": ({"data": "SENT"}, {"volumes": ["VOLUME:/data"]}),
    "bind-target": ({"data": "SENT"}, {"volumes": ["BIND:/data/in"]}),
    "tmpfs-target": ({"data": "SENT"}, {"tmpfs": ["/data"]}),
    "workdir": ({"work": "SENT"}, {"working_dir": "/work/new"}),
    "workdir-relative": ({"work": "REL"}, {"working_dir": "/work/new"}),
}


@pytest.mark.parametrize("case", sorted(LINK_CASES))
def test_image_links_out_of_the_root(engine: Engine, probe, sentinel: Sentinel,
                                     outside: Outside, scratch: Path, case: str) -> None:
    links, options = LINK_CASES[case]

    def target(t: str) -> str:
        return t.replace("SENT", str(sentinel.dir)).replace("REL", sentinel.rel())

    image = hostile_image(engine, scratch,
                          {rel: symlink_to(target(t)) for rel, t in links.items()})
    bind_source = scratch / unique("bind")
    volume = unique("vol")
    kwargs = {k: [v.replace("VOLUME", volume).replace("BIND", str(bind_source)) for v in vs]
              if isinstance(vs, list) else vs for k, vs in options.items()}
    # twice: the second start finds the container's own layer as the first run left it
    out = attempt(engine, probe, image, WRITE_THROUGH.replace("SENTINEL", str(sentinel.file)),
                  starts=2, **kwargs)
    # contained rather than refused: the links resolve inside the root, as in Docker
    assert out.started, out.error
    assert "end" in out.output.split(), out.output  # the script ran to its end
    assert sentinel.token not in out.output
    if options.get("volumes"):
        with contextlib.suppress(NotFound):
            engine.volume_remove(volume)
    sentinel.assert_unchanged()
    outside.assert_nothing_new()


# -- tar archives --------------------------------------------------------------------------------

def _member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", mode: int = 0o644,
            linkname: str = "", devmajor: int = 0, devminor: int = 0) -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname = kind, mode, linkname
    info.devmajor, info.devminor = devmajor, devminor
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def _write_tar(path: Path, members: list[tuple]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)
    return path


def _tar_cases(s: Sentinel) -> dict[str, tuple[str, list[tuple]]]:
    """name -> (expected: "refused" or "contained", members)."""
    sent, rel = str(s.dir), s.rel()
    return {
        "dotdot": ("refused", [_member("ok"), _member(f"{rel}/pwned", data=b"x")]),
        "dotdot-inside-name": ("refused", [_member("a/../../../pwned", data=b"x")]),
        "absolute": ("contained", [_member(f"{sent}/pwned", data=b"x")]),
        "symlink-then-file": ("refused", [_member("evil", tarfile.SYMTYPE, linkname=sent),
                                          _member("evil/pwned", data=b"x")]),
        "relative-symlink-then-file": ("refused", [
            _member("evil", tarfile.SYMTYPE, linkname=rel), _member("evil/pwned", data=b"x")]),
        "symlink-then-same-name": ("contained", [
            _member("evil", tarfile.SYMTYPE, linkname=f"{sent}/sentinel"),
            _member("evil", data=b"overwritten")]),
        "hardlink-absolute": ("refused", [
            _member("h", tarfile.LNKTYPE, linkname=f"{sent}/sentinel")]),
        "hardlink-relative": ("refused", [
            _member("h", tarfile.LNKTYPE, linkname=f"{rel}/sentinel")]),
        "hardlink-through-symlink": ("refused", [
            _member("evil", tarfile.SYMTYPE, linkname=sent),
            _member("h", tarfile.LNKTYPE, linkname="evil/sentinel")]),
        "device-nodes": ("contained", [
            _member("dev/mem", tarfile.CHRTYPE, devmajor=1, devminor=1),
            _member("dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0), _member("ok")]),
        "setuid": ("contained", [_member("suid", data=b"#!/bin/sh\n", mode=0o4755),
                                 _member("sgid", data=b"#!/bin/sh\n", mode=0o2755)]),
    }


TAR_CASE_NAMES = sorted(_tar_cases(Sentinel(Path("/x"), "")))


@pytest.mark.parametrize("case", TAR_CASE_NAMES)
def test_tar_archives_through_the_cli(engine: Engine, busybox: str, probe, sentinel: Sentinel,
                                      outside: Outside, scratch: Path, case: str) -> None:
    expected, members = _tar_cases(sentinel)[case]
    archive = _write_tar(scratch / f"{case}.tar", members)
    name = unique("tar")
    with bounded(60):
        r = Corral(engine.layout.root)("image", "import", str(archive), name)
    if expected == "refused":
        assert r.returncode != 0, r.stdout
        assert "Traceback" not in r.stderr and r.stderr.strip(), r.stderr
        assert [i.name for i in engine.images.list()] == [busybox]
    else:
        assert r.returncode == 0, r.stderr
        rootfs = engine.images.get(name).rootfs
        if case == "absolute":
            assert (rootfs / str(sentinel.dir).lstrip("/") / "pwned").read_bytes() == b"x"
        elif case == "symlink-then-same-name":
            assert (rootfs / "evil").read_bytes() == b"overwritten"
        elif case == "device-nodes":
            assert (rootfs / "ok").is_file()
            assert not os.path.lexists(rootfs / "dev/mem")
            assert not os.path.lexists(rootfs / "dev/sda")
        elif case == "setuid":
            for f in ("suid", "sgid"):
                mode = os.lstat(rootfs / f).st_mode
                assert not mode & (stat.S_ISUID | stat.S_ISGID), oct(mode)
    assert probe.temporary_files() == []
    assert not [p for p in engine.images.dir.iterdir() if p.name.startswith(".tmp-")]
    sentinel.assert_unchanged()
    outside.assert_nothing_new()


def test_decompression_bombs_bounded(engine: Engine, busybox: str, probe, sentinel: Sentinel,
                                     outside: Outside, scratch: Path) -> None:
    # through the API, whose limits can be set small: at the CLI's default (4 GiB) a bomb
    # would cost minutes of disk writes before being refused
    bomb = scratch / "bomb.tar.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as gz, \
            tarfile.open(fileobj=gz, mode="w|") as tar:
        info = tarfile.TarInfo("zeros")
        info.size = 64 << 20
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    assert bomb.stat().st_size < 1 << 20
    with bounded(60), pytest.raises(InvalidParameter):
        engine.images.import_tar(bomb, unique("bomb"), max_bytes=8 << 20)
    many = _write_tar(scratch / "many.tar", [_member(f"f{i}") for i in range(300)])
    with bounded(60), pytest.raises(InvalidParameter):
        engine.images.import_tar(many, unique("many"), max_members=100)
    assert [i.name for i in engine.images.list()] == [busybox]
    assert probe.temporary_files() == []
    assert not [p for p in engine.images.dir.iterdir() if p.name.startswith(".tmp-")]
    sentinel.assert_unchanged()
    outside.assert_nothing_new()


# -- /etc/passwd and /etc/group that are not files ------------------------------------------------

def _fifo(path: Path) -> None:
    os.mkfifo(path)


PASSWD_CASES: dict[str, tuple[str, Callable[[Sentinel], Callable[[Path], None]], bool]] = {
    # name: (the file, how it is made, whether a start as root must be refused too)
    "passwd-fifo": ("etc/passwd", lambda s: _fifo, True),
    "passwd-dev-zero": ("etc/passwd", lambda s: symlink_to("/dev/zero"), True),
    "passwd-proc": ("etc/passwd", lambda s: symlink_to("/proc/self/environ"), True),
    "passwd-folder": ("etc/passwd", lambda s: lambda p: p.mkdir(), True),
    "passwd-host-file": ("etc/passwd", lambda s: symlink_to(f"{s.dir}/passwd"), False),
    "passwd-host-file-relative": ("etc/passwd", lambda s: symlink_to(f"{s.rel()}/passwd"),
                                  False),
    "group-fifo": ("etc/group", lambda s: _fifo, True),
}


@pytest.mark.parametrize("case", sorted(PASSWD_CASES))
def test_account_files_that_are_not_files(engine: Engine, probe, sentinel: Sentinel,
                                          outside: Outside, scratch: Path, case: str) -> None:
    rel, make, refused_as_root = PASSWD_CASES[case]
    image = hostile_image(engine, scratch, {rel: make(sentinel)})
    # a user name is looked up by the engine, as data, in bounded time (attempt bounds it)
    out = attempt(engine, probe, image, "id", user="someone")
    assert not out.started
    assert "not a regular file" in out.error or "unable to find user someone" in out.error, \
        out.error
    # runc reads the files at every start whatever the user: refused before, or contained
    out = attempt(engine, probe, image, "id")
    if refused_as_root:
        assert not out.started and "not a regular file" in out.error, out.error
    else:
        assert out.started and out.output.startswith("uid=0"), out
        assert "4242" not in out.output
    sentinel.assert_unchanged()
    outside.assert_nothing_new()


def _wait_for(path: Path, is_kind: Callable[[int], bool]) -> None:
    with bounded():
        while True:
            with contextlib.suppress(FileNotFoundError):
                if is_kind(os.lstat(path).st_mode):
                    return
            time.sleep(0.02)


# The container's first process turns its own /etc/passwd into a FIFO when the test says so
# (by a file it makes in the container's /tmp); the test then puts the device /dev/zero there.
REPLACER = ("until [ -e /tmp/go1 ]; do sleep 0.05; done; rm /etc/passwd; mkfifo /etc/passwd; "
            "sleep 300")


def test_account_files_replaced_by_the_container(engine: Engine, busybox: str, probe,
                                                 sentinel: Sentinel, outside: Outside) -> None:
    # The next exec and the next start must neither hang on the FIFO nor open the device (a
    # driver may act on open): runc would read the file inside the container at either. The
    # container makes the FIFO; the device node is put in its layer from the host, as an image
    # could ship it (the container's own mknod of a device is refused by seccomp).
    cid = engine.create(busybox, ["sh", "-c", REPLACER], network="none", name=unique("acct"))
    rootfs = engine.layout.container(cid).rootfs
    try:
        engine.start(cid)
        res = engine.exec(cid, ["id", "-u"], user="nobody", capture=True, timeout=BOUND)
        assert res.output == b"65534\n", res.output  # names are looked up by the engine
        (rootfs / "tmp" / "go1").touch()
        _wait_for(rootfs / "etc" / "passwd", stat.S_ISFIFO)
        for user in (None, "0", "0:0", "someone"):
            with bounded(), pytest.raises(InvalidParameter, match="not a regular file"):
                engine.exec(cid, ["true"], user=user, timeout=BOUND)
        (rootfs / "etc" / "passwd").unlink()
        os.mknod(rootfs / "etc" / "passwd", stat.S_IFCHR | 0o644, os.makedev(1, 5))
        with bounded(), pytest.raises(InvalidParameter, match="not a regular file"):
            engine.exec(cid, ["true"], timeout=BOUND)
        engine.stop(cid, timeout=0)
        with bounded(), pytest.raises(StartFailed, match="not a regular file"):
            engine.start(cid)
        assert probe.leaks(cid) == []
    finally:
        with contextlib.suppress(CorralError):
            engine.remove(cid, force=True)
    assert probe.leaks(cid, removed=True) == []
    sentinel.assert_unchanged()
    outside.assert_nothing_new()
