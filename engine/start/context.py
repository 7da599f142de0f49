"""What the start steps share: the container, its drivers and what earlier steps made.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SystemFailure
from ..host import cgroups
from ..host.conmon import Monitor
from ..host.runc import Runtime
from ..networks.store import Network, NetworkStore
from ..store.container import Container
from ..store.paths import Layout
from ..volumes.store import VolumeStore
from .spec import SpecOptions


def _no_firewall() -> Any:
    raise SystemFailure("no firewall is available to this start")


def _no_join(ref: str) -> str:
    raise SystemFailure(f"cannot join the network of {ref}")


@dataclass
class StartContext:
    container: Container
    layout: Layout
    runtime: Runtime
    monitor: Monitor | None
    image_rootfs: Path
    exit_command: list[str] = field(default_factory=list)
    interactive: bool = False
    # filled in by the steps, in order
    network: str = "new"
    ipc: str = "new"
    link_env: list[str] = field(default_factory=list)
    link_hosts: list[tuple[str, str]] = field(default_factory=list)
    cwd: str = "/"
    env: list[str] = field(default_factory=list)
    uid: int = 0
    gid: int = 0
    home: str = "/root"
    spec: SpecOptions | None = None
    mounts: list[dict] = field(default_factory=list)
    pid: int = 0
    conmon_pid: int = 0
    foreground: subprocess.Popen | None = None
    health_pid: int = 0
    published: list[dict] = field(default_factory=list)  # ports as installed (free ones chosen)
    # networking: the store, the firewall (made on first use), and the engine's callbacks
    networks: NetworkStore | None = None
    volumes: VolumeStore | None = None
    firewall: Callable[[], Any] = _no_firewall
    fail_point: Callable[[str], bool] | None = None
    join_network: Callable[[str], str] = _no_join
    network_peers: Callable[[], list[tuple[str, str]]] = list
    find_container: Callable[[str], Container] | None = None
    net: Network | None = None
    ip: str = ""
    extra_ips: dict[str, str] = field(default_factory=dict)  # further networks: name -> ip

    @property
    def cid(self) -> str:
        return self.container.id

    @property
    def paths(self):
        return self.container.paths

    @property
    def cgroups_path(self) -> str:
        return cgroups.host().cgroups_path(self.cid)
