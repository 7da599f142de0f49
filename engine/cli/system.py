"""``corral system reset`` (as Podman's) and ``corral system prune`` (as Docker's)."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable
from typing import Any

from ..errors import CorralError, InvalidParameter
from .common import _container_gone, _engine, _parse_time
from .output import _out

RESET_WARNING = """WARNING! This will remove:
        - all containers
        - all networks, their bridges and leases
        - the firewall table and the run folder of this root
{volumes}Images are kept.
Are you sure you want to continue? [y/N] """

PRUNE_WARNING = """WARNING! This will remove:
  - all stopped containers
  - all networks not used by at least one container

Are you sure you want to continue? [y/N] """


def _confirmed(args: argparse.Namespace, question: str) -> bool:
    """``-f``, or a ``y`` typed at a terminal: a script piping into us must say -f."""
    if args.force:
        return True
    if not sys.stdin.isatty():
        raise InvalidParameter("not confirmed: there is no terminal to ask on; give -f "
                               "(--force) to go on without a question")
    sys.stdout.write(question)
    sys.stdout.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _section(title: str, items: list[str]) -> None:
    if items:
        sys.stdout.write(f"{title}:\n" + "".join(f"{i}\n" for i in items) + "\n")


def cmd_reset(args: argparse.Namespace) -> int:
    from ..core.system import reset
    from ..store.paths import Layout

    layout = Layout.for_root(args.root)
    volumes = "        - all volumes\n" if args.volumes else ""
    if not _confirmed(args, RESET_WARNING.format(volumes=volumes)):
        return 1
    if not layout.root.is_dir():  # a root deleted by hand: its host objects only
        report = reset(layout.root, volumes=args.volumes)
    else:
        from ..core.engine import Engine

        eng = Engine(layout.root, watch=False, reconcile=False, make_layout=False)
        try:
            report = reset(layout.root, volumes=args.volumes, engine=eng)
        finally:
            eng.close()
    _section("Deleted Containers", report.containers)
    host = ([f"process {p}" for p in report.processes] + [f"netns {n}" for n in report.netns]
            + [f"link {n}" for n in report.links] + [f"mount {m}" for m in report.mounts])
    if report.firewall_table:
        host.append(f"firewall table {report.firewall_table}")
    if report.run_folder:
        host.append(f"run folder {report.run_folder}")
    _section("Deleted Host Objects", host)
    _section("Deleted Volumes", report.volumes)
    for error in report.errors:
        sys.stderr.write(f"Error: {error}\n")
    return 1 if report.errors else 0


def cmd_prune(args: argparse.Namespace, engine_factory: Callable[..., Any]) -> int:
    from ..core.system import PruneReport, prune
    from ..store.paths import Layout
    from .output import human_size

    if not _confirmed(args, PRUNE_WARNING):
        return 1
    if Layout.for_root(args.root).root.is_dir():
        eng = engine_factory(args)
        try:
            report = prune(eng)
        finally:
            eng.close()
    else:
        report = PruneReport()  # a root never made holds nothing to prune, and stays unmade
    _section("Deleted Containers", report.containers)
    _section("Deleted Networks", report.networks)
    sys.stdout.write(f"Total reclaimed space: {human_size(report.reclaimed, 4)}\n")
    for error in report.errors:
        sys.stderr.write(f"Error: {error}\n")
    return 1 if report.errors else 0


def register(add: Callable[..., argparse.ArgumentParser], sub: Any,
             engine_factory: Callable[..., Any]) -> None:
    """Add ``system reset`` and ``system prune`` to the CLI's parser."""
    p = add("system", lambda a: 0, "manage the engine root as a whole")
    ssub = p.add_subparsers(dest="system_command", metavar="COMMAND", required=True)
    sp = add("reset", cmd_reset, "stop and remove every container, network and host object "
             "of the root (its bridges, firewall table, run folder), also when its folder was "
             "deleted; images are kept", sp=ssub)
    sp.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    sp.add_argument("--volumes", action="store_true", help="remove the volumes too")
    sp = add("prune", lambda a: cmd_prune(a, engine_factory),
             "remove stopped containers and unused networks", sp=ssub)
    sp.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")


def _event_filter(items: list[str]) -> Callable[[Any], bool]:
    """Docker's ``--filter key=value``: same keys combine with OR, different keys with AND."""
    from .format import event_filter

    return event_filter(items)


def cmd_events(args: argparse.Namespace) -> int:
    from .format import event_lines_format

    line_of = event_lines_format(args.format)
    # since= and until= are taken as filters too, as the flags
    for item in args.filter:
        key, _, value = item.partition("=")
        if key in ("since", "until"):
            setattr(args, key, value)
    wanted = _event_filter([f for f in args.filter
                            if f.partition("=")[0] not in ("since", "until")])
    eng = _engine(args)
    now = time.time()
    since = _parse_time(args.since)
    until = _parse_time(args.until)
    since_ts = since.timestamp() if since else None
    until_ts = until.timestamp() if until else None
    follow = not args.no_follow and (until_ts is None or until_ts > now)
    if follow:
        # as Docker: without --since only what happens from now on
        events = eng.events(since=now if since_ts is None else since_ts, until=until_ts,
                            follow=True,
                            stop=(lambda: time.time() > until_ts) if until_ts else None)
    else:
        events = eng.events(since=since_ts, until=until_ts, follow=False)
    for ev in events:
        if not wanted(ev):
            continue
        _out(line_of(ev))
        sys.stdout.flush()
    return 0


def cmd_container_exited(args: argparse.Namespace) -> int:
    """The exit handling conmon's exit command hands over to (``engine.exited``); silent, and
    0 even if the container is gone."""
    from ..log import logger

    if _container_gone(args):
        return 0
    try:
        # the restart policy holds with no engine alive: this process waits out the
        # backoff and starts the container again
        _engine(args, reconcile=False, make_layout=False).container_exited(
            args.id, follow_restart=True)
    except CorralError as exc:
        logger.debug("container-exited {}: {}", args.id, exc)
    return 0


def cmd_health_monitor(args: argparse.Namespace) -> int:
    """The detached health monitor of one container (spawned by its start)."""
    from ..core.healthcheck import run_monitor

    if _container_gone(args):
        return 0
    with contextlib.suppress(CorralError):
        run_monitor(_engine(args, reconcile=False, make_layout=False), args.id)
    return 0
