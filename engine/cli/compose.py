"""The deployment commands of the CLI: ``up``, ``down`` and ``compose <verb>``.

A deployment is a Compose-subset file (``-f``, else compose.yaml / docker-compose.yaml /
corral.yaml in the current folder) and a project name (``-p``, else the file's ``name:``, else
its folder's name).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InvalidParameter

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml",
                 "corral.yaml")
COLORS = ("36", "33", "32", "35", "34", "31")


def find_file(given: str | None) -> Path:
    if given:
        return Path(given)
    for name in DEFAULT_FILES:
        if Path(name).is_file():
            return Path(name)
    raise InvalidParameter(f"no deployment file: give -f FILE or add one of "
                           f"{', '.join(DEFAULT_FILES)} here")


def _deployment(args: argparse.Namespace, engine_factory: Callable[..., Any]) -> Any:
    from ..compose.deploy import Deployment
    from ..compose.project import load_project

    # -f and -p may stand before the verb (``compose -f F ps``) or after it
    file = getattr(args, "file", None) or getattr(args, "group_file", None)
    name = getattr(args, "project_name", None) or getattr(args, "group_project", None)
    project = load_project(find_file(file), project_name=name)
    for warning in project.warnings:
        print(f"WARN: {warning}", file=sys.stderr)
    return Deployment(engine_factory(args), project, progress=_progress)


def _progress(line: str) -> None:
    print(f" ✔ {line}", file=sys.stderr, flush=True)


def _prefix(service: str, width: int, index: int) -> str:
    label = f"{service:<{width}} | "
    if sys.stdout.isatty():
        return f"\033[{COLORS[index % len(COLORS)]}m{label}\033[0m"
    return label


def _stream_logs(dep: Any, services: list[str] | None, follow: bool,
                 stop: Callable[[], bool] | None = None) -> None:
    names = list(dep.project.services)
    width = max((len(n) for n in names), default=0)
    for service, rec in dep.logs(services or None, follow=follow, stop=stop):
        out = sys.stdout if rec.stream == "stdout" else sys.stderr
        out.write(_prefix(service, width, names.index(service)) + rec.text)
        out.flush()


def cmd_up(args: argparse.Namespace, engine_factory: Callable[..., Any]) -> int:
    dep = _deployment(args, engine_factory)
    dep.up(args.services or None)
    if args.detach:
        return 0

    def all_stopped() -> bool:
        rows = dep.ps()
        return bool(rows) and all(r["State"] != "running" for r in rows) and not any(
            dep.engine.inspect(r["Id"])["State"]["Restarting"] for r in rows)

    try:
        _stream_logs(dep, args.services, follow=True, stop=all_stopped)
    except KeyboardInterrupt:
        print("Gracefully stopping... (press Ctrl+C again to force)", file=sys.stderr)
        dep.stop(args.services or None)
        return 130
    return 0


def cmd_down(args: argparse.Namespace, engine_factory: Callable[..., Any]) -> int:
    _deployment(args, engine_factory).down(volumes=args.volumes, timeout=args.timeout)
    return 0


def cmd_ps(args: argparse.Namespace, engine_factory: Callable[..., Any]) -> int:
    from .output import _table, container_status

    rows = _deployment(args, engine_factory).ps()
    if args.quiet:
        for r in rows:
            print(r["Id"])
        return 0
    now = time.time()
    table = []
    for r in rows:
        status = container_status({"State": r["State"], "StartedAt": r["StartedAt"],
                                   "FinishedAt": r["FinishedAt"], "ExitCode": r["ExitCode"],
                                   "Health": r["Health"]}, now)
        ports = ", ".join(f"{b[0]['HostIp']}:{b[0]['HostPort']}->{p}"
                          for p, b in (r["Ports"] or {}).items())
        table.append([r["Name"], r["Service"], status, ports])
    _table(["NAME", "SERVICE", "STATUS", "PORTS"], table)
    return 0


def cmd_logs(args: argparse.Namespace, engine_factory: Callable[..., Any]) -> int:
    dep = _deployment(args, engine_factory)
    try:
        _stream_logs(dep, args.services, follow=args.follow)
    except KeyboardInterrupt:
        return 130
    return 0


def cmd_start(args: argparse.Namespace, engine_factory: Callable[..., Any]) -> int:
    _deployment(args, engine_factory).start(args.services or None)
    return 0


def cmd_stop(args: argparse.Namespace, engine_factory: Callable[..., Any]) -> int:
    _deployment(args, engine_factory).stop(args.services or None, args.timeout)
    return 0


def cmd_restart(args: argparse.Namespace, engine_factory: Callable[..., Any]) -> int:
    _deployment(args, engine_factory).restart(args.services or None, args.timeout)
    return 0


def _common(p: argparse.ArgumentParser, short_file: bool = True) -> None:
    flags = ("-f", "--file") if short_file else ("--file",)  # logs -f means --follow
    p.add_argument(*flags, help="deployment file (default: compose.yaml here)")
    p.add_argument("-p", "--project-name", help="project name (default: the folder's)")


def register(add: Callable[..., argparse.ArgumentParser], sub: Any,
             engine_factory: Callable[..., Any]) -> None:
    """Add ``up``, ``down`` and ``compose`` to the CLI's parser."""

    def bind(func: Callable[..., int]) -> Callable[[argparse.Namespace], int]:
        return lambda args: func(args, engine_factory)

    def up_parser(p: argparse.ArgumentParser) -> None:
        _common(p)
        p.add_argument("-d", "--detach", action="store_true",
                       help="return once the services are up")
        p.add_argument("services", nargs="*", metavar="SERVICE")

    def down_parser(p: argparse.ArgumentParser) -> None:
        _common(p)
        p.add_argument("-v", "--volumes", action="store_true",
                       help="also remove the named volumes")
        p.add_argument("-t", "--timeout", type=float, default=None)

    up_parser(add("up", bind(cmd_up), "create and start a deployment's services"))
    down_parser(add("down", bind(cmd_down), "stop and remove a deployment"))

    p = add("compose", lambda a: 0, "manage a deployment (a Compose-subset file)")
    p.add_argument("-f", "--file", dest="group_file", help="deployment file")
    p.add_argument("-p", "--project-name", dest="group_project", help="project name")
    csub = p.add_subparsers(dest="compose_command", metavar="COMMAND", required=True)
    up_parser(add("up", bind(cmd_up), "create and start services", sp=csub))
    down_parser(add("down", bind(cmd_down), "stop and remove everything", sp=csub))
    cp = add("ps", bind(cmd_ps), "list the deployment's containers", sp=csub)
    _common(cp)
    cp.add_argument("-q", "--quiet", action="store_true")
    cp = add("logs", bind(cmd_logs), "show the services' output, prefixed", sp=csub)
    _common(cp, short_file=False)
    cp.add_argument("-f", "--follow", action="store_true", dest="follow")
    cp.add_argument("services", nargs="*", metavar="SERVICE")
    for verb, func, text in (("start", cmd_start, "start services"),
                             ("stop", cmd_stop, "stop services"),
                             ("restart", cmd_restart, "restart services")):
        cp = add(verb, bind(func), text, sp=csub)
        _common(cp)
        if verb != "start":
            cp.add_argument("-t", "--timeout", type=float, default=None)
        cp.add_argument("services", nargs="*", metavar="SERVICE")
