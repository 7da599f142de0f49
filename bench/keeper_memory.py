"""The log keeper's memory for docs/RELIABILITY.md: Pss of the root's one keeper with 1 and
with N kept containers (default 50), beside the Pss of one conmon; never asserts.

    .venv/bin/python bench/keeper_memory.py [-n 50]

Containers run ``sleep`` with ``max-size=1m max-file=2`` in a private root that is torn down
after (tests/teardown.py), keeper included.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from common import smaps_kb  # noqa: E402
from leakprobe import keeper_pids  # noqa: E402


def settled_pss(pid: int) -> int:
    """The keeper's Pss once it has taken in what it was told (it reads entries on inotify)."""
    time.sleep(1.0)
    return smaps_kb(pid).get("Pss", 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50)
    args = parser.parse_args()
    from teardown import teardown_root

    from engine import Engine
    from engine.host.conmon import find_conmon_of

    with tempfile.TemporaryDirectory(prefix="corral-keeper-") as tmp:
        root = Path(tmp) / "root"
        eng = Engine(root, watch=False)
        try:
            image = eng.images.busybox().name
            opts = {"max-size": "1m", "max-file": "2"}
            figures = []
            for i in range(1, args.n + 1):
                cid = eng.create(image, ["sleep", "600"], network="none", log_opts=opts)
                eng.start(cid)
                if i in (1, 10, args.n):
                    [pid] = keeper_pids(eng.layout)
                    figures.append((i, settled_pss(pid), smaps_kb(pid).get("Rss", 0)))
                if i == 1:
                    conmon = smaps_kb(find_conmon_of(cid))
            print(f"one conmon: Pss {conmon.get('Pss', 0)} kB, Rss {conmon.get('Rss', 0)} kB")
            for n, pss, rss in figures:
                print(f"keeper with {n:3d} kept: Pss {pss} kB, Rss {rss} kB "
                      f"({pss / n:.0f} kB a container)")
        finally:
            eng.close()
            teardown_root(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
