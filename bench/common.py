"""Small helpers shared by the benchmark modules: timing, child environments, subnets, memory.

Nothing here asserts a timing: measurements are returned, the caller prints them.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"


class BenchError(Exception):
    """A measurement or a set-up could not be done; its message goes in the table."""


def python() -> str:
    """The project's interpreter (the venv's when there is one)."""
    candidate = VENV_BIN / "python"
    return str(candidate) if candidate.exists() else "python3"


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the processes we time.

    ``PYTHONDONTWRITEBYTECODE`` is dropped: with it set, every module whose ``.pyc`` is
    missing or stale is compiled again in every process (tens of ms per ``corral`` command),
    which measures the shell we were started from rather than the engine.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE",)}
    env.update(extra or {})
    return env


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples) if samples else float("nan")


def timed(cmd: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 120,
          input_bytes: bytes | None = None) -> tuple[float, str]:
    """Run ``cmd``; return (wall seconds, stdout). A failure raises ``BenchError`` with the
    last line of its stderr."""
    t0 = time.perf_counter()
    proc = subprocess.run(list(cmd), env=env, capture_output=True, timeout=timeout,
                          input=input_bytes, stdin=None if input_bytes is not None
                          else subprocess.DEVNULL, check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise BenchError(f"{' '.join(cmd[:4])}...: exit {proc.returncode}: "
                         f"{err[-1] if err else ''}")
    return elapsed, proc.stdout.decode(errors="replace")


def run(cmd: Sequence[str], *, env: dict[str, str] | None = None, check: bool = True,
        timeout: float = 300, input_bytes: bytes | None = None) -> subprocess.CompletedProcess:
    """Run a command, output captured; ``check`` raises ``BenchError`` on failure."""
    proc = subprocess.run(list(cmd), env=env, capture_output=True, timeout=timeout,
                          input=input_bytes,
                          stdin=None if input_bytes is not None else subprocess.DEVNULL,
                          check=False)
    if check and proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise BenchError(f"{' '.join(str(c) for c in cmd[:5])}: exit {proc.returncode}: "
                         f"{err[-1] if err else ''}")
    return proc


def which(name: str, *extra_dirs: str) -> str | None:
    return shutil.which(name) or shutil.which(
        name, path=":".join([*extra_dirs, "/usr/sbin", "/usr/bin", "/sbin", "/bin"]))


def first_line(cmd: Sequence[str]) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        proc = subprocess.run(list(cmd), capture_output=True, timeout=30, check=False)
        text = (proc.stdout or proc.stderr).decode(errors="replace").strip()
        return text.splitlines()[0] if text else ""
    return ""


# -- subnets ---------------------------------------------------------------------------------


def host_routes() -> list[ipaddress.IPv4Network]:
    """Every IPv4 destination in any routing table, and every address's network."""
    nets: list[ipaddress.IPv4Network] = []
    out = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True,
                         text=True, check=False).stdout
    for line in out.splitlines():
        words = line.split()
        if not words:
            continue
        kinds = ("local", "broadcast", "unicast", "multicast", "unreachable", "blackhole",
                 "prohibit", "throw", "anycast", "nat")
        dest = words[1] if words[0] in kinds and len(words) > 1 else words[0]
        if dest == "default":
            continue
        with contextlib.suppress(ValueError):
            nets.append(ipaddress.ip_network(dest, strict=False))
    return nets


def free_subnets(count: int, prefix: int, base: str = "10.228.0.0/14",
                 avoid: Iterable[ipaddress.IPv4Network] = ()) -> list[ipaddress.IPv4Network]:
    """``count`` subnets of length ``prefix`` under ``base`` that overlap no host route, so
    no packet to them can leave the host."""
    taken = host_routes() + list(avoid)
    found: list[ipaddress.IPv4Network] = []
    for cand in ipaddress.ip_network(base).subnets(new_prefix=prefix):
        if any(cand.overlaps(t) for t in taken + found):
            continue
        found.append(cand)
        if len(found) == count:
            return found
    raise BenchError(f"no {count} free /{prefix} subnets under {base}")


# -- memory and processes ----------------------------------------------------------------------


def smaps_kb(pid: int) -> dict[str, int]:
    """Pss and Rss of ``pid`` in kB from /proc/<pid>/smaps_rollup ({} if it is gone)."""
    out: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("Pss", "Rss"):
            out[key] = int(rest.split()[0])
    return out


def processes() -> list[tuple[int, str, list[str]]]:
    """(pid, comm, argv) of every process (kernel threads have an empty argv)."""
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            argv = [a.decode(errors="replace") for a in
                    Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue
        out.append((pid, comm, argv))
    return out


def find_pids(marker: str, comm_prefix: str = "") -> list[int]:
    """Processes whose command line mentions ``marker`` (a private path of this run), and
    whose name starts with ``comm_prefix``; never a zombie (it has no command line)."""
    return [pid for pid, comm, argv in processes()
            if comm.startswith(comm_prefix) and any(marker in a for a in argv)]


def pss_total_kb(pids: Iterable[int]) -> tuple[int, int, int]:
    """(sum of Pss, sum of Rss, number of processes read) in kB."""
    pss = rss = n = 0
    for pid in pids:
        m = smaps_kb(pid)
        if m:
            pss += m.get("Pss", 0)
            rss += m.get("Rss", 0)
            n += 1
    return pss, rss, n
