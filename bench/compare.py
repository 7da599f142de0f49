"""corral side by side with Docker, Podman and the raw floor (ip + runc), in one run.

Prints one table of medians and ratios next to the goals of issue 6, a breakdown of where
corral's time goes, and writes both to docs/BENCHMARKS.md with the exact commands and the
machine. Never asserts: a goal is reported MET or NOT MET, a figure that could not be taken is
replaced by the reason.

Everything runs in a private folder under /var/tmp, on bridges and subnets made for the run
(free /21s under 10.228.0.0/14 that no host route touches; no traffic leaves the host), and
``HostGuard`` puts the host back as it was, even after a failure: processes are stopped by
pid, and links, firewall tables, sysctls, cgroups, mounts and files are restored.

    python bench/compare.py            # N=20 runs, 50 network set-ups, 500 containers
    python bench/compare.py --quick    # N=5, 10 set-ups, 50 containers
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

import where  # noqa: E402
from common import (  # noqa: E402
    REPO,
    child_env,
    first_line,
    free_subnets,
    median,
    python,
    run,
)
from hostguard import HostGuard  # noqa: E402
from rawfloor import RawFloor  # noqa: E402
from report import Row, kv_table, ratio_row, table, write_docs  # noqa: E402
from sides import Corral, Docker, EmbeddedServer, Podman, Side, memory_of  # noqa: E402

MS = 1000.0


def log(msg: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def attempt(errors: dict[str, str], key: str, fn: Callable[[], Any]) -> Any:
    """Run one measurement; on failure keep the reason for the table and go on."""
    try:
        return fn()
    except Exception as exc:  # a broken side must not stop the others
        errors[key] = _short(exc)
        log(f"{key}: {errors[key]}")
        if os.environ.get("BENCH_DEBUG"):
            traceback.print_exc()
        return None


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) < 160 else text[:157] + "..."


def machine() -> list[tuple[str, str]]:
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    osname = ""
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("PRETTY_NAME="):
            osname = line.split("=", 1)[1].strip('"')
    return [
        ("nproc", first_line(["nproc"])), ("cpu", cpu),
        ("memory", f"{mem_kb / 1024 / 1024:.1f} GiB"), ("kernel", os.uname().release),
        ("os", osname), ("python", first_line([python(), "--version"])),
        ("runc", first_line(["runc", "--version"])),
        ("conmon", first_line(["conmon", "--version"])),
        ("docker (dockerd)", first_line(["dockerd", "--version"])),
        ("containerd", first_line(["containerd", "--version"])),
        ("podman", first_line(["podman", "--version"])),
        ("netavark", first_line(["/usr/lib/podman/netavark", "--version"])),
        ("ip", first_line(["ip", "-V"])),
        ("corral source", _git_state()),
    ]


def _git_state() -> str:
    """The commit, and how many files differ from it (other work in progress), read without
    touching the index."""
    head = first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    proc = run(["git", "--no-optional-locks", "-C", str(REPO), "status", "--porcelain",
                "--untracked-files=no"], check=False)
    dirty = len(proc.stdout.decode().splitlines()) if proc.returncode == 0 else 0
    return f"{head}" + (f" + {dirty} modified tracked files" if dirty else "")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.token = secrets.token_hex(2)
        self.tmp = Path(tempfile.mkdtemp(prefix=f"cbench-{self.token}-", dir="/var/tmp"))
        self.guard = HostGuard([str(self.tmp)], own_prefixes=(
            f"cbf{self.token}", f"cbc{self.token}", f"cbs{self.token}"))
        self.errors: dict[str, str] = {}
        self.results: dict[str, Any] = {}
        self.sides: list[Side] = []
        self.floor: RawFloor | None = None
        self.corral: Corral | None = None
        self.stored_net: Any = None

    # -- set-up ----------------------------------------------------------------------------

    def setup(self) -> None:
        nets = free_subnets(3, 21)
        floor_net, stored_net = free_subnets(2, 24, avoid=nets)
        self.stored_net = stored_net
        self.results["subnets"] = {"corral": str(nets[0]), "docker": str(nets[1]),
                                   "podman": str(nets[2]), "raw floor": str(floor_net),
                                   "corral (stored)": str(stored_net)}
        self.corral = Corral(self.tmp, nets[0], self.token)
        log("corral: image busybox, warm-up run")
        self.corral.setup()
        rootfs = self.corral.image_rootfs()
        self.sides = [self.corral]
        wanted = set(self.args.only.split(",")) if self.args.only else None
        for cls, net in ((Docker, nets[1]), (Podman, nets[2])):
            side = cls(self.tmp, net, self.token)
            if wanted is not None and side.name not in wanted:
                self.errors[f"{side.name} setup"] = "skipped (--only)"
                continue
            log(f"{side.name}: start, import busybox")
            attempt(self.errors, f"{side.name} setup", lambda s=side: s.setup(rootfs))
            if f"{side.name} setup" in self.errors:
                side.teardown()
                continue
            self.sides.append(side)
        self.floor = RawFloor(self.tmp, floor_net, self.token, rootfs)
        attempt(self.errors, "raw floor setup", self.floor.setup)
        if "raw floor setup" in self.errors:
            self.floor.teardown()
            self.floor = None

    # -- measurements ----------------------------------------------------------------------

    def single(self) -> None:
        """Start-to-running and stop/remove of one container, and run --rm true; the embedded
        engine's start and remove too. Interleaved: each round runs every tool once, in a
        rotated order, so that drift and the load of the machine hit all alike."""
        assert self.corral is not None
        n = self.args.runs
        r: dict[str, dict[str, list[float]]] = {k: {} for k in ("run_d", "rm", "run_rm")}
        emb: dict[str, list[Any]] = {"start": [], "remove": [], "phases": []}
        server = attempt(self.errors, "embedded", self.corral.serve_embedded)
        tools: list[Any] = [*self.sides, *([self.floor] if self.floor else []),
                            *([server] if server else [])]
        log(f"{n} rounds of: run -d, rm -f, run --rm (each tool), embedded start + remove")
        try:
            for i in range(n):
                order = tools[i % len(tools):] + tools[:i % len(tools)]
                for tool in order:
                    name = "raw floor" if tool is self.floor else tool.name
                    if f"{name} run_d" in self.errors:
                        continue
                    try:
                        self._one(tool, name, r, emb)
                    except Exception as exc:
                        self.errors[f"{name} run_d"] = _short(exc)
                        log(f"{name}: {self.errors[f'{name} run_d']}")
                log(f"round {i + 1}/{n}: " + ", ".join(
                    f"{k} {r['run_d'][k][-1] * MS:.0f} ms" for k in r["run_d"]) + (
                    f", embedded {emb['start'][-1] * MS:.0f} ms" if emb["start"] else ""))
        finally:
            if server is not None:
                server.close()
        self.results["single"] = r
        if emb["start"]:
            self.results["embedded"] = emb
        elif "corral embedded run_d" in self.errors:
            self.errors["embedded"] = self.errors["corral embedded run_d"]

    def _one(self, tool: Any, name: str, r: dict[str, dict[str, list[float]]],
             emb: dict[str, list[Any]]) -> None:
        if tool is self.floor:
            t, cid, ns = tool.start()
            r["run_d"].setdefault(name, []).append(t)
            r["rm"].setdefault(name, []).append(tool.remove(cid, ns))
            r["run_rm"].setdefault(name, []).append(tool.run_true())
        elif isinstance(tool, EmbeddedServer):
            d = tool.sample()
            emb["start"].append(d["start"])
            emb["remove"].append(d["remove"])
            emb["phases"].append(d["phases"])
        else:
            t, cid = tool.run_detached()
            r["run_d"].setdefault(name, []).append(t)
            r["rm"].setdefault(name, []).append(tool.remove(cid))
            tool.settle()
            r["run_rm"].setdefault(name, []).append(tool.run_rm_true())
            tool.settle()

    def transitions(self) -> None:
        assert self.corral is not None
        data = attempt(self.errors, "transitions", lambda: self.corral.probe("transitions"))
        if data:
            self.results["transitions"] = data

    def network_step(self) -> None:
        log(f"network step: {self.args.network_runs} set-ups (bench/network_step.py)")
        proc = attempt(self.errors, "network step", lambda: run(
            [python(), str(REPO / "bench" / "network_step.py"), "-n",
             str(self.args.network_runs)], env=child_env(), timeout=900))
        if proc is None:
            return
        text = proc.stdout.decode()
        m1 = re.search(r"corral \(pyroute2, in process\)\s+([\d.]+) ms", text)
        m2 = re.search(r"ip commands \(\d+ processes\)\s+([\d.]+) ms", text)
        m3 = re.search(r"import engine.host.netlink \+ pyroute2 (\d+) ms", text)
        self.results["network"] = {
            "corral": float(m1.group(1)) if m1 else float("nan"),
            "ip": float(m2.group(1)) if m2 else float("nan"),
            "import": float(m3.group(1)) if m3 else float("nan"), "text": text}

    def stored(self) -> None:
        assert self.corral is not None
        n = self.args.stored
        root = self.tmp / "corral-stored"
        cli = [c if c != str(self.corral.root) else str(root) for c in self.corral.cli]
        # a bridge and subnet of its own: a second root may not take the first one's
        env = child_env({"CORRAL_BRIDGE": f"cbs{self.token}",
                         "CORRAL_BRIDGE_SUBNET": str(self.stored_net),
                         "CORRAL_BRIDGE_GATEWAY": str(self.stored_net[1])})
        log(f"corral: create {n} stored containers, load them in fresh processes")
        try:
            run([*cli, "image", "busybox"], env=env)
            made = self.corral.probe("create-many", "--root", str(root), "-n", str(n),
                                     env=env)
            loads = [self.corral.probe("load", "--root", str(root), env=env)
                     for _ in range(5)]
            self.results["stored"] = {"create": made, "loads": loads}
        except Exception as exc:
            self.errors["stored"] = _short(exc)
            log(f"stored: {self.errors['stored']}")
        finally:
            log("corral: removing the stored containers")
            attempt(self.errors, "stored cleanup",
                    lambda: self.corral.probe("cleanup", "--root", str(root), env=env))
            shutil.rmtree(root, ignore_errors=True)

    def density(self) -> None:
        n = self.args.containers
        out: dict[str, dict[str, float]] = {}
        for side in self.sides:
            if f"{side.name} run_d" in self.errors:
                continue
            log(f"{side.name}: starting {n} containers running sleep, one after another")
            started = 0
            try:
                t0 = time.perf_counter()
                for i in range(n):
                    _t, _cid = self._run_long(side)
                    started += 1
                    if (i + 1) % 100 == 0:
                        log(f"{side.name}: {i + 1}/{n} running")
                total = time.perf_counter() - t0
                time.sleep(2)  # let the monitors settle (conmon daemonizes, shims start)
                pss, rss, monitors, engine = memory_of(side)
                row = {"start_all": total, "pss": pss, "rss": rss, "monitors": monitors,
                       "engine": engine}
                # per container: all the monitors' memory divided by the containers running
                if monitors and monitors != n:
                    row["pss"] = pss * monitors / n
                    row["rss"] = rss * monitors / n
                if side is self.corral:
                    self._corral_at_n(row)
                out[side.name] = row
            except Exception as exc:
                self.errors[f"{side.name} density"] = \
                    f"after {started} containers: {_short(exc)}"
                log(f"{side.name}: {self.errors[f'{side.name} density']}")
            finally:
                log(f"{side.name}: removing them")
                t0 = time.perf_counter()
                attempt(self.errors, f"{side.name} density cleanup", side.remove_all)
                if side.name in out:
                    out[side.name]["remove_all"] = time.perf_counter() - t0
        self.results["density"] = out

    def _corral_at_n(self, row: dict[str, float]) -> None:
        """With the density containers running: an embedding process's memory, and what one
        CLI command costs, by part."""
        c = self.corral
        assert c is not None
        probe = attempt(self.errors, "corral engine pss",
                        lambda: c.probe("pss", "--root", str(c.root)))
        if probe:
            row["embedded_pss"] = probe["pss_kb"] / 1024
        c.settle()
        self.results["cli_run_d_at_n"] = attempt(
            self.errors, "cli run -d at n", lambda: where.cli_phases(
                ["--root", str(c.root), "run", "-d", "busybox", "sleep", "30"], c.env,
                self.tmp, 3, cleanup=[*c.cli, "rm", "-f"], settle=c.settle))

    @staticmethod
    def _run_long(side: Side) -> tuple[float, str]:
        # the density containers sleep long enough to outlive the whole measurement
        if isinstance(side, Corral):
            return _timed_cli([*side.cli, "run", "-d", "busybox", "sleep", "3600"], side.env)
        if isinstance(side, Docker):
            return _timed_cli([*side.cli, "run", "-d", "--pull=never", "busybox", "sleep",
                               "3600"], side.env)
        assert isinstance(side, Podman)
        return _timed_cli(side._run("-d", "busybox", "sleep", "3600"), side.env)

    def breakdown(self) -> None:
        assert self.corral is not None
        c = self.corral
        k = self.args.profile_runs
        log(f"where the time goes: {k} instrumented runs of each CLI command")
        self.results["interpreter"] = attempt(self.errors, "interpreter",
                                              lambda: where.interpreter_start(c.env))
        self.results["imports"] = attempt(self.errors, "imports",
                                          lambda: where.import_times(c.env))
        cli = ["--root", str(c.root)]
        self.results["cli_run_d"] = attempt(self.errors, "cli run -d", lambda: where.cli_phases(
            [*cli, "run", "-d", "busybox", "sleep", "30"], c.env, self.tmp, k,
            cleanup=[*c.cli, "rm", "-f"], settle=c.settle))
        self.results["cli_run_rm"] = attempt(self.errors, "cli run --rm", lambda: where.cli_phases(
            [*cli, "run", "--rm", "busybox", "true"], c.env, self.tmp, k, settle=c.settle))
        self.results["cli_rm"] = attempt(self.errors, "cli rm -f", lambda: where.cli_phases(
            [*cli, "rm", "-f"], c.env, self.tmp, k, prepare=lambda: c.run_detached()[1],
            settle=c.settle))

    # -- teardown --------------------------------------------------------------------------

    def teardown(self) -> list[str]:
        log("teardown: stopping what this run started, putting the host back")
        for side in reversed(self.sides):
            try:
                side.teardown()
            except Exception as exc:
                log(f"{side.name} teardown: {_short(exc)}")
        if self.corral is not None and self.corral not in self.sides:
            self.corral.teardown()
        if self.floor is not None:
            try:
                self.floor.teardown()
            except Exception as exc:
                log(f"raw floor teardown: {_short(exc)}")
        self.guard.restore()
        for action in self.guard.actions:
            log(f"restored: {action}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        left = self.guard.leftovers()
        if self.tmp.exists():
            left.append(f"folder {self.tmp}")
        return left


def _timed_cli(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    from common import timed

    t, out = timed(cmd, env=env)
    return t, out.strip()


# -- the table ---------------------------------------------------------------------------------


def build_rows(b: Bench) -> list[Row]:
    res, err, args = b.results, b.errors, b.args
    single = res.get("single", {})
    names = [s.name for s in b.sides] + (["raw floor"] if b.floor else [])

    def cells(kind: str) -> dict[str, float | str]:
        out: dict[str, float | str] = {}
        for col in ("corral", "docker", "podman", "raw floor"):
            samples = single.get(kind, {}).get(col)
            if samples:
                out[col] = median(samples) * MS
            elif f"{col} setup" in err:
                out[col] = "n/a: " + err[f"{col} setup"]
            elif f"{col} run_d" in err:
                out[col] = "failed: " + err[f"{col} run_d"]
            elif col in names:
                out[col] = "—"
        return out

    rows: list[Row] = []
    emb = res.get("embedded", {})
    row = Row("start-to-running, embedded `Engine.start`, bridge", "ms")
    if emb.get("start"):
        row.cells["corral"] = median(emb["start"]) * MS
    elif "embedded" in err:
        row.cells["corral"] = "failed: " + err["embedded"]
    if b.floor and single.get("run_d", {}).get("raw floor"):
        row.cells["raw floor"] = median(single["run_d"]["raw floor"]) * MS
    ratio_row(row, "corral", "raw floor", "<=", 1.3, "{r:.2f}× floor")
    row.goal = "≤ 1.3× floor"
    rows.append(row)

    row = Row("`run -d busybox sleep 30`, CLI end to end", "ms", cells("run_d"))
    ratio_row(row, "docker", "corral", ">=", 6.0, "docker ÷ corral = {r:.2f}")
    row.goal = "≥ 6× faster than docker"
    rows.append(row)

    row = Row("`run --rm busybox true`, end to end", "ms", cells("run_rm"))
    ratio_row(row, "docker", "corral", ">=", 2.0, "docker ÷ corral = {r:.2f}")
    row.goal = "≥ 2× faster than docker"
    rows.append(row)

    row = Row("stop + remove a running container (`rm -f`)", "ms", cells("rm"))
    ratio_row(row, "docker", "corral", ">=", 0.0, "docker ÷ corral = {r:.2f}")
    row.verdict = ""
    rows.append(row)

    row = Row("stop + remove, embedded `Engine.remove(force=True)`", "ms")
    if emb.get("remove"):
        row.cells["corral"] = median(emb["remove"]) * MS
    if b.floor and single.get("rm", {}).get("raw floor"):
        row.cells["raw floor"] = median(single["rm"]["raw floor"]) * MS
    ratio_row(row, "corral", "raw floor", "<=", 1e9, "{r:.2f}× floor")
    row.verdict = ""
    rows.append(row)

    dens = res.get("density", {})
    n = args.containers

    def dcells(key: str, scale: float = 1.0) -> dict[str, float | str]:
        out: dict[str, float | str] = {}
        for s in b.sides:
            if s.name in dens and key in dens[s.name]:
                out[s.name] = dens[s.name][key] * scale
            elif f"{s.name} density" in err:
                out[s.name] = "failed: " + err[f"{s.name} density"]
        for col in ("docker", "podman"):
            if col not in out and f"{col} setup" in err:
                out[col] = "n/a"
        return out

    row = Row(f"start {n} containers running sleep, one after another", "s",
              dcells("start_all"))
    ratio_row(row, "docker", "corral", ">=", 0.0, "docker ÷ corral = {r:.2f}")
    row.verdict = ""
    rows.append(row)

    row = Row(f"host memory per container at {n}, Pss of its monitor "
              "(corral/podman: conmon, docker: containerd-shim)", "MB", dcells("pss"),
              digits=2)
    ratio_row(row, "corral", "docker", "<=", 0.2, "corral ÷ docker = {r:.2f}")
    row.goal = "≤ 1/5 of docker's shim"
    rows.append(row)

    row = Row(f"same, Rss per container at {n}", "MB", dcells("rss"), digits=2)
    rows.append(row)

    row = Row(f"engine memory with {n} running, Pss (dockerd + containerd; corral and "
              "podman have no daemon)", "MB", dcells("engine"), digits=1)
    if "corral" in dens:
        row.cells["corral"] = 0.0
    if "podman" in dens:
        row.cells["podman"] = 0.0
    rows.append(row)

    if "corral" in dens and "embedded_pss" in dens["corral"]:
        rows.append(Row(f"an embedding process: `Engine(root)` + `list()` of {n} running, "
                        "Pss", "MB", {"corral": dens["corral"]["embedded_pss"]}))

    st = res.get("stored")
    row = Row(f"load {args.stored} stored containers: `Engine(root)` + `list(all=True)`, "
              "fresh process", "ms")
    if st:
        loads = st["loads"]
        row.cells["corral"] = median([x["construct"] + x["list"] for x in loads]) * MS
        ok = all(x["count"] == args.stored for x in loads)
        v = row.cells["corral"]
        row.ratio = f"{v / 1000:.2f} s" if isinstance(v, float) else ""
        row.verdict = ("MET" if isinstance(v, float) and v < 1000 else "NOT MET") \
            if ok else "NOT MEASURED (count differs)"
    elif "stored" in err:
        row.cells["corral"] = "failed: " + err["stored"]
        row.verdict = "NOT MEASURED"
    row.goal = "< 1 s"
    rows.append(row)
    if st:
        rows.append(Row("  same, whole process (interpreter, imports, load, list)", "ms",
                        {"corral": median([x["process"] for x in st["loads"]]) * MS}))

    tr = res.get("transitions")
    if tr:
        rows.append(Row("one state transition, `Lifecycle.fire` pause/unpause", "µs",
                        {"corral": tr["fire_us"]}))
        rows.append(Row("  building the `Lifecycle` machine (once per engine operation)",
                        "µs", {"corral": tr["construct_us"]}))
    elif "transitions" in err:
        rows.append(Row("one state transition", "µs",
                        {"corral": "failed: " + err["transitions"]}))

    net = res.get("network")
    if net:
        row = Row(f"network set-up per container, bridge (median of {args.network_runs}; "
                  "floor: 7 `ip` processes)", "ms",
                  {"corral": net["corral"], "raw floor": net["ip"]}, digits=2)
        ratio_row(row, "corral", "raw floor", "<=", 1e9, "{r:.2f}× ip")
        row.verdict = ""
        rows.append(row)
    return rows


CLI_PROBES = (("cli_run_d", "`corral run -d busybox sleep 30`"),
              ("cli_run_d_at_n", "`corral run -d busybox sleep 30` with the density "
               "containers running"),
              ("cli_run_rm", "`corral run --rm busybox true`"),
              ("cli_rm", "`corral rm -f <id>` (a running container)"))


def breakdown_summary(b: Bench) -> str:
    lines = []
    for key, title in CLI_PROBES:
        ph = b.results.get(key)
        if ph:
            lines.append(f"- {title}: {where.summary(ph)}")
    if b.floor is not None and b.floor.parts:
        fp = where.embedded_phases(b.floor.parts)
        lines.append(f"- raw floor start: {sum(fp.values()) * MS:.0f} ms = " + " + ".join(
            f"{k} {v * MS:.1f}" for k, v in fp.items()))
    emb = b.results.get("embedded", {})
    if emb.get("phases"):
        ph = where.embedded_phases(emb["phases"])
        lines.append(f"- embedded `Engine.start`: {ph.get('Engine.start', 0) * MS:.0f} ms = "
                     f"network {ph.get('step network', 0) * MS:.1f} (of which ports/firewall "
                     f"{ph.get('network.ports', 0) * MS:.1f}) + conmon+runc create "
                     f"{ph.get(where.SPAWN, 0) * MS:.1f} + runc start "
                     f"{ph.get('runc start', 0) * MS:.1f} + fsync'd state writes "
                     f"{ph.get(where.WRITES, 0) * MS:.1f} + other steps")
    return "\n".join(lines)


def breakdown_text(b: Bench) -> str:
    res = b.results
    parts: list[str] = []
    if res.get("interpreter") is not None:
        parts.append(f"Interpreter alone (`python -c pass`): {res['interpreter'] * MS:.1f} ms.")
    imports = res.get("imports") or {}
    if imports:
        items = [(f"`import {k}` (cumulative, first import)", f"{v * MS:.1f} ms")
                 for k, v in sorted(imports.items(), key=lambda kv: -kv[1])]
        parts.append(kv_table("imports on the CLI path (`-X importtime`, median of 5)",
                              items))
    for key, title in CLI_PROBES:
        ph = res.get(key)
        if ph:
            items = [(k, f"{v * MS:.1f} ms") for k, v in ph.items() if k != "probe total"]
            runs = 3 if key.endswith("_at_n") else b.args.profile_runs
            parts.append(kv_table(f"{title}, instrumented (median of {runs}; "
                                  "nested: a step's time includes its sub-steps)", items))
    emb = res.get("embedded", {})
    if emb.get("phases"):
        ph = where.embedded_phases(emb["phases"])
        items = [(k, f"{v * MS:.2f} ms") for k, v in ph.items()]
        parts.append(kv_table(f"embedded `Engine.start`, by part (median of {b.args.runs})",
                              items))
    return "\n\n".join(parts)


def commands_text(b: Bench) -> str:
    t = str(b.tmp)
    lines = ["Private folder of the run: `$T` = " + t, ""]
    for s in b.sides:
        cli = " ".join(getattr(s, "cli", [])).replace(t, "$T")
        lines.append(f"- {s.name}: `{cli}` + `{s.run_d_cmd.split(' ', 1)[1]}`, "
                     f"`{s.run_rm_cmd.split(' ', 1)[1]}`, `{s.rm_cmd.split(' ', 1)[1]}`"
                     + (f" ({s.note})" if s.note else ""))
        if isinstance(s, Docker):
            lines.append(f"  - daemon: `dockerd --data-root $T/docker/data --exec-root "
                         f"$T/docker/exec --pidfile $T/docker/docker.pid -H "
                         f"unix://$T/docker/docker.sock --config-file $T/docker/daemon.json "
                         f"--bip {s.subnet[1]}/{s.subnet.prefixlen} --cgroup-parent "
                         f"{s.cgroup_parent}`; image: `docker import - busybox:latest` of "
                         "a tar of corral's busybox rootfs; `run` with `--pull=never`")
        if isinstance(s, Podman):
            lines.append(f"  - run flags: `--pull never {' '.join(s.net_args)} "
                         f"--cgroup-parent {s.cgroup_parent}`; network: `podman network "
                         f"create --subnet {s.subnet} --disable-dns {s.network}` (netavark); "
                         "`CONTAINERS_CONF=$T/podman/containers.conf` (default_ulimits = the "
                         "host's open-files hard limit, events to a file); image: `podman "
                         "import` of the same tar")
        if isinstance(s, Corral):
            lines.append(f"  - env: `CORRAL_BRIDGE={s.bridge}` "
                         f"`CORRAL_BRIDGE_SUBNET={s.env['CORRAL_BRIDGE_SUBNET']}`; image: "
                         "`corral image busybox`; embedded: `Engine(root)`, "
                         "`create('busybox', ['sleep', '30'])`, timed `start(id)`, timed "
                         "`remove(id, force=True)` (bench/corral_probe.py)")
    if b.floor:
        f = b.floor
        lines.append(f"- raw floor: `ip netns add N`; `ip link add V master {f.bridge} up "
                     "type veth peer name eth0 netns N`; `ip -n N -batch -` (addr add, link "
                     "set eth0 up, link set lo up, route add default); `runc --root "
                     "$T/floor/runc create --bundle B --pid-file B/pid ID`; `runc start ID` "
                     "— remove: `runc kill ID KILL`, wait on a pidfd of the pid, `runc delete "
                     "ID`, `ip netns del N` — run true: the network, `runc run` (it deletes the "
                     "container on exit), `ip netns del N`")
    lines.append(f"- network step: `python bench/network_step.py -n {b.args.network_runs}`")
    lines.append(f"- stored: `corral_probe.py create-many -n {b.args.stored}`, then 5 × "
                 "`corral_probe.py load` (each a fresh process)")
    lines.append("- subnets: " + ", ".join(f"{k} {v}" for k, v in
                                           b.results.get("subnets", {}).items()))
    lines.append("- child processes run without `PYTHONDONTWRITEBYTECODE` (a corral command "
                 "would otherwise compile its stale modules again each time)")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="a fast check: 5 runs, 10 network set-ups, 50 containers")
    ap.add_argument("-n", "--runs", type=int, help="runs per median (default 20)")
    ap.add_argument("--network-runs", type=int, help="network set-ups (default 50)")
    ap.add_argument("--containers", type=int, help="containers at once (default 500)")
    ap.add_argument("--stored", type=int, default=1000, help="stored containers (1000)")
    ap.add_argument("--profile-runs", type=int, help="instrumented CLI runs (default 10)")
    ap.add_argument("--only", default="", help="comma list of docker,podman to include")
    ap.add_argument("--docs", default=str(REPO / "docs" / "BENCHMARKS.md"))
    ap.add_argument("--no-docs", action="store_true", help="print only")
    args = ap.parse_args()
    q = args.quick
    args.runs = args.runs or (5 if q else 20)
    args.network_runs = args.network_runs or (10 if q else 50)
    args.containers = args.containers or (50 if q else 500)
    args.profile_runs = args.profile_runs or (3 if q else 10)
    if os.geteuid() != 0:
        print("make bench needs root (namespaces, bridges, runc, dockerd)", file=sys.stderr)
        return 1

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    # a run stopped by SIGTERM or SIGHUP still puts the host back (the finally below)
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    started = dt.datetime.now(dt.UTC)
    load_before = loadavg()
    b = Bench(args)
    b.guard.snapshot()
    left: list[str] = []
    t0 = time.monotonic()
    try:
        b.setup()
        b.network_step()
        b.single()
        b.transitions()
        b.stored()
        b.density()
        b.breakdown()
    except KeyboardInterrupt:
        b.errors["run"] = "interrupted"
    except Exception as exc:
        b.errors["run"] = _short(exc)
        log(f"run stopped: {b.errors['run']}")
        traceback.print_exc()
    finally:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)  # let the teardown finish
        left = b.teardown()
    elapsed = time.monotonic() - t0

    rows = build_rows(b)
    mode = "quick" if q else "full"
    title = (f"Run of {started:%Y-%m-%d %H:%M} UTC ({mode}: medians of {args.runs} runs, "
             f"{args.network_runs} network set-ups, {args.containers} containers at once, "
             f"{args.stored} stored; took {elapsed / 60:.1f} min; load average "
             f"{load_before} before, {loadavg()} after)")
    main_table = table(rows)
    other_errors = {k: v for k, v in b.errors.items()
                    if not k.endswith((" setup", " run_d"))}
    print(title)
    print()
    print(main_table)
    if other_errors:
        print("\nnot measured: " + "; ".join(f"{k}: {v}" for k, v in other_errors.items()))
    br = breakdown_text(b)
    print("\nWhere corral's time goes (measured; the full breakdown is in the docs)\n")
    print(breakdown_summary(b))
    host_check = ("nothing left: links, nftables/iptables, sysctls, processes, mounts, "
                  "cgroups and files are as before the run" if not left else
                  "LEFT ON THE HOST: " + "; ".join(left))
    print(f"\nhost check: {host_check}")
    if not args.no_docs:
        mach = machine()
        generated = "\n\n".join([
            f"## Results\n\n{title}\n\n{main_table}",
            ("Not measured: " + "; ".join(f"{k}: {v}" for k, v in other_errors.items()))
            if other_errors else "",
            "## Machine\n\n" + kv_table("machine", mach),
            "## Commands\n\n" + commands_text(b),
            "## Breakdown of corral's time (measured in the same run)\n\n"
            + breakdown_summary(b) + "\n\n" + br,
            f"## Host check after the run\n\n{host_check}" + (
                "\n\nPut back by the run: " + "; ".join(b.guard.actions)
                if b.guard.actions else ""),
        ])
        write_docs(Path(args.docs), "\n\n".join(p for p in generated.split("\n\n\n\n") if p))
        print(f"\nwritten to {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
