"""Hardening checked from inside a container: what its processes can see and do.

Each test reads the facts from inside a real container of the busybox image (``network="none"``:
networking is not the point), through the container's own first process or ``exec``, and
compares them with what the host computes independently: Docker's default capability set
spelled out here (moby ``oci/caps/defaults.go``) and the kernel's capability numbers.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from cgroupfiles import in_container, on_host
from inside import run_in

from engine import Engine
from engine.start.spec import DEFAULT_CAPABILITIES, DEFAULT_PIDS_LIMIT, MASKED_PATHS, READONLY_PATHS

WAIT = 30.0

# moby oci/caps/defaults.go: Docker's default set, written out so that the engine's own list is
# checked against it rather than against itself.
DOCKER_DEFAULT_CAPABILITIES = frozenset({
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
})

# The kernel's numbers (include/uapi/linux/capability.h): ABI, never renumbered.
KERNEL_CAPABILITY_BITS = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3,
    "CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27,
    "CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31,
}


def run(engine: Engine, image: str, script: str, **kwargs: object) -> tuple[int, str]:
    """Run ``script`` with ``sh -c`` as the container's first process; its exit code and
    everything it wrote (stdout and stderr, in order)."""
    return run_in(engine, image, ["sh", "-c", script], prefix="hard", wait=WAIT, **kwargs)


def status_fields(text: str) -> dict[str, str]:
    """The ``Key:\tvalue`` lines of /proc/<pid>/status."""
    return {m[1]: m[2].strip() for m in re.finditer(r"^(\w+):\s*(.*)$", text, re.M)}


def expected_mask() -> int:
    return sum(1 << KERNEL_CAPABILITY_BITS[c] for c in DEFAULT_CAPABILITIES)


def test_default_capabilities_are_dockers() -> None:
    assert set(DEFAULT_CAPABILITIES) == DOCKER_DEFAULT_CAPABILITIES
    assert len(DEFAULT_CAPABILITIES) == len(DOCKER_DEFAULT_CAPABILITIES)


def test_capability_sets_and_no_new_privs(engine: Engine, busybox: str) -> None:
    code, out = run(engine, busybox, "cat /proc/self/status")
    assert code == 0, out
    fields = status_fields(out)
    want = expected_mask()
    assert want == 0xA80425FB  # what Docker's default set is on every kernel
    assert int(fields["CapBnd"], 16) == want
    assert int(fields["CapPrm"], 16) == want
    assert int(fields["CapEff"], 16) == want
    assert int(fields["CapInh"], 16) == 0
    assert int(fields["CapAmb"], 16) == 0
    assert fields["NoNewPrivs"] == "1"


def test_capabilities_of_exec_and_of_a_non_root_user(engine: Engine, busybox: str) -> None:
    cid = engine.create(busybox, ["sleep", "300"], network="none",
                        name=f"hard-{uuid.uuid4().hex[:8]}")
    try:
        engine.start(cid)
        res = engine.exec(cid, ["cat", "/proc/self/status"], capture=True, timeout=WAIT)
        assert res.exit_code == 0, res.output
        fields = status_fields(res.output.decode())
        assert int(fields["CapBnd"], 16) == expected_mask()
        assert int(fields["CapInh"], 16) == int(fields["CapAmb"], 16) == 0
        assert fields["NoNewPrivs"] == "1"
        # a user other than root holds nothing, and can still use the container's files
        res = engine.exec(cid, ["cat", "/proc/self/status"], user="nobody", capture=True,
                          timeout=WAIT)
        assert res.exit_code == 0, res.output
        fields = status_fields(res.output.decode())
        assert int(fields["CapEff"], 16) == int(fields["CapPrm"], 16) == 0
        assert int(fields["CapBnd"], 16) == expected_mask()
        assert fields["Uid"].split()[0] == "65534"
    finally:
        engine.remove(cid, force=True)


def _first_byte(path: str) -> bytes:
    # /proc/kcore, when the kernel has it (Debian's does), is the size of the address space
    with open(path, "rb") as f:
        return f.read(1)


def test_masked_paths_are_empty_inside(engine: Engine, busybox: str) -> None:
    # /proc/kcore is absent on kernels without CONFIG_PROC_KCORE (this one, for instance): each
    # masked path that the host has is checked, and the host must have some with content,
    # or the test would prove nothing.
    present = [p for p in MASKED_PATHS if Path(p).exists()]
    with_content = [p for p in present if Path(p).is_file() and _first_byte(p)]
    assert with_content, f"none of {MASKED_PATHS} has content on this host"
    script = "; ".join(
        f"if [ -d {p} ]; then echo \"{p} dir $(ls -A {p} | wc -l)\"; "
        f"else echo \"{p} file $(cat {p} 2>/dev/null | wc -c)\"; fi" for p in present)
    code, out = run(engine, busybox, script)
    assert code == 0, out
    seen = dict(line.split(" ", 1) for line in out.splitlines())
    assert set(seen) == set(present), out
    for path in present:
        kind, size = seen[path].split()
        assert kind == ("dir" if Path(path).is_dir() else "file"), (path, out)
        assert int(size) == 0, f"{path} shows {size} entries or bytes inside the container"


def test_proc_sys_and_sys_are_read_only(engine: Engine, busybox: str) -> None:
    host_name = Path("/proc/sys/kernel/hostname").read_text()
    targets = [*(f"{p}/x" if Path(p).is_dir() else p for p in READONLY_PATHS
                 if Path(p).exists()),
               "/proc/sys/kernel/hostname", "/proc/sys/vm/drop_caches", "/sys/kernel/x",
               "/sys/fs/cgroup/x"]
    script = "; ".join(f"echo 1 2>/dev/null > {t} && echo WROTE {t}" for t in targets) \
        + "; echo done"
    code, out = run(engine, busybox, script)
    assert code == 0, out
    assert "WROTE" not in out
    assert "done" in out.split()  # the script ran to its end
    assert Path("/proc/sys/kernel/hostname").read_text() == host_name


def test_mknod_of_devices_refused(engine: Engine, busybox: str) -> None:
    # The container holds CAP_MKNOD (Docker's default set, checked above) and the device
    # cgroup allows making any node ("c *:* m", as Docker's); the seccomp rule refuses making a
    # character or block node before either is asked. A FIFO can still be made.
    code, out = run(engine, busybox,
                    "mknod /tmp/mem c 1 1; echo c=$?; mknod /tmp/sda b 8 0; echo b=$?; "
                    "mknod /dev/shm/null c 1 3; echo shm=$?; mknod /tmp/fifo p; echo p=$?; "
                    "ls /tmp /dev/shm")
    assert code == 0, out
    words = out.split()
    assert {"c=1", "b=1", "shm=1", "p=0"} <= set(words), out
    assert out.count("Operation not permitted") == 3, out
    assert "fifo" in words and not {"mem", "sda", "null"} & set(words), out
    code, out = run(engine, busybox, "mknod /tmp/x c 1 3; echo rc=$?; ls /tmp", user="nobody")
    assert "rc=1" in out and "x" not in out.split("rc=1", 1)[1].split(), out


def test_unshare_refused(engine: Engine, busybox: str) -> None:
    # busybox has unshare (busybox --list); new namespaces need CAP_SYS_ADMIN, not in the set
    code, out = run(engine, busybox,
                    "unshare -n true; echo net=$?; unshare -m true; echo mnt=$?; "
                    "unshare -p -f true; echo pid=$?; unshare -u true; echo uts=$?")
    assert code == 0, out
    for ns in ("net", "mnt", "pid", "uts"):
        assert f"{ns}=1" in out, out
    assert out.count("Operation not permitted") == 4, out


def test_first_process_holds_only_fds_0_to_2(engine: Engine, busybox: str) -> None:
    # ``; true`` keeps sh as pid 1 (a lone command would be exec'd in its place, and ls would
    # list its own directory fd); ls is then a child listing pid 1's fds.
    code, out = run(engine, busybox, "ls /proc/1/fd; true")
    assert code == 0, out
    assert out.split() == ["0", "1", "2"]
    cid = engine.create(busybox, ["sleep", "300"], network="none",
                        name=f"hard-{uuid.uuid4().hex[:8]}")
    try:
        engine.start(cid)
        assert engine.exec(cid, ["ls", "/proc/1/fd"], capture=True,
                           timeout=WAIT).output.split() == [b"0", b"1", b"2"]
        # an exec'd process inherits nothing from runc or the engine either
        res = engine.exec(cid, ["sh", "-c", "ls /proc/$$/fd; true"], capture=True, timeout=WAIT)
        assert res.output.split() == [b"0", b"1", b"2"], res.output
    finally:
        engine.remove(cid, force=True)


def test_default_pids_limit_is_set(engine: Engine, busybox: str) -> None:
    code, out = run(engine, busybox, f"cat {in_container('pids', 'pids.max')}")
    assert code == 0, out
    assert out.strip() == str(DEFAULT_PIDS_LIMIT)


def test_pids_limit_applies(engine: Engine, busybox: str) -> None:
    limit = 12
    cid = engine.create(busybox, ["sleep", "300"], network="none", pids_limit=limit,
                        name=f"hard-{uuid.uuid4().hex[:8]}")
    try:
        engine.start(cid)
        cgroup = on_host(cid, "pids")
        assert (cgroup / "pids.max").read_text().strip() == str(limit)
        # the sleeps must not hold the output pipe, or exec would wait for them
        res = engine.exec(cid, ["sh", "-c", "i=0; while [ $i -lt 40 ]; do "
                                "sleep 60 > /dev/null 2>&1 & i=$((i+1)); done; echo spawned"],
                          capture=True, timeout=WAIT)
        assert b"can't fork" in res.output or b"Resource temporarily" in res.output, res.output
        assert int((cgroup / "pids.current").read_text()) <= limit
        events = dict(line.split() for line in (cgroup / "pids.events").read_text().splitlines())
        assert int(events["max"]) > 0
    finally:
        engine.remove(cid, force=True)
