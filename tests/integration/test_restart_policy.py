"""Restart policies with real exits: conmon's exit command applies them with no engine alive,
and an embedded engine applies them too."""

from __future__ import annotations

import os
import signal
import time

from waiting import wait_for

from engine import Engine
from engine.store.files import read_json


def test_on_failure_3_restarts_exactly_three_times_with_growing_delays(root_dir) -> None:
    eng = Engine(root_dir, watch=False)
    eng.images.busybox()
    cid = eng.create("busybox", ["/bin/sh", "-c", "exit 1"], restart="on-failure:3",
                     network="none")
    eng.start(cid)
    state_file = eng.layout.container(cid).state
    eng.close()

    def settled() -> bool:
        st = read_json(state_file)
        return st["restart_count"] == 3 and st["status"] == "dead" \
            and not st["restart_pending"]

    wait_for(settled)
    time.sleep(1.0)  # nothing more happens after the third restart
    st = read_json(state_file)
    assert st["restart_count"] == 3 and st["exit_code"] == 1
    starts = [h["time"] for h in st["history"] if h["trigger"] == "start"]
    assert len(starts) == 4
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert gaps[0] < gaps[1] < gaps[2], gaps  # 100 ms, 200 ms, 400 ms of backoff


def test_always_survives_a_kill_of_its_process_and_manual_stop_is_final(engine, busybox) -> None:
    cid = engine.create(busybox, ["/bin/sleep", "60"], restart="always", network="none")
    engine.start(cid)
    first_pid = engine.inspect(cid)["State"]["Pid"]
    os.kill(first_pid, signal.SIGKILL)

    def restarted() -> bool:
        st = engine.inspect(cid)["State"]
        return st["Running"] and st["Pid"] not in (0, first_pid)

    wait_for(restarted)
    assert engine.inspect(cid)["RestartCount"] == 1
    engine.stop(cid, timeout=1)
    time.sleep(1.0)
    st = engine.inspect(cid)
    assert st["State"]["Status"] == "dead" and not st["State"]["Restarting"]
    assert st["RestartCount"] == 1
