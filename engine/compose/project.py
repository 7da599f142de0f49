"""Deployment files: a subset of the Compose format, loaded, checked and normalized.

``load_project(path)`` reads one YAML file (and the ``.env`` beside it, and the ``env_file``
files it names), and returns a ``Project``; it creates nothing and calls no engine. The steps:

1. YAML with the safe loader (``compose_yaml``): line of every key, no tags, no alias bombs;
2. interpolation of every string value (``interpolate``): the environment first, then ``.env``;
3. the Compose JSON schema (Draft 7): a file corral accepts is a valid Compose file;
4. the corral subset: keys the schema allows but corral does not support are refused by name,
   values are parsed with the engine's own parsers (``engine.store.config``, ``firewall``), and the
   project is checked as a whole (dependencies and their cycles, ports published twice,
   undeclared volumes and networks).

Every problem of the file is collected, and ``ComposeError`` reports them all at once, one per
line as ``FILE:LINE: key.path: message``.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import ipaddress
import json
import os
import re
import shlex
from collections.abc import Callable, Iterable, Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from ..errors import InvalidParameter
from ..host.nft import PortMapping, parse_publish
from ..start.spec import check_capabilities
from ..store import config as cfg
from ..store import logopts
from ..store.sysctl import check_sysctls
from ..volumes.store import check_volume_name
from .interpolate import EnvFileError, InterpolationError, interpolate, parse_env_file
from .model import (  # the model is part of this module's API
    Healthcheck,
    NetworkDef,
    Project,
    SecretMount,
    Service,
    ServiceNetwork,
    VolumeDef,
    VolumeMount,
)
from .yamlfile import KeyPath, YamlError, read_text
from .yamlfile import load as load_yaml

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
SECRETS_DIR = "/run/secrets"
CONDITIONS = ("service_started", "service_healthy", "service_completed_successfully")
DEFAULT_NETWORK = "default"

_PROJECT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_RESOURCE_RE = re.compile(r"^[a-zA-Z0-9._-]+$")
_SIMPLE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                   "h": 3600.0}
_TMPFS_SIZE = re.compile(r"^\d+[kmg]?$", re.IGNORECASE)


class ComposeError(InvalidParameter):
    """The deployment file is refused; ``errors`` lists every problem, each with its line."""

    def __init__(self, errors: list[str], warnings: list[str] | None = None) -> None:
        super().__init__("\n".join(errors))
        self.errors = list(errors)
        self.warnings = list(warnings or [])


# --- loading ----------------------------------------------------------------------------------

def load_project(path: Path, *, project_name: str | None = None,
                 environ: Mapping[str, str] | None = None) -> Project:
    """Load, check and normalize the deployment file ``path``; raise ``ComposeError`` listing
    every problem. ``environ`` (default ``os.environ``) comes before the ``.env`` file."""
    path = Path(path)
    report = _Report(str(path))
    try:
        doc = load_yaml(path)
    except YamlError as exc:
        report.error(exc.path, exc.message, line=exc.line)
        raise report.failure() from None
    report.lines = doc.lines
    for line, key_path, message in doc.problems:
        report.error(key_path, message, line=line)
    if not isinstance(doc.data, dict):
        report.error((), f"the top level must be a mapping, not {_kind(doc.data)}", line=1)
        raise report.failure()
    folder = path.absolute().parent
    dotenv = _read_dotenv(folder / ".env", report)
    env = dict(os.environ if environ is None else environ)
    variables = {**dotenv, **env}
    data = _interpolate_tree(doc.data, (), variables, report)
    for err in _validator().iter_errors(data):
        for key_path, message in _schema_messages(err):
            report.error(key_path, message)
    project = _Normalizer(report, folder, variables, _home(env)).project(data, path,
                                                                          project_name)
    if report.problems:
        raise report.failure()
    return project


def _home(environ: Mapping[str, str]) -> str:
    """The home of the user running corral, for ``~`` in paths (as Compose: $HOME first)."""
    if environ.get("HOME"):
        return environ["HOME"]
    import pwd

    return pwd.getpwuid(os.getuid()).pw_dir


class _Report:
    """Collects errors and warnings with their lines; a path's line is that of its nearest
    recorded ancestor."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: dict[KeyPath, int] = {}
        self.problems: list[tuple[int, int, str]] = []
        self.failed: set[KeyPath] = set()
        self.warnings: list[str] = []

    def line(self, path: KeyPath) -> int:
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 0)

    def _where(self, path: KeyPath, line: int | None, file: str | None) -> str:
        line = self.line(path) if line is None else line
        return f"{file or self.file}:{line}" if line else (file or self.file)

    def error(self, path: KeyPath, message: str, *, line: int | None = None,
              file: str | None = None) -> None:
        text = f"{_path_text(path)}: {message}" if path else message
        self._add(path, text, line, file)

    def unsupported(self, path: KeyPath, why: str = "") -> None:
        self._add(path, f"{_path_text(path)} is not supported{why}", None, None)

    def _add(self, path: KeyPath, text: str, line: int | None, file: str | None) -> None:
        self.failed.add(path)
        entry = f"{self._where(path, line, file)}: {text}"
        if all(entry != p[2] for p in self.problems):
            self.problems.append((self.line(path) if line is None else line,
                                  len(self.problems), entry))

    def warn(self, path: KeyPath, message: str) -> None:
        entry = f"{self._where(path, None, None)}: {_path_text(path)}: {message}"
        if entry not in self.warnings:
            self.warnings.append(entry)

    def broken(self, path: KeyPath) -> bool:
        """Whether an error was reported at ``path`` or below it."""
        return any(p[:len(path)] == path for p in self.failed)

    @contextlib.contextmanager
    def catch(self, path: KeyPath) -> Iterator[None]:
        try:
            yield
        except (InvalidParameter, ValueError) as exc:  # ipaddress speaks ValueError
            self.error(path, str(exc))

    def failure(self) -> ComposeError:
        return ComposeError([p[2] for p in sorted(self.problems)], self.warnings)


