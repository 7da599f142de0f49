"""The model of a deployment: its services, networks and volumes, and how a service maps
onto ``Engine.create``. Built by ``engine.compose.project.load_project``; pure data, no I/O."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidParameter, NotFound

# --- the model --------------------------------------------------------------------------------

@dataclass
class VolumeMount:
    type: str            # bind | volume | tmpfs
    source: str          # absolute host path, volume name as declared, or "" (tmpfs, or an
    target: str          # anonymous volume: one made for the container at create)
    read_only: bool = False
    options: str = ""    # tmpfs options (``size=64m``)


@dataclass
class ServiceNetwork:
    ipv4_address: str | None = None
    aliases: list[str] = field(default_factory=list)


@dataclass
class SecretMount:
    source: str          # the secret's name in the top-level secrets
    target: str          # absolute path in the container (/run/secrets/<name> by default)


@dataclass
class Healthcheck:
    """Docker's form: ``test`` is ["CMD", ...], ["CMD-SHELL", cmd] or ["NONE"] (disabled)."""

    test: list[str]
    interval: float = 30.0
    timeout: float = 30.0
    retries: int = 3
    start_period: float = 0.0

    @property
    def disabled(self) -> bool:
        return self.test == ["NONE"]

    def to_engine(self) -> dict[str, Any]:
        return {"test": list(self.test), "interval": self.interval, "timeout": self.timeout,
                "retries": self.retries, "start_period": self.start_period}


@dataclass
class Service:
    name: str
    image: str = ""
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    environment: dict[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    user: str | None = None
    hostname: str | None = None
    container_name: str | None = None
    volumes: list[VolumeMount] = field(default_factory=list)
    ports: list[str] = field(default_factory=list)   # ``[hostip:]hostport:containerport/proto``
    networks: dict[str, ServiceNetwork] = field(default_factory=dict)
    network_mode: str | None = None
    ipc: str | None = None
    links: list[str] = field(default_factory=list)   # ``service:alias``
    depends_on: dict[str, str] = field(default_factory=dict)   # service -> condition
    restart: str = "no"
    healthcheck: Healthcheck | None = None
    stop_signal: str | None = None
    stop_grace_period: float | None = None
    mem_limit: int | None = None
    cpus: float | None = None
    cpu_shares: int | None = None
    pids_limit: int | None = None
    shm_size: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    tmpfs: list[str] = field(default_factory=list)
    tty: bool = False
    stdin_open: bool = False
    read_only: bool = False
    dns: list[str] = field(default_factory=list)
    expose: list[str] = field(default_factory=list)
    security_opt: list[str] = field(default_factory=list)
    log_opts: dict[str, str] = field(default_factory=dict)  # ``logging.options``, checked
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)
    platform: str | None = None
    secrets: list[SecretMount] = field(default_factory=list)
    image_at: str = ""   # FILE:LINE of the image key, for errors found later (a missing image)

    @property
    def container_command(self) -> list[str] | None:
        """What the container runs: entrypoint + command, or the command, or None (the
        image's default)."""
        if self.entrypoint is not None:
            return self.entrypoint + (self.command or [])
        return self.command


@dataclass
class NetworkDef:
    name: str
    driver: str = "bridge"
    subnet: str | None = None
    gateway: str | None = None


@dataclass
class VolumeDef:
    name: str
    driver: str = "local"


