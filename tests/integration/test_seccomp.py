"""The default seccomp profile checked from inside real containers, and ``--security-opt``.

Busybox has ``unshare`` but no way to issue ``keyctl`` or ``perf_event_open``; the host's own
Python does, through ctypes, when the container gets the host's ``/usr`` read-only and runs it
through the dynamic loader (the busybox image has no ``/lib``). Each call runs in a forked
child, so one that succeeds (a new user namespace under ``unconfined``) cannot change the next;
the child's exit status is the call's errno, 0 for success. Every call is made twice, under
the default profile and under ``seccomp=unconfined``: EPERM under the first and something else
under the second shows that the profile refused it, not the kernel.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from inside import run_in
from schemas import OCI_SCHEMA

from engine import Engine
from engine.errors import InvalidParameter

WAIT = 60.0
REPO = Path(__file__).resolve().parents[2]
PYTHON = os.path.realpath("/usr/bin/python3")

# The numbers of the calls ctypes issues raw (arch/*/include/uapi/asm/unistd*.h: ABI).
SYSCALLS = {
    "x86_64": {"keyctl": 250, "add_key": 248, "request_key": 249, "perf_event_open": 298,
               "unshare": 272, "clone": 56, "clone3": 435, "io_uring_setup": 425,
               "personality": 135, "userfaultfd": 323, "fchmodat2": 452},
    "aarch64": {"keyctl": 219, "add_key": 217, "request_key": 218, "perf_event_open": 241,
                "unshare": 97, "clone": 220, "clone3": 435, "io_uring_setup": 425,
                "personality": 92, "userfaultfd": 282, "fchmodat2": 452},
}[os.uname().machine]

# Runs inside the container; prints {"call": errno} as one JSON line.
PROBE = r"""
import ctypes, json, os, socket, struct, sys, threading
NR = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
L = ctypes.c_long
def raw(name, *args):
    def call():
        r = libc.syscall(L(NR[name]), *[L(a) if isinstance(a, int) else a for a in args])
        if r == 0 and name in ("clone", "clone3"):
            os._exit(0)  # the new process: nothing more to do
        return 0 if r >= 0 else ctypes.get_errno()
    return call
def oserr(fn):
    def call():
        try:
            fn()
            return 0
        except OSError as e:
            return e.errno
    return call
perf = struct.pack("IIQQQQQIIQ", 1, 64, 1, 0, 0, 0, (1 | 1 << 5 | 1 << 6), 0, 0, 0)
CLONE_NEWUSER, CLONE_NEWNET, SIGCHLD = 0x10000000, 0x40000000, 17
clone_args = struct.pack("QQQQQQQQQQQ", CLONE_NEWUSER, 0, 0, 0, SIGCHLD, 0, 0, 0, 0, 0, 0)
probes = {
    "keyctl": raw("keyctl", 0, -3, 0),  # KEYCTL_GET_KEYRING_ID of the session keyring
    "add_key": raw("add_key", b"user", b"corral-probe", b"x", 1, -2),
    "request_key": raw("request_key", b"user", b"corral-none", None, 0),
    "perf_event_open": raw("perf_event_open", ctypes.create_string_buffer(perf, 64), 0, -1,
                           -1, 0),
    "unshare(CLONE_NEWUSER)": raw("unshare", CLONE_NEWUSER),
    "unshare(NEWUSER|NEWNET)": raw("unshare", CLONE_NEWUSER | CLONE_NEWNET),
    "clone(CLONE_NEWUSER)": raw("clone", CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0),
    "clone3": raw("clone3", ctypes.create_string_buffer(clone_args, 88), 88),
    "io_uring_setup": raw("io_uring_setup", 1, ctypes.create_string_buffer(120)),
    "personality(ADDR_NO_RANDOMIZE)": raw("personality", 0x0040000),
    "userfaultfd": raw("userfaultfd", 1),  # UFFD_USER_MODE_ONLY
    "fchmodat2": raw("fchmodat2", -100, b"/tmp", 0o1777, 0),  # AT_FDCWD; /tmp's own mode
    "socket(AF_VSOCK)": oserr(lambda: socket.socket(40, socket.SOCK_STREAM)),
    "mknod(char 1:3)": oserr(lambda: os.mknod("/tmp/null", 0o20600, os.makedev(1, 3))),
    "mknod(fifo)": oserr(lambda: os.mknod("/tmp/fifo", 0o10600)),
    "fork+thread": oserr(lambda: threading.Thread(target=lambda: None).start()),
    "socket(AF_INET)": oserr(lambda: socket.socket().close()),
}
out = {}
for name, fn in probes.items():
    pid = os.fork()
    if pid == 0:
        try:
            os._exit(fn())
        except BaseException:
            os._exit(255)
    out[name] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
