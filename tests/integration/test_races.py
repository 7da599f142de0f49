"""Races: 8 threads of one embedded engine create, start, stop, pause, unpause, restart and
force-remove the same container name at random. Only the typed refusals may come out
(Conflict, NotFound, NotModified), nothing deadlocks (every thread ends in time), no address
is ever held twice, and nothing is left of any container seen.

``OPERATIONS`` in CI; the issue's 1000 by hand with ``CORRAL_RACE_OPERATIONS=1000``.
"""

from __future__ import annotations

import collections
import json
import os
import random
import threading
import time
from collections.abc import Callable

import pytest

from engine import Conflict, Engine, NotFound, NotModified

OPERATIONS = int(os.environ.get("CORRAL_RACE_OPERATIONS", "300"))
THREADS = 8
DEADLINE = 60.0 + OPERATIONS * 0.5  # generous: a deadlock never ends, a slow run does
NAME = "racer"
TYPED = (Conflict, NotFound, NotModified)
REFUSAL_PAUSE = 0.02


def lease_owners(engine) -> collections.Counter:
    """How many addresses each container holds, over every lease table."""
    owners: collections.Counter = collections.Counter()
    for table in (engine.layout.root / "networks").glob("*.leases.json"):
        try:
            owners.update(json.loads(table.read_text()).values())
        except FileNotFoundError:
            continue
    return owners


@pytest.mark.parametrize("engines", ["one engine", "an engine each"])
def test_eight_threads_on_one_container(engine, busybox, probe, engines: str) -> None:
    """With one embedded engine shared by the threads, and with an engine per thread (as
    separate CLI processes: only the per-container file locks keep them apart)."""
    own = [Engine(engine.layout.root, watch=False) for _ in range(THREADS)] \
        if engines == "an engine each" else []
    try:
        run_race(engine, own or [engine] * THREADS, busybox, probe)
    finally:
        for e in own:
            e.close()


def run_race(engine, by_thread: list, busybox: str, probe) -> None:
    seen: set[str] = set()
    outcomes: collections.Counter = collections.Counter()
    unexpected: list[str] = []
    double_leases: list[str] = []
    lock = threading.Lock()
    left = [OPERATIONS]
    start_gate = threading.Barrier(THREADS)

    def operations(eng) -> dict[str, Callable[[], object]]:
        def create() -> None:
            cid = eng.create(busybox, ["/bin/sleep", "60"], name=NAME)
            with lock:
                seen.add(cid)

        return {
            "create": create,
            "start": lambda: eng.start(NAME),
            "stop": lambda: eng.stop(NAME, timeout=0),
            "pause": lambda: eng.pause(NAME),
            "unpause": lambda: eng.unpause(NAME),
            "restart": lambda: eng.restart(NAME, timeout=0),
            "remove": lambda: eng.remove(NAME, force=True),
        }
    # creates and starts weigh more, so the container exists and runs most of the time
    names = ["create"] * 3 + ["start"] * 3 + ["stop", "pause", "unpause", "restart", "remove"]

    def worker(seed: int) -> None:
        rnd = random.Random(seed)
        ops = operations(by_thread[seed])
        start_gate.wait()
        while True:
            with lock:
                if left[0] <= 0:
                    return
                left[0] -= 1
            op = rnd.choice(names)
            try:
                ops[op]()
                result = "ok"
            except TYPED as exc:
                result = type(exc).__name__
                # a refusal is instant: without a pause, 7 threads would spend the whole
                # budget on NotFound while the 8th creates the container
                time.sleep(REFUSAL_PAUSE)
            except Exception as exc:  # anything else is a finding
                result = "unexpected"
                with lock:
                    unexpected.append(f"{op}: {type(exc).__name__}: {exc}")
            owners = lease_owners(engine)
            with lock:
                outcomes[f"{op} {result}"] += 1
                double_leases.extend(f"{cid} holds {n}" for cid, n in owners.items() if n > 1)

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, DEADLINE - (time.monotonic() - t0)))
    elapsed = time.monotonic() - t0
    assert not [t for t in threads if t.is_alive()], f"deadlock: threads alive after {elapsed}s"
    done = sum(n for key, n in outcomes.items() if key.endswith(" ok"))
    label = "one engine" if by_thread[0] is by_thread[-1] else "an engine each"
    print(f"\n{label}: {OPERATIONS} operations by {THREADS} threads in {elapsed:.1f}s, {done} "
          f"carried out; {len(seen)} containers; {dict(sorted(outcomes.items()))}")
    assert unexpected == []
    assert double_leases == []
    assert sum(outcomes.values()) == OPERATIONS

    # no address held by two containers: one lease table maps each address to one owner, and
    # at most the surviving container still holds one
    survivors = [c["Id"] for c in engine.list(all=True)]
    assert len(survivors) <= 1 and set(survivors) <= seen
    for cid in survivors:
        engine.remove(cid, force=True)
    assert sum(lease_owners(engine).values()) == 0
    for cid in seen:
        assert probe.leaks(cid, removed=True) == [], cid
    assert os.listdir(engine.layout.names) == []