@dataclass
class Project:
    name: str
    path: Path
    services: dict[str, Service]
    networks: dict[str, NetworkDef] = field(default_factory=dict)
    volumes: dict[str, VolumeDef] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict, repr=False)  # interpolated document
    secrets: dict[str, str] = field(default_factory=dict)   # name -> absolute host path

    def start_order(self, services: Iterable[str] | None = None) -> list[str]:
        """The services (all, or the given ones and what they depend on), dependencies first;
        among services that are ready at the same time, the file's order."""
        wanted = self._closure(services)
        names = [n for n in self.services if n in wanted]
        order: list[str] = []
        placed: set[str] = set()
        while len(order) < len(names):
            ready = next((n for n in names if n not in placed
                          and placed.issuperset(self.services[n].depends_on)), None)
            if ready is None:  # load_project refuses cycles; a hand-built project may not
                raise InvalidParameter("dependency cycle among " +
                                       ", ".join(n for n in names if n not in placed))
            order.append(ready)
            placed.add(ready)
        return order

    def stop_order(self, services: Iterable[str] | None = None) -> list[str]:
        return self.start_order(services)[::-1]

    def _closure(self, services: Iterable[str] | None) -> set[str]:
        if services is None:
            return set(self.services)
        todo = list(services)
        seen: set[str] = set()
        while todo:
            name = todo.pop()
            if name not in self.services:
                raise NotFound(f"no such service: {name}")
            if name not in seen:
                seen.add(name)
                todo.extend(self.services[name].depends_on)
        return seen

    def container_name(self, service: str) -> str:
        svc = self.services[service]
        return svc.container_name or f"{self.name}-{service}-1"

    def network_name(self, network: str) -> str:
        return f"{self.name}_{network}"

    def volume_name(self, volume: str) -> str:
        return f"{self.name}_{volume}"

    def create_kwargs(self, service: str) -> dict[str, Any]:
        """Keyword arguments of ``Engine.create`` for one service. The first network of the
        service is the container's network, the others are ``networks``. Anonymous volumes
        (``anonymous_volumes``), ``depends_on``, ``shm_size`` and creating the project's
        networks and volumes are the caller's part."""
        s = self.services[service]
        binds, tmpfs = [], list(s.tmpfs)
        for v in s.volumes:
            mode = ":ro" if v.read_only else ""
            if v.type == "bind":
                binds.append(f"{v.source}:{v.target}{mode}")
            elif v.type == "volume" and v.source:
                binds.append(f"{self.volume_name(v.source)}:{v.target}{mode}")
            elif v.type == "tmpfs":
                tmpfs.append(f"{v.target}:{v.options}" if v.options else v.target)
        binds += [f"{self.secrets[m.source]}:{m.target}:ro" for m in s.secrets]
        network, ip, extra, aliases = "bridge", "", [], []
        if s.network_mode is not None:
            network = self._peer(s.network_mode)
        elif s.networks:
            (first, attachment), *others = s.networks.items()
            network, ip = self.network_name(first), attachment.ipv4_address or ""
            aliases = list(attachment.aliases)
            extra = [{"name": self.network_name(n), "ip": a.ipv4_address or "",
                      "aliases": [service, *a.aliases]} for n, a in others]
        labels = {"com.docker.compose.project": self.name,
                  "com.docker.compose.service": service, **s.labels}
        kwargs: dict[str, Any] = {
            "image": s.image, "cmd": s.container_command, "name": self.container_name(service),
            "env": [f"{k}={v}" for k, v in s.environment.items()], "volumes": binds,
            "tmpfs": tmpfs, "working_dir": s.working_dir or "", "hostname": s.hostname or "",
            "user": s.user or "", "network": network, "ip": ip, "publish": list(s.ports),
            "dns": list(s.dns), "expose": list(s.expose), "ipc": self._peer(s.ipc or "private"),
            "memory": s.mem_limit, "cpus": s.cpus, "cpu_shares": s.cpu_shares,
            "pids_limit": s.pids_limit, "restart": s.restart, "labels": labels,
            "stop_signal": s.stop_signal,
            "stop_timeout": None if s.stop_grace_period is None
            else math.ceil(s.stop_grace_period),
            "links": [f"{self.container_name(t)}:{alias}"
                      for t, _, alias in (x.partition(":") for x in s.links)],
            "readonly_rootfs": s.read_only, "tty": s.tty, "interactive": s.stdin_open,
        }
        # only when used: the deployment's config hash of an unchanged service stays the same
        kwargs.update({k: v for k, v in (
            ("security_opt", list(s.security_opt)),
            ("cap_add", list(s.cap_add)), ("cap_drop", list(s.cap_drop)),
            ("sysctls", dict(s.sysctls)), ("networks", extra), ("aliases", aliases)) if v})
        if s.healthcheck is not None:
            kwargs["healthcheck"] = s.healthcheck.to_engine()
        if s.log_opts:
            kwargs["log_opts"] = dict(s.log_opts)
        return kwargs

    def anonymous_volumes(self, service: str) -> list[tuple[str, bool]]:
        """(target, read_only) of the service's anonymous volumes."""
        return [(v.target, v.read_only) for v in self.services[service].volumes
                if v.type == "volume" and not v.source]

    def _peer(self, mode: str) -> str:
        kind, _, target = mode.partition(":")
        return f"container:{self.container_name(target)}" if kind == "service" else mode
