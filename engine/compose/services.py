"""A service's keys normalized one by one into what ``Engine.create`` takes.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any

from ..errors import InvalidParameter
from ..host.ports import parse_publish
from ..store import config as cfg
from ..store import logopts
from ..volumes.store import check_volume_name
from .interpolate import EnvFileError, parse_env_file
from .keys import (
    _ITEMS,
    _TMPFS_SIZE,
    DEFAULT_NETWORK,
    _bool,
    _int,
    _publish_text,
    _text_map,
    parse_duration,
)
from .model import Healthcheck, Service, ServiceNetwork, VolumeMount
from .schema import _path_text
from .yamlfile import KeyPath, YamlError, read_text


class _ServiceKeys:
    """A service's keys normalized one by one into what ``Engine.create`` takes."""

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
