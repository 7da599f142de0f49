"""The ten steps of the start plan, in the order of moby's ``containerStart``.

Each step is a (do, undo) pair working on a ``StartContext``. Every undo is idempotent and
safe after a partial do, and needs nothing but what can be rebuilt from the stored container,
so the cleanup after an exit, or after an engine crash, runs the same undos in a new process.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from .. import programs
from ..errors import Conflict, InvalidParameter, SystemFailure
from ..host import cgroups, mounts
from ..host.conmon import MonitorSpec, read_pid, stop_conmon
from ..host.runc import process_alive
from ..host.safepath import mkdir_in_root, shadow_non_directories
from ..host.users import resolve_user
from ..store import logopts
from ..store.config import DEFAULT_PATH, parse_link
from ..store.container import Container
from . import health, netsteps
from .context import StartContext
from .spec import SpecOptions, build_spec, cpus_to_quota, write_spec

SHM_SIZE = 64 * 1024 * 1024
FOREGROUND_START_TIMEOUT = 30.0
# where runc mounts kernel file systems and makes files below, not resolving links in the root
RUNTIME_MOUNT_POINTS = ("dev", "proc", "sys")


class VerifySettings:
    """Refuse what this host cannot give before anything is made (moby ``verifyPlatform``)."""

    name = "verify"

    def do(self, ctx: StartContext) -> None:
        c = ctx.container.config
        if not Path(ctx.runtime.binary).exists():
            raise SystemFailure(f"runtime {ctx.runtime.binary} is not installed")
        if ctx.monitor is not None and not ctx.interactive and not Path(
                ctx.monitor.conmon).exists():
            raise SystemFailure(f"conmon {ctx.monitor.conmon} is not installed")
        if netsteps.is_bridge_mode(c.network_mode):  # before the network step makes a bridge
            programs.require("nft", ctx.firewall().nft)
        ncpu = os.cpu_count() or 1
        if c.cpus and c.cpus > ncpu:
            raise InvalidParameter(f"range of CPUs is from 0.01 to {ncpu}.00, as there are only "
                                   f"{ncpu} CPUs available")
        if c.cpus:
            cpus_to_quota(c.cpus)  # refuses what the CFS period cannot express
        cgroups.host().verify(cgroups.Needs(memory=c.memory,
                                            cpu=bool(c.cpus or c.cpu_shares)))
        if not ctx.image_rootfs.is_dir():
            raise SystemFailure(f"image {c.image_name} has no root filesystem")

    def undo(self, ctx: StartContext) -> None:
        return None


class MountRootfs:
    """Overlay: the image below, the container's own layer on top."""

    name = "rootfs"

    def do(self, ctx: StartContext) -> None:
        p = ctx.paths
        for d in (p.diff, p.work, p.rootfs):
            d.mkdir(mode=0o700, exist_ok=True)
        if mounts.mounted_under(p.rootfs):
            return
        shadow_non_directories(ctx.image_rootfs, p.diff, RUNTIME_MOUNT_POINTS)
        # the container's / is the root of its own layer: it takes the image's owner and mode,
        # or / stays 0700 and closed to every user but root
        st = os.stat(ctx.image_rootfs)
        os.chown(p.diff, st.st_uid, st.st_gid)
        os.chmod(p.diff, st.st_mode & 0o7777)
        mounts.mount("overlay", p.rootfs, "overlay", 0,
                     f"lowerdir={ctx.image_rootfs},upperdir={p.diff},workdir={p.work}")

    def undo(self, ctx: StartContext) -> None:
        p = ctx.paths
        mounts.unmount(p.rootfs)
        with contextlib.suppress(FileNotFoundError):
            p.rootfs.rmdir()
        shutil.rmtree(p.work, ignore_errors=True)


class InitializeNetworking:
    """bridge (the default): namespace, veth, address, routes, port rules; none: a namespace
    with only ``lo``; host: the host's; container:<name>: another container's. The sub-steps
    are in netsteps; the hosts, resolv.conf and hostname files are made here, as in moby."""

    name = "network"

    def do(self, ctx: StartContext) -> None:
        netsteps.initialize(ctx)

    def undo(self, ctx: StartContext) -> None:
        errors = netsteps.undo(ctx)
        if errors:
            raise SystemFailure("; ".join(f"{name}: {exc}" for name, exc in errors))


