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

import ipaddress
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import InvalidParameter
from ..host.ports import PortMapping
from ..store import config as cfg
from ..store.sysctl import check_sysctls
from ..volumes.store import check_volume_name
from .keys import (
    _FIELDS,
    _ITEMS,
    _PROJECT_RE,
    _RESOURCE_RE,
    DEFAULT_NETWORK,
    SERVICE_KEYS,
    TOP_LEVEL_KEYS,
)
from .model import (  # the model is part of this module's API
    NetworkDef,
    Project,
    SecretMount,
    Service,
    ServiceNetwork,
    VolumeDef,
)
from .schema import (
    _interpolate_tree,
    _kind,
    _path_text,
    _read_dotenv,
    _Report,
    _schema_messages,
    _validator,
)
from .services import _ServiceKeys
from .yamlfile import KeyPath, YamlError
from .yamlfile import load as load_yaml

SECRETS_DIR = "/run/secrets"


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


# --- the corral subset ------------------------------------------------------------------------


class _Normalizer(_ServiceKeys):
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
