"""The cgroup driver on fake trees of each layout (v1, hybrid, v2) in a temporary folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.errors import InvalidParameter, SystemFailure
from engine.host import cgroups
from engine.host.cgroups import HYBRID, V1, V2, Cgroups, Needs
from engine.start.spec import cpus_to_quota

CID = "ab" * 32
V1_CONTROLLERS = ("blkio", "cpu", "cpuacct", "devices", "freezer", "memory", "pids", "systemd")


def _files(folder: Path, **files: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name.replace("__", ".")).write_text(text)
    return folder


def v1_tree(base: Path, *, unified: bool = False, without: tuple[str, ...] = ()) -> Path:
    for name in V1_CONTROLLERS:
        if name not in without:
            _files(base / name, cgroup__procs="")
    if unified:
        _files(base / "unified", cgroup__procs="", cgroup__controllers="",
               cgroup__subtree_control="")
    return base


def v2_tree(base: Path, *, available: str = "cpuset cpu io memory hugetlb pids rdma misc",
            enabled: str = "memory pids") -> Path:
    _files(base, cgroup__controllers=available + "\n", cgroup__subtree_control=enabled + "\n",
           cgroup__procs="1\n", cpu__stat="usage_usec 1\n")
    _files(base / "init.scope", cgroup__procs="1\n")
    return base


@pytest.mark.parametrize(("make", "kind"), [
    (v1_tree, V1), (lambda b: v1_tree(b, unified=True), HYBRID), (v2_tree, V2)])
def test_layout_is_detected(tmp_path: Path, make, kind: str) -> None:
    assert cgroups.detect(make(tmp_path)) == kind


def test_v2_root_files_are_not_hierarchies(tmp_path: Path) -> None:
    # the defect: the files of a cgroup2 root were taken for v1 controller folders
    driver = Cgroups(v2_tree(tmp_path))
    assert driver.hierarchies() == [tmp_path]
    (tmp_path / "corral" / CID / "sub").mkdir(parents=True)
    assert driver.folders(CID) == [tmp_path / "corral" / CID]
    driver.remove(CID)
    assert not (tmp_path / "corral" / CID).exists()
    assert (tmp_path / "cgroup.controllers").is_file() and (tmp_path / "corral").is_dir()


def test_hybrid_removes_the_container_from_every_hierarchy_and_unified(tmp_path: Path) -> None:
    v1_tree(tmp_path, unified=True)
    os.symlink("cpu", tmp_path / "cpu,cpuacct")
    (tmp_path / "hugepages.txt").write_text("not a hierarchy")
    driver = Cgroups(tmp_path)
    for name in ("memory", "pids", "unified"):
        (tmp_path / name / "corral" / CID).mkdir(parents=True)
    (tmp_path / "memory" / "corral" / "other").mkdir()
    assert {p.parts[-3] for p in driver.folders(CID)} == {"memory", "pids", "unified"}
    driver.remove(CID)
    assert driver.folders(CID) == []
    assert (tmp_path / "memory" / "corral" / "other").is_dir()  # only its own
    driver.remove(CID)  # idempotent


def test_cgroups_path_and_cgroupns_default(tmp_path: Path) -> None:
    assert Cgroups(v1_tree(tmp_path / "a")).cgroups_path(CID) == f"/corral/{CID}"
    assert Cgroups(v1_tree(tmp_path / "a")).default_cgroupns() == "host"
    assert Cgroups(v2_tree(tmp_path / "b")).default_cgroupns() == "private"


def test_v1_verify_names_the_missing_controllers(tmp_path: Path) -> None:
    driver = Cgroups(v1_tree(tmp_path / "a", without=("memory",)))
    driver.verify(Needs())  # memory not asked for
    with pytest.raises(SystemFailure, match="not mounted: memory"):
        driver.verify(Needs(memory=64 << 20))
    driver = Cgroups(v1_tree(tmp_path / "b", without=("freezer", "cpu")))
    with pytest.raises(SystemFailure, match="not mounted: freezer, cpu"):
        driver.verify(Needs(cpu=True))


def test_v2_verify_needs_no_freezer_or_devices_controller(tmp_path: Path) -> None:
    driver = Cgroups(v2_tree(tmp_path))
    assert driver.controllers_needed(Needs(memory=1 << 30, cpu=True)) == [
        "pids", "memory", "cpu"]


def test_v2_verify_names_a_controller_the_host_lacks(tmp_path: Path) -> None:
    driver = Cgroups(v2_tree(tmp_path, available="memory pids", enabled="memory pids"))
    with pytest.raises(SystemFailure, match=r"controller cpu not available .*memory pids"):
        driver.verify(Needs(cpu=True))
    assert not (tmp_path / "corral").exists()  # nothing made


def test_v2_verify_enables_controllers_down_to_its_parent(tmp_path: Path) -> None:
    driver = Cgroups(v2_tree(tmp_path, enabled="memory pids"))
    driver.verify(Needs(cpu=True))
    # a plain file stands in for the kernel's: it keeps the last write
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpu"
    assert (tmp_path / "corral" / "cgroup.subtree_control").read_text() == "+cpu"


def test_v2_verify_refuses_a_controller_that_cannot_be_delegated(tmp_path: Path) -> None:
    driver = Cgroups(v2_tree(tmp_path, enabled="pids"))
    (tmp_path / "cgroup.subtree_control").unlink()
    (tmp_path / "cgroup.subtree_control").mkdir()  # any write fails
    with pytest.raises(SystemFailure, match="controller pids cannot be delegated to "):
        driver.verify(Needs(memory=64 << 20))
    assert not (tmp_path / "corral").exists()  # the parent it made is gone again


def test_a_parent_of_another_owner_is_refused(tmp_path: Path) -> None:
    driver = Cgroups(v2_tree(tmp_path))
    _files(tmp_path / "corral", cgroup__procs="", cgroup__subtree_control="pids\n")
    os.chown(tmp_path / "corral", 4321, 4321)
    with pytest.raises(SystemFailure, match="corral exists and belongs to uid 4321"):
        driver.verify(Needs())


def test_a_parent_holding_processes_is_refused(tmp_path: Path) -> None:
    v1_tree(tmp_path)
    _files(tmp_path / "pids" / "corral", cgroup__procs="812\n")
    with pytest.raises(SystemFailure, match="pids/corral exists and holds processes"):
        Cgroups(tmp_path).verify(Needs())


def test_memory_below_the_floor_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameter, match="invalid memory 4194304"):
        Cgroups(v1_tree(tmp_path / "a")).verify(Needs(memory=4 << 20))
    Cgroups(v1_tree(tmp_path / "a")).verify(Needs(memory=6 << 20))
    with pytest.raises(InvalidParameter, match=r"invalid memory 8388608: .*16MB.*cgroup v2"):
        Cgroups(v2_tree(tmp_path / "b")).verify(Needs(memory=8 << 20))


@pytest.mark.parametrize("cpus", [0.123456, 1.0000001, 0.000015])
def test_cpus_finer_than_the_period_are_refused(cpus: float) -> None:
    with pytest.raises(InvalidParameter, match=f"invalid cpus {cpus}"):
        cpus_to_quota(cpus)


def test_cpus_the_period_can_express() -> None:
    assert cpus_to_quota(0.5) == (50000, 100000)
    assert cpus_to_quota(0.33333) == (33333, 100000)
    assert cpus_to_quota(1.1) == (110000, 100000)


def test_oom_kills_v1_and_v2(tmp_path: Path) -> None:
    v1 = Cgroups(v1_tree(tmp_path / "a"))
    assert v1.oom_kills(CID) == 0  # no cgroup (a foreground run's runc removed it)
    _files(tmp_path / "a" / "memory" / "corral" / CID,
           memory__oom_control="oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert v1.oom_kills(CID) == 2
    v2 = Cgroups(v2_tree(tmp_path / "b"))
    _files(tmp_path / "b" / "corral" / CID,
           memory__events="low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\noom_group_kill 0\n")
    assert v2.oom_kills(CID) == 1


def test_stats_figures_v1_and_v2(tmp_path: Path) -> None:
    v1 = Cgroups(v1_tree(tmp_path / "a"))
    b = tmp_path / "a"
    _files(b / "memory" / "corral" / CID, memory__usage_in_bytes="1000\n",
           memory__limit_in_bytes="9223372036854771712\n")
    _files(b / "cpuacct" / "corral" / CID, cpuacct__usage="5000\n")
    _files(b / "pids" / "corral" / CID, pids__current="3\n", pids__max="max\n")
    assert v1.stats(CID) == {"memory_usage": 1000, "memory_limit": None,
                             "cpu_usage_ns": 5000, "pids_current": 3, "pids_limit": None}
    v2 = Cgroups(v2_tree(tmp_path / "b"))
    _files(tmp_path / "b" / "corral" / CID, memory__current="2048\n", memory__max="67108864\n",
           cpu__stat="usage_usec 7\nuser_usec 5\nsystem_usec 2\n", pids__current="1\n",
           pids__max="2048\n")
    assert v2.stats(CID) == {"memory_usage": 2048, "memory_limit": 67108864,
                             "cpu_usage_ns": 7000, "pids_current": 1, "pids_limit": 2048}


def test_pause_check_and_thaw(tmp_path: Path) -> None:
    v1 = Cgroups(v1_tree(tmp_path / "a", without=("freezer",)))
    with pytest.raises(SystemFailure, match="freezer controller is not mounted"):
        v1.check_pause(CID)
    v1 = Cgroups(v1_tree(tmp_path / "c"))
    state = _files(tmp_path / "c" / "freezer" / "corral" / CID,
                   freezer__state="FROZEN\n") / "freezer.state"
    assert v1.frozen(CID)
    v1.thaw(CID)
    assert state.read_text() == "THAWED"

    v2 = Cgroups(v2_tree(tmp_path / "b"))
    with pytest.raises(SystemFailure, match="no cgroup v2 freezer"):
        v2.check_pause(CID)
    freeze = _files(tmp_path / "b" / "corral" / CID, cgroup__freeze="1\n") / "cgroup.freeze"
    v2.check_pause(CID)
    assert v2.frozen(CID)
    v2.thaw(CID)
    assert freeze.read_text() == "0"
    v2.thaw("gone")  # no cgroup: nothing to thaw