class SetupLinks:
    """Linked containers: Docker's environment variables and a hosts entry for each."""

    name = "links"

    def do(self, ctx: StartContext) -> None:
        c = ctx.container.config
        for spec in c.links:
            name, alias = parse_link(spec)
            assert ctx.find_container is not None
            other = ctx.find_container(name)
            if other.state.status != "running" or not other.state.ip:
                raise Conflict(f"Cannot link to a non running container: /{name} AS "
                               f"/{c.name}/{alias}")
            ctx.link_env += link_env(c.name, alias, other)
            ctx.link_hosts.append((other.state.ip, f"{alias} {other.name}"))
        if ctx.link_hosts:
            with open(ctx.paths.hosts, "a") as f:
                f.writelines(f"{ip}\t{names}\n" for ip, names in ctx.link_hosts)

    def undo(self, ctx: StartContext) -> None:
        ctx.link_env, ctx.link_hosts = [], []


def link_env(own: str, alias: str, other: Container) -> list[str]:
    """Docker's link variables (``ALIAS_PORT_80_TCP_ADDR`` and friends)."""
    prefix = "".join(ch if ch.isalnum() else "_" for ch in alias).upper()
    ip = other.state.ip
    env = [f"{prefix}_NAME=/{own}/{alias}"]
    ports = sorted({f"{p['container_port']}/{p['proto']}" for p in other.config.ports}
                   | set(other.config.expose),
                   key=lambda p: (int(p.split("/")[0]), p))
    for i, port in enumerate(ports):
        number, proto = port.split("/")
        key = f"{prefix}_PORT_{number}_{proto.upper()}"
        url = f"{proto}://{ip}:{number}"
        if i == 0:
            env.append(f"{prefix}_PORT={url}")
        env += [f"{key}={url}", f"{key}_ADDR={ip}", f"{key}_PORT={number}",
                f"{key}_PROTO={proto}"]
    for item in other.config.env:
        key, _, value = item.partition("=")
        if key not in ("HOME", "PATH", "HOSTNAME"):
            env.append(f"{prefix}_ENV_{key}={value}")
    return env


class WorkingDirectory:
    """Made inside the root, never through a symlink out of it."""

    name = "workdir"

    def do(self, ctx: StartContext) -> None:
        c = ctx.container.config
        ctx.uid, ctx.gid, ctx.home = resolve_user(ctx.paths.rootfs, c.user)
        # the process sees the path as asked; what is made is the path resolved in the root
        mkdir_in_root(ctx.paths.rootfs, c.working_dir or "/")
        ctx.cwd = c.working_dir or "/"

    def undo(self, ctx: StartContext) -> None:
        return None  # the folder lives in the container's own layer, as in Docker


class Environment:
    name = "env"

    def do(self, ctx: StartContext) -> None:
        c = ctx.container.config
        env = {"PATH": DEFAULT_PATH, "HOSTNAME": netsteps.hostname_of(ctx), "HOME": ctx.home}
        if c.tty:
            env["TERM"] = "xterm"
        for item in ctx.link_env + c.env:
            key, _, value = item.partition("=")
            env[key] = value
        ctx.env = [f"{k}={v}" for k, v in env.items()]

    def undo(self, ctx: StartContext) -> None:
        ctx.env = []


