"""The container verbs: create, run, start, stop, restart, kill, pause, unpause, rm, wait,
ps, port, logs, inspect, exec.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from ..errors import CorralError, InvalidParameter, NotFound, NotModified, StartFailed
from .common import (
    EXIT_CANNOT_INVOKE,
    EXIT_ENGINE_ERROR,
    EXIT_NOT_FOUND,
    _each,
    _engine,
    _parse_time,
    _quietly,
    _Usage,
)
from .output import _error, _out

if TYPE_CHECKING:
    from ..core.engine import Engine


def _write_record(record: Any, timestamps: bool) -> None:
    from ..logs.reader import format_record

    stream = sys.stderr if record.stream == "stderr" else sys.stdout
    stream.write(format_record(record, timestamps))
    stream.flush()


def _exit_code(eng: Engine, cid: str, since: float) -> int:
    """The container's exit code once it has exited.

    With ``--rm`` the container may be gone before we ask (conmon's exit command removes it);
    its ``die`` event in the journal still has the code.
    """
    try:
        return eng.wait(cid)
    except NotFound:
        pass
    code = None
    for ev in eng.events(since=since, follow=False):
        if ev.id == cid and ev.action == "die":
            code = ev.attributes.get("exitCode")
    if code is None:
        raise NotFound(f"container {cid[:12]} was removed before its exit code could be read")
    return int(code)


def _attach(eng: Engine, cid: str, since: float, *, only_new: bool = False) -> int:
    """Copy the container's output to ours, by stream, until it exits; its exit code.

    ``only_new``: skip what an earlier run of the container wrote (``start -a``).
    """
    log_since = None
    if only_new:
        from datetime import UTC, datetime

        log_since = datetime.fromtimestamp(since, UTC)
    try:
        records = eng.logs(cid, follow=True, since=log_since)
        for record in records:
            _write_record(record, False)
    except NotFound:
        pass  # already exited and removed: the code is still in the journal
    return _exit_code(eng, cid, since)


def _env_items(values: list[str], files: list[str]) -> list[str]:
    """``-e`` and ``--env-file`` entries; a bare ``KEY`` takes the caller's value, as Docker."""
    items: list[str] = []
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError as exc:
            raise InvalidParameter(f"cannot read env file {path}: {exc.strerror}") from exc
        items += [ln for ln in (raw.strip() for raw in lines) if ln and not ln.startswith("#")]
    items += values
    out = []
    for item in items:
        if item and "=" not in item:
            if item in os.environ:
                out.append(f"{item}={os.environ[item]}")
            continue  # unset in the caller: dropped, as Docker does
        out.append(item)  # the engine checks the rest (``=x`` is refused there)
    return out


def _labels(values: list[str]) -> dict[str, str]:
    labels = {}
    for item in values:
        key, _, value = item.partition("=")
        if not key.strip():
            raise InvalidParameter(f"invalid label: {item!r}: the key cannot be empty")
        labels[key] = value
    return labels


def _create_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``Engine.create``; unset options keep the engine's defaults."""
    from ..store.config import parse_key_values

    kw: dict[str, Any] = {
        "env": _env_items(args.env, args.env_file), "volumes": args.volume,
        "tmpfs": args.tmpfs, "links": args.link, "labels": _labels(args.label),
        "publish": args.publish, "dns": args.dns, "expose": args.expose,
        "aliases": args.network_alias,
        "auto_remove": args.rm, "tty": args.tty, "interactive": args.interactive,
        "readonly_rootfs": args.read_only, "security_opt": args.security_opt,
        "cap_add": args.cap_add, "cap_drop": args.cap_drop,
        "sysctls": parse_key_values(args.sysctl, "sysctl"), "networks": args.network[1:],
    }
    optional = {"name": args.name, "working_dir": args.workdir, "hostname": args.hostname,
                "user": args.user, "network": (args.network or [None])[0], "ipc": args.ipc,
                "ip": args.ip, "cgroupns": args.cgroupns,
                "memory": args.memory, "cpus": args.cpus, "cpu_shares": args.cpu_shares,
                "pids_limit": args.pids_limit, "restart": args.restart,
                "stop_signal": args.stop_signal, "stop_timeout": args.stop_timeout,
                "log_driver": args.log_driver}
    kw.update({k: v for k, v in optional.items() if v is not None})
    if args.log_opt:
        from ..store.logopts import parse_cli
        kw["log_opts"] = parse_cli(args.log_opt)
    return kw


def _add_container_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--help", action="help", help="show this help message and exit")
    p.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--env-file", action="append", default=[], metavar="FILE")
    p.add_argument("-v", "--volume", action="append", default=[], metavar="SRC:DST[:ro|rw]")
    p.add_argument("--tmpfs", action="append", default=[], metavar="DST[:OPTIONS]")
    p.add_argument("--name")
    p.add_argument("-w", "--workdir")
    p.add_argument("-h", "--hostname")
    p.add_argument("-u", "--user")
    p.add_argument("--network", "--net", action="append", default=[],
                   help="bridge (default), host, none, container:NAME or a network's name; "
                        "again to join further networks")
    p.add_argument("--cap-add", action="append", default=[], metavar="CAP")
    p.add_argument("--cap-drop", action="append", default=[], metavar="CAP")
    p.add_argument("--sysctl", action="append", default=[], metavar="NAME=VALUE",
                   help="a namespaced kernel parameter (net.*, kernel.shm*, kernel.msg*, ...)")
    p.add_argument("--ip", help="a static address on the container's bridge network")
    p.add_argument("--network-alias", action="append", default=[], metavar="ALIAS",
                   help="another name the container has on its user-defined network")
    p.add_argument("-p", "--publish", action="append", default=[],
                   metavar="[HOSTIP:]HOSTPORT:PORT[/PROTO]")
    p.add_argument("--expose", action="append", default=[], metavar="PORT[/PROTO]")
    p.add_argument("--dns", action="append", default=[], metavar="ADDRESS")
    p.add_argument("--ipc", help="private, shareable or host")
    p.add_argument("--cgroupns", choices=("private", "host"),
                   help="cgroup namespace (default: private on cgroup v2, host on v1)")
    p.add_argument("-m", "--memory")
    p.add_argument("--cpus")
    p.add_argument("-c", "--cpu-shares", type=int)
    p.add_argument("--pids-limit", type=int)
    p.add_argument("--restart", help="no, always, on-failure[:N], unless-stopped")
    p.add_argument("-l", "--label", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--stop-signal")
    p.add_argument("--stop-timeout", type=int)
    p.add_argument("--log-driver", help="k8s-file (json-file is taken as its name)")
    p.add_argument("--log-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="max-size=SIZE (-1: no cap), max-file=N (the root's default: "
                   "daemon.json's log-opts, else max-size=10m max-file=3)")
    p.add_argument("--read-only", action="store_true")
    p.add_argument("--security-opt", action="append", default=[],
                   metavar="seccomp=unconfined|PROFILE.json")
    p.add_argument("--link", action="append", default=[], metavar="NAME[:ALIAS]")
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin attached")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-terminal")
    p.add_argument("image")
    p.add_argument("command", nargs=argparse.REMAINDER)


def _start_failure_status(exc: CorralError) -> int:
    """Docker's ``run`` statuses: 127 command not found, 126 cannot invoke, else 125."""
    if isinstance(exc, StartFailed) and exc.step == "process":
        text = str(exc).lower()
        if "executable file not found" in text or "no such file or directory" in text:
            return EXIT_NOT_FOUND
        if "permission denied" in text or "is a directory" in text:
            return EXIT_CANNOT_INVOKE
    return EXIT_ENGINE_ERROR


def cmd_create(args: argparse.Namespace) -> int:
    eng = _engine(args)
    _out(eng.create(args.image, args.command or None, **_create_kwargs(args)))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    have_tty = sys.stdin.isatty()
    if args.tty and args.interactive and not args.detach and not have_tty:
        raise InvalidParameter("the input device is not a TTY")  # Docker refuses only -it
    since = time.time()
    eng = _engine(args)
    cid = eng.create(args.image, args.command or None, **_create_kwargs(args))
    # -t alone without a terminal of ours: conmon holds the container's, we follow its log
    if (args.interactive or (args.tty and have_tty)) and not args.detach:
        return _run_interactive(eng, cid, args)
    try:
        eng.start(cid)
    except CorralError as exc:
        args.error_status = _start_failure_status(exc)
        if args.rm:  # as Docker's start: a container that never ran is removed with --rm
            _quietly(lambda: eng.remove(cid, force=True))
        raise
    args.error_status = 1  # from here on the container exists and has run
    if args.detach:
        _out(cid)
        return 0
    return _attach(eng, cid, since)


def _run_interactive(eng: Engine, cid: str, args: argparse.Namespace) -> int:
    try:
        ctx = eng.start_interactive(cid)
    except CorralError as exc:
        args.error_status = _start_failure_status(exc)
        if args.rm:
            _quietly(lambda: eng.remove(cid, force=True))
        raise
    args.error_status = 1
    return _wait_foreground(eng, ctx)


def _wait_foreground(eng: Engine, ctx: Any) -> int:
    import signal

    # runc in the foreground forwards ^C to the container: the container decides, and we
    # stay to collect its exit instead of leaving it behind
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return eng.wait_interactive(ctx)


def cmd_start(args: argparse.Namespace) -> int:
    eng = _engine(args)
    if not (args.attach or args.interactive):
        def start(ref: str) -> None:
            with contextlib.suppress(NotModified):  # running already: Docker says nothing
                eng.start(ref)

        return _each(args.containers, start)
    if len(args.containers) != 1:
        raise _Usage("you cannot start and attach multiple containers at once")
    ref = args.containers[0]
    if args.interactive or eng.inspect(ref)["Config"]["Tty"]:
        return _wait_foreground(eng, eng.start_interactive(ref))
    since = time.time()
    cid = eng.inspect(ref)["Id"]
    with contextlib.suppress(NotModified):  # running already: attach to it
        eng.start(cid)
    return _attach(eng, cid, since, only_new=True)


def cmd_stop(args: argparse.Namespace) -> int:
    eng = _engine(args)
    return _each(args.containers, lambda ref: eng.stop(ref, args.time))


def cmd_restart(args: argparse.Namespace) -> int:
    eng = _engine(args)
    return _each(args.containers, lambda ref: eng.restart(ref, args.time))


def cmd_kill(args: argparse.Namespace) -> int:
    eng = _engine(args)
    return _each(args.containers, lambda ref: eng.kill(ref, args.signal))


def cmd_pause(args: argparse.Namespace) -> int:
    eng = _engine(args)
    return _each(args.containers, eng.pause)


def cmd_unpause(args: argparse.Namespace) -> int:
    eng = _engine(args)
    return _each(args.containers, eng.unpause)


def cmd_rm(args: argparse.Namespace) -> int:
    eng = _engine(args)
    return _each(args.containers, lambda ref: eng.remove(ref, force=args.force))


def cmd_wait(args: argparse.Namespace) -> int:
    eng = _engine(args)
    return _each(args.containers, lambda ref: _out(str(eng.wait(ref))), echo=False)


def cmd_ps(args: argparse.Namespace) -> int:
    from . import format as cli_format

    wanted = cli_format.ContainerFilter(args.filter)
    eng = _engine(args)
    # as Docker: -n and -l count stopped containers too, and so does a status filter
    limit = 1 if args.latest else args.last if args.last is not None and args.last > 0 else 0
    show_all = args.all or bool(limit) or wanted.wants_all
    every = eng.list(all=True)  # the engine reads every container's state either way
    wanted.bind(every)
    # a container in its restart backoff is listed too, as docker ps lists a restarting one
    infos = [i for i in every if (show_all or i["State"] in ("running", "paused")
                                  or i.get("Restarting")) and wanted(i)]
    if limit:
        infos = infos[:limit]

    def size_of(info: Any) -> tuple[int, int]:
        from ..images.store import _tree_size

        try:
            rw = _tree_size(eng.get(info["Id"]).paths.diff)
            image = eng.images.get(info["ImageID"]).size
        except (CorralError, OSError):
            return 0, 0
        return rw, rw + image

    for line in cli_format.ps_lines(infos, args.format, quiet=args.quiet,
                                    trunc=not args.no_trunc, size=args.size, now=time.time(),
                                    size_of=size_of):
        _out(line)
    return 0


def cmd_port(args: argparse.Namespace) -> int:
    from .format import port_lines

    for line in port_lines(_engine(args).inspect(args.container), args.private_port):
        _out(line)
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    eng = _engine(args)
    tail = None
    if args.tail not in (None, "all"):
        try:
            tail = int(args.tail)
        except ValueError as exc:
            raise InvalidParameter(f"invalid value for --tail: {args.tail!r}") from exc
        if tail < 0:
            tail = None  # Docker: a negative tail means all
    records = eng.logs(args.container, follow=args.follow, tail=tail,
                       since=_parse_time(args.since), until=_parse_time(args.until))
    for record in records:
        _write_record(record, args.timestamps)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    import json

    eng = _engine(args)
    found, status = [], 0
    for ref in args.objects:
        try:
            if args.type != "image":
                try:
                    found.append(eng.inspect(ref))
                    continue
                except NotFound:
                    if args.type == "container":
                        raise
            found.append(eng.images.get(ref).to_dict())
        except NotFound as exc:
            _error(exc if args.type else f"No such object: {ref}")
            status = 1
        except CorralError as exc:
            _error(exc)
            status = 1
    if args.format:
        from .format import inspect_lines

        for line in inspect_lines(found, args.format):
            _out(line)
        return status
    _out(json.dumps(found, indent=4))
    return status


def cmd_exec(args: argparse.Namespace) -> int:
    from ..errors import ExecFailed

    if not args.command:
        raise _Usage("exec needs a container and a command")
    have_tty = sys.stdin.isatty()
    if args.tty and args.interactive and not have_tty:
        raise InvalidParameter("the input device is not a TTY")  # Docker refuses only -it
    if not args.interactive:
        # Docker does not pass stdin without -i; the runtime would otherwise inherit ours
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
    eng = _engine(args)
    try:
        result = eng.exec(args.container, args.command, tty=args.tty,
                          env=_env_items(args.env, args.env_file), workdir=args.workdir,
                          user=args.user, relay_tty=args.tty and not have_tty)
    except ExecFailed as exc:
        args.error_status = exc.exit_code  # 127 not found, 126 not executable, as Docker
        raise
    return result.exit_code
