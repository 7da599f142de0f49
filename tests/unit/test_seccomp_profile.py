"""The seccomp profile: the shipped default resolved for capabilities, arch and kernel as Docker
resolves its own; user profiles checked at create with errors naming the option and file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from schemas import OCI_SCHEMA

from engine.errors import InvalidParameter
from engine.start import seccomp
from engine.start.spec import DEFAULT_CAPABILITIES, SpecOptions, build_spec, validate_spec

NS_FLAGS = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
# Docker refuses these to a container with its default capabilities; so does corral
REFUSED_BY_DOCKER = ("keyctl", "add_key", "request_key", "perf_event_open", "unshare", "setns",
                     "mount", "umount2", "bpf", "init_module", "reboot", "swapon", "kexec_load",
                     "open_by_handle_at", "userfaultfd", "fsopen", "move_mount", "sethostname")
# beyond Docker's list as the brief read it: io_uring (Docker 25 refuses it too)
REFUSED_BEYOND = ("io_uring_setup", "io_uring_enter", "io_uring_register")


def resolve(caps: tuple[str, ...] | list[str] = DEFAULT_CAPABILITIES, machine: str = "x86_64",
            release: str = "6.1.0", profile: Any = "default") -> dict[str, Any]:
    out = seccomp.resolve(profile, caps, machine=machine, release=release)
    assert out is not None
    return out


def always_allowed(profile: dict[str, Any]) -> set[str]:
    return {n for r in profile["syscalls"] if r["action"] == "SCMP_ACT_ALLOW"
            and not r.get("args") for n in r["names"]}


def rules_for(profile: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [r for r in profile["syscalls"] if name in r["names"]]


def test_shipped_profile_is_data_that_passes_its_own_check() -> None:
    data = json.loads((Path(seccomp.__file__).parent / "default.json").read_text())
    assert seccomp.check_profile(data) is data
    assert data["defaultAction"] == "SCMP_ACT_ERRNO" and data["defaultErrnoRet"] == 1


def test_default_caps_on_x86_64_refuse_what_docker_refuses() -> None:
    p = resolve()
    assert p["defaultAction"] == "SCMP_ACT_ERRNO" and p["defaultErrnoRet"] == 1
    assert p["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    allowed = always_allowed(p)
    for name in (*REFUSED_BY_DOCKER, *REFUSED_BEYOND, "mknod", "mknodat", "clone"):
        assert name not in allowed, name
    for name in REFUSED_BY_DOCKER + REFUSED_BEYOND:
        assert not rules_for(p, name), name
    # ordinary programs: processes, files, sockets, time
    assert {"read", "write", "openat", "execve", "fork", "wait4", "futex", "mmap", "chroot",
            "arch_prctl", "ptrace", "rt_sigaction", "clock_gettime", "bind"} <= allowed
    assert "set_tls" not in allowed  # an ARM call


def test_clone_without_namespaces_and_clone3_enosys() -> None:
    p = resolve()
    [clone] = rules_for(p, "clone")
    assert clone == {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                     "args": [{"index": 0, "value": NS_FLAGS, "op": "SCMP_CMP_MASKED_EQ"}]}
    [clone3] = rules_for(p, "clone3")
    assert clone3 == {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
    [socket] = rules_for(p, "socket")
    assert socket["args"] == [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]  # no AF_VSOCK


def test_capabilities_widen_the_profile_as_docker_documents() -> None:
    admin = resolve([*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"])
    allowed = always_allowed(admin)
    assert {"unshare", "setns", "mount", "clone", "clone3", "perf_event_open", "bpf"} <= allowed
    assert all(r["action"] == "SCMP_ACT_ALLOW" for r in rules_for(admin, "clone3"))
    perfmon = always_allowed(resolve([*DEFAULT_CAPABILITIES, "CAP_PERFMON"]))
    assert "perf_event_open" in perfmon and "unshare" not in perfmon
    assert "ptrace" in always_allowed(resolve(["CAP_SYS_PTRACE"], release="4.4.0"))
    no_chroot = [c for c in DEFAULT_CAPABILITIES if c != "CAP_SYS_CHROOT"]
    assert "chroot" not in always_allowed(resolve(no_chroot))


def test_kernel_and_arch_conditions() -> None:
    assert "ptrace" not in always_allowed(resolve(release="4.4.0"))
    assert "ptrace" in always_allowed(resolve(release="4.8.0"))
    arm = resolve(machine="aarch64")
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert "set_tls" in always_allowed(arm) and "arch_prctl" not in always_allowed(arm)


def test_every_resolution_is_valid_oci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_VALIDATE_SPEC", str(OCI_SCHEMA))
    for kwargs in ({}, {"cap_add": ["ALL"]}, {"cap_drop": ["ALL"]}, {"seccomp": "unconfined"},
                   {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                       {"name": "mkdir", "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                        "comment": "dropped on resolve"}]}}):
        spec = build_spec(SpecOptions(args=["true"], rootfs="/r", **kwargs))
        validate_spec(spec)
    assert "seccomp" not in build_spec(SpecOptions(args=["true"], rootfs="/r",
                                                   seccomp="unconfined"))["linux"]
    # resolved for the container's own set: ALL brings CAP_SYS_ADMIN when the host holds it
    spec = build_spec(SpecOptions(args=["x"], rootfs="/r", cap_add=["ALL"]))
    has_admin = "CAP_SYS_ADMIN" in spec["process"]["capabilities"]["bounding"]
    assert ("unshare" in always_allowed(spec["linux"]["seccomp"])) == has_admin


def test_user_profile_rules_resolve_without_docker_only_keys() -> None:
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "architectures": ["SCMP_ARCH_X86_64"],
               "syscalls": [{"name": "mkdir", "action": "SCMP_ACT_ERRNO", "comment": "x",
                             "includes": {"caps": ["CAP_CHOWN"]}},
                            {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO",
                             "excludes": {"caps": ["CAP_CHOWN"]}}]}
    p = resolve(profile=seccomp.check_profile(profile))
    assert p == {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                 "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}


def test_security_opt_forms(tmp_path: Path) -> None:
    assert seccomp.parse_security_opt([]) == "default"
    assert seccomp.parse_security_opt(["seccomp=unconfined"]) == "unconfined"
    assert seccomp.parse_security_opt(["seccomp:unconfined"]) == "unconfined"
    assert seccomp.parse_security_opt(["no-new-privileges"]) == "default"
    profile = {"defaultAction": "SCMP_ACT_ALLOW"}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(profile))
    assert seccomp.parse_security_opt([f"seccomp={path}"]) == profile
    assert seccomp.parse_security_opt([f"seccomp={json.dumps(profile)}"]) == profile


@pytest.mark.parametrize(("content", "complaint"), [
    (None, "cannot read the profile"),
    ("{not json", "not valid JSON"),
    ("[]", "want a JSON object"),
    ('{"defaultAction": "SCMP_ACT_MAYBE"}', "defaultAction: unknown action 'SCMP_ACT_MAYBE'"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"]}]}',
     "syscalls[0].action"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": '
     '"SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}',
     "syscalls[0].args[0].index"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": -1}', "defaultErrnoRet"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["x86"]}', "architectures"),
])
def test_bad_profile_named_with_option_and_file(tmp_path: Path, content: str | None,
                                                complaint: str) -> None:
    path = tmp_path / "profile.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InvalidParameter) as info:
        seccomp.parse_security_opt([f"seccomp={path}"])
    assert f"--security-opt 'seccomp={path}'" in str(info.value)
    assert complaint in str(info.value)


def test_profile_that_is_no_file_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer
    for path, why in ((fifo, "not a regular file"), (tmp_path, "not a regular file")):
        with pytest.raises(InvalidParameter, match=why):
            seccomp.parse_security_opt([f"seccomp={path}"])
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (5 << 20))
    with pytest.raises(InvalidParameter, match="larger than"):
        seccomp.parse_security_opt([f"seccomp={big}"])


def test_other_security_opts_refused_by_name() -> None:
    for opt in ("apparmor=unconfined", "label=disable", "seccomp=", "no-new-privileges=false"):
        with pytest.raises(InvalidParameter, match="invalid --security-opt"):
            seccomp.parse_security_opt([opt])