class CommandAndBundle:
    """The process and the OCI bundle; config.json is written by the process step once all
    mounts are known, so it is written once."""

    name = "bundle"

    def do(self, ctx: StartContext) -> None:
        c = ctx.container.config
        if not c.cmd:
            raise InvalidParameter("no command specified")
        ctx.paths.bundle.mkdir(mode=0o700, exist_ok=True)
        quota, period = cpus_to_quota(c.cpus) if c.cpus else (None, None)
        ctx.spec = SpecOptions(
            args=list(c.cmd), env=ctx.env, cwd=ctx.cwd, hostname=netsteps.hostname_of(ctx),
            rootfs=str(ctx.paths.rootfs), uid=ctx.uid, gid=ctx.gid, terminal=c.tty,
            readonly_rootfs=c.readonly_rootfs, network=ctx.network,
            cgroups_path=ctx.cgroups_path,
            cgroupns="new" if (c.cgroupns_mode or cgroups.host().default_cgroupns()
                               ) == "private" else "host",
            memory=c.memory, cpu_shares=c.cpu_shares,
            cpu_quota=quota, cpu_period=period,
            annotations={"io.corral.name": c.name}, seccomp=c.seccomp,
            cap_add=list(c.cap_add), cap_drop=list(c.cap_drop), sysctl=dict(c.sysctls))
        if c.pids_limit is not None:
            ctx.spec.pids_limit = c.pids_limit

    def undo(self, ctx: StartContext) -> None:
        shutil.rmtree(ctx.paths.bundle, ignore_errors=True)
        ctx.spec = None


class SetupIpc:
    """A private /dev/shm of 64 MiB, mounted on the host so it can be shared later."""

    name = "ipc"

    def do(self, ctx: StartContext) -> None:
        mode = ctx.container.config.ipc_mode
        if mode == "host":
            ctx.ipc = "host"
            ctx.mounts.append(bind_mount("/dev/shm", "/dev/shm", readonly=False))
            return
        shm = ctx.paths.shm
        shm.mkdir(mode=0o700, exist_ok=True)
        if not mounts.mounted_under(shm):
            size = ctx.container.config.shm_size or SHM_SIZE
            mounts.mount("shm", shm, "tmpfs",
                         mounts.MS_NOSUID | mounts.MS_NODEV | mounts.MS_NOEXEC,
                         f"mode=1777,size={size}")
        ctx.ipc = "new"
        ctx.mounts.append(bind_mount(str(shm), "/dev/shm", readonly=False))

    def undo(self, ctx: StartContext) -> None:
        mounts.unmount(ctx.paths.shm)
        with contextlib.suppress(FileNotFoundError):
            ctx.paths.shm.rmdir()
        ctx.mounts = [m for m in ctx.mounts if m["destination"] != "/dev/shm"]


class SetupMounts:
    """Binds, tmpfs, and the engine-made /etc/hosts, /etc/resolv.conf, /etc/hostname."""

    name = "mounts"

    def do(self, ctx: StartContext) -> None:
        c = ctx.container.config
        p = ctx.paths
        for src, dst in ((p.hosts, "/etc/hosts"), (p.resolv, "/etc/resolv.conf"),
                         (p.hostname, "/etc/hostname")):
            ctx.mounts.append(bind_mount(str(src), dst, readonly=False))
        for b in c.binds:
            if b.type == "volume":
                assert ctx.volumes is not None
                source = ctx.volumes.ensure(b.source).mountpoint
            else:
                source = b.source
                if not Path(source).exists():
                    Path(source).mkdir(parents=True, exist_ok=True)  # as ``docker run -v``
            ctx.mounts.append(bind_mount(source, b.target, readonly=b.readonly))
        for target, options in c.tmpfs.items():
            opts = ["nosuid", "nodev", "noexec"] + [o for o in options.split(",") if o]
            ctx.mounts.append({"destination": target, "type": "tmpfs", "source": "tmpfs",
                               "options": opts})

    def undo(self, ctx: StartContext) -> None:
        ctx.mounts = []


