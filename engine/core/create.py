"""Engine.create: a container's config checked, its name claimed, its folder made at once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import asdict
from typing import Any

from ..errors import Conflict, CorralError, InvalidParameter, SystemFailure
from ..host import cgroups
from ..images.store import Image
from ..networks.store import DEFAULT_NETWORK
from ..start import netsteps, seccomp
from ..start.spec import check_capabilities
from ..store import config as cfg
from ..store import logopts
from ..store.config import Bind, ContainerConfig
from ..store.container import Container, ContainerState, now_rfc3339
from ..store.files import atomic_write_json
from ..store.names import generate_name
from ..store.sysctl import check_sysctls
from . import fsck


class CreateMixin:
    """Engine.create and the checks and claims it makes before anything is written."""

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

        from ..host.ports import parse_publish

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
