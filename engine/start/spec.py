"""The OCI runtime config (``config.json``) a container's bundle carries.

``build_spec`` turns a flat :class:`SpecOptions` into an OCI runtime-spec 1.0.2 config shaped like
Docker's default (moby ``oci/defaults.go`` and ``daemon/oci_linux.go``): Docker's capability set
with empty inheritable and ambient sets, its masked and read-only ``/proc`` paths, a read-only
``/sys``, its device cgroup allow-list and a 64 MiB private ``/dev/shm``. Beyond Docker,
``no_new_privileges`` is on and a pids limit is set by default.

The seccomp profile is Docker's default, and stricter (no io_uring, no character or block device
node through ``mknod``): data in ``engine/start/seccomp/default.json``, resolved for the
container's capabilities and the machine's architecture by
``engine.start.seccomp.resolve``. ``SpecOptions.seccomp`` is ``"default"``, ``"unconfined"``
(no ``linux.seccomp``) or a user's profile.

Deliberate omissions:

* no ``process.rlimits``: the hosts we run on lack CAP_SYS_RESOURCE, and runc fails with "error
  setting rlimit" when a limit is above the current hard one; the container inherits ours;
* a cgroup namespace only when asked (``cgroupns``): the engine asks for one on cgroup v2
  hosts, where Docker makes one by default, and not on v1, where Docker does not either;
* no ``linux.devices``: runc creates the standard nodes (null, zero, full, random, urandom, tty,
  console, ptmx) itself.

``validate_spec`` checks a config against the OCI JSON schema when ``CORRAL_VALIDATE_SPEC`` names
the schema folder (tests and CI set it); ``write_spec`` validates and writes the bundle's config.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidParameter, SystemFailure
from ..store.files import atomic_write_bytes
from . import seccomp

__all__ = [
    "ALL_CAPABILITIES",
    "DEFAULT_CAPABILITIES",
    "DEFAULT_PIDS_LIMIT",
    "DEFAULT_SHM_SIZE",
    "OCI_VERSION",
    "SpecOptions",
    "build_spec",
    "cpus_to_quota",
    "host_capabilities",
    "validate_spec",
    "write_spec",
]

OCI_VERSION = "1.0.2"
DEFAULT_PIDS_LIMIT = 2048
DEFAULT_SHM_SIZE = 64 * 1024 * 1024
CPU_PERIOD = 100_000  # microseconds, the CFS default; Docker uses it for --cpus
VALIDATE_ENV = "CORRAL_VALIDATE_SPEC"

# moby oci/caps/defaults.go, in its order.
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

# Every capability up to CAP_CHECKPOINT_RESTORE (40, Linux 5.9), in the kernel's bit order; "ALL"
# expands to those of them that the engine itself holds (see host_capabilities).
ALL_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)

_NOSUID_NOEXEC_NODEV = ["nosuid", "noexec", "nodev"]

# moby oci/defaults.go; /dev/shm gets its size as moby's setupIpcDirs gives it (64 MiB).
_DEFAULT_MOUNTS: tuple[dict[str, Any], ...] = (
    {"destination": "/proc", "type": "proc", "source": "proc", "options": _NOSUID_NOEXEC_NODEV},
    {
        "destination": "/dev",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
    },
    {
        "destination": "/dev/pts",
        "type": "devpts",
        "source": "devpts",
        "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
    },
    {
        "destination": "/sys",
        "type": "sysfs",
        "source": "sysfs",
        "options": [*_NOSUID_NOEXEC_NODEV, "ro"],
    },
    {
        "destination": "/sys/fs/cgroup",
        "type": "cgroup",
        "source": "cgroup",
        "options": ["ro", *_NOSUID_NOEXEC_NODEV],
    },
    {
        "destination": "/dev/mqueue",
        "type": "mqueue",
        "source": "mqueue",
        "options": _NOSUID_NOEXEC_NODEV,
    },
    {
        "destination": "/dev/shm",
        "type": "tmpfs",
        "source": "shm",
        "options": [*_NOSUID_NOEXEC_NODEV, "mode=1777", f"size={DEFAULT_SHM_SIZE // 1024}k"],
    },
)

MASKED_PATHS: tuple[str, ...] = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)

READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
    # Beyond Docker: on cgroup v1, runc mounts a tmpfs at /sys/fs/cgroup, below the cgroup
    # binds, and leaves it writable whatever the mount's "ro" says: a container could fill it.
    "/sys/fs/cgroup",
)


def _dev(allow: bool, major: int | None, minor: int | None, access: str = "rwm",
         kind: str = "c") -> dict[str, Any]:
    rule: dict[str, Any] = {"allow": allow, "type": kind, "access": access}
    # An absent major or minor is the OCI spelling of the wildcard "*".
    if major is not None:
        rule["major"] = major
    if minor is not None:
        rule["minor"] = minor
    return rule


# The device cgroup policy a Docker container ends up with: moby's list (deny all; allow null,
# zero, urandom, random, tty, console; deny fuse), then what runc appends to it (mknod of any
# node, full, ptmx, /dev/pts/*, tun), written out so that config.json states the whole policy.
# The order is Docker's and it matters on cgroup v1: runc cannot deny a device once a wildcard
# rule such as "c *:* m" allows it ("cannot punch hole in existing wildcard rule").
_DEVICE_RULES: tuple[dict[str, Any], ...] = (
    {"allow": False, "access": "rwm"},
    _dev(True, 1, 5),  # zero
    _dev(True, 1, 3),  # null
    _dev(True, 1, 9),  # urandom
    _dev(True, 1, 8),  # random
    _dev(True, 5, 0),  # tty
    _dev(True, 5, 1),  # console
    _dev(False, 10, 229),  # fuse
    _dev(True, None, None, "m", "c"),
    _dev(True, None, None, "m", "b"),
    _dev(True, 1, 7),  # full
    _dev(True, 5, 2),  # ptmx
    _dev(True, 136, None),  # /dev/pts/*
    _dev(True, 10, 200),  # net/tun
)

# Sysctls that only make sense inside a namespace of ours; runc refuses them when the namespace is
# the host's, so refuse them earlier with an error that names the option.
_IPC_SYSCTLS = frozenset({
    "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
    "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
})


@dataclass(kw_only=True)
class SpecOptions:
    """What ``build_spec`` needs to know; everything else is Docker's default.

    ``network`` and ``ipc`` are ``"new"`` (runc makes a fresh namespace), ``"host"`` (no
    namespace of our own) or an absolute path to a namespace file to join. ``mounts`` are OCI
    mount entries placed after the defaults; one whose destination is a default one's replaces
    it (a mount at ``/dev`` also replaces the defaults below ``/dev``, as in Docker).
    ``privileged`` is recorded only: it does not widen the config yet.
    """

    args: list[str]
    rootfs: str
    env: list[str] = field(default_factory=list)
    cwd: str = "/"
    hostname: str = ""
    uid: int = 0
    gid: int = 0
    additional_gids: list[int] = field(default_factory=list)
    terminal: bool = False
    readonly_rootfs: bool = False
    mounts: list[dict[str, Any]] = field(default_factory=list)
    network: str = "new"
    ipc: str = "new"
    cgroups_path: str = ""
    cgroupns: str = "host"  # "new": a private cgroup namespace
    memory: int | None = None
    memory_swap: int | None = None
    cpu_shares: int | None = None
    cpu_quota: int | None = None
    cpu_period: int | None = None
    pids_limit: int | None = DEFAULT_PIDS_LIMIT
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    privileged: bool = False
    no_new_privileges: bool = True
    annotations: dict[str, str] = field(default_factory=dict)
    sysctl: dict[str, str] = field(default_factory=dict)
    oom_score_adj: int | None = None
    seccomp: str | dict[str, Any] = "default"


def cpus_to_quota(cpus: float) -> tuple[int, int]:
    """``--cpus`` as a CFS ``(quota, period)`` in microseconds, period 100 ms like Docker."""
    # The kernel refuses a quota under 1 ms; Docker states the same bound as "from 0.01".
    if not math.isfinite(cpus) or round(cpus * CPU_PERIOD) < 1000:
        raise InvalidParameter(f"invalid cpus {cpus}: the range of CPUs starts at 0.01")
    quota = round(cpus * CPU_PERIOD)
    # the quota is whole microseconds of the period: a finer --cpus would be silently rounded
    if abs(cpus * CPU_PERIOD - quota) > 1e-6 * max(1.0, cpus):
        raise InvalidParameter(f"invalid cpus {cpus}: finer than the CFS period of "
                               f"{CPU_PERIOD} µs allows (steps of {1 / CPU_PERIOD:.5f})")
    return quota, CPU_PERIOD


def _normalize_caps(names: list[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        upper = name.strip().upper()
        if upper == "ALL":
            out.append("ALL")
            continue
        cap = upper if upper.startswith("CAP_") else "CAP_" + upper
        if cap not in ALL_CAPABILITIES:
            raise InvalidParameter(f"unknown capability: {name!r}")
        out.append(cap)
    return out


@functools.cache
def host_capabilities() -> frozenset[str]:
    """The capabilities this process may hand on: its bounding set, read from /proc.

    A container cannot get a capability its engine lacks (runc fails with "unable to apply caps:
    operation not permitted"); our hosts run without CAP_SYS_RESOURCE, for one. So "ALL" means
    all that we hold, as in Podman, rather than all that the kernel knows, as in Docker.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            line = next(x for x in f if x.startswith("CapBnd:"))
        mask = int(line.split()[1], 16)
    except (OSError, StopIteration, IndexError, ValueError):
        return frozenset(ALL_CAPABILITIES)
    # ALL_CAPABILITIES is in the kernel's bit order.
    return frozenset(c for bit, c in enumerate(ALL_CAPABILITIES) if mask >> bit & 1)


def _capabilities(cap_add: list[str], cap_drop: list[str]) -> list[str]:
    """Docker's ``caps.TweakCapabilities``: ALL in cap_add wins over ALL in cap_drop."""
    adds = _normalize_caps(cap_add)
    drops = _normalize_caps(cap_drop)
    held = host_capabilities()
    missing = [c for c in adds if c != "ALL" and c not in held]
    if missing:
        raise InvalidParameter(f"capability not available on this host: {', '.join(missing)}")
    if "ALL" in adds:
        caps = [c for c in ALL_CAPABILITIES if c in held and c not in drops]
    elif "ALL" in drops:
        caps = list(adds)
    else:
        caps = [c for c in DEFAULT_CAPABILITIES if c not in drops] + adds
    return list(dict.fromkeys(caps))  # Docker may repeat a cap added twice; runc does not care


def check_capabilities(cap_add: list[str], cap_drop: list[str]) -> None:
    """Refuse, at create, what ``build_spec`` would refuse at start (unknown names, ones this
    host cannot hand on)."""
    _capabilities(cap_add, cap_drop)


def _namespace(kind: str, mode: str, option: str) -> dict[str, str] | None:
    if mode == "host":
        return None
    if mode == "new":
        return {"type": kind}
    if mode.startswith("/"):
        return {"type": kind, "path": mode}
    raise InvalidParameter(f"invalid {option} mode {mode!r}: want 'new', 'host' or a path")


def _clean_destination(mount: dict[str, Any]) -> str:
    dest = mount.get("destination")
    if not isinstance(dest, str) or not dest.startswith("/"):
        raise InvalidParameter(f"mount destination must be an absolute path: {dest!r}")
    return posixpath.normpath(dest)


def _mounts(extra: list[dict[str, Any]]) -> list[dict[str, Any]]:
    user = [copy.deepcopy(m) for m in extra]
    targets = {_clean_destination(m) for m in user}
    mounts = [
        copy.deepcopy(m)
        for m in _DEFAULT_MOUNTS
        if m["destination"] not in targets
        and not ("/dev" in targets and m["destination"].startswith("/dev/"))
    ]
    # Parents before children, as moby sorts them, so that a mount at /a cannot hide one at
    # /a/b; the sort is stable, so equal depths keep the caller's order.
    user.sort(key=lambda m: _clean_destination(m).count("/"))
    return mounts + user


def _check_sysctls(sysctl: dict[str, str], network: str, ipc: str) -> None:
    for key in sysctl:
        if network == "host" and key.startswith("net."):
            raise InvalidParameter(f"sysctl {key!r} is not allowed with the host network")
        if ipc == "host" and (key in _IPC_SYSCTLS or key.startswith("fs.mqueue.")):
            raise InvalidParameter(f"sysctl {key!r} is not allowed with the host IPC namespace")


def _resources(opts: SpecOptions) -> dict[str, Any]:
    resources: dict[str, Any] = {"devices": copy.deepcopy(list(_DEVICE_RULES))}
    memory = {
        k: v for k, v in (("limit", opts.memory), ("swap", opts.memory_swap)) if v is not None
    }
    if memory:
        resources["memory"] = memory
    cpu = {
        k: v
        for k, v in (
            ("shares", opts.cpu_shares),
            ("quota", opts.cpu_quota),
            ("period", opts.cpu_period),
        )
        if v is not None
    }
    if cpu:
        resources["cpu"] = cpu
    if opts.pids_limit is not None and opts.pids_limit > 0:
        resources["pids"] = {"limit": opts.pids_limit}
    return resources


def build_spec(opts: SpecOptions) -> dict[str, Any]:
    """The OCI runtime config for ``opts``; raises ``InvalidParameter`` for a bad option."""
    caps = _capabilities(opts.cap_add, opts.cap_drop)
    _check_sysctls(opts.sysctl, opts.network, opts.ipc)

    user: dict[str, Any] = {"uid": opts.uid, "gid": opts.gid}
    if opts.additional_gids:
        user["additionalGids"] = list(opts.additional_gids)
    process: dict[str, Any] = {
        "terminal": opts.terminal,
        "user": user,
        "args": list(opts.args),
        "env": list(opts.env),
        "cwd": opts.cwd,
        "capabilities": {
            "bounding": list(caps),
            "effective": list(caps),
            "permitted": list(caps),
            # Empty since moby's fix for CVE-2022-24769: with a non-empty inheritable set, a
            # program carrying inheritable file capabilities gains them on exec, even as non-root.
            "inheritable": [],
            "ambient": [],
        },
        "noNewPrivileges": opts.no_new_privileges,
    }
    if opts.oom_score_adj is not None:
        process["oomScoreAdj"] = opts.oom_score_adj

    namespaces = [
        ns
        for ns in (
            {"type": "mount"},
            _namespace("network", opts.network, "network"),
            {"type": "uts"},
            {"type": "pid"},
            _namespace("ipc", opts.ipc, "ipc"),
            _namespace("cgroup", opts.cgroupns, "cgroupns"),
        )
        if ns is not None
    ]
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "resources": _resources(opts),
        "maskedPaths": list(MASKED_PATHS),
        "readonlyPaths": list(READONLY_PATHS),
    }
    if opts.cgroups_path:
        linux["cgroupsPath"] = opts.cgroups_path
    profile = seccomp.resolve(opts.seccomp, caps)
    if profile is not None:
        linux["seccomp"] = profile
    if opts.sysctl:
        linux["sysctl"] = dict(opts.sysctl)

    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": opts.rootfs, "readonly": opts.readonly_rootfs},
        "mounts": _mounts(opts.mounts),
        "linux": linux,
    }
    if opts.hostname:
        spec["hostname"] = opts.hostname
    if opts.annotations:
        spec["annotations"] = dict(opts.annotations)
    return spec


