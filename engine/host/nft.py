"""Published ports and masquerade with nftables: the only module that runs ``nft``.

Each engine root owns one ``inet`` table (``corral_<tag>``), so two roots never touch each
other's rules and dropping the table removes everything the engine installed. Every change is
one ``nft -f -`` transaction, which the kernel applies all or nothing.

    table inet corral_<tag>
    ├── set bridges        the engine's bridges (forward accept, loopback masquerade)
    ├── prerouting  (nat, dstnat)   fib daddr type local jump published
    ├── output      (nat, -100)     fib daddr type local jump published
    ├── published   one DNAT rule per mapping, comment "ctr <container id>"
    ├── postrouting (nat, srcnat)   masquerade 127/8 DNATed to a bridge; jump outbound
    ├── outbound    per subnet: masquerade leaving its bridge, and hairpin; comment "net <subnet>"
    └── forward     (filter)        established, from the bridges, DNAT to the bridges

Locally originated traffic to ``127.0.0.1:<port>`` reaches a container only with
``route_localnet`` on its bridge (the kernel otherwise drops a loopback source leaving a real
interface) and the 127/8 masquerade (the container could not answer a loopback address):
``enable_forwarding`` sets the sysctls and ``restore_sysctls`` puts them back. For a container
to reach its own published port through a host address, its bridge port also needs hairpin mode
(as Docker sets it); that is the network module's part, not a firewall rule.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import json
import os
import re
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import programs
from ..errors import Conflict, InvalidParameter, SystemFailure

TABLE_PREFIX = "corral_"
FAMILY = "inet"
PROTOCOLS = ("tcp", "udp")
# Host-wide, like iptables' /run/xtables.lock: host ports are shared by every engine root, so
# the check "is this port free" and the rule that takes it must not interleave between roots.
DEFAULT_LOCK = Path("/run/lock/corral-firewall.lock")
CTR_TAG = "ctr "
NET_TAG = "net "
BASE_TAG = "corral base 1"  # bump when BASE_RULES change, so ensure_base rebuilds them
TABLE_COMMENT = "managed by corral; rules are added and removed by the engine"

BASE_RULES: dict[str, list[str]] = {
    # only packets for this host: a container's own traffic elsewhere on the same port passes
    "prerouting": ["fib daddr type local jump published"],
    "output": ["fib daddr type local jump published"],
    "postrouting": [
        # a container cannot answer a loopback source: hide it behind the bridge address
        "oifname @bridges ct status dnat ip saddr 127.0.0.0/8 masquerade",
        "jump outbound",
    ],
    "forward": [
        "ct state established,related accept",
        "iifname @bridges accept",
        "oifname @bridges ct status dnat accept",
    ],
}

_TABLE_RE = re.compile(r"corral_[A-Za-z0-9_]{1,48}")
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_IFNAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,15}")
_RANDOM_PORT_TRIES = 20


class FirewallFailure(SystemFailure):
    """nft failed; the message is nft's own."""


@dataclass(frozen=True)
class PortMapping:
    """One ``-p`` value. ``host_port`` 0 asks for a free port chosen when it is added;
    ``host_ip`` None means every host address."""

    container_port: int
    proto: str = "tcp"
    host_ip: str | None = None
    host_port: int = 0


# --- parsing ----------------------------------------------------------------------------------

