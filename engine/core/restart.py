"""Restart policies, as Docker's restart manager: which exits restart, and after how long.

The delay starts at 100 ms and doubles with each restart in a row, up to a minute; a run of
10 seconds or more resets it. Pure: the engine asks, then sleeps and starts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

INITIAL_DELAY = 0.1
MAX_DELAY = 60.0
RESET_AFTER = 10.0


def _seconds_between(started: str, finished: str) -> float:
    try:
        a = datetime.fromisoformat(started.replace("Z", "+00:00"))
        b = datetime.fromisoformat(finished.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return max((b - a).total_seconds(), 0.0)


def next_delay(policy: dict[str, Any], *, exit_code: int, manual_stop: bool,
               restart_count: int, previous_delay: float, started_at: str,
               finished_at: str) -> float | None:
    """Seconds to wait before the restart the policy asks for, or None for no restart."""
    name = policy.get("Name", "no")
    if manual_stop or name == "no":
        return None
    if name == "on-failure":
        limit = int(policy.get("MaximumRetryCount") or 0)
        if exit_code == 0 or (limit and restart_count >= limit):
            return None
    if _seconds_between(started_at, finished_at) >= RESET_AFTER or previous_delay <= 0:
        return INITIAL_DELAY
    return min(previous_delay * 2, MAX_DELAY)


def after_reboot(policy: dict[str, Any], *, manual_stop: bool) -> float | None:
    """The delay of the start a container that ran when the host went down gets from the first
    engine after it, as dockerd's start gives one: at once for ``always`` and
    ``unless-stopped``; ``on-failure`` waits for a failure of the container's own (a reboot
    is none), and a container the user stopped stays stopped."""
    if manual_stop or policy.get("Name", "no") not in ("always", "unless-stopped"):
        return None
    return 0.0
