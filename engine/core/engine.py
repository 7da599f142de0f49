"""The ``Engine``: the Python API that supervisors embed, and that the CLI drives.

Each container has its own lock (an flock on a file in its folder, as ``container.Lock()`` in
moby), held across a whole transition; no lock is shared by all containers. The lifecycle
machine decides what may happen; the delegate below carries it out and saves the state.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal as _signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from states import (
    ACTIVE,
    DEAD,
    PAUSED,
    REMOVING,
    RUNNING,
    STARTING,
    Lifecycle,
    StepFailure,
    TransitionConflict,
    TransitionNotModified,
    run_steps,
    undo_steps,
)

from ..errors import (
    Conflict,
    CorralError,
    InvalidParameter,
    NotFound,
    NotModified,
    StartFailed,
    SystemFailure,
)
from ..host import cgroups, hostfiles, mounts
from ..host.conmon import Monitor, find_conmon, is_conmon_of, read_exit_code
from ..host.runc import Runtime, find_runtime, process_alive
from ..host.users import runtime_user
from ..images.store import Image, ImageStore
from ..log import logger
from ..logs import keeper as logkeeper
from ..logs.reader import LogRecord, read_logs
from ..networks.store import DEFAULT_NETWORK, Network, NetworkStore
from ..start import health, netsteps, seccomp
from ..start.context import StartContext
from ..start.spec import check_capabilities
from ..start.steps import START_PLAN, STEP_NAMES, kill_exec_sessions
from ..store import config as cfg
from ..store import logopts
from ..store.config import Bind, ContainerConfig
from ..store.container import Container, ContainerState, now_rfc3339
from ..store.events import Event, EventBus, EventJournal
from ..store.files import atomic_write_json, file_lock, read_json
from ..store.names import generate_name
from ..store.paths import Layout
from ..store.sysctl import check_sysctls
from ..volumes.store import Volume, VolumeStore
from . import exitcodes, fsck
from .restart import after_reboot, next_delay

EXIT_FILE_WAIT = 5.0
EXIT_FILE_POLL = 0.002  # conmon writes the exit file a few ms after the process ends
START_FAILED_EXIT_CODE = exitcodes.START_FAILED
LOST_EXIT_CODE = exitcodes.LOST
CLEANUP_INCOMPLETE = "cleanup incomplete"
PAUSE_LIMIT = 600.0  # a ``pause:<step>`` fail point holds the start this long at most

Hook = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: bytes = b""


def _fail_points_from_env() -> set[str]:
    return {p for p in os.environ.get("CORRAL_FAIL_POINTS", "").split(",") if p}


class Engine:
    """A corral engine over one root directory.

    ``watch`` starts a thread that notices exits of the containers this engine started or
    found running, and calls the hooks. A short-lived CLI process passes ``watch=False``.

    ``reconcile``: ``True`` brings every stored container in line with what runs and sweeps
    what a crash left (``reconcile()``), as dockerd does when it starts; ``"touched"`` (the
    CLI, a process per command) does that only for the first engine since boot, and otherwise
    leaves each container to the commands that touch it, as Podman does: a crashed start or
    removal is finished when the container is next locked, an exit nobody handled is seen by
    ``inspect`` and ``list``. ``False``: nothing (conmon's exit command).

    ``make_layout=False`` creates none of the root's folders: for the processes that act on
    one container in the background (the exit command, the health monitor), which must not
    bring back a root that was torn down meanwhile, and for listings of a root never made.
    (The run folder is made by the first start in any case.)
    """

    def __init__(self, root: Path | str | None = None, *, watch: bool = True,
                 reconcile: bool | str = True, runtime: str | None = None,
                 conmon: str | None = None, fail_points: set[str] | None = None,
                 make_layout: bool = True) -> None:
        self.layout = Layout.for_root(root)
        try:
            if make_layout:  # not for a process acting on one container, which may be gone
                self.layout.ensure()
        except OSError as exc:
            raise SystemFailure(f"cannot use root {self.layout.root}: {exc}") from exc
        runtime_bin = find_runtime(runtime or "runc") or (runtime or "runc")
        self.runtime = Runtime(runtime_bin, self.layout.runc_root)
        conmon_bin = conmon or find_conmon() or "conmon"
        self.monitor = Monitor(conmon_bin, runtime_bin, self.layout.runc_root,
                               self.layout.logkeeper)
        self.images = ImageStore(self.layout.root)
        self.journal = EventJournal(self.layout.events)
        self.bus = EventBus()
        self.fail_points: set[str] = set(fail_points or ()) | _fail_points_from_env()
        self._hooks: dict[str, list[Hook]] = {}
        # id -> started_at of the last death given to hooks: one entry per container, so a
        # supervisor restarting a container for months does not grow it
        self._deaths_seen: dict[str, str] = {}
        self.networks = NetworkStore(self.layout)
        self.volumes = VolumeStore(self.layout.root)
        self._firewall: Any = None
        self._watcher: _ExitWatcher | None = _ExitWatcher(self) if watch else None
        if reconcile not in (True, False, "touched"):
            raise InvalidParameter(f"invalid reconcile: {reconcile!r}: True, False or "
                                   "'touched'")
        if reconcile is True or (reconcile == "touched" and not self._reconciled_marker.exists()):
            self.reconcile()

    # -- lookup and locking ------------------------------------------------------------------

    def _resolve(self, ref: str) -> str:
        """A container id from a name, a full id or a unique id prefix."""
        if not ref or "/" in ref or "\0" in ref or ref in (".", ".."):
            raise NotFound(f"No such container: {ref}")
        link = self.layout.names / ref
        with contextlib.suppress(OSError):
            return os.readlink(link)
        if cfg.ID_RE.match(ref) and (self.layout.containers / ref / "config.json").exists():
            return ref
        if len(ref) <= 64 and all(ch in "0123456789abcdef" for ch in ref):
            found = [d for d in self._ids() if d.startswith(ref)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise InvalidParameter(f"multiple IDs found with provided prefix: {ref}")
        raise NotFound(f"No such container: {ref}")

    def _ids(self) -> list[str]:
        try:
            return [e.name for e in os.scandir(self.layout.containers)
                    if not e.name.startswith(".") and cfg.ID_RE.match(e.name)]
        except FileNotFoundError:
            return []

    def _load(self, cid: str) -> Container:
        paths = self.layout.container(cid)
        try:
            config = ContainerConfig.from_dict(read_json(paths.config))
            state = ContainerState.from_dict(read_json(paths.state))
        except FileNotFoundError as exc:
            raise NotFound(f"No such container: {cid}") from exc
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise SystemFailure(f"container {cid}: unreadable state: {exc}") from exc
        return Container(config, state, paths)

    @contextlib.contextmanager
    def _locked(self, ref: str) -> Iterator[Container]:
        cid = self._resolve(ref)
        paths = self.layout.container(cid)
        try:
            lock = file_lock(paths.lock)
            lock.__enter__()
        except FileNotFoundError as exc:
            raise NotFound(f"No such container: {ref}") from exc
        try:
            c = self._load(cid)  # loaded under the lock: another process may have moved it
            if c.state.status in (STARTING, REMOVING):
                # we hold its lock, so whoever was starting or removing it died: finish that
                self._reconcile_locked(c)
                if not c.paths.dir.exists():
                    raise NotFound(f"No such container: {ref}")
                c = self._load(cid)
            yield c
        finally:
            lock.__exit__(None, None, None)

    def _save(self, c: Container, lc: Lifecycle | None = None) -> None:
        if lc is not None:
            c.state.status = lc.state
            c.state.history = [h.to_dict() for h in lc.history]
        atomic_write_json(c.paths.state, c.state.to_dict())

    def _lifecycle(self, c: Container, delegate: object | None = None) -> Lifecycle:
        return Lifecycle(c.state.status, delegate=delegate, name=c.name,
                         history=c.state.history_entries())

    def _fire(self, lc: Lifecycle, trigger: str, **kwargs: Any) -> None:
        """Fire a trigger, mapping the machine's refusals to the engine's errors once."""
        try:
            lc.fire(trigger, **kwargs)
        except TransitionNotModified as exc:
            raise NotModified(str(exc)) from exc
        except TransitionConflict as exc:
            raise Conflict(str(exc)) from exc

    # -- events and hooks --------------------------------------------------------------------

    def on(self, state: str, hook: Hook) -> Callable[[], None]:
        """Call ``hook(inspect_dict)`` whenever a container enters ``state``."""
        self._hooks.setdefault(state, []).append(hook)
        return lambda: self._hooks.get(state, []).remove(hook)

    def _enter(self, c: Container, state: str) -> None:
        if state == DEAD:
            if self._deaths_seen.get(c.id) == c.state.started_at:
                return
            self._deaths_seen[c.id] = c.state.started_at
        for hook in list(self._hooks.get(state, ())):
            try:
                hook(c.inspect())
            except Exception:  # an embedder's hook must not break the engine
                logger.exception("hook for {} failed", state)

    def _emit(self, action: str, c: Container, **attrs: str) -> None:
        # as Docker: the container's labels are attributes too (``events --filter label=``)
        attributes = {**c.config.labels, "name": c.name, "image": c.config.image_name, **attrs}
        self._publish(Event(time=time.time(), type="container", action=action, id=c.id,
                            attributes=attributes))

    def _emit_network(self, action: str, c: Container, network: str) -> None:
        """Docker's ``network connect``/``disconnect`` of ``c`` to a bridge network."""
        if not network:
            return
        try:
            net_id = self.networks.get(network).id
        except CorralError:
            return
        self._publish(Event(time=time.time(), type="network", action=action, id=net_id,
                            attributes={"container": c.id, "name": network, "type": "bridge"}))

    def _publish(self, event: Event) -> None:
        try:
            self.journal.append(event)
        except OSError as exc:
            logger.warning("cannot append to the event journal: {}", exc)
        self.bus.publish(event)

    def subscribe(self, callback: Callable[[Event], None],
                  filters: dict[str, str] | None = None) -> Callable[[], None]:
        return self.bus.subscribe(callback, filters)

    def events(self, *, since: float | None = None, until: float | None = None,
               follow: bool = False, stop: Callable[[], bool] | None = None) -> Iterator[Event]:
        if follow:
            # as ``docker events``: following without --since shows only what comes next
            for ev in self.journal.follow(since=time.time() if since is None else since,
                                          stop=stop):
                if until is not None and ev.time > until:
                    return
                yield ev
        else:
            yield from self.journal.read(since=since, until=until)

    # -- create ------------------------------------------------------------------------------

    def create(self, image: str, cmd: list[str] | None = None, *, name: str | None = None,
               env: list[str] | tuple[str, ...] = (), volumes: list[str] | tuple[str, ...] = (),
               tmpfs: list[str] | tuple[str, ...] = (), working_dir: str = "",
               hostname: str = "", user: str = "", network: str = cfg.DEFAULT_NETWORK_MODE,
               ip: str = "", publish: list[str] | tuple[str, ...] = (),
               dns: list[str] | tuple[str, ...] = (), expose: list[str] | tuple[str, ...] = (),
               ipc: str = "private", memory: str | int | None = None,
               cpus: str | float | None = None, cpu_shares: int | None = None,
               pids_limit: int | None = None, restart: str = "no", auto_remove: bool = False,
               tty: bool = False, interactive: bool = False,
               labels: dict[str, str] | None = None, stop_signal: str | int | None = None,
               stop_timeout: int | None = None, links: list[str] | tuple[str, ...] = (),
               readonly_rootfs: bool = False,
               healthcheck: dict[str, Any] | None = None,
               aliases: list[str] | tuple[str, ...] = (),
               shm_size: str | int | None = None,
               security_opt: list[str] | tuple[str, ...] = (), log_driver: str = "",
               log_opts: dict[str, str] | None = None,
               cap_add: list[str] | tuple[str, ...] = (),
               cap_drop: list[str] | tuple[str, ...] = (),
               sysctls: dict[str, Any] | None = None,
               networks: list[Any] | tuple[Any, ...] = (), cgroupns: str = "") -> str:
        """Create a container; return its id. Everything is checked before anything is written.

        ``log_opts`` are Docker's ``--log-opt`` (``max-size``, ``max-file``) over the root's
        defaults (``logopts``); ``log_driver`` may be ``k8s-file`` or ``json-file``.
        ``networks`` are bridge networks joined beyond ``network``, each a name or a mapping
        ``{"name": ..., "ip": ..., "aliases": [...]}``: a veth and an address on each."""
        name = cfg.check_name(name) if name is not None else generate_name()
        for what, value in (("command argument", cmd), ("label", labels),
                            ("environment variable", env), ("volume", volumes),
                            ("tmpfs", tmpfs), ("working directory", working_dir),
                            ("hostname", hostname), ("user", user),
                            ("healthcheck", healthcheck)):
            cfg.check_text(what, value)
        seccomp_choice = seccomp.parse_security_opt(list(security_opt))
        img: Image = self.images.get(image)
        network = network or cfg.DEFAULT_NETWORK_MODE
        ports = self._check_network(network, ip, publish, dns)
        if ipc not in cfg.IPC_MODES:
            raise InvalidParameter(f"invalid IPC mode: {ipc!r}")
        if cgroupns and cgroupns not in cfg.CGROUPNS_MODES:
            raise InvalidParameter(f"invalid cgroup namespace mode: {cgroupns!r}: want "
                                   "private or host")
        if working_dir and not working_dir.startswith("/"):
            raise InvalidParameter(f"the working directory {working_dir!r} is invalid, it needs "
                                   "to be an absolute path")
        if pids_limit is not None and not isinstance(pids_limit, int):
            raise InvalidParameter(f"invalid pids limit: {pids_limit!r}")
        if stop_timeout is not None and stop_timeout < 0:
            raise InvalidParameter(f"invalid stop timeout: {stop_timeout!r}")
        tmpfs_map = dict(cfg.parse_tmpfs(t) for t in tmpfs)
        check_capabilities(list(cap_add), list(cap_drop))
        sysctl_map = check_sysctls(sysctls or {}, network, ipc)
        extra_networks = self._check_extra_networks(network, list(networks))
        for link in links:
            self._resolve(cfg.parse_link(link)[0])  # NotFound names the missing container
        cid = cfg.new_id()
        config = ContainerConfig(
            id=cid, name=name, image=img.id, image_name=img.name, cmd=list(cmd or ["/bin/sh"]),
            created=now_rfc3339(), env=cfg.parse_env(list(env)),
            working_dir=working_dir or "/", hostname=hostname, user=user or "0:0", tty=tty,
            open_stdin=interactive, labels=dict(labels or {}), network_mode=network,
            ipc_mode=ipc, cgroupns_mode=cgroupns or cgroups.host().default_cgroupns(),
            binds=[Bind.parse(v) for v in volumes], tmpfs=tmpfs_map,
            links=[":".join(cfg.parse_link(x)) for x in links], ip=ip, ports=ports,
            dns=list(dns), expose=[cfg.parse_expose(x) for x in expose],
            memory=cfg.parse_memory(memory), cpus=cfg.parse_cpus(cpus),
            cpu_shares=cpu_shares, pids_limit=pids_limit,
            restart_policy=cfg.parse_restart(restart), auto_remove=auto_remove,
            stop_signal=cfg.parse_signal(stop_signal),
            stop_timeout=cfg.DEFAULT_STOP_TIMEOUT if stop_timeout is None else stop_timeout,
            readonly_rootfs=readonly_rootfs, healthcheck=cfg.parse_healthcheck(healthcheck),
            aliases=[cfg.check_alias(a) for a in aliases],
            shm_size=cfg.parse_size(shm_size, "shm size"),
            security_opt=list(security_opt), seccomp=seccomp_choice,
            log_opts=logopts.for_create(log_opts, log_driver, self.layout.root),
            cap_add=list(cap_add), cap_drop=list(cap_drop), sysctls=sysctl_map,
            extra_networks=extra_networks)
        if auto_remove and config.restart_policy["Name"] != "no":
            raise InvalidParameter("conflicting options: --restart and --rm")
        self._claim_name(name, cid)
        paths = self.layout.container(cid)
        tmp = self.layout.containers / f".tmp-{cid}"
        try:
            tmp.mkdir(mode=0o700)
            atomic_write_json(tmp / "config.json", config.to_dict())
            atomic_write_json(tmp / "state.json", ContainerState().to_dict())
            os.rename(tmp, paths.dir)
        except (OSError, CorralError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            self._release_name(name, cid)
            if isinstance(exc, CorralError):
                raise
            raise SystemFailure(f"cannot create container {name}: {exc}") from exc
        c = Container(config, ContainerState(), paths)
        self._emit("create", c)
        return cid

    def _check_extra_networks(self, mode: str, given: list[Any]) -> list[dict[str, Any]]:
        """The networks joined beyond the first, normalized; each must be a bridge network
        the container is not on already, its address free and inside its subnet."""
        out: list[dict[str, Any]] = []
        if given and not netsteps.is_bridge_mode(mode):
            raise InvalidParameter(f"network mode {mode!r} cannot be combined with other "
                                   "networks")
        seen = {self.networks.get(mode).name} if given else set()
        for item in given:
            spec = {"name": item} if isinstance(item, str) else dict(item)
            unknown = set(spec) - {"name", "ip", "aliases"}
            if unknown or not isinstance(spec.get("name"), str):
                raise InvalidParameter(f"invalid network {item!r}: give a name or a mapping "
                                       "of name, ip, aliases")
            if not netsteps.is_bridge_mode(spec["name"]):
                raise InvalidParameter(f"network {spec['name']!r} cannot be joined as a "
                                       "further network")
            net = self.networks.get(spec["name"])  # NotFound names it
            if net.name in seen:
                raise InvalidParameter(f"network {net.name} is given twice")
            seen.add(net.name)
            ip = spec.get("ip") or ""
            if ip:
                self.networks.leases(net).check_static(ip)
            out.append({"name": net.name, "ip": ip,
                        "aliases": [cfg.check_alias(a) for a in spec.get("aliases") or []]})
        if len(out) > netsteps.MAX_EXTRA_NETWORKS:
            raise InvalidParameter(f"a container joins at most {netsteps.MAX_EXTRA_NETWORKS + 1}"
                                   " networks")
        return out

    def _check_network(self, mode: str, ip: str, publish: Any, dns: Any) -> list[dict]:
        """Check the network options against what exists; return the port mappings."""
        import ipaddress

        from ..host.nft import parse_publish

        bridge = netsteps.is_bridge_mode(mode)
        if mode.startswith("container:"):
            other = mode.split(":", 1)[1]
            if not other:
                raise InvalidParameter(f"invalid network mode: {mode!r}")
            self._resolve(other)  # NotFound names it
        elif bridge and (ip or mode != DEFAULT_NETWORK):  # the default one is made by a start
            net = self.networks.get(mode)
            if ip:
                self.networks.leases(net).check_static(ip)
        if ip and not bridge:
            raise InvalidParameter(f"--ip {ip} needs a bridge network, not {mode!r}")
        if publish and not bridge:
            raise InvalidParameter(f"published ports need a bridge network, not {mode!r}")
        for server in dns:
            try:
                ipaddress.ip_address(server)
            except ValueError as exc:
                raise InvalidParameter(f"invalid DNS server address: {server!r}") from exc
        ports = [asdict(parse_publish(p)) for p in publish]
        seen: set[tuple[str, int, str]] = set()
        for p in ports:
            key = (p["host_ip"] or "0.0.0.0", p["host_port"], p["proto"])
            if key in seen and p["host_port"]:  # 0: each gets a free port of its own
                raise InvalidParameter(f"duplicate published port: {key[0]}:{key[1]}/{key[2]}")
            seen.add(key)
        return ports

    def _claim_name(self, name: str, cid: str) -> None:
        # a symlink is made or refused atomically: of concurrent creates, exactly one wins
        try:
            try:
                os.symlink(cid, self.layout.names / name)
            except FileExistsError:
                # a create killed after claiming the name; the boot-time reconcile would
                # release it too, but a CLI user should not have to wait for one
                if not fsck.release_stale_name(self.layout, name):
                    raise
                os.symlink(cid, self.layout.names / name)
        except FileExistsError as exc:
            other = ""
            with contextlib.suppress(OSError):
                other = os.readlink(self.layout.names / name)
            raise Conflict(f'Conflict. The container name "/{name}" is already in use by '
                           f'container "{other}". You have to remove (or rename) that '
                           "container to be able to reuse that name.") from exc

    def _release_name(self, name: str, cid: str) -> None:
        link = self.layout.names / name
        with contextlib.suppress(OSError):
            if os.readlink(link) == cid:
                os.unlink(link)

    # -- start -------------------------------------------------------------------------------

    def _fail_point(self, step: str) -> bool:
        """Fail points, set by tests: ``<step>`` or ``network.<sub-step>`` fails that step after
        its do, ``undo:<name>`` fails its undo, ``pause:<name>`` holds the start there (after
        writing ``<root>/paused-at-<name>``) so a test can kill the engine at that point."""
        if f"pause:{step}" in self.fail_points:
            (self.layout.root / f"paused-at-{step}").touch()
            time.sleep(PAUSE_LIMIT)
        return step in self.fail_points

    def _undo_fail_point(self, step: str) -> bool:
        return self._fail_point(f"undo:{step}")

    def _context(self, c: Container, interactive: bool = False) -> StartContext:
        try:
            rootfs = self.images.get(c.config.image).rootfs
        except NotFound:
            rootfs = self.layout.root / "images" / c.config.image / "rootfs"
        ctx = StartContext(
            container=c, layout=self.layout, runtime=self.runtime, monitor=self.monitor,
            image_rootfs=rootfs, interactive=interactive,
            exit_command=[sys.executable, "-m", "engine.exited", str(self.layout.root), c.id],
            networks=self.networks, volumes=self.volumes, firewall=self.firewall,
            fail_point=self._fail_point,
            find_container=self.get)

        def join(ref: str) -> str:
            other = self.get(ref)
            netsteps.check_joinable(other.state.status, ref)
            ctx.ip = other.state.ip
            return f"/proc/{other.state.pid}/ns/net"

        ctx.join_network = join
        ctx.network_peers = lambda: self._all_peer_hosts(
            [c.config.network_mode, *(n["name"] for n in c.config.extra_networks)], c.id)
        return ctx

    # -- names on user-defined networks --------------------------------------------------------

    def _members(self, network: str) -> list[Container]:
        """Running containers on the user-defined network ``network``."""
        if network in ("", DEFAULT_NETWORK, "host", "none") or network.startswith("container:"):
            return []
        out = []
        for cid in self._ids():
            with contextlib.suppress(CorralError):
                c = self._load(cid)
                if _address_on(c, network) and c.state.status in (RUNNING, PAUSED):
                    out.append(c)
        return out

    def _all_peer_hosts(self, networks: list[str], own: str) -> list[tuple[str, str]]:
        return [e for net in dict.fromkeys(networks) for e in self._peer_hosts(net, own)]

    def _peer_hosts(self, network: str, own: str) -> list[tuple[str, str]]:
        """hosts entries for the other members of ``network``: as Docker's embedded DNS does on
        user-defined networks, containers find each other by name, hostname and alias."""
        entries = []
        for m in self._members(network):
            if m.id != own:
                aliases = m.config.aliases if m.state.network == network else next(
                    (n.get("aliases", []) for n in m.config.extra_networks
                     if n["name"] == network), [])
                names = dict.fromkeys([m.name, *([m.config.hostname] if m.config.hostname
                                                 else []), *aliases, m.id[:12]])
                entries.append((_address_on(m, network), " ".join(names)))
        return entries

    def _sync_network_hosts(self, *networks: str) -> None:
        """Rewrite the hosts file of every member of ``networks`` after one joined or left."""
        members = {m.id: m for net in networks for m in self._members(net)}
        for m in members.values():
            ctx = self._context(m)
            hostname = netsteps.hostname_of(ctx)
            extra = self._all_peer_hosts([m.state.network, *m.state.extra_networks], m.id)
            extra += [(ip, hostname) for ip in m.state.extra_networks.values()]
            for link in m.config.links:
                name, alias = cfg.parse_link(link)
                with contextlib.suppress(CorralError):
                    other = self.get(name)
                    if other.state.ip:
                        extra.append((other.state.ip, f"{alias} {other.name}"))
            text = hostfiles.hosts_content(hostname, m.state.ip, extra)
            try:
                hostfiles.rewrite_in_place(m.paths.hosts, text)
            except OSError as exc:
                logger.warning("cannot update the hosts file of {}: {}", m.name, exc)

    def firewall(self) -> Any:
        """The engine's own nftables table, made on first use."""
        if self._firewall is None:
            from ..host.nft import Firewall, table_name

            self._firewall = Firewall(table_name(self.layout.run.name),
                                      memo=self.layout.run / "firewall")
        return self._firewall

    def start(self, ref: str) -> None:
        """Start a created or dead container. ``NotModified`` when it is already running."""
        with self._locked(ref) as c:
            self._start_locked(c, self._context(c))

    def start_interactive(self, ref: str) -> StartContext:
        """Start with runc in the foreground, attached to this process's terminal (``run -it``);
        the caller waits with ``wait_interactive``."""
        with self._locked(ref) as c:
            ctx = self._context(c, interactive=True)
            self._start_locked(c, ctx)
            return ctx

    def wait_interactive(self, ctx: StartContext) -> int:
        assert ctx.foreground is not None
        code = ctx.foreground.wait()
        with self._locked(ctx.cid) as c:
            if c.state.status in (RUNNING, PAUSED):
                self._exit_locked(c, code)
            return c.state.exit_code

    def _start_locked(self, c: Container, ctx: StartContext) -> None:
        # what a failed undo left (a namespace, a lease) would make the steps' do fail
        if c.state.cleanup_pending and not self._finish_cleanup(c):
            raise SystemFailure(f"cannot start container {c.name}: the cleanup of its last "
                                f"run is incomplete: {c.state.error}")
        delegate = _Transitions(self, c, ctx)
        lc = self._lifecycle(c, delegate)
        self._fire(lc, "start")
        if delegate.failure is not None:
            f = delegate.failure
            raise StartFailed(f.step, str(f.cause)) from f.cause

    # -- exit and cleanup ---------------------------------------------------------------------

    def _exit_locked(self, c: Container, exit_code: int, error: str = "", *,
                     rebooted: bool = False) -> None:
        lc = self._lifecycle(c, _Transitions(self, c, self._context(c)))
        self._fire(lc, "exit", exit_code=exit_code, error=error, rebooted=rebooted)

    def _cleanup(self, c: Container, ctx: StartContext | None = None, *,
                 keep_exit_file: bool = False) -> list[str]:
        """Undo every start step (idempotent); return what could not be undone.

        conmon's exit file goes last, unless kept (``keep_exit_file``) for the caller to remove
        when it records the exit: a crash in the cleanup leaves the code to the next look."""
        kill_exec_sessions(c.state.exec_sessions)
        c.state.exec_sessions = []
        health.stop_monitor(c.state.health_pid, c.id)
        c.state.health_pid = 0
        ctx = ctx or self._context(c)
        ctx.conmon_pid = c.state.conmon_pid
        errors = undo_steps(list(reversed(START_PLAN)), ctx, fail_point=self._undo_fail_point)
        for step, exc in errors:
            logger.error("container {}: cleanup of step {} failed: {}", c.name, step, exc)
        if not keep_exit_file:
            _forget_exit_file(c)
        return [f"{step}: {exc}" for step, exc in errors]

    def _finish_cleanup(self, c: Container) -> bool:
        """Retry the cleanup an undo left incomplete; True once nothing is left."""
        errors = self._cleanup(c)
        if errors:
            return False
        c.state.cleanup_pending = False
        c.state.error = c.state.error.partition(CLEANUP_INCOMPLETE)[0].rstrip("; ")
        self._save(c)
        logger.info("container {}: cleanup finished", c.name)
        return True

    def _observed_exit(self, c: Container) -> _Exit | None:
        """The exit of an active container, if it has exited."""
        code = read_exit_code(c.paths.exit_file)
        if code is not None:
            return _Exit(code)
        if c.state.conmon_pid:
            if is_conmon_of(c.state.conmon_pid, c.id):
                return None
            code = read_exit_code(c.paths.exit_file)  # conmon may have just written it
            if code is not None:
                return _Exit(code)
            if not (self.layout.runc_root / c.id).exists():
                # runc's state went with the run folder: the host rebooted (or it was
                # emptied as a reboot does)
                return _Exit(LOST_EXIT_CODE, "runtime state lost", rebooted=True)
            return _Exit(LOST_EXIT_CODE, "monitor lost")
        if process_alive(c.state.pid):
            return None
        return _Exit(LOST_EXIT_CODE, "process lost")

    def _reconcile_locked(self, c: Container, *, restart_followed: bool = False) -> None:
        """Bring ``c`` in line with what runs. An exit found here whose restart policy asks for
        a start gets a process that waits the backoff out, when nobody else will: conmon's exit
        command follows it if conmon lives; ``restart_followed``: the caller does."""
        status = c.state.status
        if status in (RUNNING, PAUSED):
            seen = self._observed_exit(c)
            if seen is not None:
                monitored = is_conmon_of(c.state.conmon_pid, c.id)
                c.state.manual_stop |= _stop_marker(c).exists()
                self._exit_locked(c, seen.code, seen.error, rebooted=seen.rebooted)
                if c.state.restart_pending and not (monitored or restart_followed):
                    self._follow_restart(c)
        elif status == STARTING:
            # we hold the lock, so the process that was starting it is gone: finish its undo
            errors = self._cleanup(c)
            c.state.status = DEAD
            c.state.exit_code = START_FAILED_EXIT_CODE
            c.state.error = "start interrupted: the engine stopped during start"
            if errors:
                c.state.error += f"; {CLEANUP_INCOMPLETE}: {'; '.join(errors)}"
            c.state.cleanup_pending = bool(errors)
            c.state.pid = c.state.conmon_pid = 0
            c.state.finished_at = now_rfc3339()
            self._save(c)
            self._emit("die", c, exitCode=str(c.state.exit_code))
        elif status == REMOVING:
            self._finish_remove(c)
        elif c.state.cleanup_pending:
            self._finish_cleanup(c)

    def reconcile(self) -> None:
        """Bring stored state in line with what runc and conmon say; finish broken starts,
        removals and cleanups. Containers another process is acting on are left to it.

        The first engine since boot also makes the restarts that were waiting out their
        backoff when the host went down (their waiting processes went with it)."""
        booted = not self._reconciled_marker.exists()
        self._check_store()
        if (self.layout.run / "firewall").is_dir():
            self.firewall().forget()  # looked at again once per engine, as dockerd does
        for cid in self._ids():
            paths = self.layout.container(cid)
            try:
                state = read_json(paths.state)
            except (OSError, ValueError):
                continue
            if not isinstance(state, dict):
                continue
            orphaned_restart = booted and state.get("status") == DEAD \
                and bool(state.get("restart_pending"))
            if state.get("status") not in (*ACTIVE, REMOVING) \
                    and not state.get("cleanup_pending") and not orphaned_restart:
                continue
            try:
                with file_lock(paths.lock, blocking=False) as got:
                    if not got:
                        continue
                    c = self._load(cid)
                    self._reconcile_locked(c)
                    if self._watcher and c.state.status in (RUNNING, PAUSED):
                        self._watcher.add(c)
                    if orphaned_restart and c.state.status == DEAD and c.state.restart_pending:
                        # as dockerd's start: at once, with the backoff begun anew
                        c.state.restart_delay = 0.0
                        self._save(c)
                        self._follow_restart(c)
            except (CorralError, OSError) as exc:
                logger.warning("reconcile of {} failed: {}", cid, exc)
        try:
            self._sweep_orphans()
            self._reclaim_leases()
        except (CorralError, OSError) as exc:
            logger.warning("sweep of orphaned runtime state failed: {}", exc)
            return
        if not self._ids():
            return  # nothing to remember: a root with no container has no run folder
        with contextlib.suppress(OSError, CorralError):
            self.layout.run.mkdir(parents=True, exist_ok=True, mode=0o700)
            atomic_write_json(self._reconciled_marker, {"time": now_rfc3339()})

    @property
    def _reconciled_marker(self) -> Path:
        """In the run folder, so a reboot (which empties /run) removes it."""
        return self.layout.run / "reconciled"

    def _check_store(self) -> None:
        """Remove what interrupted writes left; set aside, with a warning, each container
        folder that cannot be read, once what it held is torn down (see ``fsck``)."""
        try:
            for path in fsck.sweep_strays(self.layout):
                logger.warning("removed {}, left by an interrupted write", path)
        except (CorralError, OSError) as exc:  # the engine starts all the same
            logger.warning("sweep of stray temporary files failed: {}", exc)
        for cid in self._ids():
            paths = self.layout.container(cid)
            if fsck.entry_problem(paths, cid) is None:
                continue
            try:
                with file_lock(paths.lock, blocking=False) as got:
                    # under the lock, look again: another process may have just removed it
                    problem = fsck.entry_problem(paths, cid)
                    if not got or problem is None or not paths.dir.is_dir():
                        continue
                    config, state = fsck.recover(paths, cid)
                    c = Container(config, state, paths)
                    self._cleanup(c)
                    with contextlib.suppress(CorralError, OSError):
                        self.firewall().remove_ports(cid)  # the stand-in config has no ports
                    dest = fsck.set_aside(self.layout, cid)
                logger.warning("container {}: {}; set aside in {}", cid, problem, dest)
            except FileNotFoundError:
                continue  # removed meanwhile
            except (CorralError, OSError) as exc:
                logger.warning("container {}: {}; cannot set it aside: {}", cid,
                               fsck.entry_problem(paths, cid), exc)

    def _reclaim_leases(self) -> None:
        def active(cid: str) -> bool:
            try:
                return read_json(self.layout.container(cid).state).get("status") in ACTIVE
            except (OSError, ValueError):
                return False

        for net, leases in self.networks.all_leases():
            for ip in leases.reclaim(active):
                logger.warning("network {}: reclaimed the lease of {}", net.name, ip)

    def _sweep_orphans(self) -> None:
        """runc state and mounts whose container is not active: what a crash left behind."""
        known = set(self._ids())
        candidates = set()
        with contextlib.suppress(FileNotFoundError):
            candidates |= {e.name for e in os.scandir(self.layout.runc_root)}
        prefix = str(self.layout.containers) + "/"
        for point in mounts.mounted_under(self.layout.containers):
            candidates.add(point[len(prefix):].split("/", 1)[0])
        for cid in candidates:
            if cid not in known:
                if cfg.ID_RE.match(cid):
                    self.runtime.delete(cid)
                continue
            paths = self.layout.container(cid)
            with file_lock(paths.lock, blocking=False) as got:
                if not got:
                    continue
                c = self._load(cid)
                if c.state.status not in ACTIVE:
                    logger.warning("container {}: cleaning up what a crash left", c.name)
                    self._cleanup(c)

    def container_exited(self, ref: str, *, follow_restart: bool = False) -> float | None:
        """Handle the exit of a container (run by conmon's exit command, or by the watcher).

        Returns the delay after which its restart policy wants it started again, if any; with
        ``follow_restart`` (conmon's exit command) wait that long here and restart it, so the
        policy holds with no engine process alive."""
        with self._locked(ref) as c:
            self._reconcile_locked(c, restart_followed=True)
            delay = c.state.restart_delay if c.state.restart_pending else None
            cid = c.id
        if delay is not None and follow_restart:
            time.sleep(delay)
            self.restart_pending(cid)
        return delay

    def _follow_restart(self, c: Container) -> None:
        """Give the start ``c``'s restart policy asked for to a process that waits the
        backoff out: this engine's watcher, or else a detached exit command (conmon's would
        have, had conmon lived)."""
        if self._watcher is not None:
            self._watcher.restart_later(c.id, c.state.restart_delay)
            return
        from .exits import spawn_detached

        try:
            # the exit command takes a root without its run folder for one torn down, and
            # after a reboot this command may not have made it yet
            self.layout.run.mkdir(parents=True, exist_ok=True, mode=0o700)
            spawn_detached(self.layout.root, c.id)
        except OSError as exc:
            logger.warning("container {}: cannot follow its restart: {}", c.name, exc)

    def restart_pending(self, ref: str) -> bool:
        """Start a container whose restart policy asked for it, unless that was called off
        (stopped or removed meanwhile, or already restarted by another process)."""
        try:
            with self._locked(ref) as c:
                if not c.state.restart_pending or c.state.status != DEAD \
                        or c.state.manual_stop:
                    return False
                c.state.restart_pending = False
                c.state.restart_count += 1
                self._save(c)
                self._emit("restart", c)
                self._start_locked(c, self._context(c))
                return True
        except NotFound:
            return False
        except CorralError as exc:
            logger.warning("restart of {} failed: {}", ref, exc)
            return False

    # -- stop, kill, pause -------------------------------------------------------------------

    def stop(self, ref: str, timeout: float | None = None) -> None:
        """Send the stop signal, wait ``timeout`` seconds, then SIGKILL; clean up."""
        with self._locked(ref) as c:
            self._reconcile_locked(c)
            if c.state.status not in (RUNNING, PAUSED):
                if c.state.restart_pending:  # a stop during the backoff calls the restart off
                    c.state.restart_pending, c.state.manual_stop = False, True
                    self._save(c)
                return
            c.state.manual_stop = True
            try:
                self._save(c)  # first: a stop cut short by a crash must not restart it
            except SystemFailure as exc:
                # a full disk must not keep a container running: the signal goes first, the
                # record of the stop comes with the exit's
                logger.warning("container {}: stopping it all the same: {}", c.name, exc)
            grace = c.config.stop_timeout if timeout is None else timeout
            try:
                self._terminate_locked(c, c.config.stop_signal, grace)
            except SystemFailure as exc:
                if c.state.status != DEAD:
                    raise
                # stopped and cleaned up, as Docker's stop; conmon's exit file keeps the code
                # for the next look that can write the state
                logger.warning("container {} stopped, but not recorded yet: {}", c.name, exc)
            self._emit("stop", c)

    def _terminate_locked(self, c: Container, sig: int, grace: float) -> None:
        pid = c.state.pid
        self._emit("kill", c, signal=str(int(sig)))
        if not self.runtime.signal_process(c.id, pid, sig):
            self.runtime.kill(c.id, sig)
        if c.state.status == PAUSED:
            try:
                self.runtime.resume(c.id)  # a frozen process cannot act on its signal
            except SystemFailure:
                # runc's state is gone (a reboot, a lost run folder): thaw the cgroup itself
                with contextlib.suppress(SystemFailure):
                    cgroups.host().thaw(c.id)
        if sig != _signal.SIGKILL and not _wait_pid(pid, grace):
            self._emit("kill", c, signal=str(int(_signal.SIGKILL)))
            self.runtime.kill(c.id, _signal.SIGKILL, all_processes=True)
        _wait_pid(pid, 30)
        self._exit_locked(c, self._wait_exit_code(c))

    def _wait_exit_code(self, c: Container) -> int:
        """The code conmon wrote once the process ended (it writes it just after reaping)."""
        deadline = time.monotonic() + EXIT_FILE_WAIT
        while True:
            code = read_exit_code(c.paths.exit_file)
            if code is not None:
                return code
            monitored = c.state.conmon_pid and is_conmon_of(c.state.conmon_pid, c.id)
            if not monitored or time.monotonic() > deadline:
                code = read_exit_code(c.paths.exit_file)
                return LOST_EXIT_CODE if code is None else code
            time.sleep(EXIT_FILE_POLL)

    def kill(self, ref: str, signal: str | int = "KILL") -> None:
        sig = cfg.parse_signal(signal)
        with self._locked(ref) as c:
            self._reconcile_locked(c)
            if c.state.status not in (RUNNING, PAUSED):
                raise Conflict(f"Container {c.id} is not running")
            if sig == _signal.SIGKILL:
                self._terminate_locked(c, sig, 0)  # which tells the kill event
                return
            self._emit("kill", c, signal=str(sig))
            if not self.runtime.signal_process(c.id, c.state.pid, sig):
                self.runtime.kill(c.id, sig)

    def pause(self, ref: str) -> None:
        with self._locked(ref) as c:
            self._reconcile_locked(c)
            lc = self._lifecycle(c, _Transitions(self, c, None))
            self._fire(lc, "pause")

    def unpause(self, ref: str) -> None:
        with self._locked(ref) as c:
            self._reconcile_locked(c)
            lc = self._lifecycle(c, _Transitions(self, c, None))
            self._fire(lc, "unpause")

    def restart(self, ref: str, timeout: float | None = None) -> None:
        self.stop(ref, timeout)
        with self._locked(ref) as c:
            self._start_locked(c, self._context(c))
            self._emit("restart", c)

    # -- remove ------------------------------------------------------------------------------

    def remove(self, ref: str, force: bool = False) -> None:
        with self._locked(ref) as c:
            self._reconcile_locked(c)
            if force and c.state.status in (RUNNING, PAUSED):
                self._terminate_locked(c, _signal.SIGKILL, 0)
            lc = self._lifecycle(c, _Transitions(self, c, None))
            self._fire(lc, "remove")

    def _finish_remove(self, c: Container) -> None:
        errors = self._cleanup(c)
        if errors:
            raise SystemFailure(f"cannot remove container {c.name}: {'; '.join(errors)}")
        _forget_exit_file(c)
        # rename first, so no reader ever sees a half-deleted folder as a container
        trash = self.layout.containers / f".trash-{c.id}"
        os.rename(c.paths.dir, trash)
        self._release_name(c.name, c.id)
        shutil.rmtree(trash, ignore_errors=True)
        self._emit("destroy", c)

    # -- wait, inspect, list, logs -----------------------------------------------------------

    def wait(self, ref: str, timeout: float | None = None) -> int:
        """Block until the container is not running; return its exit code."""
        deadline = None if timeout is None else time.monotonic() + timeout
        cid = self._resolve(ref)
        while True:
            try:
                with self._locked(cid) as c:
                    self._reconcile_locked(c)
                    if c.state.status not in ACTIVE:
                        return c.state.exit_code
                    conmon, pid = c.state.conmon_pid, c.state.pid
            except NotFound:
                # removed on exit (--rm), maybe by conmon's exit command: the journal knows
                code = self._last_exit_code(cid)
                if code is None:
                    raise
                return code
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise SystemFailure(f"timed out waiting for container {ref}")
            _wait_pid(conmon or pid, min(left, 1.0) if left is not None else 1.0)

    def _last_exit_code(self, cid: str) -> int | None:
        code = None
        for ev in self.journal.read():
            if ev.id == cid and ev.action == "die":
                with contextlib.suppress(KeyError, ValueError):
                    code = int(ev.attributes["exitCode"])
        return code

    def inspect(self, ref: str) -> dict[str, Any]:
        cid = self._resolve(ref)
        c = self._load(cid)
        if c.state.status in (RUNNING, PAUSED):
            c = self._looked_at(c)  # an exit nobody has handled yet: as list() does
        return c.inspect()

    def _looked_at(self, c: Container) -> Container:
        """``c`` with an exit seen but not handled yet handled now; shown as seen when it
        cannot be recorded (a full disk), though the record waits for the next look."""
        seen = self._observed_exit(c)
        if seen is None:
            return c
        try:
            with self._locked(c.id) as locked:
                self._reconcile_locked(locked)
            return self._load(c.id)
        except NotFound:
            raise  # removed meanwhile
        except CorralError:
            c.state.status, c.state.exit_code, c.state.pid = DEAD, seen.code, 0
            return c

    def get(self, ref: str) -> Container:
        return self._load(self._resolve(ref))

    def list(self, all: bool = False) -> list[dict[str, Any]]:  # noqa: A002 - Docker's word
        out = []
        for cid in self._ids():
            try:
                c = self._load(cid)
            except CorralError:
                continue
            if c.state.status in (RUNNING, PAUSED):
                try:
                    c = self._looked_at(c)
                except NotFound:
                    continue
            restarting = c.state.status == DEAD and c.state.restart_pending
            if not all and c.state.status not in (RUNNING, PAUSED) and not restarting:
                continue  # as ``docker ps``: a container in its restart backoff is listed
            out.append({"Id": c.id, "Name": c.name, "Image": c.config.image_name,
                        "Command": " ".join(c.config.cmd), "Created": c.config.created,
                        "State": c.state.status, "ExitCode": c.state.exit_code,
                        "Restarting": restarting,
                        "Health": c.state.health.get("Status", ""),
                        "StartedAt": c.state.started_at, "FinishedAt": c.state.finished_at,
                        # for ps's other columns and filters (engine.cli.format)
                        "ImageID": c.config.image, "Labels": dict(c.config.labels),
                        "Ports": list(c.state.ports), "Expose": list(c.config.expose),
                        "Network": c.state.network or c.config.network_mode,
                        "Mounts": [b.source for b in c.config.binds]})
        out.sort(key=lambda d: d["Created"], reverse=True)
        return out

    def logs(self, ref: str, *, follow: bool = False, tail: int | None = None,
             since: Any = None, until: Any = None) -> Iterator[LogRecord]:
        c = self._load(self._resolve(ref))
        with contextlib.suppress(OSError):  # a killed keeper comes back to catch up
            logkeeper.ensure(self.layout.logkeeper)

        def stopped() -> bool:
            try:
                state = read_json(c.paths.state)
            except (OSError, ValueError):
                return True
            if state.get("status") not in ACTIVE:
                return True
            return read_exit_code(c.paths.exit_file) is not None

        if not follow or not c.state.conmon_pid:
            return read_logs(c.paths.log, follow=follow, tail=tail, since=since, until=until,
                             stop=stopped)
        return self._follow_logs(c, stopped, tail=tail, since=since, until=until)

    def _follow_logs(self, c: Container, stopped: Callable[[], bool],
                     **filters: Any) -> Iterator[LogRecord]:
        """Follow, woken as soon as the container's process ends instead of at the next poll.

        conmon drains the output and writes the exit file right after the process ends, then
        runs the exit command and waits for it before it exits itself; so the follower waits
        on the process (then polls briefly for the exit file), not on conmon, and an attached
        ``run`` goes on to handle the exit at once, while the exit command waits for the
        container's lock. conmon's own end also wakes it (a process that could not be
        watched)."""
        fds = []
        for pid in (c.state.pid, c.state.conmon_pid):
            with contextlib.suppress(OSError):  # gone already, or no pidfds: polling alone
                fds.append(os.pidfd_open(pid))
        ended: list[int] = []

        def pause(timeout: float) -> None:
            waiting = [fd for fd in fds if fd not in ended]
            if ended:  # the process has ended: the exit file follows within a few ms
                timeout = min(timeout, EXIT_FILE_POLL)
            if not waiting:
                time.sleep(timeout)
                return
            ready, _, _ = select.select(waiting, [], [], timeout)
            ended.extend(ready)

        try:
            yield from read_logs(c.paths.log, follow=True, stop=stopped, pause=pause,
                                 **filters)
        finally:
            for fd in fds:
                os.close(fd)

    # -- exec --------------------------------------------------------------------------------

    def exec(self, ref: str, argv: list[str], *, tty: bool = False,
             env: list[str] | tuple[str, ...] = (), workdir: str | None = None,
             user: str | None = None, capture: bool = False,
             timeout: float | None = None, relay_tty: bool = False) -> ExecResult:
        """Run ``argv`` in a running container through the runtime; the session is tracked
        with the container and ended by its cleanup. Past ``timeout`` seconds the command is
        killed and the exit code is 124 (as ``timeout(1)``). A command that cannot be run
        raises ``ExecFailed`` (127 not found, 126 not executable). ``relay_tty``: with
        ``tty``, the runtime gets a terminal of its own, copied to our stdout (we have none).
        """
        from . import execpath

        if not argv:
            raise InvalidParameter("no command specified for exec")
        env_list = cfg.parse_env(list(env))
        if tty and not any(e.startswith("TERM=") for e in env_list):
            env_list.append("TERM=xterm")  # as Docker's daemon gives an exec with a TTY
        exec_id = cfg.new_id()
        with self._locked(ref) as c:
            self._reconcile_locked(c)
            if c.state.status != RUNNING:
                raise Conflict(f"Container {c.id} is not running" if c.state.status != PAUSED
                               else f"Container {c.id} is paused, unpause the container "
                               "before exec")
            execpath.check_command(c.paths.rootfs, argv[0],
                                   execpath.path_variable(c.config.env, env_list),
                                   workdir or c.config.working_dir or "/")
            pid_file = c.paths.dir / f"exec-{exec_id[:12]}.pid"
            args = self.runtime.exec_args(c.id, argv, tty=tty, env=env_list, cwd=workdir,
                                          user=runtime_user(c.paths.rootfs, user),
                                          pid_file=pid_file)
            command = " ".join(argv)
            self._emit(f"exec_create: {command}", c, execID=exec_id)
            master = None
            try:
                if tty and relay_tty and not capture:
                    from ..host.pty import spawn

                    proc, master = spawn(args)
                else:
                    proc = subprocess.Popen(args, stdout=subprocess.PIPE if capture else None,
                                            stderr=subprocess.STDOUT if capture else None,
                                            stdin=subprocess.DEVNULL if capture else None)
            except OSError as exc:
                raise SystemFailure(f"exec: {exc}") from exc
            self._emit(f"exec_start: {command}", c, execID=exec_id)
            c.state.exec_sessions.append({"id": exec_id, "pid": proc.pid, "cmd": argv,
                                          "pid_file": str(pid_file)})
            self._save(c)
            cid = c.id
        try:
            if master is not None:
                from ..host.pty import copy_out

                copy_out(proc, master)
            output = proc.communicate(timeout=timeout)[0] if capture else b""
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # runc exec passes signals on, but SIGKILL cannot be passed: kill both ends
            kill_exec_sessions([{"pid": proc.pid, "pid_file": str(pid_file)}])
            output = (proc.communicate()[0] or b"") if capture else b""
            code = 124
        with contextlib.suppress(FileNotFoundError):
            pid_file.unlink()
        with contextlib.suppress(NotFound), self._locked(cid) as c:
            c.state.exec_sessions = [e for e in c.state.exec_sessions if e["id"] != exec_id]
            self._save(c)
            self._emit("exec_die", c, execID=exec_id, exitCode=str(code))
        return ExecResult(code, output or b"")

    def record_health(self, ref: str, *, exit_code: int, output: str, start: str, end: str,
                      in_start_period: bool) -> str:
        """Record one health check's result; emit ``health_status`` when the status changes."""
        with self._locked(ref) as c:
            hc = c.config.healthcheck
            if hc is None or c.state.status not in (RUNNING, PAUSED):
                return c.state.health.get("Status", "")
            before = c.state.health.get("Status")
            c.state.health = health.apply_result(c.state.health, hc, exit_code=exit_code,
                                                 output=output, start=start, end=end,
                                                 in_start_period=in_start_period)
            self._save(c)
            status = c.state.health["Status"]
            if status != before:
                self._emit(f"health_status: {status}", c)
            return status

    # -- networks ----------------------------------------------------------------------------

    def network_create(self, name: str, *, subnet: str | None = None,
                       gateway: str | None = None,
                       labels: dict[str, str] | None = None) -> Network:
        return self.networks.create(name, subnet, gateway, labels)

    def network_list(self) -> list[Network]:
        nets = self.networks.list()
        if not any(n.name == DEFAULT_NETWORK for n in nets):  # listed, not made
            nets.insert(0, self.networks.default(define=False))
        return nets

    def _network_users(self, net: Network) -> list[str]:
        users = []
        for cid in self._ids():
            with contextlib.suppress(CorralError):
                config = self._load(cid).config
                if net.name in (config.network_mode,
                                *(n["name"] for n in config.extra_networks)):
                    users.append(cid)
        return users

    def network_inspect(self, ref: str) -> dict[str, Any]:
        net = (self.networks.default(define=False) if ref == DEFAULT_NETWORK
               else self.networks.get(ref))
        if not net.created:  # the default network, not made yet: no member
            return net.inspect({})
        return net.inspect({cid: ip for ip, cid in self.networks.leases(net).table().items()})

    def network_connect(self, network: str, container: str, *, ip: str = "",
                        aliases: list[str] | tuple[str, ...] = ()) -> None:
        """Join ``container`` to one more bridge network (Docker's ``network connect``): kept
        in its config, so each later start joins it too; a running container gets its veth,
        lease, address and hosts entries at once."""
        with self._locked(container) as c:
            if c.state.status in (PAUSED, STARTING, REMOVING):
                raise Conflict(f"cannot connect container {c.name} while it is "
                               f"{c.state.status}")
            mode, extras = c.config.network_mode, c.config.extra_networks
            if not netsteps.is_bridge_mode(mode):
                raise InvalidParameter(f"container {c.name} has network mode {mode!r}: it "
                                       "cannot join other networks")
            net = self.networks.get(network)
            joined = {self.networks.get(mode).name, *(n["name"] for n in extras)}
            if net.name in joined:
                raise Conflict(f"endpoint with name {c.name} already exists in network "
                               f"{net.name}")
            (spec,) = self._check_extra_networks(mode, [{"name": net.name, "ip": ip,
                                                         "aliases": list(aliases)}])
            spec["index"] = netsteps.free_index(extras)
            running = c.state.status == RUNNING
            ctx = self._context(c)
            try:
                if running:
                    c.state.extra_networks[net.name] = netsteps.join_further(
                        ctx, spec, spec["index"])
                    from ..host.nft import enable_forwarding

                    self.firewall().ensure_base([net.subnet], [net.bridge])
                    enable_forwarding(net.bridge)
                c.config.extra_networks = [*extras, spec]
                atomic_write_json(c.paths.config, c.config.to_dict())
                self._save(c)
            except BaseException:
                c.config.extra_networks = extras
                with contextlib.suppress(OSError, CorralError):
                    atomic_write_json(c.paths.config, c.config.to_dict())
                if running:
                    c.state.extra_networks.pop(net.name, None)
                    netsteps.leave_further(ctx, spec, spec["index"])
                raise
            if running:
                self._sync_network_hosts(net.name)
                self._emit_network("connect", c, net.name)

    def network_disconnect(self, network: str, container: str) -> None:
        """Leave a network joined beyond the first (``network connect`` or ``networks=`` at
        create); the first network is the container's for its whole life."""
        with self._locked(container) as c:
            if c.state.status in (PAUSED, STARTING, REMOVING):
                raise Conflict(f"cannot disconnect container {c.name} while it is "
                               f"{c.state.status}")
            net = self.networks.get(network)
            indexed = {spec["name"]: (i, spec)
                       for i, spec in netsteps.further_networks(c.config.extra_networks)}
            if net.name not in indexed:
                if netsteps.is_bridge_mode(c.config.network_mode) and \
                        self.networks.get(c.config.network_mode).name == net.name:
                    raise Conflict(f"{net.name} is the first network of container {c.name}: "
                                   "it cannot be disconnected")
                raise NotFound(f"container {c.name} is not connected to network {net.name}")
            index, spec = indexed[net.name]
            if c.state.status == RUNNING:
                netsteps.leave_further(self._context(c), spec, index)
                c.state.extra_networks.pop(net.name, None)
            c.config.extra_networks = [s for s in c.config.extra_networks
                                       if s["name"] != net.name]
            atomic_write_json(c.paths.config, c.config.to_dict())
            self._save(c)
            if c.state.status == RUNNING:
                self._sync_network_hosts(net.name, c.state.network,
                                         *c.state.extra_networks)
                self._emit_network("disconnect", c, net.name)

    def network_remove(self, ref: str) -> None:
        """Remove a user-defined network; refused while a container is attached to it."""
        if ref in ("bridge", "host", "none"):
            raise Conflict(f"{ref} is a pre-defined network and cannot be removed")
        net = self.networks.get(ref)
        self.networks.remove(net, self._network_users)
        self.firewall().remove_masquerade(net.subnet)

    def network_prune(self, *, include_default: bool = False) -> list[str]:
        """Remove every network no container uses (with ``include_default``, the default
        bridge too, and the engine's firewall table once no network is left)."""
        removed = []
        for net in self.networks.list():
            if net.name == DEFAULT_NETWORK and not include_default:
                continue
            if self._network_users(net):
                continue
            self.networks.remove(net, self._network_users)
            self.firewall().remove_masquerade(net.subnet)
            removed.append(net.name)
        if include_default and not self.networks.list():
            self.firewall().delete()
        return removed

    def reset(self, *, volumes: bool = False) -> Any:
        """``corral system reset``: stop and remove every container, network and host object
        of this root (``engine.core.system.reset``); images are kept, volumes unless ``volumes``.
        Returns the ``ResetReport``; the engine stays usable."""
        from .system import reset

        report = reset(self.layout.root, volumes=volumes)
        self.layout.ensure()
        return report

    # -- volumes -----------------------------------------------------------------------------

    def volume_create(self, name: str, labels: dict[str, str] | None = None) -> Volume:
        return self.volumes.create(name, labels)

    def volume_list(self) -> list[Volume]:
        return self.volumes.list()

    def volume_inspect(self, name: str) -> dict[str, Any]:
        return self.volumes.get(name).inspect()

    def _volume_users(self, name: str) -> list[str]:
        users = []
        for cid in self._ids():
            with contextlib.suppress(CorralError):
                if any(b.type == "volume" and b.source == name
                       for b in self._load(cid).config.binds):
                    users.append(cid)
        return users

    def volume_remove(self, name: str) -> None:
        """Remove a volume and its data; refused while any container refers to it."""
        self.volumes.remove(name, self._volume_users)

    # -- images ------------------------------------------------------------------------------

    def image_remove(self, ref: str) -> Image:
        img = self.images.get(ref)
        for cid in self._ids():
            with contextlib.suppress(CorralError):
                if self._load(cid).config.image == img.id:
                    raise Conflict(f"unable to remove image {ref}: image is being used by "
                                   f"container {cid[:12]}")
        return self.images.remove(img.id)

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.close()


class _Transitions:
    """The callbacks of one container's machine: where each transition's effects happen.

    ``before_*`` callbacks run before the state changes, so a failed side effect leaves the
    state as it was (containerd's rule); ``on_*`` run after it changed.
    """

    def __init__(self, engine: Engine, c: Container, ctx: StartContext | None) -> None:
        self.engine, self.c, self.ctx = engine, c, ctx
        self.failure: StepFailure | None = None

    def on_start(self, event: Any) -> None:
        e, c, ctx = self.engine, self.c, self.ctx
        assert ctx is not None
        c.state.manual_stop = False
        c.state.restart_pending = False  # whoever starts it makes the restart a policy asked for
        c.state.error = c.state.error_step = ""
        e._save(c, event.model)  # a crash from here on is seen as ``starting`` and undone
        try:
            records = run_steps(START_PLAN, ctx, fail_point=e._fail_point,
                                undo_fail_point=e._undo_fail_point)
        except StepFailure as failure:
            self.failure = failure
            event.model.fire("fail", error=failure)
            return
        c.state.steps = [r.to_dict() for r in records]
        c.state.exit_code = 0  # as Docker: a running container has no exit code yet
        c.state.oom_killed = False
        c.state.pid, c.state.conmon_pid = ctx.pid, ctx.conmon_pid
        c.state.ip, c.state.network = ctx.ip, ctx.net.name if ctx.net else ""
        c.state.ports = [{k: p[k] for k in ("container_port", "proto", "host_ip", "host_port")}
                         for p in ctx.published]
        c.state.extra_networks = dict(ctx.extra_ips)
        c.state.health = health.initial() if c.config.healthcheck else {}
        c.state.health_pid = ctx.health_pid
        c.state.started_at = now_rfc3339()
        c.state.finished_at = c.state.finished_at
        event.model.fire("started")

    def on_started(self, event: Any) -> None:
        e, c = self.engine, self.c
        e._save(c, event.model)
        e._sync_network_hosts(c.state.network, *c.state.extra_networks)
        for net in (c.state.network, *c.state.extra_networks):
            e._emit_network("connect", c, net)
        e._emit("start", c)
        if e._watcher is not None and c.state.conmon_pid:
            e._watcher.add(c)
        e._enter(c, RUNNING)

    def on_fail(self, event: Any) -> None:
        e, c = self.engine, self.c
        failure: StepFailure = event.kwargs["error"]
        c.state.steps = [r.to_dict() for r in failure.records]
        c.state.exit_code = exitcodes.start_failure_code(failure.step, str(failure.cause))
        c.state.error = str(failure)
        c.state.error_step = failure.step
        c.state.pid = c.state.conmon_pid = 0
        c.state.ip = c.state.network = ""
        c.state.ports = []
        c.state.extra_networks = {}
        c.state.finished_at = now_rfc3339()
        for step, exc in failure.undo_errors:
            logger.error("container {}: undo of step {} failed: {}", c.name, step, exc)
        if failure.undo_errors:
            c.state.error += f"; {CLEANUP_INCOMPLETE}: " + "; ".join(
                f"undo of {step} failed: {exc}" for step, exc in failure.undo_errors)
        c.state.cleanup_pending = bool(failure.undo_errors)
        _forget_exit_file(c)
        e._save(c, event.model)
        e._emit("die", c, exitCode=str(c.state.exit_code), error=c.state.error)
        e._enter(c, DEAD)
        if c.config.auto_remove:
            self._auto_remove(event.model)

    def on_exit(self, event: Any) -> None:
        e, c = self.engine, self.c
        # read before the cleanup removes the cgroup that counted it
        c.state.oom_killed = cgroups.host().oom_kills(c.id) > 0
        errors = e._cleanup(c, self.ctx, keep_exit_file=True)
        left = [c.state.network, *c.state.extra_networks]
        c.state.ip = c.state.network = ""
        c.state.ports = []
        c.state.extra_networks = {}
        c.state.exit_code = int(event.kwargs.get("exit_code", LOST_EXIT_CODE))
        c.state.error = "; ".join([event.kwargs.get("error") or "",
                                   *([f"{CLEANUP_INCOMPLETE}: {'; '.join(errors)}"]
                                     if errors else [])]).strip("; ")
        c.state.cleanup_pending = bool(errors)
        c.state.pid = c.state.conmon_pid = 0
        c.state.finished_at = now_rfc3339()
        if event.kwargs.get("rebooted"):
            delay = after_reboot(c.config.restart_policy, manual_stop=c.state.manual_stop)
        else:
            delay = next_delay(c.config.restart_policy, exit_code=c.state.exit_code,
                               manual_stop=c.state.manual_stop,
                               restart_count=c.state.restart_count,
                               previous_delay=c.state.restart_delay,
                               started_at=c.state.started_at,
                               finished_at=c.state.finished_at)
        c.state.restart_pending = delay is not None
        if delay is not None:
            c.state.restart_delay = delay
        # kept through the cleanup, which a crash may cut short; gone before the record, so
        # whoever reads ``dead`` finds nothing of the run left
        _forget_exit_file(c)
        try:
            e._save(c, event.model)
        except SystemFailure:
            # the stored state still says running: leave the code where the next look finds it
            with contextlib.suppress(OSError):
                c.paths.exit_file.write_text(f"{c.state.exit_code}\n")
                if c.state.manual_stop:  # nor must that look restart what the user stopped
                    _stop_marker(c).touch()
            raise
        e._sync_network_hosts(*left)
        if c.state.oom_killed:
            e._emit("oom", c)  # as Docker: oom, then die
        e._emit("die", c, exitCode=str(c.state.exit_code))
        for net in left:
            e._emit_network("disconnect", c, net)
        e._enter(c, DEAD)
        if c.config.auto_remove:
            self._auto_remove(event.model)

    def _auto_remove(self, lc: Lifecycle) -> None:
        try:
            lc.fire("remove")
        except (CorralError, TransitionConflict) as exc:
            logger.warning("auto-remove of {} failed: {}", self.c.name, exc)

    def before_pause(self, event: Any) -> None:
        cgroups.host().check_pause(self.c.id)
        self.engine.runtime.pause(self.c.id)

    def on_pause(self, event: Any) -> None:
        try:
            self.engine._save(self.c, event.model)
        except SystemFailure:
            # what is stored must stay what runc says: thaw it, as if the pause never was
            with contextlib.suppress(SystemFailure):
                self.engine.runtime.resume(self.c.id)
            raise
        self.engine._emit("pause", self.c)
        self.engine._enter(self.c, PAUSED)

    def before_unpause(self, event: Any) -> None:
        self.engine.runtime.resume(self.c.id)

    def on_unpause(self, event: Any) -> None:
        try:
            self.engine._save(self.c, event.model)
        except SystemFailure:
            with contextlib.suppress(SystemFailure):
                self.engine.runtime.pause(self.c.id)
            raise
        self.engine._emit("unpause", self.c)
        self.engine._enter(self.c, RUNNING)

    def on_remove(self, event: Any) -> None:
        e, c = self.engine, self.c
        e._save(c, event.model)
        try:
            e._finish_remove(c)
        except (CorralError, OSError) as exc:
            event.model.fire("remove_failed", error=str(exc))
            raise SystemFailure(f"cannot remove container {c.name}: {exc}") from exc

    def on_remove_failed(self, event: Any) -> None:
        self.c.state.error = event.kwargs.get("error", "")
        self.c.state.cleanup_pending = True  # the removal stopped at its cleanup, or after it
        self.engine._save(self.c, event.model)


@dataclass(frozen=True)
class _Exit:
    """An exit seen by looking (the exit file, or a monitor found gone)."""

    code: int
    error: str = ""
    rebooted: bool = False  # the run folder was emptied (a reboot): restart as at boot


def _stop_marker(c: Container) -> Path:
    """Beside conmon's exit file (in the run folder): the user stopped this exit, which the
    state file could not say (a full disk)."""
    return c.paths.exit_file.with_name(c.paths.exit_file.name + ".stopped")


def _forget_exit_file(c: Container) -> None:
    for path in (c.paths.exit_file, _stop_marker(c)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _wait_pid(pid: int, timeout: float) -> bool:
    """Wait until process ``pid`` is gone; True if it is."""
    if pid <= 0 or not process_alive(pid):
        return True
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    except OSError:
        fd = -1
    try:
        deadline = time.monotonic() + max(timeout, 0)
        while process_alive(pid):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if fd >= 0:
                select.select([fd], [], [], min(left, 0.5))
            else:
                time.sleep(min(left, 0.01))
        return True
    finally:
        if fd >= 0:
            os.close(fd)


class _ExitWatcher:
    """One thread that waits on the pidfds of conmon processes and handles their exits."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._fds: dict[int, str] = {}
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._closed = False
        self._thread: threading.Thread | None = None

    def add(self, c: Container) -> None:
        try:
            fd = os.pidfd_open(c.state.conmon_pid)
        except OSError:
            threading.Thread(target=self._handle, args=(c.id,), daemon=True).start()
            return
        os.set_inheritable(fd, False)
        with self._lock:
            if self._closed:
                os.close(fd)
                return
            self._fds[fd] = c.id
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="corral-exit-watcher",
                                                daemon=True)
                self._thread.start()
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"x")

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                fds = list(self._fds)
            ready, _, _ = select.select([self._wake_r, *fds], [], [])
            for fd in ready:
                if fd == self._wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                    continue
                with self._lock:
                    cid = self._fds.pop(fd, None)
                if cid is None:
                    continue  # close() took it, and closes it: closed twice, the number
                    # could by then belong to another file of the embedding process
                os.close(fd)
                self._handle(cid)

    def _handle(self, cid: str) -> None:
        try:
            delay = self.engine.container_exited(cid)
            if delay is not None:
                self.restart_later(cid, delay)
            c = self.engine.get(cid)
            if c.state.status == DEAD:
                # the exit may have been handled by conmon's exit command in another process:
                # this engine's hooks still hear of it, once
                self.engine._enter(c, DEAD)
        except NotFound:
            pass
        except Exception:
            logger.exception("handling the exit of {} failed", cid)

    def restart_later(self, cid: str, delay: float) -> None:
        """Start ``cid`` after ``delay`` seconds, if its restart is still pending then."""
        timer = threading.Timer(delay, self.engine.restart_pending, args=(cid,))
        timer.daemon = True
        timer.start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            fds, self._fds = list(self._fds), {}
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout=5)
        for fd in fds:
            os.close(fd)
        os.close(self._wake_r)
        os.close(self._wake_w)


def _address_on(c: Container, network: str) -> str:
    """The container's address on ``network`` while it runs there, else ''."""
    if c.state.network == network:
        return c.state.ip
    return c.state.extra_networks.get(network, "")


__all__ = ["STEP_NAMES", "Engine", "ExecResult"]
