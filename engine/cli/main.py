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
import contextlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from ..errors import CorralError, InvalidParameter, NotFound, NotModified, StartFailed
from .output import _ago, _error, _out, _table, human_size

if TYPE_CHECKING:
    from datetime import datetime

    from ..core.engine import Engine

EXIT_ENGINE_ERROR = 125  # docker run/create: the daemon failed before the container ran
EXIT_CANNOT_INVOKE = 126
EXIT_NOT_FOUND = 127
EXIT_INTERRUPTED = 130
LOG_LEVELS = {"trace": "TRACE", "debug": "DEBUG", "info": "INFO", "warning": "WARNING",
              "warn": "WARNING", "error": "ERROR", "critical": "CRITICAL", "fatal": "CRITICAL"}


class _Usage(Exception):
    """A usage error found after parsing (argparse's own exit 2 cannot see it)."""


# -- engine access --------------------------------------------------------------------------


# commands that only look: on a root never made they make nothing (no folder, run folder,
# bridge or firewall table), as ``ls`` of a missing folder makes none
READ_ONLY = {"ps", "ls", "inspect", "images", "image ls", "image list", "image inspect",
             "network ls", "network list", "network inspect", "volume ls", "volume list",
             "volume inspect"}


def _engine(args: argparse.Namespace, **kwargs: Any) -> Engine:
    from ..core.engine import Engine

    kwargs.setdefault("watch", False)
    kwargs.setdefault("reconcile", "touched")
    command = " ".join(filter(None, (args.command_name, getattr(
        args, f"{args.command_name}_command", None))))
    if command in READ_ONLY:
        from ..store.paths import Layout

        kwargs.setdefault("make_layout", Layout.for_root(args.root).root.is_dir())
    return Engine(args.root, **kwargs)


def _each(refs: Sequence[str], action: Callable[[str], object], echo: bool = True) -> int:
    """Apply ``action`` to every ref as Docker does: report each failure, go on, exit 1."""
    status = 0
    for ref in refs:
        try:
            action(ref)
        except CorralError as exc:
            _error(exc)
            status = 1
            continue
        if echo:
            _out(ref)
    return status


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    from ..logs.reader import parse_since

    return parse_since(value)


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


# -- container options (create and run) -----------------------------------------------------


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


# -- commands -------------------------------------------------------------------------------


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


def _quietly(action: Callable[[], object]) -> None:
    from ..log import logger

    try:
        action()
    except NotFound:
        pass  # gone already: a failed start of a --rm container removes it itself
    except CorralError as exc:
        logger.warning("{}", exc)


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


def _container_gone(args: argparse.Namespace) -> bool:
    """For the commands that run in the background for one container (their engine makes no
    folder either, for a removal that comes after this check)."""
    from ..store.paths import container_gone

    return container_gone(args.root, args.id)


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


def _max_size(text: str) -> int:
    from ..store.config import parse_size

    size = parse_size(text, "--max-size")
    if not size:
        raise InvalidParameter(f"invalid --max-size: {text!r}: want a size such as 8g")
    return size


def cmd_image_import(args: argparse.Namespace) -> int:
    eng = _engine(args)
    src = args.source
    name = args.name or _image_name_from(src)
    limit = {"max_bytes": _max_size(args.max_size)} if args.max_size else {}
    if src == "-":
        image = eng.images.import_tar(sys.stdin.buffer, name, **limit)
    elif os.path.isdir(src):
        image = eng.images.import_dir(src, name, **limit)
    elif os.path.exists(src):
        image = eng.images.import_tar(src, name, **limit)
    else:
        raise NotFound(f"cannot import {src}: no such file or directory")
    _out(image.id)
    return 0


