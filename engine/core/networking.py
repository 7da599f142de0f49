"""The Engine's networks: a thin facade over the network store, and the hosts entries
and connections of the containers on them.
"""

from __future__ import annotations

import contextlib
from typing import Any

from states import PAUSED, REMOVING, RUNNING, STARTING

from ..errors import Conflict, CorralError, InvalidParameter, NotFound
from ..host import hostfiles
from ..log import logger
from ..networks.store import DEFAULT_NETWORK, Network
from ..start import netsteps
from ..store import config as cfg
from ..store.container import Container
from ..store.files import atomic_write_json


def _address_on(c: Container, network: str) -> str:
    """The container's address on ``network`` while it runs there, else ''."""
    if c.state.network == network:
        return c.state.ip
    return c.state.extra_networks.get(network, "")


class NetworksMixin:
    """Networks: the store's facade, hosts entries, connect and disconnect."""

    def _members(self, network: str) -> list[Container]:
        """Running containers on the user-defined network ``network``."""
        if network in ("", DEFAULT_NETWORK, "host", "none") or network.startswith("container:"):
            return []
        out = []
        for cid in self._ids():
            with contextlib.suppress(CorralError):
                c = self._load(cid)
                if _address_on(c, network) and c.state.status in (RUNNING, PAUSED):
                    out.append(c)
        return out

    def _all_peer_hosts(self, networks: list[str], own: str) -> list[tuple[str, str]]:
        return [e for net in dict.fromkeys(networks) for e in self._peer_hosts(net, own)]

    def _peer_hosts(self, network: str, own: str) -> list[tuple[str, str]]:
        """hosts entries for the other members of ``network``: as Docker's embedded DNS does on
        user-defined networks, containers find each other by name, hostname and alias."""
        entries = []
        for m in self._members(network):
            if m.id != own:
                aliases = m.config.aliases if m.state.network == network else next(
                    (n.get("aliases", []) for n in m.config.extra_networks
                     if n["name"] == network), [])
                names = dict.fromkeys([m.name, *([m.config.hostname] if m.config.hostname
                                                 else []), *aliases, m.id[:12]])
                entries.append((_address_on(m, network), " ".join(names)))
        return entries

    def _sync_network_hosts(self, *networks: str) -> None:
        """Rewrite the hosts file of every member of ``networks`` after one joined or left."""
        members = {m.id: m for net in networks for m in self._members(net)}
        for m in members.values():
            ctx = self._context(m)
            hostname = netsteps.hostname_of(ctx)
            extra = self._all_peer_hosts([m.state.network, *m.state.extra_networks], m.id)
            extra += [(ip, hostname) for ip in m.state.extra_networks.values()]
            for link in m.config.links:
                name, alias = cfg.parse_link(link)
                with contextlib.suppress(CorralError):
                    other = self.get(name)
                    if other.state.ip:
                        extra.append((other.state.ip, f"{alias} {other.name}"))
            text = hostfiles.hosts_content(hostname, m.state.ip, extra)
            try:
                hostfiles.rewrite_in_place(m.paths.hosts, text)
            except OSError as exc:
                logger.warning("cannot update the hosts file of {}: {}", m.name, exc)

    def firewall(self) -> Any:
        """The engine's own nftables table, made on first use."""
        if self._firewall is None:
            from ..host.nft import Firewall
            from ..host.nftrules import table_name

            self._firewall = Firewall(table_name(self.layout.run.name),
                                      memo=self.layout.run / "firewall")
        return self._firewall

    def network_create(self, name: str, *, subnet: str | None = None,
                       gateway: str | None = None,
                       labels: dict[str, str] | None = None) -> Network:
        return self.networks.create(name, subnet, gateway, labels)

    def network_list(self) -> list[Network]:
        nets = self.networks.list()
        if not any(n.name == DEFAULT_NETWORK for n in nets):  # listed, not made
            nets.insert(0, self.networks.default(define=False))
        return nets

    def _network_users(self, net: Network) -> list[str]:
        users = []
        for cid in self._ids():
            with contextlib.suppress(CorralError):
                config = self._load(cid).config
                if net.name in (config.network_mode,
                                *(n["name"] for n in config.extra_networks)):
                    users.append(cid)
        return users

    def network_inspect(self, ref: str) -> dict[str, Any]:
        net = (self.networks.default(define=False) if ref == DEFAULT_NETWORK
               else self.networks.get(ref))
        if not net.created:  # the default network, not made yet: no member
            return net.inspect({})
        return net.inspect({cid: ip for ip, cid in self.networks.leases(net).table().items()})

    def network_connect(self, network: str, container: str, *, ip: str = "",
                        aliases: list[str] | tuple[str, ...] = ()) -> None:
        """Join ``container`` to one more bridge network (Docker's ``network connect``): kept
        in its config, so each later start joins it too; a running container gets its veth,
        lease, address and hosts entries at once."""
        with self._locked(container) as c:
            if c.state.status in (PAUSED, STARTING, REMOVING):
                raise Conflict(f"cannot connect container {c.name} while it is "
                               f"{c.state.status}")
            mode, extras = c.config.network_mode, c.config.extra_networks
            if not netsteps.is_bridge_mode(mode):
                raise InvalidParameter(f"container {c.name} has network mode {mode!r}: it "
                                       "cannot join other networks")
            net = self.networks.get(network)
            joined = {self.networks.get(mode).name, *(n["name"] for n in extras)}
            if net.name in joined:
                raise Conflict(f"endpoint with name {c.name} already exists in network "
                               f"{net.name}")
            (spec,) = self._check_extra_networks(mode, [{"name": net.name, "ip": ip,
                                                         "aliases": list(aliases)}])
            spec["index"] = netsteps.free_index(extras)
            running = c.state.status == RUNNING
            ctx = self._context(c)
            try:
                if running:
                    c.state.extra_networks[net.name] = netsteps.join_further(
                        ctx, spec, spec["index"])
                    from ..host.forwarding import enable_forwarding

                    self.firewall().ensure_base([net.subnet], [net.bridge])
                    enable_forwarding(net.bridge)
                c.config.extra_networks = [*extras, spec]
                atomic_write_json(c.paths.config, c.config.to_dict())
                self._save(c)
            except BaseException:
                c.config.extra_networks = extras
                with contextlib.suppress(OSError, CorralError):
                    atomic_write_json(c.paths.config, c.config.to_dict())
                if running:
                    c.state.extra_networks.pop(net.name, None)
                    netsteps.leave_further(ctx, spec, spec["index"])
                raise
            if running:
                self._sync_network_hosts(net.name)
                self._emit_network("connect", c, net.name)

    def network_disconnect(self, network: str, container: str) -> None:
        """Leave a network joined beyond the first (``network connect`` or ``networks=`` at
        create); the first network is the container's for its whole life."""
        with self._locked(container) as c:
            if c.state.status in (PAUSED, STARTING, REMOVING):
                raise Conflict(f"cannot disconnect container {c.name} while it is "
                               f"{c.state.status}")
            net = self.networks.get(network)
            indexed = {spec["name"]: (i, spec)
                       for i, spec in netsteps.further_networks(c.config.extra_networks)}
            if net.name not in indexed:
                if netsteps.is_bridge_mode(c.config.network_mode) and \
                        self.networks.get(c.config.network_mode).name == net.name:
                    raise Conflict(f"{net.name} is the first network of container {c.name}: "
                                   "it cannot be disconnected")
                raise NotFound(f"container {c.name} is not connected to network {net.name}")
            index, spec = indexed[net.name]
            if c.state.status == RUNNING:
                netsteps.leave_further(self._context(c), spec, index)
                c.state.extra_networks.pop(net.name, None)
            c.config.extra_networks = [s for s in c.config.extra_networks
                                       if s["name"] != net.name]
            atomic_write_json(c.paths.config, c.config.to_dict())
            self._save(c)
            if c.state.status == RUNNING:
                self._sync_network_hosts(net.name, c.state.network,
                                         *c.state.extra_networks)
                self._emit_network("disconnect", c, net.name)

    def network_remove(self, ref: str) -> None:
        """Remove a user-defined network; refused while a container is attached to it."""
        if ref in ("bridge", "host", "none"):
            raise Conflict(f"{ref} is a pre-defined network and cannot be removed")
        net = self.networks.get(ref)
        self.networks.remove(net, self._network_users)
        self.firewall().remove_masquerade(net.subnet)

    def network_prune(self, *, include_default: bool = False) -> list[str]:
        """Remove every network no container uses (with ``include_default``, the default
        bridge too, and the engine's firewall table once no network is left)."""
        removed = []
        for net in self.networks.list():
            if net.name == DEFAULT_NETWORK and not include_default:
                continue
            if self._network_users(net):
                continue
            self.networks.remove(net, self._network_users)
            self.firewall().remove_masquerade(net.subnet)
            removed.append(net.name)
        if include_default and not self.networks.list():
            self.firewall().delete()
        return removed
