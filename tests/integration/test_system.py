"""A root's host objects: made only when something runs, and torn down by ``system reset``.

Real runc, conmon, overlayfs, nft and netlink. ``corral system reset`` removes every container
of a root and then what is named from the root's tag (bridges, the nft table, the run folder,
netns, veths, conmon processes, mounts), also after the root's folder was deleted by hand;
``system prune`` removes stopped containers and unused networks; listings on a new root make
nothing; and a start refused for a missing program (nft, runc, conmon) leaves no bridge, table
or run folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from leakprobe import LeakProbe, keeper_pids, processes_mentioning
from schemas import OCI_SCHEMA

from engine import Engine, StartFailed
from engine.host.netlink import links_with_alias
from engine.networks.store import DEFAULT_NETWORK, NetworkStore, bridge_alias
from engine.start.netsteps import EXTRA_VETH_PREFIX, netns_name, veth_name
from engine.store.paths import Layout

REPO = Path(__file__).resolve().parents[2]
SLEEP = ["sleep", "300"]


class Corral:
    """``corral --root ROOT ...`` as a subprocess, as a user runs it."""

    def __init__(self, root: Path, **env: str) -> None:
        self.root = root
        self.env = {**os.environ, "CORRAL_VALIDATE_SPEC": str(OCI_SCHEMA), **env}
        self.env.pop("CORRAL_FAIL_POINTS", None)

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "engine", "--root", str(self.root), *args]

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), capture_output=True, text=True, env=self.env,
                              cwd=REPO, timeout=60, stdin=subprocess.DEVNULL)

    def ok(self, *args: str) -> str:
        r = self(*args)
        assert r.returncode == 0, f"corral {' '.join(args)}: {r.returncode}: {r.stderr}"
        return r.stdout


def _nft_table_exists(layout: Layout) -> bool:
    r = subprocess.run(["nft", "list", "table", "inet", f"corral_{layout.run.name}"],
                       capture_output=True, text=True)
    return r.returncode == 0


def host_objects(layout: Layout, cids: list[str] = ()) -> list[str]:  # type: ignore[assignment]
    """Every host object of the root named from its tag, and of containers ``cids``."""
    found = [f"bridge {b}" for b in links_with_alias(bridge_alias(layout))]
    default_bridge = NetworkStore(layout).default(define=False).bridge
    if Path("/sys/class/net", default_bridge).exists():
        found.append(f"bridge {default_bridge}")
    if _nft_table_exists(layout):
        found.append(f"nft table corral_{layout.run.name}")
    if layout.run.exists():
        found.append(f"run folder {layout.run}")
    found += [f"mount {m}" for m in LeakProbe(layout).mounts()]
    found += [f"process {p}" for p in processes_mentioning(str(layout.run))]
    found += [f"process {p}" for p in processes_mentioning(f"{layout.root} health-monitor")]
    for cid in cids:
        found += [f"veth {n}" for n in os.listdir("/sys/class/net") if n.startswith(
            EXTRA_VETH_PREFIX + cid[:10])]
        if Path("/run/netns", netns_name(cid)).exists():
            found.append(f"netns {netns_name(cid)}")
        if Path("/sys/class/net", veth_name(cid)).exists():
            found.append(f"veth {veth_name(cid)}")
        found += LeakProbe(layout).leaks(cid)
    return found


@pytest.fixture
def new_root(tmp_path: Path) -> Iterator[Path]:
    """A root path nothing has made yet; whatever a test leaves of it is torn down."""
    root = tmp_path / f"corral-{uuid.uuid4().hex[:8]}"
    yield root
    from engine.core.system import reset

    if root.is_dir():
        eng = Engine(root, watch=False, reconcile=False, make_layout=False)
        try:
            eng.reset(volumes=True)
        finally:
            eng.close()
    else:
        reset(root, volumes=True)
    if root.exists():
        from teardown import teardown_root  # last resort, so one failure cannot spread

        teardown_root(root)
    shutil.rmtree(Layout.for_root(root).run, ignore_errors=True)


@pytest.fixture
def populated(new_root: Path) -> tuple[Corral, list[str]]:
    """A root with what a user makes: a user-defined network with a published port, the
    default bridge, a paused container, one on two networks, one on no network with a health
    monitor, a created one, a volume."""
    c = Corral(new_root)
    c.ok("image", "busybox")
    c.ok("network", "create", "front")
    c.ok("volume", "create", "data")
    cids = [
        c.ok("run", "-d", "--network", "front", "-p", "127.0.0.1::80", "-v", "data:/data",
             "busybox", *SLEEP).strip(),
        c.ok("run", "-d", "busybox", *SLEEP).strip(),
        c.ok("create", "busybox", "true").strip(),
    ]
    c.ok("pause", cids[1])
    c.ok("network", "create", "back")
    c.ok("network", "connect", "back", cids[0])  # a veth on a further network
    eng = Engine(new_root, watch=False)
    try:
        cids.append(eng.create("busybox", SLEEP, network="none", healthcheck={
            "test": ["CMD", "/bin/true"], "interval": 60, "timeout": 2, "retries": 3}))
        eng.start(cids[-1])
    finally:
        eng.close()
    layout = Layout.for_root(new_root)
    before = host_objects(layout)
    assert any(o.startswith("bridge") for o in before) and f"run folder {layout.run}" in before
    assert keeper_pids(layout)  # the root's log keeper, which a reset ends too
    assert _nft_table_exists(layout)
    return c, cids


# -- read-only commands ------------------------------------------------------------------------


def test_listings_on_a_new_root_make_nothing_on_the_host(new_root: Path) -> None:
    c = Corral(new_root)
    for args in (["ps"], ["ps", "-a"], ["ls"], ["images"], ["image", "ls"], ["volume", "ls"],
                 ["network", "ls"], ["network", "inspect", "bridge"], ["system", "prune", "-f"]):
        c.ok(*args)
    for args in (["inspect", "nothing"], ["image", "inspect", "nothing"],
                 ["volume", "inspect", "nothing"]):
        r = c(*args)
        assert r.returncode == 1 and "nothing" in r.stderr, r
    assert "bridge" in c.ok("network", "ls")  # listed as it will be, not made
    layout = Layout.for_root(new_root)
    assert not new_root.exists()
    assert host_objects(layout) == []


def test_listings_through_the_api_make_no_bridge(root_dir: Path) -> None:
    eng = Engine(root_dir)
    try:
        assert [n.name for n in eng.network_list()] == [DEFAULT_NETWORK]
        eng.list(all=True)
        assert host_objects(eng.layout) == []
    finally:
        eng.close()


# -- a missing program -------------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["CORRAL_NFT", "CORRAL_RUNC", "CORRAL_CONMON"])
def test_a_start_refused_for_a_missing_program_leaves_nothing(
        root_dir: Path, monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, f"/nonexistent/{variable.lower()}")
    eng = Engine(root_dir)
    try:
        image = eng.images.busybox().name
        cid = eng.create(image, ["true"], publish=["127.0.0.1::80"])
        with pytest.raises(StartFailed) as failure:
            eng.start(cid)
        assert failure.value.step == "verify"
        assert f"/nonexistent/{variable.lower()}" in str(failure.value)
        if variable == "CORRAL_NFT":
            assert "install the Debian package nftables" in str(failure.value)
        assert eng.inspect(cid)["State"]["ExitCode"] == 128
        assert LeakProbe(eng.layout).leaks(cid) == []
        assert host_objects(eng.layout, [cid]) == []
        eng.remove(cid)
        assert host_objects(eng.layout) == []
    finally:
        eng.close()


def test_run_with_nft_missing_fails_in_one_line_and_leaves_nothing(new_root: Path) -> None:
    c = Corral(new_root, CORRAL_NFT="/nonexistent/nft")
    c.ok("image", "busybox")
    r = c("run", "--rm", "-p", "127.0.0.1::80", "busybox", "true")
    assert r.returncode == 125
    assert "Error: verify: nft not found at /nonexistent/nft: install the Debian package " \
           "nftables" in r.stderr
    assert c.ok("ps", "-aq") == ""
    assert host_objects(Layout.for_root(new_root)) == []
    # a container with no network needs no nft
    assert c("run", "--rm", "--network", "none", "busybox", "true").returncode == 0


# -- system reset ------------------------------------------------------------------------------


def test_reset_removes_containers_networks_and_host_objects(
        populated: tuple[Corral, list[str]]) -> None:
    c, cids = populated
    out = c.ok("system", "reset", "-f")
    assert "Deleted Containers:" in out and all(cid in out for cid in cids)
    layout = Layout.for_root(c.root)
    assert host_objects(layout, cids) == []
    assert c.ok("ps", "-aq") == ""
    assert c.ok("network", "ls", "-q").count("\n") == 1  # the default, not made
    assert not (c.root / "networks").exists()  # definitions and leases
    assert "busybox" in c.ok("images")  # kept
    assert c.ok("volume", "ls", "-q") == "data\n"  # kept without --volumes
    # the root works again after a reset
    assert c.ok("run", "--rm", "busybox", "echo", "again") == "again\n"
    out = c.ok("system", "reset", "-f", "--volumes")
    assert "Deleted Volumes:\ndata\n" in out
    assert c.ok("volume", "ls", "-q") == ""
    assert host_objects(layout) == []


def test_reset_after_the_root_folder_was_deleted_by_hand(
        populated: tuple[Corral, list[str]]) -> None:
    c, cids = populated
    layout = Layout.for_root(c.root)
    shutil.rmtree(c.root, ignore_errors=True)  # as `rm -rf`: mount points stay, busy
    assert host_objects(layout, cids) != []
    c.ok("system", "reset", "-f")
    assert host_objects(layout, cids) == []


def test_reset_asks_unless_forced(populated: tuple[Corral, list[str]]) -> None:
    c, cids = populated
    r = c("system", "reset")  # stdin is no terminal: no question can be asked
    assert r.returncode != 0 and "-f" in r.stderr
    for answer, removed in ((b"n\n", False), (b"y\n", True)):
        code, output = _with_terminal(c, answer, "system", "reset")
        assert b"Are you sure you want to continue? [y/N]" in output
        assert (c.ok("ps", "-aq") == "") is removed, output
        assert code == (0 if removed else 1), output
    assert host_objects(Layout.for_root(c.root), cids) == []


def _with_terminal(c: Corral, answer: bytes, *args: str) -> tuple[int, bytes]:
    """Run ``corral ARGS`` with a terminal as its stdin, on which ``answer`` is typed."""
    master, terminal = os.openpty()
    try:
        os.write(master, answer)  # kept by the terminal until the question reads it
        r = subprocess.run(c.argv(*args), stdin=terminal, capture_output=True, env=c.env,
                           cwd=REPO, timeout=60)
    finally:
        os.close(master)
        os.close(terminal)
    return r.returncode, r.stdout + r.stderr


def test_reset_through_the_api(root_dir: Path) -> None:
    eng = Engine(root_dir)
    try:
        image = eng.images.busybox().name
        cid = eng.create(image, SLEEP)
        eng.start(cid)
        report = eng.reset()
        assert report.containers == [cid] and report.errors == []
        assert host_objects(eng.layout, [cid]) == []
        assert eng.list(all=True) == []
        cid = eng.create(image, ["true"])  # the engine goes on
        eng.start(cid)
        assert eng.wait(cid) == 0
    finally:
        eng.close()


# -- system prune ------------------------------------------------------------------------------


def test_prune_removes_stopped_containers_and_unused_networks(new_root: Path) -> None:
    c = Corral(new_root)
    c.ok("image", "busybox")
    c.ok("network", "create", "used")
    c.ok("network", "create", "unused")
    running = c.ok("run", "-d", "--network", "used", "busybox", *SLEEP).strip()
    exited = c.ok("run", "-d", "busybox", "sh", "-c", "echo x > /big; exit 3").strip()
    created = c.ok("create", "busybox", "true").strip()
    assert c.ok("wait", exited) == "3\n"
    r = c("system", "prune")
    assert r.returncode != 0 and "-f" in r.stderr
    out = c.ok("system", "prune", "-f")
    assert out.startswith("Deleted Containers:\n")
    assert exited in out and created in out and running not in out
    assert "Deleted Networks:\nunused\n" in out
    assert "Total reclaimed space: " in out.splitlines()[-1]
    assert c.ok("ps", "-aq", "--no-trunc").split() == [running]
    names = c.ok("network", "ls").split()
    assert "used" in names and "unused" not in names
    assert c.ok("system", "prune", "-f").endswith("Total reclaimed space: 0B\n")


def test_reset_unmounts_only_what_the_engine_mounts(root_dir: Path) -> None:
    from engine.host import mounts

    theirs = root_dir / "theirs"  # a root given as a folder that holds a mount of its own
    theirs.mkdir()
    mounts.mount("tmpfs", theirs, "tmpfs")
    try:
        eng = Engine(root_dir)
        try:
            eng.reset()
        finally:
            eng.close()
        assert mounts.mounted_under(theirs) == [str(theirs)]
    finally:
        mounts.unmount(theirs)
