"""The ``corral`` command line: Docker's verbs and flags over ``engine.Engine``.

Every command opens its own ``Engine(root, watch=False, reconcile="touched")``: the CLI is a
short-lived process, and containers outlive it because conmon watches them and runs an exit
command when they exit (``engine.exited``, which hands over to ``corral container-exited ID``
when the exit is not handled yet); a command reconciles only the containers it touches.
Errors the engine raises on purpose (``CorralError``) are printed as one line on stderr, never
as a traceback; the exit statuses follow Docker's (125 when ``run`` or ``create`` fails before
the container runs, the container's own code otherwise).

Startup time matters (``corral run --rm busybox true`` is benchmarked), so modules that only
some commands need are imported inside those commands.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from ..errors import CorralError
from .common import (
    EXIT_ENGINE_ERROR,
    EXIT_INTERRUPTED,
    _engine,
    _Usage,
)
from .output import _error


def _verb(module: str, name: str) -> Callable[..., Any]:
    """``name`` of the verb group ``module``, imported when first called: a command loads
    only its own group (start-up time is benchmarked). A parser that is skipped (not the
    command being run) is given no options, and loads nothing."""

    def call(*args: Any, **kwargs: Any) -> Any:
        if args and isinstance(args[0], _Skipped):
            return args[0]
        return getattr(importlib.import_module(f"{__package__}.{module}"), name)(*args,
                                                                                **kwargs)

    call.__name__ = call.__qualname__ = name
    return call


_add_container_options = _verb("container", "_add_container_options")
_labels = _verb("container", "_labels")
cmd_create = _verb("container", "cmd_create")
cmd_exec = _verb("container", "cmd_exec")
cmd_inspect = _verb("container", "cmd_inspect")
cmd_kill = _verb("container", "cmd_kill")
cmd_logs = _verb("container", "cmd_logs")
cmd_pause = _verb("container", "cmd_pause")
cmd_port = _verb("container", "cmd_port")
cmd_ps = _verb("container", "cmd_ps")
cmd_restart = _verb("container", "cmd_restart")
cmd_rm = _verb("container", "cmd_rm")
cmd_run = _verb("container", "cmd_run")
cmd_start = _verb("container", "cmd_start")
cmd_stop = _verb("container", "cmd_stop")
cmd_unpause = _verb("container", "cmd_unpause")
cmd_wait = _verb("container", "cmd_wait")
cmd_image_busybox = _verb("image", "cmd_image_busybox")
cmd_image_import = _verb("image", "cmd_image_import")
cmd_image_inspect = _verb("image", "cmd_image_inspect")
cmd_image_ls = _verb("image", "cmd_image_ls")
cmd_image_rm = _verb("image", "cmd_image_rm")
cmd_network_connect = _verb("network", "cmd_network_connect")
cmd_network_create = _verb("network", "cmd_network_create")
cmd_network_disconnect = _verb("network", "cmd_network_disconnect")
cmd_network_inspect = _verb("network", "cmd_network_inspect")
cmd_network_ls = _verb("network", "cmd_network_ls")
cmd_network_rm = _verb("network", "cmd_network_rm")
cmd_volume_create = _verb("volume", "cmd_volume_create")
cmd_volume_inspect = _verb("volume", "cmd_volume_inspect")
cmd_volume_ls = _verb("volume", "cmd_volume_ls")
cmd_volume_rm = _verb("volume", "cmd_volume_rm")
cmd_container_exited = _verb("system", "cmd_container_exited")
cmd_events = _verb("system", "cmd_events")
cmd_health_monitor = _verb("system", "cmd_health_monitor")
cmd_graph = _verb("graph", "cmd_graph")
cmd_history = _verb("graph", "cmd_history")


LOG_LEVELS = {"trace": "TRACE", "debug": "DEBUG", "info": "INFO", "warning": "WARNING",
              "warn": "WARNING", "error": "ERROR", "critical": "CRITICAL", "fatal": "CRITICAL"}


# -- parser ---------------------------------------------------------------------------------


class _Skipped:
    """Stands in for the parser of a command that is not the one being run: every call on it
    does nothing and returns it (building all ~40 subcommands took 6 ms of every command)."""

    def __getattr__(self, name: str) -> Callable[..., _Skipped]:
        return lambda *args, **kwargs: self


GLOBAL_OPTIONS_WITH_VALUE = ("--root", "--log-level")


def _command_of(argv: Sequence[str]) -> str | None:
    """The command word of ``argv`` (after the global options), or None (``--help``...)."""
    it = iter(argv)
    for word in it:
        if word in GLOBAL_OPTIONS_WITH_VALUE:
            next(it, None)
        elif word.startswith(tuple(f"{o}=" for o in GLOBAL_OPTIONS_WITH_VALUE)):
            continue
        else:
            return None if word.startswith("-") else word
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``only``, just that top-level command (when it names
    one; otherwise the whole, so that errors list the commands)."""
    built: list[str] = []
    parser = _build_parser(only, built)
    return parser if only is None or built else _build_parser(None, built)


