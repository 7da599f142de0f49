"""The volume verbs: create, ls, rm, inspect.
"""

from __future__ import annotations

import argparse

from .common import _each, _engine
from .container import _labels
from .output import _out, _table


def cmd_volume_create(args: argparse.Namespace) -> int:
    _out(_engine(args).volume_create(args.name, labels=_labels(args.label)).name)
    return 0


def cmd_volume_ls(args: argparse.Namespace) -> int:
    vols = _engine(args).volume_list()
    if args.quiet:
        for vol in vols:
            _out(vol.name)
        return 0
    _table(["DRIVER", "VOLUME NAME"], [[v.driver, v.name] for v in vols])
    return 0


def cmd_volume_rm(args: argparse.Namespace) -> int:
    return _each(args.volumes, _engine(args).volume_remove)


def cmd_volume_inspect(args: argparse.Namespace) -> int:
    import json

    eng = _engine(args)
    _out(json.dumps([eng.volume_inspect(v) for v in args.volumes], indent=4))
    return 0
