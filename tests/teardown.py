"""Tear down an engine root after a test, whatever state the test left it in."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from leakprobe import LeakProbe, keeper_pids


def teardown_root(root: Path) -> None:
    from engine import CorralError, Engine
    from engine.host import mounts as _mounts
    from engine.logs import keeper as logkeeper

    eng = Engine(root, watch=False)
    try:
        for info in eng.list(all=True):
            with contextlib.suppress(CorralError):
                eng.remove(info["Id"], force=True)
        eng.network_prune(include_default=True)
        leftover = LeakProbe(eng.layout).mounts()
    finally:
        eng.close()
        logkeeper.stop(eng.layout.logkeeper)  # ends by itself once nothing is kept; if not
    leftover += [f"log keeper {pid}" for pid in keeper_pids(eng.layout)]
    # last resort, so one broken test cannot break the next run
    for point in sorted(_mounts.mounted_under(root), key=len, reverse=True):
        _mounts.unmount(Path(point))
    shutil.rmtree(eng.layout.run, ignore_errors=True)
    assert not leftover, f"left under {root}: {leftover}"
