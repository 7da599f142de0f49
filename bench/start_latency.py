"""Start latency, printed side by side with the raw floor; never asserts.

- ``corral run --rm busybox true``, end to end, as a user types it (a new process each time);
- the embedded start of one container (``Engine.start`` until running), in one process;
- the floor: ``runc run`` of a prepared busybox bundle, no engine.

Each figure is the median of N runs (default 20) in a private root that is removed after.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:8.1f} ms"


def bench_cli(root: Path, n: int) -> list[float]:
    cmd = [sys.executable, "-m", "engine", "--root", str(root), "run", "--rm", "busybox", "true"]
    subprocess.run(cmd, check=True, capture_output=True)  # warm the page cache
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        out.append(time.perf_counter() - t0)
    return out


def bench_embedded(root: Path, n: int) -> list[float]:
    from engine import Engine

    eng = Engine(root, watch=False)
    out = []
    try:
        for _ in range(n):
            cid = eng.create("busybox", ["/bin/sleep", "30"])
            t0 = time.perf_counter()
            eng.start(cid)
            out.append(time.perf_counter() - t0)
            eng.remove(cid, force=True)
    finally:
        eng.close()
    return out


def bench_raw_runc(root: Path, n: int) -> list[float]:
    from engine.start.spec import SpecOptions, build_spec

    bundle = root / "raw-bundle"
    rootfs = root / "images"
    image_rootfs = next(rootfs.glob("*/rootfs"))
    bundle.mkdir()
    spec = build_spec(SpecOptions(args=["/bin/true"], rootfs=str(image_rootfs),
                                  readonly_rootfs=True, cgroups_path="/corral-bench/raw"))
    (bundle / "config.json").write_text(json.dumps(spec))
    state = root / "raw-runc"
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        subprocess.run(["runc", f"--root={state}", "run", "--bundle", str(bundle), f"raw{i}"],
                       check=True, capture_output=True, stdin=subprocess.DEVNULL)
        out.append(time.perf_counter() - t0)
        subprocess.run(["runc", f"--root={state}", "delete", "-f", f"raw{i}"],
                       capture_output=True)
    for parent in Path("/sys/fs/cgroup").glob("*/corral-bench"):
        parent.rmdir()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=20)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="corral-bench-", dir="/var/tmp"))
    try:
        subprocess.run([sys.executable, "-m", "engine", "--root", str(root), "image", "busybox"],
                       check=True, capture_output=True)
        rows = [
            ("runc run busybox true (raw floor, no engine)", bench_raw_runc(root, args.n)),
            ("corral run --rm busybox true (CLI, end to end)", bench_cli(root, args.n)),
            ("Engine.start of one container (embedded)", bench_embedded(root, args.n)),
        ]
    finally:
        subprocess.run([sys.executable, "-m", "engine", "--root", str(root), "rm", "-f",
                        *subprocess.run([sys.executable, "-m", "engine", "--root", str(root),
                                         "ps", "-aq"], capture_output=True,
                                        text=True).stdout.split()],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
    print(f"median of {args.n} runs on {Path('/etc/hostname').read_text().strip() or 'host'}"
          f" ({subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores)")
    for label, samples in rows:
        print(f"  {label:<50} {median_ms(samples)}")


if __name__ == "__main__":
    main()
