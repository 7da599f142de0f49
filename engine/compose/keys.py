"""The keys corral takes from a deployment file, and the parsers of their values (durations,
sizes, booleans, lists or maps).
"""

from __future__ import annotations

import functools
import ipaddress
import re
import shlex
from collections.abc import Callable
from typing import Any

from ..errors import InvalidParameter
from ..host.ports import PortMapping
from ..start.spec import check_capabilities
from ..store import config as cfg

SERVICE_KEYS = frozenset({
    "image", "command", "entrypoint", "environment", "env_file", "working_dir", "user",
    "hostname", "container_name", "volumes", "ports", "networks", "network_mode", "ipc",
    "links", "depends_on", "restart", "healthcheck", "stop_signal", "stop_grace_period",
    "mem_limit", "cpus", "cpu_shares", "pids_limit", "shm_size", "labels", "tmpfs", "tty",
    "stdin_open", "read_only", "dns", "expose", "security_opt", "logging", "secrets",
    "cap_add", "cap_drop", "sysctls", "platform"})
TOP_LEVEL_KEYS = frozenset({"name", "services", "networks", "volumes", "secrets", "version"})
# the platforms corral runs: this host's (images are not emulated)
PLATFORMS = ("linux/amd64", "linux/x86_64")


CONDITIONS = ("service_started", "service_healthy", "service_completed_successfully")
DEFAULT_NETWORK = "default"

_PROJECT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_RESOURCE_RE = re.compile(r"^[a-zA-Z0-9._-]+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                   "h": 3600.0}
_TMPFS_SIZE = re.compile(r"^\d+[kmg]?$", re.IGNORECASE)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "y", "on", "1"):
        return True
    if text in ("false", "no", "n", "off", "0"):
        return False
    raise InvalidParameter(f"{value!r} is not a boolean (true or false)")


def _int(value: Any, *, minimum: int | None = None) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and re.fullmatch(r"[-+]?\d+", value.strip()):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidParameter(f"{value!r} is not an integer")
    if minimum is not None and value < minimum:
        raise InvalidParameter(f"{value} is less than {minimum}")
    return value


def parse_duration(value: Any) -> float:
    """Go's duration syntax, as Compose reads it (``1m30s``, ``500ms``, ``1.5h``) -> seconds."""
    text = str(value).strip()
    if text == "0":
        return 0.0
    if not text or _DURATION_PART.sub("", text):
        raise InvalidParameter(f"invalid duration {value!r} (use a number with a unit: "
                               "1m30s, 10s, 500ms, 1h)")
    return sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(text))


def _memory(value: Any) -> int | None:
    if isinstance(value, float):
        if not value.is_integer():
            raise InvalidParameter(f"invalid memory size: {value!r}")
        value = int(value)
    return cfg.parse_memory(value)


def _words(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, list):
        return [str(v) for v in value]
    try:
        return shlex.split(value)
    except ValueError as exc:
        raise InvalidParameter(f"cannot split {value!r} into words: {exc}") from None


def _text_map(value: Any, what: str) -> dict[str, str | None]:
    """A ``list_or_dict`` (environment, labels) as a mapping; None for a bare key."""
    out: dict[str, str | None] = {}
    if isinstance(value, dict):
        for key, v in value.items():
            out[key] = None if v is None else (
                ("true" if v else "false") if isinstance(v, bool) else str(v))
        return out
    for item in value:
        key, sep, v = item.partition("=")
        out[key] = v if sep else None
    for key in out:
        if not key or "=" in key or "\0" in key:
            raise InvalidParameter(f"invalid {what} name: {key!r}")
    return out


def _image(value: str) -> str:
    if not value.strip():
        raise InvalidParameter("the image name is empty")
    return value


def _absolute(value: str) -> str:
    if not value.startswith("/"):
        raise InvalidParameter(f"{value!r} is not an absolute path")
    return value


def _checked(parse: Callable[[Any], Any]) -> Callable[[Any], str]:
    """Check with the engine's parser, keep the text as written."""
    def check(value: Any) -> str:
        parse(value)
        return str(value)
    return check


def _tmpfs(value: str) -> str:
    cfg.parse_tmpfs(value)
    return value


def _platform(value: str) -> str:
    if value.strip().lower() not in PLATFORMS:
        raise InvalidParameter(f"platform {value!r} is not supported: corral runs "
                               f"{' and '.join(PLATFORMS)} images only")
    return value


def _cap_add(value: str) -> str:
    check_capabilities([value], [])
    return value


def _cap_drop(value: str) -> str:
    check_capabilities([], [value])
    return value


def _dns(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise InvalidParameter(f"invalid DNS server address: {value!r}") from None


# Service keys whose value converts on its own; the others have a ``_s_<key>`` method.
_FIELDS: dict[str, Callable[[Any], Any]] = {
    "image": _image, "command": _words, "entrypoint": _words, "working_dir": _absolute,
    "user": str, "hostname": str, "container_name": cfg.check_name,
    "restart": _checked(cfg.parse_restart), "stop_signal": _checked(cfg.parse_signal),
    "stop_grace_period": parse_duration, "mem_limit": _memory,
    "shm_size": _memory,  # shares parse_memory's 6 MB floor
    "cpus": cfg.parse_cpus, "cpu_shares": functools.partial(_int, minimum=0),
    "pids_limit": functools.partial(_int, minimum=-1), "tty": _bool, "stdin_open": _bool,
    "read_only": _bool, "platform": _platform,
    "labels": lambda v: {k: x or "" for k, x in _text_map(v, "label").items()},
}
_ITEMS: dict[str, Callable[[Any], str]] = {
    "tmpfs": _tmpfs, "dns": _dns, "expose": lambda v: cfg.parse_expose(str(v)),
    "cap_add": _cap_add, "cap_drop": _cap_drop}


def _publish_text(m: PortMapping) -> str:
    spec = f"{m.container_port}/{m.proto}"
    if m.host_ip is not None:
        host = f"[{m.host_ip}]" if ":" in m.host_ip else m.host_ip
        return f"{host}:{m.host_port or ''}:{spec}"
    return f"{m.host_port}:{spec}" if m.host_port else spec