def _path_text(path: KeyPath) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _SIMPLE_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            type(None): "empty", int: "a number", float: "a number"}.get(type(value), "a value")


def _read_dotenv(path: Path, report: _Report) -> dict[str, str]:
    try:
        lines = parse_env_file(read_text(path, ".env file"))
    except YamlError as exc:
        if "no such" not in exc.message:
            report.error((), exc.message, line=exc.line, file=str(path))
        return {}
    except EnvFileError as exc:
        report.error((), exc.message, line=exc.line, file=str(path))
        return {}
    return {e.key: e.value for e in lines if e.value is not None}


def _interpolate_tree(value: Any, path: KeyPath, variables: Mapping[str, str],
                      report: _Report) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate_tree(v, (*path, k), variables, report) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate_tree(v, (*path, i), variables, report) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value
    try:
        return interpolate(value, variables.get, lambda name: report.warn(
            path, f"the variable {name} is not set, defaulting to a blank string"))
    except InterpolationError as exc:
        report.error(path, str(exc))
        return value


# --- the schema -------------------------------------------------------------------------------

@functools.cache
def _validator() -> jsonschema.Draft7Validator:
    text = resources.files(__package__).joinpath("schemas/compose-spec.json").read_text("utf-8")
    return jsonschema.Draft7Validator(json.loads(text))