def _build_parser(only: str | None, built: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="corral", description="A container engine in which every container is a finite "
        "state machine.")
    parser.add_argument("--root", default=None,
                        help="state directory (default: $CORRAL_ROOT or /var/lib/corral)")
    parser.add_argument("--log-level", default="warning", type=str.lower,
                        choices=sorted(LOG_LEVELS), metavar="LEVEL",
                        help="debug, info, warning (default), error or critical")
    sub = parser.add_subparsers(dest="command_name", metavar="COMMAND", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], int], help_: str | None,
            *, aliases: Sequence[str] = (), sp: Any = sub, **kw: Any) -> argparse.ArgumentParser:
        if sp is sub:
            if only is not None and only != name and only not in aliases:
                return _Skipped()  # type: ignore[return-value]
            built.append(name)
        extra = {"help": help_} if help_ is not None else {}  # no help: hidden from the list
        p = sp.add_parser(name, aliases=list(aliases), description=help_, **extra, **kw)
        p.set_defaults(func=func)
        return p

    p = add("create", cmd_create, "create a container", add_help=False)
    _add_container_options(p)
    p.set_defaults(error_status=EXIT_ENGINE_ERROR)

    p = add("run", cmd_run, "create and start a container", add_help=False)
    p.add_argument("-d", "--detach", action="store_true", help="print the id and return")
    _add_container_options(p)
    p.set_defaults(error_status=EXIT_ENGINE_ERROR)

    p = add("start", cmd_start, "start containers")
    p.add_argument("-a", "--attach", action="store_true", help="follow the output until exit")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")

    for name, func, help_ in (("stop", cmd_stop, "stop containers (signal, wait, SIGKILL)"),
                              ("restart", cmd_restart, "restart containers")):
        p = add(name, func, help_)
        p.add_argument("-t", "--time", type=float, default=None,
                       help="seconds to wait before killing")
        p.add_argument("containers", nargs="+", metavar="CONTAINER")

    p = add("kill", cmd_kill, "send a signal to containers")
    p.add_argument("-s", "--signal", default="KILL")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")

    for name, func, help_ in (("pause", cmd_pause, "freeze containers"),
                              ("unpause", cmd_unpause, "thaw containers")):
        p = add(name, func, help_)
        p.add_argument("containers", nargs="+", metavar="CONTAINER")

    p = add("rm", cmd_rm, "remove containers")
    p.add_argument("-f", "--force", action="store_true", help="stop running ones first")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")

    p = add("wait", cmd_wait, "wait for containers to exit; print their exit codes")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")

    p = add("ps", cmd_ps, "list containers", aliases=("ls",))
    p.add_argument("-a", "--all", action="store_true", help="include stopped containers")
    p.add_argument("-q", "--quiet", action="store_true", help="only ids")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("-l", "--latest", action="store_true", help="the last created (any state)")
    p.add_argument("-n", "--last", type=int, default=None, help="the N last created")
    p.add_argument("-s", "--size", action="store_true", help="the writable layer's size")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="id, name, label, status, exited, ancestor, network, volume, health, "
                   "before, since")
    p.add_argument("--format", help="table, or a Go template ({{.ID}}, {{json .}}, ...)")

    p = add("port", cmd_port, "list a container's published ports")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("private_port", nargs="?", metavar="PRIVATE_PORT[/PROTO]")

    p = add("logs", cmd_logs, "print a container's output")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("-n", "--tail", default=None, help="lines from the end, or all")
    p.add_argument("--since", help="timestamp (RFC 3339, unix seconds) or duration (10m)")
    p.add_argument("--until", help="timestamp (RFC 3339, unix seconds) or duration (10m)")
    p.add_argument("-t", "--timestamps", action="store_true")
    p.add_argument("container")

    p = add("inspect", cmd_inspect, "print containers or images as JSON")
    p.add_argument("--type", choices=("container", "image"), default=None)
    p.add_argument("-f", "--format", help="a Go template ({{.State.Status}}, {{json .}})")
    p.add_argument("objects", nargs="+", metavar="NAME|ID")

    p = add("events", cmd_events, "print events (follows until --until or interrupted)")
    p.add_argument("--since")
    p.add_argument("--until")
    p.add_argument("--no-follow", action="store_true", help="print past events and return")
    p.add_argument("--follow", action="store_true", help="the default")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="container, event, type, label, network, image, volume, name, "
                   "since, until")
    p.add_argument("--format", help="json, or a Go template ({{.Action}}, {{json .}})")

    p = add("exec", cmd_exec, "run a command in a running container", add_help=False)
    p.add_argument("--help", action="help", help="show this help message and exit")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--env-file", action="append", default=[], metavar="FILE")
    p.add_argument("-w", "--workdir")
    p.add_argument("-u", "--user")
    p.add_argument("container")
    p.add_argument("command", nargs=argparse.REMAINDER)

    p = add("image", lambda a: 0, "manage images")
    isub = p.add_subparsers(dest="image_command", metavar="COMMAND", required=True)
    ip = add("import", cmd_image_import, "import a root filesystem (directory or tar, - for "
             "stdin); print its id", sp=isub)
    ip.add_argument("source", metavar="SRC")
    ip.add_argument("name", nargs="?", metavar="NAME")
    ip.add_argument("--max-size", metavar="SIZE",
                    help="most bytes of file data the image may hold, holes not counted "
                         "(default 4g)")
    ip = add("ls", cmd_image_ls, "list images", sp=isub, aliases=("list",))
    ip.add_argument("-q", "--quiet", action="store_true")
    ip.add_argument("--no-trunc", action="store_true")
    ip = add("rm", cmd_image_rm, "remove images", sp=isub, aliases=("remove",))
    ip.add_argument("images", nargs="+", metavar="IMAGE")
    ip = add("inspect", cmd_image_inspect, "print images as JSON", sp=isub)
    ip.add_argument("-f", "--format", help="a Go template ({{.Id}}, {{json .}})")
    ip.add_argument("images", nargs="+", metavar="IMAGE")
    ip = add("busybox", cmd_image_busybox, "build an image from the host's static busybox",
             sp=isub)
    ip.add_argument("name", nargs="?", default="busybox", metavar="NAME")

    p = add("network", lambda a: 0, "manage networks")
    nsub = p.add_subparsers(dest="network_command", metavar="COMMAND", required=True)
    np_ = add("create", cmd_network_create, "create a bridge network; print its id", sp=nsub)
    np_.add_argument("--subnet", help="CIDR, e.g. 10.90.0.0/24 (default: a free one)")
    np_.add_argument("--gateway")
    np_.add_argument("-l", "--label", action="append", default=[], metavar="KEY=VALUE")
    np_.add_argument("name", metavar="NAME")
    np_ = add("ls", cmd_network_ls, "list networks", sp=nsub, aliases=("list",))
    np_.add_argument("-q", "--quiet", action="store_true")
    np_ = add("rm", cmd_network_rm, "remove networks", sp=nsub, aliases=("remove",))
    np_.add_argument("networks", nargs="+", metavar="NETWORK")
    np_ = add("inspect", cmd_network_inspect, "print networks as JSON", sp=nsub)
    np_.add_argument("networks", nargs="+", metavar="NETWORK")
    np_ = add("connect", cmd_network_connect, "join a container to one more network", sp=nsub)
    np_.add_argument("--ip", help="a static address on that network")
    np_.add_argument("--alias", action="append", default=[], metavar="ALIAS")
    np_.add_argument("network", metavar="NETWORK")
    np_.add_argument("container", metavar="CONTAINER")
    np_ = add("disconnect", cmd_network_disconnect, "take a container off a network it "
              "joined beyond its first", sp=nsub)
    np_.add_argument("network", metavar="NETWORK")
    np_.add_argument("container", metavar="CONTAINER")

    p = add("volume", lambda a: 0, "manage named volumes")
    vsub = p.add_subparsers(dest="volume_command", metavar="COMMAND", required=True)
    vp = add("create", cmd_volume_create, "create a volume; print its name", sp=vsub)
    vp.add_argument("-l", "--label", action="append", default=[], metavar="KEY=VALUE")
    vp.add_argument("name", metavar="NAME")
    vp = add("ls", cmd_volume_ls, "list volumes", sp=vsub, aliases=("list",))
    vp.add_argument("-q", "--quiet", action="store_true")
    vp = add("rm", cmd_volume_rm, "remove volumes", sp=vsub, aliases=("remove",))
    vp.add_argument("volumes", nargs="+", metavar="VOLUME")
    vp = add("inspect", cmd_volume_inspect, "print volumes as JSON", sp=vsub)
    vp.add_argument("volumes", nargs="+", metavar="VOLUME")

    p = add("images", cmd_image_ls, "list images (image ls)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")

    from . import compose as cli_compose

    cli_compose.register(add, sub, _engine)
    from . import system as cli_system

    cli_system.register(add, sub, _engine)

    p = add("graph", cmd_graph, "draw the lifecycle machine, a container's history, or a "
            "deployment (Mermaid on stdout unless -o or --format says otherwise)")
    p.add_argument("container", nargs="?", metavar="CONTAINER",
                   help="draw this container's history over the machine")
    # engine.graphs.model.FORMATS, spelt out: the parser is built before any command runs
    p.add_argument("--format", choices=("mermaid", "dot", "svg", "png"), default=None,
                   help="mermaid (default), dot, svg or png (default: from -o's suffix)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE (- for stdout)")
    p.add_argument("--deployment", action="store_true",
                   help="draw the services of a deployment file and their states")
    p.add_argument("-f", "--file", metavar="FILE", help="the deployment file")
    p.add_argument("-p", "--project-name", metavar="NAME", help="the deployment's name")

    p = add("history", cmd_history, "print a container's transitions")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("container", metavar="CONTAINER")

    p = add("container-exited", cmd_container_exited, None)
    p.add_argument("id")
    p = add("health-monitor", cmd_health_monitor, None)
    p.add_argument("id")
    return parser


