"""Log figures for docs/RELIABILITY.md: read time of a 1 GB log, and rotation kept.

    .venv/bin/python bench/log_read.py [--size-mb 1024] [--rotate-mb 100] [--keep DIR]

``read``: a k8s-file log of ``--size-mb`` (two streams, one line in 50 split into ``P``
pieces) is written to a temporary folder, then ``logs --tail 1`` / ``--tail 1000`` /
``--since`` (the log's last minute) are timed through the CLI on a container whose log it
is, and with ``--whole`` the whole read through ``read_logs`` for scale (what ``--tail``
cost before). ``rotate``: a container writes
``--rotate-mb`` as fast as it can with ``max-size=10m max-file=3``; the kept files, their
sizes and whether the kept lines are the last ones, in order, are printed. Not part of the
test suite (the log alone is a gigabyte); nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from engine.logs.files import log_files  # noqa: E402
from engine.logs.reader import read_logs  # noqa: E402


def write_log(path: Path, size: int, start: datetime) -> int:
    """Records one millisecond apart from ``start``; returns how many lines."""
    lines, written, chunk = 0, 0, []
    with open(path, "w") as f:
        while written < size:
            t = start + timedelta(milliseconds=lines)
            stamp = f"{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond:06d}000+00:00"
            stream = "stderr" if lines % 7 == 0 else "stdout"
            text = f"line {lines} " + "x" * 60
            if lines % 50 == 0:
                rec = f"{stamp} {stream} P {text[:30]}\n{stamp} {stream} F {text[30:]}\n"
            else:
                rec = f"{stamp} {stream} F {text}\n"
            chunk.append(rec)
            written += len(rec)
            lines += 1
            if len(chunk) >= 10000:
                f.write("".join(chunk))
                chunk = []
        f.write("".join(chunk))
    return lines


def timed(argv: list[str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, check=True)
    return time.perf_counter() - t0, r.stdout.count(b"\n") + r.stderr.count(b"\n")


def busybox(eng: object) -> str:
    from engine import NotFound

    try:
        return eng.images.get("busybox").name  # type: ignore[attr-defined]
    except NotFound:
        return eng.images.busybox().name  # type: ignore[attr-defined]


def bench_read(root: Path, size_mb: int, whole: bool) -> None:
    from engine import Engine

    eng = Engine(root)
    try:
        cid = eng.create(busybox(eng), ["true"], network="none",
                         log_opts={"max-size": "-1"})
    finally:
        eng.close()
    log = Engine(root, watch=False).layout.container(cid).log
    t0 = time.perf_counter()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    lines = write_log(log, size_mb << 20, start)
    last_minute = start + timedelta(milliseconds=lines) - timedelta(minutes=1)
    print(f"wrote {log.stat().st_size / 2**20:.0f} MiB, {lines} lines, "
          f"in {time.perf_counter() - t0:.1f} s")
    corral = [sys.executable, "-m", "engine", "--root", str(root), "logs"]
    cases = (("--tail 0", ["--tail", "0"]), ("--tail 1", ["--tail", "1"]),
             ("--tail 1000", ["--tail", "1000"]),
             ("--since", ["--since", last_minute.isoformat()]))
    for what, extra in cases:
        runs = [timed([*corral, *extra, cid]) for _ in range(3)]
        best = min(r[0] for r in runs)
        print(f"corral logs {what:12} {best * 1000:8.1f} ms  ({runs[0][1]} lines)")
    for n in (1, 1000):  # in process: the reading alone, without the command's start-up
        t0 = time.perf_counter()
        got = len(list(read_logs(log, tail=n)))
        print(f"read_logs tail={n:<5}   {(time.perf_counter() - t0) * 1000:8.1f} ms  "
              f"({got} lines)")
    if whole:  # what every --tail read before (the whole log), for scale
        t0 = time.perf_counter()
        n = sum(1 for _ in read_logs(log))
        took = time.perf_counter() - t0
        print(f"read_logs whole       {took:8.1f} s   ({n} lines, "
              f"{took / size_mb * 1024:.0f} s per GiB)")


def bench_rotate(root: Path, rotate_mb: int) -> None:
    from engine import Engine

    eng = Engine(root)
    try:
        lines = (rotate_mb << 20) // 100
        cmd = ["sh", "-c", f"i=0; while [ $i -lt {lines} ]; do echo \"line $i {'r' * 84}\"; "
               "i=$((i+1)); done"]
        cid = eng.create(busybox(eng), cmd, network="none",
                         log_opts={"max-size": "10m", "max-file": "3"})
        t0 = time.perf_counter()
        eng.start(cid)
        eng.wait(cid)
        took = time.perf_counter() - t0
        time.sleep(1)  # the keeper's last pass after conmon's end
        files = log_files(eng.layout.container(cid).log)
        got = [int(r.text.split()[1]) for r in eng.logs(cid)]
        print(f"wrote {lines} lines (~{rotate_mb} MiB) in {took:.1f} s with max-size=10m "
              f"max-file=3: {len(files)} files kept, sizes "
              f"{[round(f.stat().st_size / 2**20, 2) for f in files]} MiB")
        ok = bool(got) and got[-1] == lines - 1 and got == list(range(got[0], lines))
        print(f"logs: {len(got)} lines, {got[0] if got else '-'}..{got[-1] if got else '-'}, "
              f"{'the last ones, in order, none missing' if ok else 'NOT contiguous'}")
    finally:
        eng.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--rotate-mb", type=int, default=100)
    ap.add_argument("--whole", action="store_true", help="also time a whole read")
    ap.add_argument("--skip-read", action="store_true")
    ap.add_argument("--skip-rotate", action="store_true")
    args = ap.parse_args()
    from teardown import teardown_root

    base = Path(tempfile.mkdtemp(prefix="corral-logbench-", dir="/var/tmp"))
    root = base / "root"
    root.mkdir()
    try:
        if not args.skip_read:
            bench_read(root, args.size_mb, args.whole)
        if not args.skip_rotate:
            bench_rotate(root, args.rotate_mb)
    finally:
        teardown_root(root)
        shutil.rmtree(base, ignore_errors=True)
        os.sync()


if __name__ == "__main__":
    main()
