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
import fcntl
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import programs
from ..errors import InvalidParameter
from .nftports import _PublishedPorts
from .nftrules import (
    _TABLE_RE,
    BASE_RULES,
    BASE_TAG,
    DEFAULT_LOCK,
    FAMILY,
    NET_TAG,
    TABLE_COMMENT,
    TABLE_PREFIX,
    _check_ifname,
    _check_subnet,
    _masquerade_rules,
    _outbound_bridge,
)
from .ports import (
    FirewallFailure,
)

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


class Firewall(_PublishedPorts):
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