print(json.dumps(out))
"""

# What the default profile refuses, and how (the table in docs/RELIABILITY.md).
REFUSED = {
    "keyctl": errno.EPERM, "add_key": errno.EPERM, "request_key": errno.EPERM,
    "perf_event_open": errno.EPERM, "unshare(CLONE_NEWUSER)": errno.EPERM,
    "unshare(NEWUSER|NEWNET)": errno.EPERM, "clone(CLONE_NEWUSER)": errno.EPERM,
    "clone3": errno.ENOSYS, "io_uring_setup": errno.EPERM,
    "personality(ADDR_NO_RANDOMIZE)": errno.EPERM, "userfaultfd": errno.EPERM,
    "socket(AF_VSOCK)": errno.EPERM, "mknod(char 1:3)": errno.EPERM,
}
ALLOWED = ("mknod(fifo)", "fork+thread", "socket(AF_INET)")
# Calls newer than any the profile names get ENOSYS from runc, not EPERM, so that a newer libc
# falls back to the older call (glibc's fchmodat tries fchmodat2 first).
NEWER_THAN_PROFILE = ("fchmodat2",)


def _loader() -> str:
    found = sorted(glob.glob("/usr/lib/*-linux-gnu/ld-linux*.so.*"))
    assert found, "no dynamic loader under /usr/lib (a Debian host has one)"
    return found[0]


def _run(engine: Engine, image: str, cmd: list[str], **kwargs: object) -> tuple[int, str]:
    return run_in(engine, image, cmd, prefix="sec", wait=WAIT, **kwargs)


def _probe(engine: Engine, image: str, *security_opt: str) -> dict[str, int]:
    code, out = _run(engine, image,
                     [_loader(), PYTHON, "-c", PROBE, json.dumps(SYSCALLS)],
                     volumes=["/usr:/usr:ro"], security_opt=list(security_opt))
    assert code == 0, out
    return json.loads(out.strip().splitlines()[-1])


def test_refused_calls_from_inside(engine: Engine, busybox: str) -> None:
    confined = _probe(engine, busybox)
    unconfined = _probe(engine, busybox, "seccomp=unconfined")
    print("\n| call | default profile | seccomp=unconfined |")
    for name in (*REFUSED, *NEWER_THAN_PROFILE, *ALLOWED):
        print(f"| {name} | {errno.errorcode.get(confined[name], confined[name])} "
              f"| {errno.errorcode.get(unconfined[name], unconfined[name])} |")
    for name, code in REFUSED.items():
        assert confined[name] == code, (name, confined)
        # the kernel itself would have let it through, or refused it otherwise: the profile did
        assert unconfined[name] != code, (name, unconfined)
    for name in ALLOWED:
        assert confined[name] == 0 == unconfined[name], (name, confined, unconfined)
    for name in NEWER_THAN_PROFILE:
        assert confined[name] == errno.ENOSYS, (name, confined)


def test_issue_command_refused_as_docker(engine: Engine, busybox: str) -> None:
    script = "ip link add x type bridge && ip link show x"
    cmd = ["unshare", "-U", "-r", "-n", "sh", "-c", script]
    code, out = _run(engine, busybox, cmd)
    assert code != 0 and "Operation not permitted" in out and "x:" not in out, out
    # the same command without the filter: what it did before
    code, out = _run(engine, busybox, cmd, security_opt=["seccomp=unconfined"])
    assert code == 0 and "x: <BROADCAST,MULTICAST>" in out, out


def test_ordinary_programs_still_work(engine: Engine, busybox: str) -> None:
    script = ("set -e; mkdir -p /tmp/d; echo hi > /tmp/d/f; cp /tmp/d/f /tmp/g; ln -s g /tmp/l; "
              "cat /tmp/l; chmod 600 /tmp/g; chown nobody /tmp/g; mknod /tmp/p p; "
              "sleep 0.1 & wait; date +%Y >/dev/null; ps >/dev/null; nc -l -p 1 </dev/null & "
              "kill $!; wait || true; ping -c1 -W2 127.0.0.1 >/dev/null 2>&1 || true; "
              "chroot / true; su nobody -s /bin/sh -c id; echo done")
    code, out = _run(engine, busybox, ["sh", "-c", script])
    assert code == 0 and out.startswith("hi\n") and out.rstrip().endswith("done"), out


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CORRAL_VALIDATE_SPEC": str(OCI_SCHEMA)}
    return subprocess.run([sys.executable, "-m", "engine", "--root", str(root), *args],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=60,
                          stdin=subprocess.DEVNULL)


def test_cli_profile_file(engine: Engine, busybox: str, root_dir: Path, tmp_path: Path) -> None:
    profile = tmp_path / "no-mkdir.json"
    profile.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                      "errnoRet": errno.EACCES}]}))
    r = _cli(root_dir, "run", "--rm", "--network", "none", "--security-opt",
             f"seccomp={profile}", busybox, "sh", "-c", "mkdir /tmp/x; echo rc=$?")
    assert r.returncode == 0 and "Permission denied" in r.stderr + r.stdout, r
    assert "rc=1" in r.stdout
    name = f"sec-{uuid.uuid4().hex[:8]}"
    r = _cli(root_dir, "create", "--name", name, "--security-opt", "seccomp=unconfined",
             busybox)
    assert r.returncode == 0, r.stderr
    assert engine.inspect(name)["HostConfig"]["SecurityOpt"] == ["seccomp=unconfined"]
    engine.remove(name, force=True)


@pytest.mark.parametrize(("content", "complaint"), [
    (None, "cannot read the profile"),
    ("{broken", "not valid JSON"),
    ('{"defaultAction": "SCMP_ACT_NOPE"}', "defaultAction"),
])
def test_cli_bad_profile_refused_at_create(engine: Engine, busybox: str, root_dir: Path,
                                           tmp_path: Path, content: str | None,
                                           complaint: str) -> None:
    path = tmp_path / "profile.json"
    if content is not None:
        path.write_text(content)
    r = _cli(root_dir, "create", "--security-opt", f"seccomp={path}", busybox)
    assert r.returncode != 0
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and "--security-opt" in lines[0] and str(path) in lines[0], lines
    assert complaint in lines[0]
    assert engine.list(all=True) == []


@pytest.mark.parametrize(("field", "kwargs"), [
    ("command argument", {"cmd": ["echo", "a\0b"]}),
    ("environment variable", {"env": ["A=x\0y"]}),
    ("label", {"labels": {"k": "v\0w"}}),
    ("label key", {"labels": {"k\0": "v"}}),
    ("working directory", {"working_dir": "/tmp\0x"}),
])
def test_nul_refused_at_create(engine: Engine, busybox: str, field: str,
                               kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidParameter) as info:
        engine.create(busybox, **kwargs)  # type: ignore[arg-type]
    assert field in str(info.value) or "environment" in str(info.value), info.value
    assert engine.list(all=True) == []