class StartProcess:
    """conmon runs ``runc create``; then ``runc start``; the process is running."""

    name = "process"

    def do(self, ctx: StartContext) -> None:
        assert ctx.spec is not None
        ctx.spec.ipc = ctx.ipc
        ctx.spec.mounts = list(ctx.mounts)
        write_spec(ctx.paths.bundle, build_spec(ctx.spec))
        ctx.layout.ensure_run()
        for f in (ctx.paths.exit_file, ctx.paths.pidfile, ctx.paths.conmon_pid,
                  runtime_pidfile_tmp(ctx.paths.pidfile)):
            with contextlib.suppress(FileNotFoundError):
                f.unlink()
        if ctx.interactive:
            self._foreground(ctx)
            return
        assert ctx.monitor is not None
        log = logopts.limits(ctx.container.config.log_opts)
        ctx.conmon_pid, ctx.pid = ctx.monitor.spawn(MonitorSpec(
            cid=ctx.cid, bundle=ctx.paths.bundle, log=ctx.paths.log, pidfile=ctx.paths.pidfile,
            conmon_pidfile=ctx.paths.conmon_pid, runtime_log=ctx.paths.runtime_log,
            exit_dir=ctx.layout.exits, socket_dir=ctx.layout.sockets,
            exit_command=ctx.exit_command, terminal=ctx.container.config.tty,
            log_max_size=log.max_size, log_max_files=log.max_file))
        ctx.runtime.start(ctx.cid, ctx.paths.runtime_log)
        if ctx.container.config.healthcheck:
            ctx.health_pid = health.spawn_monitor(ctx.layout.root, ctx.cid)

    def _foreground(self, ctx: StartContext) -> None:
        """``run -i``/``-t``: runc in the foreground owns the terminal; the caller monitors."""
        ctx.foreground = subprocess.Popen(
            ctx.runtime.run_args(ctx.cid, ctx.paths.bundle, ctx.paths.pidfile))
        deadline = time.monotonic() + FOREGROUND_START_TIMEOUT
        while not (pid := read_pid(ctx.paths.pidfile)):
            if ctx.foreground.poll() is not None or time.monotonic() > deadline:
                raise SystemFailure(f"runc run exited with status {ctx.foreground.returncode}")
            time.sleep(0.002)
        ctx.pid = pid

    def undo(self, ctx: StartContext) -> None:
        p = ctx.paths
        health.stop_monitor(ctx.health_pid, ctx.cid)
        if ctx.foreground is not None:  # runc run owns it: let that runc see the end
            ctx.runtime.kill(ctx.cid, "KILL", all_processes=True)
            with contextlib.suppress(subprocess.TimeoutExpired):
                ctx.foreground.wait(timeout=10)
        ctx.runtime.delete(ctx.cid)  # --force kills whatever of it still runs
        stop_conmon(ctx.conmon_pid or read_pid(p.conmon_pid), ctx.cid)
        # conmon's exit file is the engine's to remove, when it records the exit
        for f in (p.pidfile, p.conmon_pid, p.runtime_log, runtime_pidfile_tmp(p.pidfile)):
            with contextlib.suppress(FileNotFoundError):
                f.unlink()
        shutil.rmtree(ctx.layout.sockets / ctx.cid, ignore_errors=True)
        cgroups.host().remove(ctx.cid)
        ctx.pid = ctx.conmon_pid = 0


START_PLAN = (VerifySettings(), MountRootfs(), InitializeNetworking(), SetupLinks(),
              WorkingDirectory(), Environment(), CommandAndBundle(), SetupIpc(), SetupMounts(),
              StartProcess())
STEP_NAMES = tuple(s.name for s in START_PLAN)


def runtime_pidfile_tmp(pidfile: Path) -> Path:
    """runc writes the pid file as ``.<name>`` and renames it; a write that failed (a full
    disk) leaves it, and every later ``runc create`` then fails with "file exists"."""
    return pidfile.with_name("." + pidfile.name)


def bind_mount(source: str, target: str, *, readonly: bool) -> dict:
    opts = ["rbind", "rprivate"] + (["ro"] if readonly else ["rw"])
    return {"destination": target, "type": "bind", "source": source, "options": opts}


def kill_exec_sessions(sessions: list[dict]) -> None:
    """Kill exec sessions: the command in the container and the ``runc exec`` running it."""
    for s in sessions:
        pids = [int(s.get("pid", 0))]
        if s.get("pid_file"):
            pids.append(read_pid(Path(s["pid_file"])))
        for pid in pids:
            if process_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