def _image_name_from(src: str) -> str:
    """``docker import`` leaves an image unnamed; our images need a name: the file's stem."""
    import re

    base = os.path.basename(os.path.normpath(src)) if src != "-" else ""
    base = re.sub(r"\.(tar(\.(gz|bz2|xz))?|tgz|tbz2?|txz)$", "", base).lower()
    base = re.sub(r"[^a-z0-9_.-]+", "-", base).strip("-._")
    return base or "imported"


def cmd_image_busybox(args: argparse.Namespace) -> int:
    eng = _engine(args)
    _out(eng.images.busybox(args.name).id)
    return 0


def cmd_image_ls(args: argparse.Namespace) -> int:
    eng = _engine(args)
    images = sorted(eng.images.list(), key=lambda img: img.created, reverse=True)
    if args.quiet:
        for img in images:
            _out(img.id if args.no_trunc else img.short_id)
        return 0
    now = time.time()
    _table(["NAME", "ID", "CREATED", "SIZE"],
           [[img.name, img.id if args.no_trunc else img.short_id, _ago(img.created, now),
             human_size(img.size)] for img in images])
    return 0


def cmd_image_rm(args: argparse.Namespace) -> int:
    eng = _engine(args)

    def remove(ref: str) -> None:
        img = eng.image_remove(ref)
        _out(f"Untagged: {img.name}")
        _out(f"Deleted: {img.id}")

    return _each(args.images, remove, echo=False)


def cmd_image_inspect(args: argparse.Namespace) -> int:
    args.objects, args.type = args.images, "image"
    return cmd_inspect(args)


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


# -- lifecycle graphs -----------------------------------------------------------------------


def cmd_graph(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..graphs import draw as graphs

    def service_states(project: Any) -> dict[str, str]:
        # "running (healthy)", "dead (exit 1)"; a service without a container is left out,
        # and the diagram draws it as not created
        eng = _engine(args)
        states = {}
        for service in project.services:
            try:
                state = eng.inspect(project.container_name(service))["State"]
            except NotFound:
                continue
            health = (state.get("Health") or {}).get("Status", "")
            if health:
                states[service] = f"{state['Status']} ({health})"
            elif state["Status"] == "dead":
                states[service] = f"dead (exit {state.get('ExitCode', 0)})"
            else:
                states[service] = state["Status"]
        return states

    suffixes = {".mmd": "mermaid", ".mermaid": "mermaid", ".dot": "dot", ".gv": "dot",
                ".svg": "svg", ".png": "png"}
    suffix = Path(args.output).suffix.lower() if args.output else ""
    fmt = args.format or suffixes.get(suffix, "mermaid")
    to_stdout = args.output in (None, "-")
    if fmt in ("svg", "png") and to_stdout and sys.stdout.isatty():
        raise _Usage(f"{fmt} is binary: give -o FILE, or redirect the output")
    if args.deployment:
        if args.container:
            raise _Usage("--deployment draws a deployment file, not a container")
        from ..compose.project import load_project
        from .compose import find_file

        project = load_project(find_file(args.file), project_name=args.project_name)
        services = {name: {"depends_on": dict(svc.depends_on)}
                    for name, svc in project.services.items()}
        out = graphs.deployment_diagram(services, service_states(project), fmt,
                                        title=f"deployment {project.name}")
    elif args.container:
        out = graphs.container_diagram(_engine(args).inspect(args.container), fmt)
    else:
        out = graphs.machine_diagram(fmt)
    data = out.encode() if isinstance(out, str) else out
    if to_stdout:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
    else:
        try:
            Path(args.output).write_bytes(data)
        except OSError as exc:
            raise InvalidParameter(f"cannot write {args.output}: {exc.strerror}") from exc
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    import json

    from ..graphs import draw as graphs

    rows = graphs.history_rows(_engine(args).inspect(args.container))
    if args.format == "json":
        _out(json.dumps(rows, indent=2))
    else:
        sys.stdout.write(graphs.format_history_table(rows))
    return 0


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
    # engine.graphs.draw.FORMATS, spelt out: the parser is built before any command runs
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
