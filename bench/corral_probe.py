"""corral measured from the inside, in a fresh process; prints one JSON line. Never asserts.

Modes (``python bench/corral_probe.py MODE ...``):

- ``embedded --root R -n N``: ``Engine(root)``; N times ``create`` (untimed), then ``start``
  timed, then ``remove(force=True)`` timed; with the time of each start step, network sub-step,
  runc/conmon call and state write (wrappers put on the engine's objects in this process only).
- ``embedded-serve --root R``: the same, one sample per ``start`` line read on stdin, so
  that the caller interleaves them with the other tools' samples.
- ``create-many --root R -n N``: create N containers without starting them.
- ``load --root R``: time ``Engine(root)`` construction and ``list(all=True)``.
- ``pss --root R``: ``Engine(root)`` + ``list(all=True)``, then this process's own Pss.
- ``transitions -n N``: microseconds per ``Lifecycle.fire`` of pause/unpause, and per
  ``Lifecycle(...)`` construction (the engine builds one per operation).
- ``cli --out FILE -- ARGS``: run ``corral ARGS`` (``engine.cli.main.main``) with the same wrappers
  and write the time of each phase to FILE.
- ``cleanup --root R``: remove every container, the networks and the firewall table, the run
  folder; unmount what is left under the root.
"""

from __future__ import annotations

import time

T_PROCESS = time.perf_counter()

import argparse  # noqa: E402 - the clock above starts before any import
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from collections import defaultdict  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PHASES: dict[str, float] = defaultdict(float)
COUNTS: dict[str, int] = defaultdict(int)


PYROUTE2 = "pyroute2 import, at its first use"


