"""The network verbs: create, ls, rm, inspect, connect, disconnect.
"""

from __future__ import annotations

import argparse

from .common import _each, _engine
from .container import _labels
from .output import _out, _table


def cmd_network_create(args: argparse.Namespace) -> int:
    eng = _engine(args)
    _out(eng.network_create(args.name, subnet=args.subnet, gateway=args.gateway,
                            labels=_labels(args.label)).id)
    return 0


def cmd_network_ls(args: argparse.Namespace) -> int:
    nets = _engine(args).network_list()
    if args.quiet:
        for net in nets:
            _out(net.id[:12])
        return 0
    _table(["NETWORK ID", "NAME", "DRIVER", "SUBNET", "BRIDGE"],
           [[n.id[:12], n.name, n.driver, n.subnet, n.bridge] for n in nets])
    return 0


def cmd_network_rm(args: argparse.Namespace) -> int:
    eng = _engine(args)
    return _each(args.networks, eng.network_remove)


def cmd_network_inspect(args: argparse.Namespace) -> int:
    import json

    eng = _engine(args)
    _out(json.dumps([eng.network_inspect(n) for n in args.networks], indent=4))
    return 0


def cmd_network_connect(args: argparse.Namespace) -> int:
    _engine(args).network_connect(args.network, args.container, ip=args.ip or "",
                                  aliases=args.alias)
    return 0


def cmd_network_disconnect(args: argparse.Namespace) -> int:
    _engine(args).network_disconnect(args.network, args.container)
    return 0