def _setup_logging(level: str) -> None:
    """Records of ``level`` and above to stderr; loguru is imported at the first of them."""
    from .. import log

    def configure() -> None:
        from loguru import logger

        logger.remove()
        logger.add(sys.stderr, level=LOG_LEVELS[level],
                   format="{time:HH:mm:ss.SSS} {level} {name}: {message}")
        for name in log.SILENCED:
            logger.enable(name)

    log.on_first_record(LOG_LEVELS[level], configure)


def main(argv: list[str] | None = None) -> int:
    """Run one ``corral`` command; return its exit status."""
    parser = build_parser(_command_of(sys.argv[1:] if argv is None else argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else 2
    _setup_logging(args.log_level)
    try:
        status = args.func(args)
        sys.stdout.flush()
        return status
    except CorralError as exc:
        _error(exc)
        return getattr(args, "error_status", 1)
    except _Usage as exc:
        _error(exc)
        return 2
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (``corral logs x | head``): quiet, as other tools
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as exc:
        if args.log_level in ("debug", "trace"):
            import traceback

            traceback.print_exc()
        _error(f"unexpected {type(exc).__name__}: {exc}")
        return 1


def run() -> NoReturn:
    """The ``corral`` command: ``main``, then leave with ``os._exit``. The interpreter's
    teardown frees every module and object one by one, about 25 ms a finished command does
    not need; the library keeps no buffered file open, and ``main`` has flushed its output."""
    status = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):
        status = status or 1
    os._exit(status)
