"""Restart after monitor loss: how long from a SIGKILL of a container's conmon until its
``--restart always`` policy has it running again; printed, never asserted.

- embedded: an ``Engine`` with its exit watcher is alive; nothing else is done;
- cli: no engine process is alive; the figure runs from the kill to the container running
  again, with one ``corral ps`` run right after the kill (the command that notices);
- cli, from ps: the same run, counted from the start of that ``corral ps``.

Each figure is the median (and the slowest) of N runs (default 5) in a private root.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _state(root: Path, cid: str) -> dict:
    from engine.store.paths import Layout

    with open(Layout.for_root(root).container(cid).state, "rb") as f:
        return json.load(f)


def _running_again(root: Path, cid: str, old_pid: int, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = _state(root, cid)
        if st["status"] == "running" and st["pid"] not in (0, old_pid):
            return time.perf_counter()
        time.sleep(0.005)
    raise SystemExit(f"{cid[:12]} was not restarted in {timeout} s")


def bench_embedded(root: Path, image: str, n: int) -> list[float]:
    from engine import Engine

    eng = Engine(root)
    out = []
    try:
        cid = eng.create(image, ["/bin/sleep", "600"], restart="always", network="none")
        eng.start(cid)
        for _ in range(n):
            time.sleep(11)  # past Docker's 10 s, so each restart waits the first 100 ms
            st = eng.get(cid).state
            t0 = time.perf_counter()
            os.kill(st.conmon_pid, signal.SIGKILL)
            out.append(_running_again(root, cid, st.pid) - t0)
        eng.remove(cid, force=True)
    finally:
        eng.close()
    return out


def bench_cli(root: Path, image: str, n: int) -> tuple[list[float], list[float]]:
    from engine import Engine
    from engine.host.runc import process_alive

    eng = Engine(root, watch=False)
    cid = eng.create(image, ["/bin/sleep", "600"], restart="always", network="none")
    eng.start(cid)
    eng.close()
    ps = [sys.executable, "-m", "engine", "--root", str(root), "ps"]
    total, from_ps = [], []
    for _ in range(n):
        time.sleep(11)
        st = _state(root, cid)
        t0 = time.perf_counter()
        os.kill(st["conmon_pid"], signal.SIGKILL)
        while process_alive(st["conmon_pid"]):  # a zombie until init reaps it: dead
            time.sleep(0.001)
        t1 = time.perf_counter()
        subprocess.run(ps, check=True, capture_output=True)
        t2 = _running_again(root, cid, st["pid"])
        total.append(t2 - t0)
        from_ps.append(t2 - t1)
    subprocess.run([sys.executable, "-m", "engine", "--root", str(root), "rm", "-f", cid],
                   check=True, capture_output=True)
    return total, from_ps


def show(label: str, samples: list[float]) -> None:
    print(f"{label:34} median {statistics.median(samples) * 1000:7.0f} ms"
          f"   slowest {max(samples) * 1000:7.0f} ms   (n={len(samples)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from teardown import teardown_root

    from engine import Engine

    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        try:
            eng = Engine(root, watch=False)
            image = eng.images.busybox().name
            eng.close()
            show("embedded engine (watcher)", bench_embedded(root, image, args.n))
            total, from_ps = bench_cli(root, image, args.n)
            show("cli: kill, ps at once → running", total)
            show("cli: corral ps → running", from_ps)
        finally:
            teardown_root(root)


if __name__ == "__main__":
    main()
