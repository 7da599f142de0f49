"""The OCI config builder: Docker's defaults, the options, and validity against the OCI schema."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from schemas import OCI_SCHEMA, REPO, SHARED_OCI_SCHEMA, VENDORED_OCI_SCHEMA

import engine.start.spec
from engine.errors import InvalidParameter, SystemFailure
from engine.start.spec import (
    ALL_CAPABILITIES,
    DEFAULT_CAPABILITIES,
    DEFAULT_PIDS_LIMIT,
    SpecOptions,
    build_spec,
    cpus_to_quota,
    validate_spec,
    write_spec,
)

SCHEMA_DIR = OCI_SCHEMA


@pytest.fixture
def schema(monkeypatch: pytest.MonkeyPatch) -> Path:
    if not (SCHEMA_DIR / "config-schema.json").is_file():
        # the schema ships with the tests (and is in ../shared): its absence is a failure
        pytest.fail(f"OCI runtime-spec schema not found at {SCHEMA_DIR}")
    monkeypatch.setenv("CORRAL_VALIDATE_SPEC", str(SCHEMA_DIR))
    return SCHEMA_DIR


def test_the_copied_schema_is_the_shared_one() -> None:
    copied = sorted(p.name for p in VENDORED_OCI_SCHEMA.glob("*.json"))
    assert "config-schema.json" in copied
    if SHARED_OCI_SCHEMA.is_dir():  # beside the workplace: the copy must not have drifted
        assert copied == sorted(p.name for p in SHARED_OCI_SCHEMA.glob("*.json"))
        for name in copied:
            assert (VENDORED_OCI_SCHEMA / name).read_bytes() == \
                (SHARED_OCI_SCHEMA / name).read_bytes(), name


@pytest.fixture
def all_caps_held(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine.start.spec, "host_capabilities", lambda: frozenset(ALL_CAPABILITIES))


def opts(**kw: Any) -> SpecOptions:
    base: dict[str, Any] = {
        "args": ["/bin/sh", "-c", "true"],
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "hostname": "c0ffee",
        "rootfs": "/var/lib/corral/containers/abc/rootfs",
        "cgroups_path": "/corral/abc",
    }
    base.update(kw)
    return SpecOptions(**base)


def namespaces(spec: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {ns["type"]: ns for ns in spec["linux"]["namespaces"]}


def mount_at(spec: dict[str, Any], destination: str) -> list[dict[str, Any]]:
    return [m for m in spec["mounts"] if m["destination"] == destination]


BIND = {
    "destination": "/data",
    "type": "bind",
    "source": "/srv/data",
    "options": ["rbind", "rprivate", "ro"],
}
TMPFS = {
    "destination": "/run",
    "type": "tmpfs",
    "source": "tmpfs",
    "options": ["nosuid", "nodev", "noexec", "size=1m"],
}
HOST_SHM = {
    "destination": "/dev/shm",
    "type": "bind",
    "source": "/var/lib/corral/containers/abc/shm",
    "options": ["rbind", "rprivate"],
}

CASES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "host network": {"network": "host"},
    "netns path": {"network": "/run/corral/netns/abc"},
    "ipc host": {"ipc": "host"},
    "ipc path": {"ipc": "/proc/1234/ns/ipc"},
    "limits": {
        "memory": 256 * 1024 * 1024,
        "memory_swap": 512 * 1024 * 1024,
        "cpu_shares": 512,
        "pids_limit": 100,
    },
    "cpus": dict(zip(("cpu_quota", "cpu_period"), cpus_to_quota(1.5), strict=True)),
    "unlimited pids": {"pids_limit": 0},
    "cap add and drop": {"cap_add": ["NET_ADMIN", "cap_sys_ptrace"], "cap_drop": ["CAP_MKNOD"]},
    "cap drop all": {"cap_drop": ["ALL"], "cap_add": ["NET_BIND_SERVICE"]},
    "cap add all": {"cap_add": ["ALL"], "cap_drop": ["SYS_ADMIN"]},
    "user and groups": {"uid": 1000, "gid": 1000, "additional_gids": [10, 100]},
    "terminal, readonly root, cwd": {"terminal": True, "readonly_rootfs": True, "cwd": "/srv"},
    "mounts": {"mounts": [BIND, TMPFS]},
    "shm replaced": {"mounts": [HOST_SHM]},
    "extras": {
        "annotations": {"org.corral.name": "web"},
        "sysctl": {"net.ipv4.ip_forward": "1", "kernel.shmmax": "1000000"},
        "oom_score_adj": 500,
        "no_new_privileges": False,
    },
}


@pytest.mark.parametrize("overrides", CASES.values(), ids=list(CASES))
def test_every_combination_is_valid_oci(
    schema: Path, all_caps_held: None, overrides: dict[str, Any]
) -> None:
    spec = build_spec(opts(**overrides))
    validate_spec(spec)
    json.dumps(spec)  # plain JSON types only


def test_default_invariants() -> None:
    spec = build_spec(opts())
    process, linux = spec["process"], spec["linux"]
    caps = process["capabilities"]

    assert spec["ociVersion"] == "1.0.2"
    for kind in ("bounding", "effective", "permitted"):
        assert caps[kind] == list(DEFAULT_CAPABILITIES)
    assert caps["inheritable"] == [] and caps["ambient"] == []
    assert process["noNewPrivileges"] is True
    assert "rlimits" not in process
    assert "oomScoreAdj" not in process
    assert process["user"] == {"uid": 0, "gid": 0}
    assert process["cwd"] == "/" and process["terminal"] is False

    assert "/proc/kcore" in linux["maskedPaths"]
    assert "/sys/firmware" in linux["maskedPaths"]
    assert "/proc/sys" in linux["readonlyPaths"]
    assert linux["resources"]["pids"] == {"limit": DEFAULT_PIDS_LIMIT} == {"limit": 2048}
    assert "memory" not in linux["resources"] and "cpu" not in linux["resources"]
    assert linux["cgroupsPath"] == "/corral/abc"
    assert "devices" not in linux
    seccomp = linux["seccomp"]
    assert seccomp["defaultAction"] == "SCMP_ACT_ERRNO"  # more in test_seccomp_profile.py
    # device nodes stay refused: mknod/mknodat are allowed only for a regular file, FIFO, socket
    allowed = {(r["names"][0], a["index"], a["valueTwo"]) for r in seccomp["syscalls"]
               for a in r.get("args", ()) if r["action"] == "SCMP_ACT_ALLOW"
               and a["op"] == "SCMP_CMP_MASKED_EQ" and a["value"] == 0o170000}
    assert allowed == {(name, index, kind) for name, index in (("mknod", 1), ("mknodat", 2))
                       for kind in (0, 0o100000, 0o010000, 0o140000)}
    assert set(namespaces(spec)) == {"pid", "ipc", "uts", "mount", "network"}
    assert all("path" not in ns for ns in linux["namespaces"])

    assert spec["root"] == {"path": "/var/lib/corral/containers/abc/rootfs", "readonly": False}
    assert spec["hostname"] == "c0ffee"
    assert [m["destination"] for m in spec["mounts"]] == [
        "/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm",
    ]
    assert "ro" in mount_at(spec, "/sys")[0]["options"]
    assert "ro" in mount_at(spec, "/sys/fs/cgroup")[0]["options"]
    shm = mount_at(spec, "/dev/shm")[0]
    assert shm["type"] == "tmpfs"
    assert {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"} <= set(shm["options"])


def test_device_rules_deny_all_first_then_docker_allow_list() -> None:
    rules = build_spec(opts())["linux"]["resources"]["devices"]
    assert rules[0] == {"allow": False, "access": "rwm"}
    allowed = {
        (r["type"], r.get("major", "*"), r.get("minor", "*"), r["access"])
        for r in rules[1:]
        if r["allow"]
    }
    assert {
        ("c", "*", "*", "m"), ("b", "*", "*", "m"),
        ("c", 1, 3, "rwm"), ("c", 1, 5, "rwm"), ("c", 1, 7, "rwm"), ("c", 1, 8, "rwm"),
        ("c", 1, 9, "rwm"), ("c", 5, 0, "rwm"), ("c", 5, 1, "rwm"), ("c", 5, 2, "rwm"),
        ("c", 136, "*", "rwm"), ("c", 10, 200, "rwm"),
    } == allowed
    fuse = rules.index({"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"})
    # On cgroup v1 runc refuses a deny that follows a wildcard allow covering it.
    first_wildcard = min(i for i, r in enumerate(rules) if r["allow"] and "major" not in r)
    assert fuse < first_wildcard


def test_network_and_ipc_modes() -> None:
    host = build_spec(opts(network="host", ipc="host"))
    assert "network" not in namespaces(host) and "ipc" not in namespaces(host)
    assert {"pid", "uts", "mount"} <= set(namespaces(host))

    joined = build_spec(opts(network="/run/corral/netns/abc", ipc="/proc/1/ns/ipc"))
    assert namespaces(joined)["network"] == {"type": "network", "path": "/run/corral/netns/abc"}
    assert namespaces(joined)["ipc"] == {"type": "ipc", "path": "/proc/1/ns/ipc"}

    for bad in ({"network": "bridge"}, {"ipc": "container:web"}, {"network": ""}):
        with pytest.raises(InvalidParameter):
            build_spec(opts(**bad))


def test_resources() -> None:
    spec = build_spec(opts(memory=1 << 28, memory_swap=-1, cpu_shares=256,
                           cpu_quota=50_000, cpu_period=100_000, pids_limit=64))
    res = spec["linux"]["resources"]
    assert res["memory"] == {"limit": 1 << 28, "swap": -1}
    assert res["cpu"] == {"shares": 256, "quota": 50_000, "period": 100_000}
    assert res["pids"] == {"limit": 64}

    for unlimited in (0, -1, None):
        assert "pids" not in build_spec(opts(pids_limit=unlimited))["linux"]["resources"]


def test_cpus_to_quota() -> None:
    assert cpus_to_quota(1.5) == (150_000, 100_000)
    assert cpus_to_quota(0.01) == (1_000, 100_000)
    assert cpus_to_quota(4) == (400_000, 100_000)
    for bad in (0, -1, 0.001, float("nan"), float("inf")):
        with pytest.raises(InvalidParameter):
            cpus_to_quota(bad)


def caps_of(**kw: Any) -> list[str]:
    caps = build_spec(opts(**kw))["process"]["capabilities"]
    assert caps["bounding"] == caps["effective"] == caps["permitted"]
    assert caps["inheritable"] == caps["ambient"] == []
    return caps["bounding"]


def test_cap_add_and_drop(all_caps_held: None) -> None:
    caps = caps_of(cap_add=["net_admin", "CAP_SYS_PTRACE", "NET_ADMIN"], cap_drop=["MKNOD"])
    assert "CAP_MKNOD" not in caps
    assert caps.count("CAP_NET_ADMIN") == 1 and "CAP_SYS_PTRACE" in caps
    assert set(DEFAULT_CAPABILITIES) - {"CAP_MKNOD"} <= set(caps)


def test_cap_all(all_caps_held: None) -> None:
    assert caps_of(cap_drop=["ALL"]) == []
    assert caps_of(cap_drop=["all"], cap_add=["CHOWN"]) == ["CAP_CHOWN"]
    everything = caps_of(cap_add=["ALL"])
    assert everything == list(ALL_CAPABILITIES) and "CAP_SYS_ADMIN" in everything
    assert "CAP_SYS_ADMIN" not in caps_of(cap_add=["ALL"], cap_drop=["SYS_ADMIN"])
    # As in Docker, ALL in cap_add wins over ALL in cap_drop.
    assert caps_of(cap_add=["ALL"], cap_drop=["ALL"]) == list(ALL_CAPABILITIES)


def test_cap_all_means_all_the_engine_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    held = frozenset(ALL_CAPABILITIES) - {"CAP_SYS_RESOURCE"}
    monkeypatch.setattr(engine.start.spec, "host_capabilities", lambda: held)
    everything = caps_of(cap_add=["ALL"])
    assert "CAP_SYS_RESOURCE" not in everything and set(everything) == held
    # Asking for it by name gets a clear refusal instead of runc's EPERM.
    with pytest.raises(InvalidParameter, match="CAP_SYS_RESOURCE"):
        build_spec(opts(cap_add=["SYS_RESOURCE"]))


def test_host_capabilities_reads_our_bounding_set() -> None:
    with open("/proc/self/status") as f:
        mask = int(next(x for x in f if x.startswith("CapBnd:")).split()[1], 16)
    held = engine.start.spec.host_capabilities()
    assert held <= set(ALL_CAPABILITIES)
    assert ("CAP_CHOWN" in held) == bool(mask & 1)
    assert ("CAP_SYS_RESOURCE" in held) == bool(mask >> 24 & 1)
    assert len(held) == bin(mask & ((1 << len(ALL_CAPABILITIES)) - 1)).count("1")


def test_unknown_capability_is_refused() -> None:
    for kw in ({"cap_add": ["CAP_FLY"]}, {"cap_drop": ["NOPE"]}):
        with pytest.raises(InvalidParameter, match="unknown capability"):
            build_spec(opts(**kw))


def test_extra_mounts_follow_defaults_parents_first() -> None:
    nested = {"destination": "/data/sub", "type": "bind", "source": "/srv/sub",
              "options": ["rbind"]}
    spec = build_spec(opts(mounts=[nested, BIND, TMPFS]))
    dests = [m["destination"] for m in spec["mounts"]]
    assert dests[:7] == ["/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue",
                         "/dev/shm"]
    assert dests[7:] == ["/data", "/run", "/data/sub"]
    assert mount_at(spec, "/data") == [BIND]


def test_mount_replaces_default_at_same_destination() -> None:
    spec = build_spec(opts(mounts=[HOST_SHM]))
    assert mount_at(spec, "/dev/shm") == [HOST_SHM]
    # After /dev, which it sits on.
    dests = [m["destination"] for m in spec["mounts"]]
    assert dests.index("/dev/shm") > dests.index("/dev")

    # A trailing slash names the same place.
    spec = build_spec(opts(mounts=[{**HOST_SHM, "destination": "/dev/shm/"}]))
    assert len([m for m in spec["mounts"] if m["destination"].rstrip("/") == "/dev/shm"]) == 1

    # A mount over /dev takes the defaults below it along, as in Docker.
    dev = {"destination": "/dev", "type": "bind", "source": "/srv/dev", "options": ["rbind"]}
    dests = [m["destination"] for m in build_spec(opts(mounts=[dev]))["mounts"]]
    assert dests == ["/proc", "/sys", "/sys/fs/cgroup", "/dev"]


def test_mounts_are_copied_not_shared() -> None:
    mine = copy.deepcopy(BIND)
    spec = build_spec(opts(mounts=[mine]))
    spec["mounts"][-1]["options"].append("nosuid")
    spec["mounts"][0]["options"].append("changed")
    assert mine == BIND
    assert "changed" not in build_spec(opts())["mounts"][0]["options"]


def test_bad_mount_destination_is_refused() -> None:
    for dest in ("data", None, 7):
        with pytest.raises(InvalidParameter):
            build_spec(opts(mounts=[{**BIND, "destination": dest}]))


def test_sysctls_need_their_namespace() -> None:
    with pytest.raises(InvalidParameter, match="net.ipv4.ip_forward"):
        build_spec(opts(network="host", sysctl={"net.ipv4.ip_forward": "1"}))
    for key in ("kernel.shmmax", "fs.mqueue.msg_max"):
        with pytest.raises(InvalidParameter, match=key):
            build_spec(opts(ipc="host", sysctl={key: "1"}))
    spec = build_spec(opts(sysctl={"net.ipv4.ip_forward": "1"}))
    assert spec["linux"]["sysctl"] == {"net.ipv4.ip_forward": "1"}


def test_optional_process_fields() -> None:
    spec = build_spec(opts(uid=1000, gid=100, additional_gids=[5, 20], oom_score_adj=-500,
                           no_new_privileges=False, terminal=True, readonly_rootfs=True,
                           annotations={"a": "b"}))
    assert spec["process"]["user"] == {"uid": 1000, "gid": 100, "additionalGids": [5, 20]}
    assert spec["process"]["oomScoreAdj"] == -500
    assert spec["process"]["noNewPrivileges"] is False
    assert spec["process"]["terminal"] is True
    assert spec["root"]["readonly"] is True
    assert spec["annotations"] == {"a": "b"}


@pytest.mark.parametrize(
    "breakage",
    [
        pytest.param(lambda s: s.pop("ociVersion"), id="no ociVersion"),
        pytest.param(lambda s: s["mounts"][0].update(destination=42), id="mount destination"),
        pytest.param(lambda s: s["linux"]["namespaces"].append({"type": "nope"}),
                     id="namespace type"),
        pytest.param(lambda s: s["process"].pop("cwd"), id="no cwd"),
        pytest.param(lambda s: s["linux"]["resources"]["devices"][0].pop("allow"),
                     id="device rule without allow"),
        pytest.param(lambda s: s["process"]["user"].update(uid=-1), id="negative uid"),
    ],
)
def test_invalid_spec_is_rejected(schema: Path, breakage: Any) -> None:
    spec = build_spec(opts())
    breakage(spec)
    with pytest.raises(SystemFailure, match="invalid OCI config at"):
        validate_spec(spec)


def test_error_names_the_json_path(schema: Path) -> None:
    spec = build_spec(opts())
    spec["mounts"][2]["destination"] = 42
    with pytest.raises(SystemFailure) as info:
        validate_spec(spec)
    assert "$.mounts[2].destination" in str(info.value)


def test_missing_schema_folder_is_a_system_failure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CORRAL_VALIDATE_SPEC", str(tmp_path))
    with pytest.raises(SystemFailure, match="config-schema.json"):
        validate_spec(build_spec(opts()))


def test_validation_off_when_env_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CORRAL_VALIDATE_SPEC", raising=False)
    validate_spec({"not": "a spec"})
    monkeypatch.setenv("CORRAL_VALIDATE_SPEC", "")
    validate_spec({"not": "a spec"})


def test_validation_off_does_not_import_jsonschema() -> None:
    env = {k: v for k, v in os.environ.items() if k != "CORRAL_VALIDATE_SPEC"}
    code = (
        "import sys, engine.start.spec as s; s.validate_spec({}); "
        "sys.exit('jsonschema' in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True)


def test_write_spec(schema: Path, tmp_path: Path) -> None:
    spec = build_spec(opts())
    path = write_spec(tmp_path, spec)
    assert path == tmp_path / "config.json"
    assert json.loads(path.read_text()) == spec
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_write_spec_refuses_invalid_and_keeps_old(schema: Path, tmp_path: Path) -> None:
    good = build_spec(opts())
    write_spec(tmp_path, good)
    bad = copy.deepcopy(good)
    del bad["ociVersion"]
    with pytest.raises(SystemFailure):
        write_spec(tmp_path, bad)
    assert json.loads((tmp_path / "config.json").read_text()) == good


def test_write_spec_missing_bundle_is_a_system_failure(tmp_path: Path) -> None:
    with pytest.raises(SystemFailure):
        write_spec(tmp_path / "missing", build_spec(opts()))
