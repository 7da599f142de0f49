"""Where corral's time goes: measured, not guessed. Prints nothing itself; returns figures.

- the interpreter alone (``python -c pass``);
- imports on the CLI path (``python -X importtime``, cumulative time of the main modules);
- ``corral run -d`` and ``corral run --rm`` run through ``corral_probe.py cli``: the same CLI
  entry point with timers on the engine's parts (imports, argument parsing, ``Engine()``,
  create, each start step, each network sub-step, conmon + ``runc create``, ``runc start``,
  state writes with their fsyncs, the event journal, waiting for the exit). pyroute2 is
  imported at its first use, inside the network step's first sub-step (``namespace``): the
  instrumented table shows that sub-step with the import in it, and ``summary`` moves the
  import to the imports;
- the embedded start's parts come from ``corral_probe.py embedded`` (already run for the table).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from common import REPO, median, python, run, timed

IMPORT_NAMES = ("engine", "engine.core.engine", "engine.cli.main", "states", "transitions",
                "loguru", "engine.host.netlink", "pyroute2", "jsonschema", "yaml", "asyncio")


def interpreter_start(env: dict[str, str], n: int = 10) -> float:
    return median([timed([python(), "-c", "pass"], env=env)[0] for _ in range(n)])


def import_times(env: dict[str, str], n: int = 5) -> dict[str, float]:
    """Cumulative import time (s) of the main modules of ``import engine.cli.main`` followed by
    ``engine.core.engine``, ``engine.host.netlink`` and pyroute2 (what a bridge start loads),
    median of ``n`` processes."""
    samples: dict[str, list[float]] = {k: [] for k in IMPORT_NAMES}
    for _ in range(n):
        proc = run([python(), "-X", "importtime", "-c",
                    "import engine.cli.main, engine.core.engine, engine.host.netlink, pyroute2"],
                   env=env)
        for line in proc.stderr.decode().splitlines():
            if not line.startswith("import time:") or "|" not in line:
                continue
            parts = line[len("import time:"):].split("|")
            name = parts[2].strip()
            if name in samples and parts[1].strip().isdigit():
                samples[name].append(int(parts[1]) / 1e6)
    return {k: median(v) for k, v in samples.items() if v}


def cli_phases(cli_args: list[str], env: dict[str, str], tmp: Path, n: int,
               cleanup: list[str] | None = None,
               prepare: Callable[[], str] | None = None,
               settle: Callable[[], None] | None = None) -> dict[str, float]:
    """Median per phase of ``n`` instrumented CLI runs; ``wall`` is the whole process as the
    parent saw it. ``cleanup`` is a CLI command run (untimed) after each, with the id printed;
    ``prepare`` (untimed) returns an id appended to the arguments (``rm -f <id>``);
    ``settle`` waits for background exit commands before and after each run."""
    out = tmp / "cli-probe.json"
    rows: list[dict[str, float]] = []
    for _ in range(n):
        extra = [prepare()] if prepare else []
        if settle:
            settle()
        t0 = time.perf_counter()
        proc = run([python(), str(REPO / "bench" / "corral_probe.py"), "cli", "--out",
                    str(out), "--", *cli_args, *extra], env=env)
        wall = time.perf_counter() - t0
        data = json.loads(out.read_text())
        data.pop("counts", None)
        data.pop("exit", None)
        data["wall"] = wall
        data["interpreter start + exit"] = wall - data["probe total"]
        rows.append(data)
        if cleanup:
            cid = proc.stdout.decode().strip().splitlines()[-1]
            run([*cleanup, cid], env=env, check=False)
        if settle:
            settle()
    keys = dict.fromkeys(k for r in rows for k in r)
    return {k: statistics.median([r.get(k, 0.0) for r in rows]) for k in keys}


def summary(ph: dict[str, float]) -> str:
    """One line: the whole, then its main parts (ms)."""
    def g(key: str) -> float:
        return ph.get(key, 0.0) * 1000

    # pyroute2 is imported inside the network step, at its first use: counted with the imports
    pyroute2 = g(PYROUTE2)
    imports = sum(v for k, v in ph.items() if k.startswith("import ")) * 1000 + pyroute2
    parts = [f"interpreter start+exit {g('interpreter start + exit'):.0f}",
             f"imports {imports:.0f} (engine {g(IMPORT_ENGINE):.0f}, pyroute2 {pyroute2:.0f})",
             f"argparse {g('argument parser'):.0f}", f"Engine() {g(ENGINE_INIT):.0f}"]
    if "Engine.create" in ph:
        parts.append(f"create {g('Engine.create'):.0f}")
    if "Engine.start" in ph:
        parts.append(f"start {g('Engine.start') - pyroute2:.0f} "
                     f"(network {g('step network') - pyroute2:.0f}, "
                     f"conmon+runc create {g(SPAWN):.0f}, runc start {g('runc start'):.0f})")
    if "attach: follow logs, wait for the exit" in ph:
        parts.append(f"attach/wait {g('attach: follow logs, wait for the exit'):.0f}")
    if "Engine.remove" in ph:
        parts.append(f"remove {g('Engine.remove'):.0f} (signal "
                     f"{g('signal through a pidfd') + g('runc kill'):.1f}, "
                     f"runc delete {g('runc delete'):.0f}, "
                     f"veth delete {g('undo network.veth'):.0f})")
    parts.append(f"fsync'd state writes {g(WRITES):.0f}")
    return f"{g('wall'):.0f} ms = " + " + ".join(parts)


IMPORT_ENGINE = "import engine (transitions, engine.core.engine, states)"
PYROUTE2 = "pyroute2 import, at its first use"
ENGINE_INIT = "Engine() (layout, reconcile)"
SPAWN = "conmon + runc create (Monitor.spawn)"
WRITES = "state writes (atomic_write_bytes, fsync)"


def embedded_phases(samples: list[dict[str, float]]) -> dict[str, float]:
    keys = dict.fromkeys(k for s in samples for k in s)
    return {k: statistics.median([s.get(k, 0.0) for s in samples]) for k in keys}