def _port(text: str, spec: str, what: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise InvalidParameter(
            f'invalid port specification: "{spec}": {what} must be a number from 1 to 65535')
    return int(text)


def parse_publish(spec: str) -> PortMapping:
    """Docker's ``-p [hostip:][hostport:]containerport[/tcp|udp]``; an IPv6 host address goes in
    brackets (``[::1]:8080:80``). No host port (``80``, ``127.0.0.1::80``) means a free one."""
    body, slash, proto = spec.partition("/")
    proto = proto.lower() if slash else "tcp"
    if proto not in PROTOCOLS:
        raise InvalidParameter(
            f'invalid port specification: "{spec}": protocol must be tcp or udp')
    host_ip: str | None = None
    if body.startswith("["):
        address, bracket, rest = body[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise InvalidParameter(f'invalid port specification: "{spec}"')
        host_ip, body = address, rest[1:]
        parts = body.split(":")
        if len(parts) != 2:
            raise InvalidParameter(f'invalid port specification: "{spec}"')
        host_port_text, container_text = parts
    else:
        parts = body.split(":")
        if len(parts) == 1:
            host_port_text, container_text = "", parts[0]
        elif len(parts) == 2:
            host_port_text, container_text = parts
        elif len(parts) == 3:
            host_ip, host_port_text, container_text = parts
        else:
            raise InvalidParameter(f'invalid port specification: "{spec}"')
    if host_ip is not None:
        try:
            host_ip = str(ipaddress.ip_address(host_ip))
        except ValueError:
            raise InvalidParameter(
                f'invalid port specification: "{spec}": invalid IP address {host_ip!r}') from None
        if ipaddress.ip_address(host_ip).is_unspecified:
            host_ip = None  # 0.0.0.0 is Docker's spelling of "every address"
    if "-" in host_port_text or "-" in container_text:
        raise InvalidParameter(
            f'invalid port specification: "{spec}": port ranges are not supported')
    container_port = _port(container_text, spec, "container port")
    # no host port, or 0 (Docker's spelling too): a free one
    host_port = (_port(host_port_text, spec, "host port")
                 if host_port_text and host_port_text != "0" else 0)
    return PortMapping(container_port=container_port, proto=proto, host_ip=host_ip,
                       host_port=host_port)


def table_name(tag: str) -> str:
    """The table of the engine root whose short hash is ``tag``."""
    name = TABLE_PREFIX + tag
    if not _TABLE_RE.fullmatch(name):
        raise InvalidParameter(f"invalid firewall table tag: {tag!r}")
    return name


# --- values that go into an nft script are validated first: they are spliced into its text ---

def _check_id(container_id: str) -> str:
    if not _ID_RE.fullmatch(container_id):
        raise InvalidParameter(f"invalid container id for a port rule: {container_id!r}")
    return container_id


def _check_ifname(name: str) -> str:
    if not _IFNAME_RE.fullmatch(name) or name in (".", ".."):
        raise InvalidParameter(f"invalid bridge name: {name!r}")
    return name


def _check_subnet(subnet: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(subnet, strict=False)
    except ValueError:
        raise InvalidParameter(f"invalid subnet: {subnet!r}") from None


def _check_ip(address: str, what: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        raise InvalidParameter(f"invalid {what}: {address!r}") from None


def _show(host_ip: str | None, port: int) -> str:
    address = host_ip or "0.0.0.0"
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _allocated(host_ip: str | None, port: int) -> Conflict:
    return Conflict(f"Bind for {_show(host_ip, port)} failed: port is already allocated")


# --- host sockets -----------------------------------------------------------------------------

def _probe_socket(proto: str, host_ip: str | None, port: int, v6: bool) -> socket.socket:
    family = socket.AF_INET6 if v6 else socket.AF_INET
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(family, kind)
    try:
        if v6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if proto == "tcp":
            # Linux still refuses the bind when a socket listens on the port, but lets it pass
            # over TIME_WAIT leftovers of past connections, which are no owner of the port.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host_ip or ("::" if v6 else "0.0.0.0"), port))
    except BaseException:
        sock.close()
        raise
    return sock


def _host_port_free(proto: str, host_ip: str | None, port: int, v6: bool) -> bool:
    try:
        _probe_socket(proto, host_ip, port, v6).close()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return False
        if exc.errno == errno.EADDRNOTAVAIL:
            raise InvalidParameter(
                f"cannot publish on {host_ip}: not an address of this host") from exc
        raise FirewallFailure(f"checking host port {_show(host_ip, port)}: {exc}") from exc
    return True


def _free_host_port(proto: str, host_ip: str | None, v6: bool) -> int:
    """A port from the kernel's ephemeral range that nothing on the host holds, as Docker picks
    one for ``-p 80``."""
    try:
        sock = _probe_socket(proto, host_ip, 0, v6)
    except OSError as exc:
        raise FirewallFailure(f"choosing a host port: {exc}") from exc
    with sock:
        return int(sock.getsockname()[1])


# --- sysctls ----------------------------------------------------------------------------------

def _sysctl_file(key: str) -> Path:
    # an interface name may hold dots, which stay dots in its /proc/sys folder
    prefix, suffix = "net.ipv4.conf.", ".route_localnet"
    if key.startswith(prefix) and key.endswith(suffix):
        return Path("/proc/sys/net/ipv4/conf") / key[len(prefix):-len(suffix)] / suffix[1:]
    return Path("/proc/sys") / key.replace(".", "/")


def enable_forwarding(bridge: str) -> dict[str, str]:
    """Turn on IPv4 forwarding and ``route_localnet`` on ``bridge``; return the previous values
    for ``restore_sysctls``. A value already set is not rewritten: writing ``ip_forward`` resets
    every interface's ``accept_redirects``."""
    _check_ifname(bridge)
    previous: dict[str, str] = {}
    for key in ("net.ipv4.ip_forward", f"net.ipv4.conf.{bridge}.route_localnet"):
        path = _sysctl_file(key)
        try:
            old = path.read_text().strip()
            if old != "1":
                path.write_text("1\n")
        except OSError as exc:
            raise FirewallFailure(f"setting {key}: {exc}") from exc
        previous[key] = old
    return previous


def restore_sysctls(previous: dict[str, str]) -> None:
    """Put back what ``enable_forwarding`` changed. A bridge deleted since took its own
    settings with it, so its missing entry is no error."""
    for key, value in previous.items():
        path = _sysctl_file(key)
        try:
            if path.read_text().strip() != value:
                path.write_text(f"{value}\n")
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise FirewallFailure(f"restoring {key}: {exc}") from exc


# --- nft --------------------------------------------------------------------------------------

def _nft_message(stderr: str) -> str:
    """nft's error without its caret lines, with the command it refused."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and set(ln.strip()) != {"^"}]
    errors = [ln.split("Error:", 1)[1].strip() for ln in lines if "Error:" in ln]
    if not errors:
        return " ".join(lines) or "failed without a message"
    commands = [ln for ln in lines if "Error:" not in ln]
    message = "; ".join(dict.fromkeys(errors))
    return f"{message} (in: {commands[0]})" if commands else message


def _mapping(rule: dict[str, Any]) -> dict[str, Any] | None:
    """A published port read back from one of the rules ``_port_rule`` writes."""
    comment = rule.get("comment", "")
    if not comment.startswith(CTR_TAG):
        return None
    found: dict[str, Any] = {"container_id": comment[len(CTR_TAG):], "host_ip": None}
    for expr in rule.get("expr", []):
        match = expr.get("match")
        if match and "payload" in match.get("left", {}):
            payload = match["left"]["payload"]
            if payload.get("field") == "daddr":
                found["host_ip"] = str(match["right"])
            elif payload.get("field") == "dport":
                found["proto"] = payload.get("protocol")
                found["host_port"] = int(match["right"])
        elif "dnat" in expr:
            found["container_ip"] = str(expr["dnat"].get("addr"))
            found["container_port"] = int(expr["dnat"].get("port", 0))
    if not {"proto", "host_port", "container_ip"} <= found.keys():
        return None  # not a rule of ours after all
    found["handle"] = rule.get("handle")
    return found


def _overlaps(a_ip: str | None, a_v6: bool, b_ip: str | None, b_v6: bool) -> bool:
    if a_v6 != b_v6:
        return False
    return a_ip is None or b_ip is None or a_ip == b_ip


class Firewall:
    """The nftables table of one engine root. Methods are safe to call from several processes:
    each change holds a host-wide lock and is one transaction."""

    def __init__(self, table: str, *, lock_path: Path = DEFAULT_LOCK,
                 nft: str | None = None, memo: Path | None = None) -> None:
        """``memo``: a folder (on tmpfs, so a reboot empties it) where ``ensure_base`` notes
        each bridge whose base and masquerade it has made, and then skips them: listing the
        table costs an ``nft`` process, about 8 ms of every start."""
        if not _TABLE_RE.fullmatch(table):
            raise InvalidParameter(
                f"invalid firewall table name {table!r}: expected {TABLE_PREFIX}<tag>")
        self.table = table
        self.lock_path = lock_path
        self.memo = memo
        self.nft = nft or programs.find("nft")
        self._ref = f"{FAMILY} {table}"

    # -- plumbing --

    def _run(self, args: list[str], script: str | None = None) -> str:
        try:
            proc = subprocess.run([self.nft or "nft", *args], input=script,
                                  capture_output=True, text=True, timeout=30, check=False)
        except (FileNotFoundError, PermissionError) as exc:
            try:
                programs.require("nft", self.nft)
            except programs.ProgramMissing as missing:
                raise FirewallFailure(str(missing)) from exc
            raise FirewallFailure(f"nft {' '.join(args)}: {exc}") from exc
        except (OSError, subprocess.SubprocessError) as exc:
            raise FirewallFailure(f"nft {' '.join(args)}: {exc}") from exc
        if proc.returncode != 0:
            raise FirewallFailure(f"nft: {_nft_message(proc.stderr)}")
        return proc.stdout

    def _cannot_run(self) -> bool:
        """No nft to run: then no rule of ours can be there either (none could be added), and
        what removes rules has nothing to do, so that a start refused for the missing nft is
        undone, and its container removed, without it."""
        return self.nft is None or not os.access(self.nft, os.X_OK)

    def _apply(self, commands: list[str]) -> None:
        if commands:
            self._run(["-f", "-"], "\n".join(commands) + "\n")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _objects(self, listing: str) -> list[dict[str, Any]]:
        try:
            return list(json.loads(listing).get("nftables", []))
        except ValueError as exc:
            raise FirewallFailure(f"nft printed no valid JSON: {exc}") from exc

    def _listing(self) -> list[dict[str, Any]] | None:
        """The table's objects, or None when it does not exist."""
        try:
            return self._objects(self._run(["-j", "list", "table", FAMILY, self.table]))
        except FirewallFailure:
            if not self.exists():
                return None
            raise

    def _rules(self, chain: str, objects: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        return [o["rule"] for o in objects or [] if "rule" in o
                and o["rule"].get("table") == self.table and o["rule"].get("chain") == chain]

    def exists(self) -> bool:
        listing = self._objects(self._run(["-j", "list", "tables", FAMILY]))
        return any(o.get("table", {}).get("name") == self.table for o in listing)

    # -- base --

    def ensure_base(self, subnets: list[str], bridges: list[str]) -> None:
        """Create the table, its chains and static rules, and masquerade ``subnets[i]`` leaving
        by anything but ``bridges[i]``. Idempotent: static rules are rebuilt in place (flush and
        add in the same transaction), published ports and other subnets are kept."""
        if len(subnets) != len(bridges):
            raise InvalidParameter("ensure_base needs one bridge per subnet")
        pairs = [(_check_subnet(s), _check_ifname(b)) for s, b in zip(subnets, bridges,
                                                                         strict=True)]
        if all(self._memo_holds(net, bridge) for net, bridge in pairs):
            return
        with self._locked():
            objects = self._listing()
            cmds = [] if self._base_intact(objects) else self._base_commands()
            cmds += self._masquerade_commands(pairs, objects)
            self._apply(cmds)
            for net, bridge in pairs:
                self._memo_write(net, bridge)

    # -- memo of ensure_base --

    def _memo_path(self, bridge: str) -> Path | None:
        return None if self.memo is None else self.memo / f"{self.table}.{bridge}"

    def _memo_holds(self, network: Any, bridge: str) -> bool:
        path = self._memo_path(bridge)
        try:
            return path is not None and path.read_text() == str(network)
        except OSError:
            return False

    def _memo_write(self, network: Any, bridge: str) -> None:
        path = self._memo_path(bridge)
        if path is None:
            return
        from ..store.files import atomic_write_bytes

        with contextlib.suppress(OSError):  # a memo that cannot be kept only costs time
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, str(network).encode())

    def forget(self) -> None:
        """Drop the memo: the next ``ensure_base`` of each bridge looks at the table again
        (an engine starting, a ruleset flushed by hand)."""
        if self.memo is None:
            return
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.memo):
                if self.table in entry.name:  # with what an interrupted write left
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)

    def _base_commands(self) -> list[str]:
        t = self._ref
        cmds = [
            f'add table {t} {{ comment "{TABLE_COMMENT}"; }}',
            f"add chain {t} prerouting {{ type nat hook prerouting priority dstnat; "
            "policy accept; }",
            f"add chain {t} output {{ type nat hook output priority -100; policy accept; }}",
            f"add chain {t} postrouting {{ type nat hook postrouting priority srcnat; "
            "policy accept; }",
            f"add chain {t} forward {{ type filter hook forward priority filter; "
            "policy accept; }",
            f"add chain {t} published",
            f"add chain {t} outbound",
            f"add set {t} bridges {{ type ifname; }}",
        ]
        # rebuilt rather than patched, so a half-made or older table comes out right
        cmds += [f"flush chain {t} {chain}" for chain in BASE_RULES]
        cmds += [f'add rule {t} {chain} {rule} comment "{BASE_TAG}"'
                 for chain, rules in BASE_RULES.items() for rule in rules]
        return cmds

    def _base_intact(self, objects: list[dict[str, Any]] | None) -> bool:
        """Whether the static part is already as ``_base_commands`` makes it. Checked so that a
        second ``ensure_base`` changes nothing: a flush deletes rules, and every deletion makes
        nft wait out a kernel RCU grace period (about 10 ms here)."""
        for chain, rules in BASE_RULES.items():
            found = self._rules(chain, objects)
            if len(found) != len(rules) or any(r.get("comment") != BASE_TAG for r in found):
                return False
        return True

    def _masquerade_commands(self, pairs: list[tuple[Any, str]],
                             objects: list[dict[str, Any]] | None) -> list[str]:
        t = self._ref
        existing: dict[str, list[dict[str, Any]]] = {}
        for rule in self._rules("outbound", objects):
            if rule.get("comment", "").startswith(NET_TAG):
                existing.setdefault(rule["comment"][len(NET_TAG):], []).append(rule)
        cmds = []
        for network, bridge in pairs:
            wanted = _masquerade_rules(network, bridge)
            rules = existing.get(str(network), [])
            if len(rules) == len(wanted) and all(_outbound_bridge(r) == bridge for r in rules):
                continue
            cmds += [f"delete rule {t} outbound handle {r['handle']}" for r in rules]
            cmds += [f"add rule {t} outbound {r}" for r in wanted]
        bridges = ", ".join(f'"{b}"' for b in sorted({b for _, b in pairs}))
        if bridges:
            cmds.append(f"add element {t} bridges {{ {bridges} }}")
        return cmds

    def add_masquerade(self, subnet: str, bridge: str) -> None:
        """Masquerade one more network (a ``network create``); the table must exist."""
        pair = (_check_subnet(subnet), _check_ifname(bridge))
        with self._locked():
            objects = self._listing()
            if objects is None:
                raise FirewallFailure(f"table {self._ref} is not set up (ensure_base first)")
            self._apply(self._masquerade_commands([pair], objects))

    def remove_masquerade(self, subnet: str) -> None:
        """Drop a subnet's masquerade rule, and its bridge from the set once no other subnet
        uses it. Idempotent."""
        network = str(_check_subnet(subnet))
        t = self._ref
        self.forget()
        if self._cannot_run():
            return
        with self._locked():
            objects = self._listing()
            rules = [r for r in self._rules("outbound", objects)
                     if r.get("comment", "").startswith(NET_TAG)]
            gone = [r for r in rules if r["comment"][len(NET_TAG):] == network]
            if not gone:
                return
            cmds = [f"delete rule {t} outbound handle {r['handle']}" for r in gone]
            still_used = {_outbound_bridge(r) for r in rules if r not in gone}
            members = self._bridge_set(objects)
            for bridge in {_outbound_bridge(r) for r in gone} - still_used:
                if bridge in members:
                    cmds.append(f'delete element {t} bridges {{ "{bridge}" }}')
            self._apply(cmds)

    def _bridge_set(self, objects: list[dict[str, Any]] | None) -> set[str]:
        for o in objects or []:
            s = o.get("set")
            if s and s.get("table") == self.table and s.get("name") == "bridges":
                return {str(e) for e in s.get("elem", [])}
        return set()

    def masquerade_subnets(self) -> list[str]:
        found = [r["comment"][len(NET_TAG):] for r in self._rules("outbound", self._listing())
                 if r.get("comment", "").startswith(NET_TAG)]
        return list(dict.fromkeys(found))  # each subnet has two rules

    def bridges(self) -> list[str]:
        return sorted(self._bridge_set(self._listing()))

    def delete(self) -> None:
        """Drop the table and with it every rule of this root. Idempotent."""
        self.forget()
        if self._cannot_run():
            return
        with self._locked():
            # "add" first makes the delete succeed on a missing table, in one transaction
            self._apply([f"add table {self._ref}", f"delete table {self._ref}"])

    # -- ports --

    def add_port(self, container_id: str, proto: str, host_ip: str | None, host_port: int,
                 container_ip: str, container_port: int) -> dict[str, Any]:
        """Publish one port; ``host_port`` 0 picks a free one. Returns the mapping installed."""
        mapping = PortMapping(container_port=container_port, proto=proto, host_ip=host_ip,
                              host_port=host_port)
        return self.add_ports(container_id, container_ip, [mapping])[0]

    def add_ports(self, container_id: str, container_ip: str,
                  mappings: list[PortMapping]) -> list[dict[str, Any]]:
        """Publish all of a container's ports in one transaction: either every one is installed
        or none. Refused with ``Conflict`` ("port is already allocated") when a mapping of any
        engine root, or a socket listening on the host, holds a port."""
        _check_id(container_id)
        target = _check_ip(container_ip, "container address")
        v6 = target.version == 6
        wanted = [self._normalize(m, v6) for m in mappings]
        t = self._ref
        with self._locked():
            taken = self._all_published()
            if self.table not in taken:
                raise FirewallFailure(f"table {self._ref} is not set up (ensure_base first)")
            held = [(p["proto"], p["host_ip"], p["host_port"], ":" in p["container_ip"])
                    for ports in taken.values() for p in ports]
            installed: list[dict[str, Any]] = []
            cmds: list[str] = []
            for m in wanted:
                host_port = m.host_port or self._pick_port(m, v6, held)
                for proto, ip, port, other_v6 in held:
                    if (proto == m.proto and port == host_port
                            and _overlaps(ip, other_v6, m.host_ip, v6)):
                        raise _allocated(m.host_ip, host_port)
                if m.host_port and not _host_port_free(m.proto, m.host_ip, host_port, v6):
                    raise _allocated(m.host_ip, host_port)
                held.append((m.proto, m.host_ip, host_port, v6))
                cmds.append(_port_rule(t, container_id, m.proto, m.host_ip, host_port,
                                       target, m.container_port))
                installed.append({"container_id": container_id, "proto": m.proto,
                                  "host_ip": m.host_ip, "host_port": host_port,
                                  "container_ip": str(target),
                                  "container_port": m.container_port})
            self._apply(cmds)
        return installed

    def _normalize(self, m: PortMapping, v6: bool) -> PortMapping:
        if m.proto not in PROTOCOLS:
            raise InvalidParameter(f"invalid protocol {m.proto!r}: expected tcp or udp")
        if not isinstance(m.container_port, int) or not 1 <= m.container_port <= 65535:
            raise InvalidParameter(f"invalid container port: {m.container_port!r}")
        # 0 is no port but the request for a free one
        if not isinstance(m.host_port, int) or not 0 <= m.host_port <= 65535:
            raise InvalidParameter(f"invalid host port: {m.host_port!r}")
        host_ip = m.host_ip
        if host_ip is not None:
            address = _check_ip(host_ip, "host address")
            if address.is_unspecified:
                host_ip = None
            elif (address.version == 6) != v6:
                raise InvalidParameter(
                    f"cannot publish {_show(host_ip, m.host_port)} to an IPv"
                    f"{6 if v6 else 4} container address: address families differ")
            else:
                host_ip = str(address)
        return PortMapping(m.container_port, m.proto, host_ip, m.host_port)

    def _pick_port(self, m: PortMapping, v6: bool,
                   held: list[tuple[str, str | None, int, bool]]) -> int:
        for _ in range(_RANDOM_PORT_TRIES):
            port = _free_host_port(m.proto, m.host_ip, v6)
            if not any(p == m.proto and n == port and _overlaps(i, h6, m.host_ip, v6)
                       for p, i, n, h6 in held):
                return port
        raise Conflict(f"no free host port for {m.container_port}/{m.proto}")

    def _all_published(self) -> dict[str, list[dict[str, Any]]]:
        """Published ports of every engine root's table (host ports are one host-wide
        resource), keyed by table; this table is present, maybe empty, when it exists."""
        found: dict[str, list[dict[str, Any]]] = {}
        for o in self._objects(self._run(["-j", "list", "ruleset", FAMILY])):
            if "table" in o and o["table"].get("name", "").startswith(TABLE_PREFIX):
                found.setdefault(o["table"]["name"], [])
            rule = o.get("rule")
            if (rule and rule.get("table", "").startswith(TABLE_PREFIX)
                    and rule.get("chain") == "published"):
                mapping = _mapping(rule)
                if mapping is not None:
                    found.setdefault(rule["table"], []).append(mapping)
        return found

    def remove_ports(self, container_id: str) -> int:
        """Remove every rule tagged with ``container_id``; returns how many. Idempotent, and a
        missing table counts as nothing to remove."""
        _check_id(container_id)
        if self._cannot_run():
            return 0
        with self._locked():
            rules = [r for r in self._rules("published", self._listing())
                     if r.get("comment") == f"{CTR_TAG}{container_id}"]
            self._apply([f"delete rule {self._ref} published handle {r['handle']}"
                         for r in rules])
        return len(rules)

    def ports(self) -> list[dict[str, Any]]:
        """The installed mappings: container_id, proto, host_ip (None: every address),
        host_port, container_ip, container_port."""
        out = []
        for rule in self._rules("published", self._listing()):
            mapping = _mapping(rule)
            if mapping is not None:
                mapping.pop("handle", None)
                out.append(mapping)
        return out


def _outbound_bridge(rule: dict[str, Any]) -> str | None:
    for expr in rule.get("expr", []):
        match = expr.get("match")
        if match and match.get("left", {}).get("meta", {}).get("key") == "oifname":
            return str(match["right"])
    return None


def _masquerade_rules(network: ipaddress.IPv4Network | ipaddress.IPv6Network,
                      bridge: str) -> list[str]:
    family = "ip6" if network.version == 6 else "ip"
    comment = f'comment "{NET_TAG}{network}"'
    return [
        f'{family} saddr {network} oifname != "{bridge}" masquerade {comment}',
        # hairpin: a container reaching a published port through a host address is DNATed back
        # onto its own bridge; unmasqueraded, the answer would come straight from the peer (or
        # from itself, a martian) and be dropped. iifname is no help here: postrouting has none.
        f'{family} saddr {network} oifname "{bridge}" ct status dnat masquerade {comment}',
    ]


def _port_rule(table: str, container_id: str, proto: str, host_ip: str | None, host_port: int,
               target: ipaddress.IPv4Address | ipaddress.IPv6Address, container_port: int) -> str:
    family = "ip6" if target.version == 6 else "ip"
    # a wildcard rule still names its family, so an IPv6 packet never meets an IPv4 DNAT
    match = (f"{family} daddr {host_ip}" if host_ip
             else f"meta nfproto {'ipv6' if target.version == 6 else 'ipv4'}")
    to = f"[{target}]:{container_port}" if target.version == 6 else f"{target}:{container_port}"
    return (f"add rule {table} published {match} {proto} dport {host_port} "
            f'dnat {family} to {to} comment "{CTR_TAG}{container_id}"')
