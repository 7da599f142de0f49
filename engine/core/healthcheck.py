"""The health monitor's loop: a check through ``Engine.exec`` every interval, its result
recorded by the engine (``corral health-monitor ID``, spawned by the start plan).
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import TYPE_CHECKING

from ..errors import CorralError, NotFound
from ..start.health import check_argv
from ..store.container import now_rfc3339

if TYPE_CHECKING:
    from .engine import Engine


def run_monitor(engine: Engine, cid: str) -> None:
    """The monitor's loop: check every interval until the container stops running."""
    began = time.monotonic()
    while True:
        try:
            hc = engine.get(cid).config.healthcheck
            if hc is None:
                return
            time.sleep(hc["interval"])
            c = engine.get(cid)
        except NotFound:
            return
        if c.state.status in ("starting", "paused"):
            continue  # the start that spawned us is still saving its state, or frozen
        if c.state.status != "running" or c.state.health_pid != os.getpid():
            return  # stopped, or a newer start has a monitor of its own
        start = now_rfc3339()
        try:
            result = engine.exec(cid, check_argv(hc["test"]), capture=True,
                                 timeout=hc["timeout"])
            code, output = result.exit_code, result.output.decode(errors="replace")
        except CorralError as exc:
            code, output = -1, str(exc)
        with contextlib.suppress(NotFound):
            engine.record_health(cid, exit_code=code, output=output, start=start,
                                 end=now_rfc3339(),
                                 in_start_period=time.monotonic() - began < hc["start_period"])
