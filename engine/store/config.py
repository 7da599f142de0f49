"""What a container is asked to be: its configuration, checked before anything is written.

Every check raises ``InvalidParameter`` naming the field and the value, as Docker's CLI does.
"""

from __future__ import annotations

import re
import secrets
import signal as _signal
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import InvalidParameter

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
# a link's alias is a host name in the container, not a container name: one letter will do
LINK_ALIAS_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
NAME_MAX = 128
ID_RE = re.compile(r"^[0-9a-f]{64}$")
ENV_KEY_RE = re.compile(r"^[^=\0\n]+$")
FIXED_NETWORK_MODES = ("none", "host")
DEFAULT_NETWORK_MODE = "bridge"
IPC_MODES = ("private", "shareable", "host")
CGROUPNS_MODES = ("private", "host")
RESTART_POLICIES = ("no", "always", "on-failure", "unless-stopped")
MIN_MEMORY = 6 * 1024 * 1024  # Docker's lower bound
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_STOP_TIMEOUT = 10


def new_id() -> str:
    return secrets.token_hex(32)


def check_name(name: str) -> str:
    if not isinstance(name, str) or len(name) > NAME_MAX or not NAME_RE.match(name):
        shown = name if isinstance(name, str) and len(name) <= 64 else f"{str(name)[:64]}..."
        raise InvalidParameter(
            f"Invalid container name ({shown!r}), only [a-zA-Z0-9][a-zA-Z0-9_.-]+ are allowed"
            f" (at most {NAME_MAX} characters)")
    return name


def check_text(field_name: str, value: Any) -> None:
    """Refuse a string (or the strings of a list or dict) holding a NUL byte: the kernel's
    argv, environment and file names end at the first NUL, so it would fail at start, or
    quietly cut the value."""
    if isinstance(value, str):
        if "\0" in value:
            shown = value if len(value) <= 64 else value[:64] + "..."
            raise InvalidParameter(f"invalid {field_name}: {shown!r}: it contains a NUL byte")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(f"{field_name} key", key)
            check_text(f"{field_name} {key!r}", item)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_text(f"{field_name} [{i}]", item)


def parse_env(items: list[str]) -> list[str]:
    """``KEY=VALUE`` entries; a bare ``KEY`` is dropped (Docker takes it from the caller)."""
    out = []
    for item in items:
        key, sep, _value = item.partition("=")
        if not key or not ENV_KEY_RE.match(key) or "\0" in item:
            raise InvalidParameter(f"invalid environment variable: {item!r}")
        if sep:
            out.append(item)
    return out


VOLUME_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class Bind:
    """A bind mount (``source`` an absolute host path) or a named volume (``source`` a name)."""

    source: str
    target: str
    readonly: bool = False
    type: str = "bind"

    @classmethod
    def parse(cls, spec: str) -> Bind:
        """``/host/path:/container/path[:ro|rw]`` or ``name:/path``, as ``docker run -v``."""
        parts = spec.split(":")
        if len(parts) not in (2, 3) or not all(parts[:2]):
            raise InvalidParameter(f"invalid volume specification: {spec!r}")
        source, target = parts[0], parts[1]
        mode = parts[2] if len(parts) == 3 else "rw"
        if mode not in ("ro", "rw"):
            raise InvalidParameter(f"invalid mode {mode!r} in volume specification: {spec!r}")
        check_target(target, spec)
        if source.startswith("/"):
            return cls(source, target, mode == "ro")
        if VOLUME_NAME_RE.match(source):
            return cls(source, target, mode == "ro", "volume")
        raise InvalidParameter(
            f"invalid volume specification: {spec!r}: the source must be an absolute path "
            "or a volume name")


def check_target(target: str, spec: str) -> None:
    if not target.startswith("/") or "\0" in target:
        raise InvalidParameter(
            f"invalid mount specification: {spec!r}: the target must be an absolute path")
    if target.rstrip("/") == "":
        raise InvalidParameter(f"invalid mount specification: {spec!r}: the target cannot be /")


