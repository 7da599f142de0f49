"""The embedded engine's exit watcher: each pidfd it holds is closed exactly once, also when
the engine closes while the watcher thread is about to handle that very exit (closed twice,
the number could by then belong to another file of the embedding process)."""

from __future__ import annotations

import os
import select
import subprocess
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from engine.core.exits import _ExitWatcher


def test_closing_while_an_exit_is_being_picked_up_closes_its_pidfd_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    child = subprocess.Popen(["sleep", "30"])
    watcher = _ExitWatcher(engine=None)  # type: ignore[arg-type]
    handled: list[str] = []
    monkeypatch.setattr(watcher, "_handle", handled.append)
    closing_errors: list[BaseException] = []
    closers: list[threading.Thread] = []
    closer_started = threading.Event()
    real_select = select.select

    def close() -> None:
        try:
            watcher.close()
        except BaseException as e:  # noqa: BLE001 - the test reports it
            closing_errors.append(e)

    def select_then_close(*args: Any) -> Any:
        ready = real_select(*args)
        exit_seen = any(fd != watcher._wake_r for fd in ready[0])
        if threading.current_thread().name == "corral-exit-watcher" and exit_seen:
            # the engine closes between the watcher's select and its taking of the fd
            closers.append(threading.Thread(target=close))
            closers[0].start()
            while not watcher._closed:
                os.sched_yield()
            closer_started.set()
        return ready

    monkeypatch.setattr(select, "select", select_then_close)
    try:
        watcher.add(SimpleNamespace(id="c1", state=SimpleNamespace(conmon_pid=child.pid)))
        child.kill()
        child.wait()
        assert closer_started.wait(timeout=10), "the watcher never saw the exit"
        closers[0].join(timeout=10)
    finally:
        monkeypatch.undo()
        if child.poll() is None:
            child.kill()
            child.wait()
    assert not closers[0].is_alive()
    assert closing_errors == []  # no EBADF: the fd was not closed twice
    assert handled == []  # closed: the exit is left to whoever comes next
