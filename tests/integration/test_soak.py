"""Soak: one container started and stopped over and over by an embedded engine (its exit
watcher on). The engine's open file descriptors and memory stay flat, no zombie is left among
this process's children, and the address pool is whole again.

``CYCLES`` in CI; the issue's 500 by hand with ``CORRAL_SOAK_CYCLES=500``.
"""

from __future__ import annotations

import gc
import json
import os
import time

from states import HISTORY_LIMIT

CYCLES = int(os.environ.get("CORRAL_SOAK_CYCLES", "60"))
WARMUP = 20  # first uses import modules, fill caches and pools, open the firewall table
MAX_FD_GROWTH = 2
MAX_RSS_GROWTH = 5 * 1024 * 1024
SETTLE = 5.0  # the watcher closes a pidfd once conmon is gone, a moment after the stop


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def zombie_children() -> list[int]:
    me = os.getpid()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == me:
            found.append(int(entry.name))
    return found


def settled_fds(limit: int) -> int:
    deadline = time.monotonic() + SETTLE
    while (n := open_fds()) > limit and time.monotonic() < deadline:
        time.sleep(0.05)
    return n


def leased(engine) -> dict[str, str]:
    table: dict[str, str] = {}
    for path in (engine.layout.root / "networks").glob("*.leases.json"):
        table.update(json.loads(path.read_text()))
    return table


def cycle(engine, cid: str) -> None:
    engine.start(cid)
    engine.stop(cid, timeout=0)


def test_start_stop_cycles_leak_nothing(engine, busybox, probe) -> None:
    cid = engine.create(busybox, ["/bin/sleep", "60"], publish=["127.0.0.1::80"])
    # the state file grows until its history is full (HISTORY_LIMIT entries): fill it first,
    # cheaply, so the figures are those of a container that has lived long
    engine.start(cid)
    for _ in range(HISTORY_LIMIT // 2):
        engine.pause(cid)
        engine.unpause(cid)
    engine.stop(cid, timeout=0)
    for _ in range(WARMUP):
        cycle(engine, cid)
    assert len(engine.inspect(cid)["History"]) == HISTORY_LIMIT
    gc.collect()
    fds0 = open_fds()
    rss0 = rss_bytes()

    t0 = time.monotonic()
    for _ in range(CYCLES):
        cycle(engine, cid)
    elapsed = time.monotonic() - t0

    gc.collect()
    fds1 = settled_fds(fds0 + MAX_FD_GROWTH)
    rss1 = rss_bytes()
    print(f"\n{CYCLES} start/stop cycles in {elapsed:.1f}s ({elapsed / CYCLES * 1000:.0f} ms "
          f"each): fds {fds0} -> {fds1}, RSS {rss0 / 2**20:.1f} -> {rss1 / 2**20:.1f} MiB")
    assert fds1 - fds0 <= MAX_FD_GROWTH
    assert rss1 - rss0 <= MAX_RSS_GROWTH
    assert zombie_children() == []
    assert leased(engine) == {}  # the pool is whole again
    assert engine.inspect(cid)["State"]["Status"] == "dead"
    assert probe.leaks(cid) == []
    engine.remove(cid)
    assert probe.leaks(cid, removed=True) == []