def parse_key_values(items: list[str] | tuple[str, ...], what: str) -> dict[str, str]:
    """``KEY=VALUE`` items (``--sysctl``, ``--log-opt``) as a mapping; the last of a key wins,
    as in Docker."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidParameter(f"invalid {what} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def parse_tmpfs(spec: str) -> tuple[str, str]:
    """``/path[:options]``, as ``docker run --tmpfs``."""
    target, _, options = spec.partition(":")
    check_target(target, spec)
    return target, options


def parse_link(spec: str) -> tuple[str, str]:
    """``name[:alias]``, as ``docker run --link``."""
    name, _, alias = spec.partition(":")
    if not name or not NAME_RE.match(name.lstrip("/")) or (
            alias and not LINK_ALIAS_RE.match(alias)):
        raise InvalidParameter(f"invalid link specification: {spec!r}")
    return name.lstrip("/"), alias or name.lstrip("/")


def check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not NAME_RE.match(alias) and not (
            len(alias) == 1 and alias.isalnum()):
        raise InvalidParameter(f"invalid network alias: {alias!r}")
    return alias


def parse_expose(spec: str) -> str:
    """``port[/proto]``."""
    port, _, proto = spec.partition("/")
    if not port.isdigit() or not 0 < int(port) < 65536 or proto not in ("", "tcp", "udp"):
        raise InvalidParameter(f"invalid port to expose: {spec!r}")
    return f"{int(port)}/{proto or 'tcp'}"


def parse_healthcheck(hc: dict[str, Any] | None) -> dict[str, Any] | None:
    """Docker's health check: ``test`` as ["CMD", ...], ["CMD-SHELL", "..."] or ["NONE"];
    durations in seconds."""
    if not hc:
        return None
    test = hc.get("test")
    if isinstance(test, str):
        test = ["CMD-SHELL", test]
    if not isinstance(test, list) or not test or test[0] not in ("CMD", "CMD-SHELL", "NONE"):
        raise InvalidParameter(f"invalid healthcheck test: {test!r}")
    if test[0] == "NONE":
        return None
    if len(test) < 2:
        raise InvalidParameter(f"invalid healthcheck test: {test!r}: no command")
    out: dict[str, Any] = {"test": [str(t) for t in test]}
    for key, default in (("interval", 30.0), ("timeout", 30.0), ("start_period", 0.0)):
        value = hc.get(key, default)
        if not isinstance(value, (int, float)) or value < 0 or (key != "start_period"
                                                                 and value == 0):
            raise InvalidParameter(f"invalid healthcheck {key}: {value!r}")
        out[key] = float(value)
    retries = hc.get("retries", 3)
    if not isinstance(retries, int) or retries < 1:
        raise InvalidParameter(f"invalid healthcheck retries: {retries!r}")
    out["retries"] = retries
    return out


def parse_size(value: str | int | None, what: str = "size") -> int | None:
    """Bytes from ``512m``, ``1g``, ``64k`` or a number."""
    if value in (None, "", 0):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = re.fullmatch(r"(\d+)([bkmg]?)b?", str(value).strip().lower())
    if not m:
        raise InvalidParameter(f"invalid {what}: {value!r}")
    return int(m.group(1)) * {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[
        m.group(2)]


def parse_memory(value: str | int | None) -> int | None:
    n = parse_size(value, "memory size")
    if n is None:
        return None
    if n < MIN_MEMORY:
        raise InvalidParameter(f"invalid memory: {value!r}: minimum memory limit is 6MB")
    return n


def parse_cpus(value: str | float | None) -> float | None:
    if value in (None, "", 0):
        return None
    try:
        cpus = float(value)
    except (TypeError, ValueError) as exc:
        raise InvalidParameter(f"invalid cpus: {value!r}") from exc
    if not 0 < cpus <= 1024:
        raise InvalidParameter(f"invalid cpus: {value!r}: must be a positive number")
    return cpus


def parse_restart(value: str | None) -> dict[str, Any]:
    value = value or "no"
    name, _, count = value.partition(":")
    if name not in RESTART_POLICIES:
        raise InvalidParameter(f"invalid restart policy: {value!r}")
    if count and (name != "on-failure" or not count.isdigit()):
        raise InvalidParameter(f"invalid restart policy: {value!r}: maximum retry count "
                               "is only allowed with on-failure")
    return {"Name": name, "MaximumRetryCount": int(count or 0)}


def parse_signal(value: str | int | None) -> int:
    if value in (None, ""):
        return int(_signal.SIGTERM)
    if isinstance(value, int) or str(value).isdigit():
        n = int(value)
    else:
        text = str(value).upper()
        text = text if text.startswith("SIG") else "SIG" + text
        try:
            n = int(_signal.Signals[text])
        except KeyError as exc:
            raise InvalidParameter(f"invalid signal: {value!r}") from exc
    if not 0 < n < 65:
        raise InvalidParameter(f"invalid signal: {value!r}")
    return n


@dataclass
class ContainerConfig:
    """The container's settings, as asked; stored once at create and never rewritten."""

    id: str
    name: str
    image: str               # image id
    image_name: str
    cmd: list[str]
    created: str
    env: list[str] = field(default_factory=list)
    working_dir: str = "/"
    hostname: str = ""
    user: str = "0:0"
    tty: bool = False
    open_stdin: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    network_mode: str = DEFAULT_NETWORK_MODE
    ip: str = ""
    ports: list[dict[str, Any]] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    expose: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    shm_size: int | None = None
    ipc_mode: str = "private"
    # "": the host's default, as Docker's daemon (private on cgroup v2, host on v1)
    cgroupns_mode: str = ""
    binds: list[Bind] = field(default_factory=list)
    tmpfs: dict[str, str] = field(default_factory=dict)
    links: list[str] = field(default_factory=list)
    memory: int | None = None
    cpus: float | None = None
    cpu_shares: int | None = None
    pids_limit: int | None = None
    restart_policy: dict[str, Any] = field(default_factory=lambda: parse_restart("no"))
    auto_remove: bool = False
    stop_signal: int = int(_signal.SIGTERM)
    stop_timeout: int = DEFAULT_STOP_TIMEOUT
    readonly_rootfs: bool = False
    healthcheck: dict[str, Any] | None = None
    security_opt: list[str] = field(default_factory=list)  # as asked, for inspect
    # "default", "unconfined" or the user's profile, read at create (engine.start.seccomp)
    seccomp: str | dict[str, Any] = "default"
    # checked and merged over the root's defaults at create (logopts); {} is no cap
    log_opts: dict[str, str] = field(default_factory=dict)
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)
    # networks joined beyond the first (``network_mode``): {"name", "ip", "aliases"} each
    extra_networks: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContainerConfig:
        data = dict(data)
        data["binds"] = [Bind(**b) for b in data.get("binds", [])]
        return cls(**data)