def _timer(key: str | Callable[..., str], fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        name = key(*args, **kwargs) if callable(key) else key
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            PHASES[name] += time.perf_counter() - t0
            COUNTS[name] += 1
    return wrapper


def _wrap_attr(obj: Any, attr: str, key: str | Callable[..., str]) -> None:
    fn = getattr(obj, attr, None)
    if fn is not None:
        setattr(obj, attr, _timer(key, fn))


def instrument() -> None:
    """Time the engine's parts in this process: start steps, network sub-steps, runc and
    conmon calls, state writes, journal appends. Missing names are skipped (the engine moves
    on; the benchmark should not break)."""
    from engine.core import engine as engine_mod
    from engine.host import conmon as monitor
    from engine.host import runc as runtime
    from engine.start import netsteps, steps
    from engine.store import events
    from engine.store import files as store

    for step in getattr(steps, "START_PLAN", ()):
        _wrap_attr(step, "do", f"step {step.name}")
        _wrap_attr(step, "undo", f"undo {step.name}")
    for step in getattr(netsteps, "BRIDGE_PLAN", ()):
        _wrap_attr(step, "do", f"network.{step.name}")
        _wrap_attr(step, "undo", f"undo network.{step.name}")
    from engine.core import exits

    _wrap_attr(exits, "_wait_pid", "wait for the process to end (_wait_pid)")
    _wrap_attr(monitor.Monitor, "spawn", "conmon + runc create (Monitor.spawn)")

    def runc_key(self: Any, args: list[str], *a: Any, **k: Any) -> str:
        return f"runc {args[0]}"

    _wrap_attr(runtime.Runtime, "_run", runc_key)
    _wrap_attr(runtime.Runtime, "signal_process", "signal through a pidfd")
    original = store.atomic_write_bytes
    timed_write = _timer("state writes (atomic_write_bytes, fsync)", original)
    for mod in list(sys.modules.values()):
        if getattr(mod, "__name__", "").startswith("engine") and \
                getattr(mod, "atomic_write_bytes", None) is original:
            mod.atomic_write_bytes = timed_write
    _wrap_attr(events.EventJournal, "append", "event journal append")
    E = engine_mod.Engine
    _wrap_attr(E, "__init__", "Engine() (layout, reconcile)")
    _wrap_attr(E, "reconcile", "Engine.reconcile")
    _wrap_attr(E, "create", "Engine.create")
    _wrap_attr(E, "start", "Engine.start")
    _wrap_attr(E, "remove", "Engine.remove")
    _wrap_attr(E, "wait", "Engine.wait")
    _wrap_attr(E, "list", "Engine.list")
    _wrap_attr(E, "_sync_network_hosts", "Engine._sync_network_hosts")
    _wrap_attr(E, "_wait_exit_code", "wait for conmon's exit file")
    _wrap_attr(E, "_lifecycle", "Lifecycle() construction")


def _timed_import(name: str) -> float:
    t0 = time.perf_counter()
    __import__(name)
    return time.perf_counter() - t0


def _out(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _pss_kb() -> int:
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


# -- modes -------------------------------------------------------------------------------------


def mode_embedded(args: argparse.Namespace) -> None:
    from engine import Engine

    instrument()
    eng = Engine(args.root)
    starts, removes, phases = [], [], []
    try:
        for i in range(args.n + 1):  # the first is a warm-up (pyroute2 import, caches)
            sample = _timed_start_remove(eng)
            if i:
                starts.append(sample["start"])
                removes.append(sample["remove"])
                phases.append(sample["phases"])
    finally:
        eng.close()
    _out({"start": starts, "remove": removes, "phases": phases})


def _timed_start_remove(eng: Any) -> dict[str, Any]:
    """Create a container, then time its start (with the parts ``instrument`` sees during
    it) and its forced removal."""
    cid = eng.create("busybox", ["sleep", "30"])
    PHASES.clear()
    COUNTS.clear()
    t0 = time.perf_counter()
    eng.start(cid)
    t_start = time.perf_counter() - t0
    snap = dict(PHASES)
    t0 = time.perf_counter()
    eng.remove(cid, force=True)
    return {"start": t_start, "remove": time.perf_counter() - t0, "phases": snap}


def mode_embedded_serve(args: argparse.Namespace) -> None:
    """One engine kept alive; each ``start`` line on stdin runs one create + timed start +
    timed remove and answers one JSON line, so the caller can interleave these samples with
    the other tools' (``quit`` ends)."""
    from engine import Engine

    instrument()
    eng = Engine(args.root)

    try:
        _timed_start_remove(eng)  # warm-up: pyroute2 import, caches
        _out({"ready": True})
        for line in sys.stdin:
            if line.strip() != "start":
                break
            _out(_timed_start_remove(eng))
    finally:
        eng.close()


def mode_create_many(args: argparse.Namespace) -> None:
    from engine import Engine

    eng = Engine(args.root, watch=False)
    t0 = time.perf_counter()
    for _ in range(args.n):
        eng.create("busybox", ["sleep", "30"])
    _out({"seconds": time.perf_counter() - t0, "n": args.n})


def mode_load(args: argparse.Namespace) -> None:
    t_import = _timed_import("engine")
    from engine import Engine

    t0 = time.perf_counter()
    eng = Engine(args.root)
    t_construct = time.perf_counter() - t0
    t0 = time.perf_counter()
    listed = eng.list(all=True)
    t_list = time.perf_counter() - t0
    eng.close()
    _out({"import": t_import, "construct": t_construct, "list": t_list,
          "count": len(listed), "process": time.perf_counter() - T_PROCESS})


def mode_pss(args: argparse.Namespace) -> None:
    from engine import Engine

    eng = Engine(args.root)
    listed = eng.list(all=True)
    _out({"pss_kb": _pss_kb(), "count": len(listed)})
    eng.close()


def mode_transitions(args: argparse.Namespace) -> None:
    from states import Lifecycle

    class Delegate:  # the engine's delegate shape, with no effect
        def before_pause(self, event: Any) -> None: ...
        def on_pause(self, event: Any) -> None: ...
        def before_unpause(self, event: Any) -> None: ...
        def on_unpause(self, event: Any) -> None: ...

    lc = Lifecycle("running", delegate=Delegate(), name="bench")
    for _ in range(100):
        lc.fire("pause")
        lc.fire("unpause")
    t0 = time.perf_counter()
    for _ in range(args.n):
        lc.fire("pause")
        lc.fire("unpause")
    fire_us = (time.perf_counter() - t0) / (2 * args.n) * 1e6
    history = list(lc.history)
    t0 = time.perf_counter()
    for _ in range(args.n // 10 or 1):
        Lifecycle("running", delegate=Delegate(), name="bench", history=history)
    build_us = (time.perf_counter() - t0) / (args.n // 10 or 1) * 1e6
    _out({"fire_us": fire_us, "construct_us": build_us, "history": len(history)})


def mode_cli(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    import engine.core.engine  # noqa: F401 - the engine modules, transitions (loguru is lazy)
    t_pkg = time.perf_counter() - t0
    t0 = time.perf_counter()
    import engine.cli.main as cli
    t_cli = time.perf_counter() - t0
    import engine.host.netlink

    # pyroute2 is imported at its first use (a bridge start's network step; never by rm or
    # stop): timed there, and counted by summary() with the imports, not with the step
    _wrap_attr(engine.host.netlink, "_pyroute2", PYROUTE2)
    instrument()
    _wrap_attr(cli, "build_parser", "argument parser")
    import engine.cli.container

    _wrap_attr(engine.cli.container, "_attach", "attach: follow logs, wait for the exit")
    t0 = time.perf_counter()
    code = cli.main(args.argv)
    t_main = time.perf_counter() - t0
    sys.stdout.flush()
    result = {"import engine (transitions, engine.core.engine, states)": t_pkg,
              "import engine.cli.main": t_cli,
              "cli.main": t_main, "probe total": time.perf_counter() - T_PROCESS,
              **{k: v for k, v in PHASES.items()}, "exit": code,
              "counts": dict(COUNTS)}
    Path(args.out).write_text(json.dumps(result))
    sys.stderr.flush()
    os._exit(0)  # as the corral command ends (engine.cli.main.run): no interpreter teardown


def mode_cleanup(args: argparse.Namespace) -> None:
    import shutil

    from engine import CorralError, Engine
    from engine.host import mounts as _mounts

    eng = Engine(args.root, watch=False)
    errors = []
    try:
        for info in eng.list(all=True):
            try:
                eng.remove(info["Id"], force=True)
            except CorralError as exc:
                errors.append(str(exc))
        with contextlib.suppress(CorralError):
            eng.network_prune(include_default=True)
    finally:
        eng.close()
    for point in sorted(_mounts.mounted_under(Path(args.root)), key=len, reverse=True):
        with contextlib.suppress(Exception):
            _mounts.unmount(Path(point))
    shutil.rmtree(eng.layout.run, ignore_errors=True)
    _out({"errors": errors})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    for name in ("embedded", "embedded-serve", "create-many", "load", "pss", "cleanup"):
        p = sub.add_parser(name)
        p.add_argument("--root", required=True)
        p.add_argument("-n", type=int, default=20)
    p = sub.add_parser("transitions")
    p.add_argument("-n", type=int, default=20000)
    p = sub.add_parser("cli")
    p.add_argument("--out", required=True)
    p.add_argument("argv", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    if getattr(args, "argv", None) and args.argv[0] == "--":
        args.argv = args.argv[1:]
    {"embedded": mode_embedded, "embedded-serve": mode_embedded_serve,
     "create-many": mode_create_many, "load": mode_load,
     "pss": mode_pss, "transitions": mode_transitions, "cli": mode_cli,
     "cleanup": mode_cleanup}[args.mode](args)


if __name__ == "__main__":
    main()
