"""Health checks, with Docker's statuses: starting, healthy, unhealthy.

One small monitor process per container with a health check, detached from whoever started
the container (as conmon is), runs the check through the runtime every interval and records
the result in the container's state; it ends when the container stops running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..host.runc import process_alive

STARTING, HEALTHY, UNHEALTHY = "starting", "healthy", "unhealthy"
LOG_KEEP = 5
OUTPUT_KEEP = 4096
MONITOR_COMMAND = "health-monitor"


def initial() -> dict[str, Any]:
    return {"Status": STARTING, "FailingStreak": 0, "Log": []}


def check_argv(test: list[str]) -> list[str]:
    return list(test[1:]) if test[0] == "CMD" else ["/bin/sh", "-c", test[1]]


def apply_result(health: dict[str, Any], hc: dict[str, Any], *, exit_code: int, output: str,
                 start: str, end: str, in_start_period: bool) -> dict[str, Any]:
    """The new health record after one check (Docker's rules: failures during the start period
    do not count; ``retries`` failures in a row make it unhealthy)."""
    h = {"Status": health.get("Status", STARTING),
         "FailingStreak": int(health.get("FailingStreak", 0)),
         "Log": list(health.get("Log", []))}
    h["Log"] = (h["Log"] + [{"Start": start, "End": end, "ExitCode": exit_code,
                             "Output": output[:OUTPUT_KEEP]}])[-LOG_KEEP:]
    if exit_code == 0:
        h["Status"], h["FailingStreak"] = HEALTHY, 0
    elif not in_start_period:
        h["FailingStreak"] += 1
        if h["FailingStreak"] >= hc["retries"]:
            h["Status"] = UNHEALTHY
    return h


def spawn_monitor(root: Path, cid: str) -> int:
    """Start the monitor of ``cid`` in its own session; it outlives the caller."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "--root", str(root), MONITOR_COMMAND, cid],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True,
        # fail points are for the engine process a test set them on, not for its monitors
        env={k: v for k, v in os.environ.items() if k != "CORRAL_FAIL_POINTS"})
    return proc.pid


def stop_monitor(pid: int, cid: str) -> None:
    """Kill the monitor of ``cid`` if it is still there (idempotent, never another process).

    Not the caller: a monitor that finds its container's conmon gone handles that exit, and
    must live through the cleanup it runs."""
    if pid == os.getpid() or not process_alive(pid):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return
    if MONITOR_COMMAND.encode() in cmdline and cid.encode() in cmdline:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