def _short(value: Any) -> str:
    try:  # as YAML would spell it: true, null, "text"
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _schema_messages(err: jsonschema.ValidationError) -> list[tuple[KeyPath, str]]:
    """One error of jsonschema as (path, message) pairs, made readable: an unexpected key
    points at its own line; a ``oneOf`` says what the value failed to be."""
    path: KeyPath = tuple(err.absolute_path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        props = err.schema.get("properties", {})
        patterns = [p for p in err.schema.get("patternProperties", {}) if p != "^x-"]
        out = []
        for key in err.instance:
            if key in props or any(re.search(p, key) for p in err.schema.get(
                    "patternProperties", {})):
                continue
            if props:
                hint = difflib.get_close_matches(key, list(props), n=1)
                message = f"Additional properties are not allowed ({key!r} was unexpected)"
                out.append(((*path, key), message + (f"; did you mean {hint[0]!r}?"
                                                     if hint else "")))
            else:
                out.append(((*path, key), f"invalid name {key!r}: it must match "
                                          f"{' or '.join(patterns)}"))
        return out
    if err.validator in ("oneOf", "anyOf") and err.context:
        branches: dict[Any, list[jsonschema.ValidationError]] = {}
        for sub in err.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        # A branch whose own type matched is the one the author meant; report its errors.
        for subs in branches.values():
            if not any(s.validator == "type" and not s.relative_path for s in subs):
                return [m for s in subs for m in _schema_messages(s)]
        types = [t for subs in branches.values() for s in subs
                 if s.validator == "type" and not s.relative_path
                 for t in ([s.validator_value] if isinstance(s.validator_value, str)
                           else s.validator_value)]
        return [(path, f"{_short(err.instance)} is not of type "
                       f"{', '.join(repr(t) for t in dict.fromkeys(types))}")]
    if err.validator == "type":
        expected = err.validator_value
        shown = ", ".join(repr(t) for t in ([expected] if isinstance(expected, str)
                                            else expected))
        return [(path, f"{_short(err.instance)} is not of type {shown}")]
    message = err.message if len(err.message) <= 200 else err.message[:197] + "..."
    return [(path, message)]


# --- the corral subset ------------------------------------------------------------------------

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


class _Normalizer:
    def __init__(self, report: _Report, folder: Path, variables: Mapping[str, str],
                 home: str) -> None:
        self.report = report
        self.folder = folder
        self.variables = variables
        self.home = home
        self.secrets: dict[str, str] = {}
        self.networks: dict[str, NetworkDef] = {}
        self.volumes: dict[str, VolumeDef] = {}
        self.services: dict[str, Service] = {}
        # Where each reference was made, so cross-service errors name the right line.
        self.dep_sites: dict[tuple[str, str], KeyPath] = {}
        self.port_sites: list[tuple[KeyPath, PortMapping]] = []
        self.ip_sites: dict[tuple[str, str], KeyPath] = {}
        self.sysctl_sites: dict[tuple[str, str], KeyPath] = {}
        self.declared: set[str] = set()  # every service name, broken definitions included

    def project(self, data: dict[str, Any], path: Path, project_name: str | None) -> Project:
        r = self.report
        schema_keys = _validator().schema["properties"]
        for key in data:
            if key == "version":
                r.warn((key,), "the attribute is obsolete and ignored")
            elif key not in TOP_LEVEL_KEYS and key in schema_keys:
                r.unsupported((key,))
        name = self._project_name(data, path, project_name)
        for kind, parse in (("networks", self._network_def), ("volumes", self._volume_def)):
            defs = data.get(kind)
            if isinstance(defs, dict):
                for key, raw in defs.items():
                    if key.startswith("x-"):
                        continue
                    if r.broken((kind, key)):  # declared all the same: no follow-up errors
                        getattr(self, kind)[key] = (NetworkDef if kind == "networks"
                                                    else VolumeDef)(key)
                        continue
                    with r.catch((kind, key)):
                        parse(key, raw)
        if isinstance(data.get("secrets"), dict):
            for key, raw in data["secrets"].items():
                if key.startswith("x-"):
                    continue
                if not r.broken(("secrets", key)):
                    with r.catch(("secrets", key)):
                        self._secret_def(key, raw)
                self.secrets.setdefault(key, "")  # declared, even when broken
        services = data.get("services")
        if "services" not in data:
            r.error((), "'services' is required: a deployment needs at least one service",
                    line=1)
        elif isinstance(services, dict) and not services:
            r.error(("services",), "no service is defined")
        elif isinstance(services, dict):
            self.declared = set(services)
            for sname, raw in services.items():
                if not sname.startswith("x-") and isinstance(raw, dict) \
                        and _RESOURCE_RE.match(sname):
                    self.services[sname] = self._service(sname, raw)
        self._check_project()
        return Project(name, path.absolute(), self.services, self.networks, self.volumes,
                       r.warnings, data, secrets=self.secrets)

    def _project_name(self, data: dict[str, Any], path: Path, given: str | None) -> str:
        if given is not None:
            if not _PROJECT_RE.match(given):
                self.report.error((), f"invalid project name {given!r}: it must match "
                                      "[a-z0-9][a-z0-9_-]*", line=0)
            return given
        if isinstance(data.get("name"), str):
            if not _PROJECT_RE.match(data["name"]):
                self.report.error(("name",), f"invalid project name {data['name']!r}: it "
                                             "must match [a-z0-9][a-z0-9_-]*")
            return data["name"]
        name = re.sub(r"[^a-z0-9_-]", "", path.absolute().parent.name.lower()).lstrip("_-")
        if not name:
            self.report.error((), "no project name: the folder's name has no usable "
                                  "character; give one with -p or a top-level name:", line=0)
        return name

    # -- top-level networks and volumes --

    def _only(self, path: KeyPath, raw: dict[str, Any], allowed: Iterable[str]) -> None:
        for key in raw:
            if key not in allowed and not key.startswith("x-"):
                self.report.unsupported((*path, key))

    def _network_def(self, name: str, raw: dict[str, Any] | None) -> None:
        path = ("networks", name)
        if not _RESOURCE_RE.match(name):
            raise InvalidParameter(f"invalid network name {name!r}: only [a-zA-Z0-9._-]")
        raw = raw or {}
        if raw.get("external") not in (None, False, "false"):
            self.report.error((*path, "external"), "external networks are not supported; "
                              "corral creates the project's networks itself")
        self._only(path, raw, ("driver", "ipam", "external"))
        net = NetworkDef(name)
        if raw.get("driver", "bridge") != "bridge":
            self.report.error((*path, "driver"), f"driver {raw['driver']!r} is not "
                                                  "supported (only bridge)")
        ipam = raw.get("ipam") or {}
        self._only((*path, "ipam"), ipam, ("config",))
        configs = ipam.get("config") or []
        if len(configs) > 1:
            self.report.error((*path, "ipam", "config"), "only one subnet is supported")
        if configs:
            cpath = (*path, "ipam", "config", 0)
            self._only(cpath, configs[0], ("subnet", "gateway"))
            with self.report.catch((*cpath, "subnet")):
                if "subnet" in configs[0]:
                    subnet = ipaddress.ip_network(configs[0]["subnet"], strict=True)
                    if subnet.version != 4:
                        raise InvalidParameter("only IPv4 subnets are supported")
                    net.subnet = str(subnet)
            with self.report.catch((*cpath, "gateway")):
                if "gateway" in configs[0]:
                    gateway = ipaddress.ip_address(configs[0]["gateway"])
                    if net.subnet is None or gateway not in ipaddress.ip_network(net.subnet):
                        raise InvalidParameter(f"{gateway} is not inside the subnet")
                    net.gateway = str(gateway)
        self.networks[name] = net

    def _secret_def(self, name: str, raw: dict[str, Any]) -> None:
        """File-based secrets only: the others need a secret store corral does not have."""
        path = ("secrets", name)
        if not _RESOURCE_RE.match(name):
            raise InvalidParameter(f"invalid secret name {name!r}: only [a-zA-Z0-9._-]")
        self._only(path, raw, ("file",))
        if "file" not in raw:
            if not self.report.broken(path):
                raise InvalidParameter("'file' is required (corral supports file secrets)")
            return
        host = self._host_path(str(raw["file"]))
        if not os.path.exists(host):
            self.report.error((*path, "file"), f"no such file: {host}")
            return
        self.secrets[name] = host

    def _volume_def(self, name: str, raw: dict[str, Any] | None) -> None:
        path = ("volumes", name)
        check_volume_name(name)
        raw = raw or {}
        if raw.get("external") not in (None, False, "false"):
            self.report.error((*path, "external"), "external volumes are not supported")
        self._only(path, raw, ("driver", "external"))
        if raw.get("driver", "local") != "local":
            self.report.error((*path, "driver"), f"driver {raw['driver']!r} is not "
                                                  "supported (only local)")
        self.volumes[name] = VolumeDef(name)

    # -- services --

    def _service(self, name: str, raw: dict[str, Any]) -> Service:
        r = self.report
        svc = Service(name)
        schema_keys = _validator().schema["definitions"]["service"]["properties"]
        for key, value in raw.items():
            path = ("services", name, key)
            if key.startswith("x-") or key in ("environment", "env_file"):
                continue
            if key not in SERVICE_KEYS:
                if key == "build" and "image" not in raw:
                    r.unsupported(path, ": corral does not build images; give an 'image'")
                elif key in schema_keys:
                    r.unsupported(path)
                continue
            if r.broken(path):
                continue
            with r.catch(path):
                if key in _FIELDS:
                    setattr(svc, key, _FIELDS[key](value))
                elif key in _ITEMS:
                    self._items(svc, key, value, path)
                else:
                    getattr(self, f"_s_{key}")(svc, value, path)
        env_path = ("services", name, "environment")
        if not r.broken(env_path) and not r.broken(("services", name, "env_file")):
            with r.catch(env_path):
                svc.environment = self._environment(raw, name)
        if "network_mode" in raw and "networks" in raw:
            r.error(("services", name, "network_mode"),
                    "network_mode and networks cannot be used together")
        if "image" not in raw and "build" not in raw:
            r.error(("services", name), "'image' is required (corral does not build images)")
        svc.image_at = r._where(("services", name, "image"), None, None)
        for key, v in svc.sysctls.items():  # once the modes are known, whatever the order
            with r.catch(self.sysctl_sites.get((name, key), ("services", name, "sysctls"))):
                check_sysctls({key: v}, self._peer_mode(svc.network_mode or "bridge"),
                              self._peer_mode(svc.ipc or "private"))
        if not svc.networks and svc.network_mode is None and "networks" not in raw:
            svc.networks = {DEFAULT_NETWORK: ServiceNetwork()}
        return svc

    def _items(self, svc: Service, key: str, value: Any, path: KeyPath) -> None:
        # A string or a list of strings; each item is checked on its own line.
        parse = _ITEMS[key]
        items = [value] if isinstance(value, str) else value
        for i, item in enumerate(items):
            with self.report.catch(path if isinstance(value, str) else (*path, i)):
                getattr(svc, key).append(parse(item))

    def _s_security_opt(self, svc: Service, value: list[Any], path: KeyPath) -> None:
        from ..start import seccomp

        for i, item in enumerate(value):
            with self.report.catch((*path, i)):
                key, _sep, arg = str(item).partition("=")
                if key == "seccomp" and arg not in ("", seccomp.UNCONFINED) and not (
                        arg.lstrip().startswith("{")):
                    item = f"seccomp={self._host_path(arg)}"  # relative to the file, as binds
                seccomp.parse_security_opt([str(item)])  # a bad profile is named at load
                svc.security_opt.append(str(item))

    def _s_links(self, svc: Service, value: list[str], path: KeyPath) -> None:
        for i, item in enumerate(value):
            with self.report.catch((*path, i)):
                target, alias = cfg.parse_link(item)
                svc.links.append(f"{target}:{alias}")
                self._implicit_dependency(svc, target, (*path, i))

    @staticmethod
    def _peer_mode(mode: str) -> str:
        return "container:" + mode.split(":", 1)[1] if mode.startswith("service:") else mode

    def _s_sysctls(self, svc: Service, value: Any, path: KeyPath) -> None:
        if isinstance(value, list):  # each item on its own line
            for i, item in enumerate(value):
                with self.report.catch((*path, i)):
                    key, sep, v = str(item).partition("=")
                    if not sep:
                        raise InvalidParameter(f"{item!r} has no value: use NAME=VALUE")
                    svc.sysctls[key.strip()] = v.strip()
                    self.sysctl_sites[(svc.name, key.strip())] = (*path, i)
            return
        for key, v in value.items():
            if v is None:
                self.report.error((*path, key), f"sysctl {key!r} has no value")
            else:
                svc.sysctls[key] = ("1" if v else "0") if isinstance(v, bool) else str(v)
                self.sysctl_sites[(svc.name, key)] = (*path, key)

    def _s_secrets(self, svc: Service, value: list[Any], path: KeyPath) -> None:
        for i, item in enumerate(value):
            ipath = (*path, i)
            spec = {"source": item} if isinstance(item, str) else item
            self._only(ipath, spec, ("source", "target"))
            with self.report.catch(ipath):
                source = spec.get("source")
                if source not in self.secrets:
                    raise InvalidParameter(f"secret {source!r} is not declared in the "
                                           "top-level secrets")
                target = str(spec.get("target") or source)
                if not target.startswith("/"):
                    target = f"{SECRETS_DIR}/{target}"
                cfg.check_target(target, str(item))
                svc.secrets.append(SecretMount(source, os.path.normpath(target)))

    def _s_network_mode(self, svc: Service, value: str, path: KeyPath) -> None:
        kind, _, target = value.partition(":")
        if value not in ("bridge", "host", "none") and not (
                kind in ("service", "container") and target):
            raise InvalidParameter(f"invalid network mode {value!r} (bridge, host, none, "
                                   "service:NAME or container:NAME)")
        svc.network_mode = value
        if kind == "service":
            self._implicit_dependency(svc, target, path)

    def _s_ipc(self, svc: Service, value: str, path: KeyPath) -> None:
        kind, _, target = value.partition(":")
        if value not in cfg.IPC_MODES and not (kind in ("service", "container") and target):
            raise InvalidParameter(f"invalid IPC mode {value!r} ({', '.join(cfg.IPC_MODES)}, "
                                   "service:NAME or container:NAME)")
        svc.ipc = value
        if kind == "service":
            self._implicit_dependency(svc, target, path)

    def _implicit_dependency(self, svc: Service, target: str, path: KeyPath) -> None:
        # As Compose: a link, or sharing another service's namespace, orders the start too.
        svc.depends_on.setdefault(target, "service_started")
        self.dep_sites.setdefault((svc.name, target), path)

    def _s_logging(self, svc: Service, value: dict[str, Any], path: KeyPath) -> None:
        self._only(path, value, ("driver", "options"))
        with self.report.catch((*path, "driver")):
            logopts.check_driver(value.get("driver"))
        with self.report.catch((*path, "options")):
            svc.log_opts = logopts.check(value.get("options") or {})

    def _s_depends_on(self, svc: Service, value: Any, path: KeyPath) -> None:
        if isinstance(value, list):
            for i, dep in enumerate(value):
                svc.depends_on[dep] = "service_started"
                self.dep_sites[(svc.name, dep)] = (*path, i)
            return
        for dep, spec in value.items():
            self._only((*path, dep), spec, ("condition",))
            svc.depends_on[dep] = spec["condition"]
            self.dep_sites[(svc.name, dep)] = (*path, dep)

    def _s_healthcheck(self, svc: Service, value: dict[str, Any], path: KeyPath) -> None:
        r = self.report
        self._only(path, value, ("test", "interval", "timeout", "retries", "start_period",
                                 "disable"))
        test = value.get("test")
        if _bool(value.get("disable", False)):
            if test not in (None, ["NONE"]):
                raise InvalidParameter("test and disable cannot be used together")
            svc.healthcheck = Healthcheck(["NONE"])
            return
        if test is None:
            raise InvalidParameter("'test' is required (corral images carry no health check)")
        if isinstance(test, str):
            test = ["CMD-SHELL", test]
        if not test or test[0] not in ("CMD", "CMD-SHELL", "NONE") or (
                test[0] == "NONE" and len(test) != 1) or (
                test[0] == "CMD" and len(test) < 2) or (
                test[0] == "CMD-SHELL" and len(test) != 2):
            r.error((*path, "test"), f"invalid test {test!r}: use a string, [\"CMD\", "
                    "program, args...], [\"CMD-SHELL\", command] or [\"NONE\"]")
        hc = Healthcheck(list(test))
        for key in ("interval", "timeout", "start_period"):
            if key in value:
                with r.catch((*path, key)):
                    seconds = parse_duration(value[key])
                    if seconds <= 0 and key != "start_period":
                        raise InvalidParameter(f"{value[key]!r} must be more than 0")
                    setattr(hc, key, seconds)
        if "retries" in value:
            with r.catch((*path, "retries")):
                hc.retries = _int(value["retries"], minimum=1)
        if not r.broken(path):
            if not hc.disabled:
                cfg.parse_healthcheck(hc.to_engine())  # the engine's own check, once more
            svc.healthcheck = hc

    def _s_volumes(self, svc: Service, value: list[Any], path: KeyPath) -> None:
        for i, item in enumerate(value):
            with self.report.catch((*path, i)):
                mount = (self._volume_short(item) if isinstance(item, str)
                         else self._volume_long(item, (*path, i)))
                if mount is None:
                    continue
                if mount.type == "volume" and mount.source and mount.source not in self.volumes:
                    raise InvalidParameter(f"volume {mount.source!r} is not declared in the "
                                           "top-level volumes")
                svc.volumes.append(mount)

    def _host_path(self, source: str) -> str:
        if source == "~" or source.startswith("~/"):
            return os.path.normpath(self.home + source[1:])
        if source.startswith("~"):
            raise InvalidParameter(f"{source!r}: only '~' (your own home) is expanded, not "
                                   "another user's")
        return os.path.normpath(self.folder / source)

    def _volume_short(self, spec: str) -> VolumeMount:
        parts = spec.split(":")
        if len(parts) == 1:  # an anonymous volume, made for the container at create
            cfg.check_target(spec, spec)
            return VolumeMount("volume", "", os.path.normpath(spec))
        if len(parts) > 3:
            raise InvalidParameter(f"invalid volume specification: {spec!r}")
        source, target, mode = parts[0], parts[1], (parts[2] if len(parts) == 3 else "rw")
        if mode not in ("ro", "rw"):
            raise InvalidParameter(f"mode {mode!r} is not supported in {spec!r} (ro or rw)")
        if source.startswith(("/", ".", "~")):
            bind = cfg.Bind.parse(f"{self._host_path(source)}:{target}:{mode}")
            return VolumeMount("bind", bind.source, bind.target, bind.readonly)
        check_volume_name(source)
        cfg.check_target(target, spec)
        return VolumeMount("volume", source, target, mode == "ro")

    def _volume_long(self, raw: dict[str, Any], path: KeyPath) -> VolumeMount | None:
        kind = raw["type"]
        if kind not in ("bind", "volume", "tmpfs"):
            self.report.error((*path, "type"), f"mount type {kind!r} is not supported (bind, "
                                               "volume or tmpfs)")
            return None
        self._only(path, raw, ("type", "source", "target", "read_only", "tmpfs"))
        if kind != "tmpfs" and "tmpfs" in raw:
            self.report.error((*path, "tmpfs"), f"tmpfs options on a {kind} mount")
        if isinstance(raw.get("tmpfs"), dict):
            self._only((*path, "tmpfs"), raw["tmpfs"], ("size",))
        if "target" not in raw:
            raise InvalidParameter("'target' is required")
        target = raw["target"]
        read_only = _bool(raw.get("read_only", False))
        source = raw.get("source")
        if kind == "tmpfs":
            if source:
                raise InvalidParameter("a tmpfs mount has no source")
            size = str((raw.get("tmpfs") or {}).get("size", ""))
            if size and not _TMPFS_SIZE.match(size):
                raise InvalidParameter(f"invalid tmpfs size {size!r}")
            options = f"size={size}" if size else ""
            cfg.parse_tmpfs(f"{target}:{options}" if options else target)
            return VolumeMount("tmpfs", "", target, read_only, options)
        if not source and kind == "volume":
            cfg.check_target(target, str(raw))
            return VolumeMount("volume", "", os.path.normpath(target), read_only)
        if not source:
            raise InvalidParameter("'source' is required for a bind mount")
        if kind == "bind":
            host = self._host_path(source)
            cfg.Bind.parse(f"{host}:{target}")
            return VolumeMount("bind", host, target, read_only)
        check_volume_name(source)
        cfg.check_target(target, str(raw))
        return VolumeMount("volume", source, target, read_only)

    def _s_ports(self, svc: Service, value: list[Any], path: KeyPath) -> None:
        for i, item in enumerate(value):
            with self.report.catch((*path, i)):
                spec = self._port_spec(item, (*path, i))
                if spec is not None:
                    mapping = parse_publish(spec)
                    svc.ports.append(_publish_text(mapping))
                    self.port_sites.append(((*path, i), mapping))

    def _port_spec(self, item: Any, path: KeyPath) -> str | None:
        if isinstance(item, (int, float)):
            return str(_int(item))
        if isinstance(item, str):
            return item.strip()
        self._only(path, item, ("target", "published", "host_ip", "protocol"))
        if self.report.broken(path):
            return None
        if "target" not in item:
            raise InvalidParameter("'target' is required")
        spec = str(item["target"])
        if "published" in item or "host_ip" in item:
            host_ip = item.get("host_ip", "")
            spec = f"{item.get('published', '')}:{spec}"
            if host_ip:
                spec = (f"[{host_ip}]:" if ":" in host_ip else f"{host_ip}:") + spec
        return f"{spec}/{item['protocol']}" if "protocol" in item else spec

    def _s_networks(self, svc: Service, value: Any, path: KeyPath) -> None:
        items = {n: None for n in value} if isinstance(value, list) else value
        for i, (net, spec) in enumerate(items.items()):
            npath = (*path, i) if isinstance(value, list) else (*path, net)
            with self.report.catch(npath):
                if net not in self.networks and net != DEFAULT_NETWORK:
                    raise InvalidParameter(f"network {net!r} is not declared in the top-level "
                                           "networks")
                attachment = ServiceNetwork()
                if spec:
                    self._only(npath, spec, ("ipv4_address", "aliases"))
                    if "ipv4_address" in spec:
                        attachment.ipv4_address = self._static_ip(
                            svc, net, spec["ipv4_address"], (*npath, "ipv4_address"))
                    for j, alias in enumerate(spec.get("aliases") or []):
                        with self.report.catch((*npath, "aliases", j)):
                            attachment.aliases.append(cfg.check_alias(alias))
                svc.networks[net] = attachment

    def _static_ip(self, svc: Service, net: str, value: str, path: KeyPath) -> str:
        try:
            ip = ipaddress.IPv4Address(value)
        except ValueError:
            raise InvalidParameter(f"invalid IPv4 address {value!r}") from None
        subnet = self.networks[net].subnet if net in self.networks else None
        if subnet is None:
            raise InvalidParameter(f"a static address needs a subnet in networks.{net}.ipam")
        if ip not in ipaddress.ip_network(subnet):
            raise InvalidParameter(f"{ip} is not inside the subnet {subnet} of {net!r}")
        other = self.ip_sites.setdefault((net, str(ip)), path)
        if other != path:
            raise InvalidParameter(f"{ip} is already given to {_path_text(other)} (line "
                                   f"{self.report.line(other)})")
        return str(ip)

    def _environment(self, raw: dict[str, Any], name: str) -> dict[str, str]:
        """``env_file`` files in order, then ``environment`` over them; a bare key takes its
        value from the caller's environment and is dropped when that has none."""
        env: dict[str, str] = {}
        files = raw.get("env_file")
        files = [] if files is None else [files] if isinstance(files, str) else files
        for i, item in enumerate(files):
            ipath = ("services", name, "env_file") if isinstance(raw["env_file"], str) \
                else ("services", name, "env_file", i)
            spec = {"path": item} if isinstance(item, str) else item
            self._only(ipath, spec, ("path", "required"))
            with self.report.catch(ipath):
                env.update(self._env_file(spec, ipath))
        values = _text_map(raw.get("environment") or {}, "environment variable")
        for key, value in values.items():
            if value is None:
                value = self.variables.get(key)
            if value is not None:
                cfg.parse_env([f"{key}={value}"])
                env[key] = value
        return env

    def _env_file(self, spec: dict[str, Any], path: KeyPath) -> dict[str, str]:
        file = self.folder / spec["path"]
        try:
            text = read_text(file, "env file")
        except YamlError as exc:
            if "no such" in exc.message and not _bool(spec.get("required", True)):
                return {}
            raise InvalidParameter(f"{spec['path']}: {exc.message} ({file})") from None
        try:
            lines = parse_env_file(text)
        except EnvFileError as exc:
            self.report.error((), f"{exc.message} (read for {_path_text(path)}, "
                              f"{self.report.file}:{self.report.line(path)})",
                              line=exc.line, file=str(file))
            self.report.failed.add(path)
            return {}
        out = {}
        for e in lines:
            value = e.value if e.value is not None else self.variables.get(e.key)
            if value is not None:
                out[e.key] = value
        return out

    # -- the project as a whole --

    def _check_project(self) -> None:
        r = self.report
        graph: dict[str, list[str]] = {}
        for name, svc in self.services.items():
            graph[name] = []
            for dep, condition in svc.depends_on.items():
                site = self.dep_sites.get((name, dep), ("services", name, "depends_on"))
                if dep not in self.services:
                    if dep not in self.declared:  # else its own errors are reported already
                        r.error(site, f"service {dep!r} is not defined")
                    continue
                graph[name].append(dep)
                hc = self.services[dep].healthcheck
                if condition == "service_healthy" and (hc is None or hc.disabled):
                    r.error(site, f"condition service_healthy needs a healthcheck on "
                                  f"services.{dep}")
            if svc.ports and svc.network_mode not in (None, "bridge"):
                r.error(("services", name, "ports"), f"published ports need a bridge "
                        f"network, not network_mode {svc.network_mode!r}")
        for cycle in _cycles(graph):
            r.error(("services", cycle[0], "depends_on"),
                    "dependency cycle: " + " -> ".join(f"services.{n}" for n in cycle))
        self._check_ports()
        seen: dict[str, str] = {}
        for name, svc in self.services.items():
            if svc.container_name:
                if svc.container_name in seen:
                    r.error(("services", name, "container_name"),
                            f"{svc.container_name!r} is also services.{seen[svc.container_name]}"
                            "'s container name")
                seen.setdefault(svc.container_name, name)
        if any(DEFAULT_NETWORK in s.networks for s in self.services.values()):
            self.networks.setdefault(DEFAULT_NETWORK, NetworkDef(DEFAULT_NETWORK))

    def _check_ports(self) -> None:
        published: list[tuple[KeyPath, PortMapping]] = []
        for path, m in self.port_sites:
            if not m.host_port:
                continue
            for other_path, o in published:
                if o.host_port == m.host_port and o.proto == m.proto and (
                        o.host_ip is None or m.host_ip is None or o.host_ip == m.host_ip):
                    self.report.error(path, f"host port {m.host_port}/{m.proto} is already "
                                      f"published by {_path_text(other_path)} (line "
                                      f"{self.report.line(other_path)})")
                    break
            else:
                published.append((path, m))


def _publish_text(m: PortMapping) -> str:
    spec = f"{m.container_port}/{m.proto}"
    if m.host_ip is not None:
        host = f"[{m.host_ip}]" if ":" in m.host_ip else m.host_ip
        return f"{host}:{m.host_port or ''}:{spec}"
    return f"{m.host_port}:{spec}" if m.host_port else spec


def _cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Each dependency cycle once, as a path that returns to its start (depth first, in the
    file's order; iterative, so a long chain of services cannot exhaust the stack)."""
    state: dict[str, int] = {}   # 1 on the current path, 2 done
    found: list[list[str]] = []
    seen: set[frozenset[str]] = set()
    for start in graph:
        if start in state:
            continue
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(graph[start]))]
        state[start] = 1
        while stack:
            node, deps = stack[-1]
            dep = next(deps, None)
            if dep is None:
                state[node] = 2
                stack.pop()
            elif state.get(dep) == 1:
                names = [n for n, _ in stack]
                cycle = names[names.index(dep):] + [dep]
                if frozenset(cycle) not in seen:
                    seen.add(frozenset(cycle))
                    found.append(cycle)
            elif dep not in state:
                state[dep] = 1
                stack.append((dep, iter(graph[dep])))
    return found
