"""Docker's restart rules and backoff, without any container."""

from __future__ import annotations

import pytest

from engine.core.restart import next_delay
from engine.store.config import parse_restart

T0, T1, T20 = "2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z", "2026-01-01T00:00:20Z"


def delay(policy: str, code: int = 1, count: int = 0, prev: float = 0.0, stop: bool = False,
          finished: str = T1):
    return next_delay(parse_restart(policy), exit_code=code, manual_stop=stop,
                      restart_count=count, previous_delay=prev, started_at=T0,
                      finished_at=finished)


def test_no_policy_never_restarts() -> None:
    assert delay("no") is None


@pytest.mark.parametrize("policy", ["always", "unless-stopped", "on-failure"])
def test_manual_stop_is_final(policy: str) -> None:
    assert delay(policy, stop=True) is None


def test_on_failure_counts_and_ignores_success() -> None:
    assert delay("on-failure:3", code=0) is None
    assert [delay("on-failure:3", count=n) is not None for n in range(5)] == [
        True, True, True, False, False]
    assert delay("on-failure", count=100) is not None


def test_backoff_doubles_to_a_minute_and_resets_after_ten_seconds() -> None:
    seen, prev = [], 0.0
    for _ in range(12):
        prev = delay("always", prev=prev)
        seen.append(prev)
    assert seen[:4] == [0.1, 0.2, 0.4, 0.8]
    assert seen[-1] == 60.0
    assert delay("always", prev=60.0, finished=T20) == 0.1