@functools.cache
def _validator(folder: str) -> Any:
    # jsonschema costs a few hundred ms to import and is only a test dependency.
    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    base = Path(folder)
    try:
        # The schema files $ref each other by bare file name; registering each under its name
        # lets those relative references resolve without touching the files or the network.
        schemas = {p.name: json.loads(p.read_bytes()) for p in sorted(base.glob("*.json"))}
    except (OSError, ValueError) as exc:
        raise SystemFailure(f"cannot read the OCI schema in {base}: {exc}") from exc
    root = schemas.get("config-schema.json")
    if root is None:
        raise SystemFailure(f"no config-schema.json in {base} (named by ${VALIDATE_ENV})")
    registry = Registry().with_resources(
        (name, Resource.from_contents(doc, default_specification=DRAFT4))
        for name, doc in schemas.items()
    )
    cls = jsonschema.validators.validator_for(root, default=jsonschema.Draft4Validator)
    return cls(root, registry=registry)


def validate_spec(spec: dict[str, Any]) -> None:
    """Check ``spec`` against the OCI schema in the folder ``$CORRAL_VALIDATE_SPEC`` names.

    Does nothing when the variable is unset or empty. Raises ``SystemFailure`` naming the JSON
    path and the schema's complaint: an invalid config is the engine's bug, not the user's.
    """
    folder = os.environ.get(VALIDATE_ENV, "")
    if not folder:
        return
    from jsonschema.exceptions import best_match

    validator = _validator(str(Path(folder).resolve()))
    error = best_match(validator.iter_errors(spec))
    if error is not None:
        raise SystemFailure(f"invalid OCI config at {error.json_path}: {error.message}")


def write_spec(bundle: Path, spec: dict[str, Any]) -> Path:
    """Validate ``spec`` and write it atomically as ``<bundle>/config.json``; return that path."""
    validate_spec(spec)
    path = Path(bundle) / "config.json"
    # 0600: the environment in it may carry secrets.
    atomic_write_bytes(path, json.dumps(spec, indent=2).encode() + b"\n", mode=0o600)
    return path
