"""A container as the engine keeps it: its config, its state record, and where its files are."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from states import CREATED, DEAD, PAUSED, RUNNING, HistoryEntry

from .config import ContainerConfig
from .paths import ContainerPaths

ZERO_TIME = "0001-01-01T00:00:00Z"


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class ContainerState:
    """What changes over the container's life; written atomically after every transition."""

    status: str = CREATED
    pid: int = 0
    conmon_pid: int = 0
    exit_code: int = 0
    error: str = ""
    error_step: str = ""
    started_at: str = ZERO_TIME
    finished_at: str = ZERO_TIME
    restart_count: int = 0
    manual_stop: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    exec_sessions: list[dict[str, Any]] = field(default_factory=list)
    ip: str = ""
    network: str = ""
    extra_networks: dict[str, str] = field(default_factory=dict)  # name -> address
    restart_pending: bool = False
    restart_delay: float = 0.0
    health: dict[str, Any] = field(default_factory=dict)
    health_pid: int = 0
    # the ports published by the last start, with the host port chosen for ``-p 0:80``
    ports: list[dict[str, Any]] = field(default_factory=list)
    # an undo failed: something of the last run may be left; the next reconcile (or start)
    # finishes the cleanup
    cleanup_pending: bool = False
    # the kernel's OOM killer took a process of the last run (read from its cgroup at exit)
    oom_killed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContainerState:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def history_entries(self) -> list[HistoryEntry]:
        return [HistoryEntry(**h) for h in self.history]


@dataclass
class Container:
    config: ContainerConfig
    state: ContainerState
    paths: ContainerPaths

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def name(self) -> str:
        return self.config.name

    def inspect(self) -> dict[str, Any]:
        """Docker's ``inspect`` shape."""
        c, s = self.config, self.state
        return {
            "Id": c.id,
            "Name": "/" + c.name,
            "Created": c.created,
            "Path": c.cmd[0] if c.cmd else "",
            "Args": c.cmd[1:],
            "State": {
                "Status": s.status,
                "Running": s.status in (RUNNING, PAUSED),
                "Paused": s.status == PAUSED,
                # a flag of a dead container whose policy has a start scheduled, not a state
                "Restarting": s.restart_pending and s.status == DEAD,
                # Docker's Dead: a removal failed and left the container behind
                "Dead": bool(s.history) and s.history[-1].get("trigger") == "remove_failed",
                "OOMKilled": s.oom_killed,
                "Pid": s.pid,
                "ExitCode": s.exit_code,
                "Error": s.error,
                "ErrorStep": s.error_step,
                "StartedAt": s.started_at,
                "FinishedAt": s.finished_at,
            } | ({"Health": dict(s.health)} if c.healthcheck else {}),
            "Image": f"sha256:{c.image}",  # the image's id; Config.Image keeps the name
            "LogPath": str(self.paths.log),
            "RestartCount": s.restart_count,
            "Config": {
                "Hostname": c.hostname,
                "User": c.user,
                "Env": list(c.env),
                "Cmd": list(c.cmd),
                "Image": c.image_name,
                "WorkingDir": c.working_dir,
                "Tty": c.tty,
                "OpenStdin": c.open_stdin,
                "Labels": dict(c.labels),
                "StopSignal": c.stop_signal,
                "StopTimeout": c.stop_timeout,
                "Healthcheck": dict(c.healthcheck) if c.healthcheck else None,
            },
            "HostConfig": {
                "NetworkMode": c.network_mode,
                "IpcMode": c.ipc_mode,
                "CgroupnsMode": c.cgroupns_mode,
                "Binds": [f"{b.source}:{b.target}:{'ro' if b.readonly else 'rw'}"
                          for b in c.binds],
                "Tmpfs": dict(c.tmpfs),
                "Links": list(c.links),
                "Dns": list(c.dns),
                "PortBindings": {f"{p['container_port']}/{p['proto']}": [
                    {"HostIp": p["host_ip"], "HostPort": str(p["host_port"])}]
                    for p in c.ports},
                "Memory": c.memory or 0,
                "NanoCpus": int((c.cpus or 0) * 1e9),
                "CpuShares": c.cpu_shares or 0,
                "PidsLimit": c.pids_limit,
                "RestartPolicy": dict(c.restart_policy),
                "AutoRemove": c.auto_remove,
                "ReadonlyRootfs": c.readonly_rootfs,
                "SecurityOpt": list(c.security_opt) or None,
                "LogConfig": {"Type": "k8s-file", "Config": dict(c.log_opts)},
                "CapAdd": list(c.cap_add) or None,
                "CapDrop": list(c.cap_drop) or None,
                "Sysctls": dict(c.sysctls) or None,
            },
            "Mounts": [
                {"Type": b.type, "Source": b.source, "Destination": b.target,
                 "RW": not b.readonly, "Mode": "ro" if b.readonly else "rw"}
                | ({"Name": b.source} if b.type == "volume" else {})
                for b in c.binds
            ] + [
                {"Type": "tmpfs", "Source": "", "Destination": t, "RW": True, "Mode": o}
                for t, o in c.tmpfs.items()
            ],
            "NetworkSettings": {
                "IPAddress": s.ip,
                "Networks": ({s.network: {"IPAddress": s.ip, "Aliases": list(c.aliases)}}
                             if s.network else {}) | {
                    n["name"]: {"IPAddress": s.extra_networks[n["name"]],
                                "Aliases": list(n.get("aliases", []))}
                    for n in c.extra_networks if n["name"] in s.extra_networks},
                "Ports": {f"{p['container_port']}/{p['proto']}": [
                    {"HostIp": p["host_ip"] or "0.0.0.0", "HostPort": str(p["host_port"])}]
                    for p in (s.ports or c.ports)},
            },
            "StartSteps": list(s.steps),
            "History": list(s.history),
            "ExecIDs": [e.get("id") for e in s.exec_sessions] or None,
        }
