"""Every allowed and every refused transition of the table, on the pure machine."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

from states import (
    REFUSALS,
    STATES,
    TRANSITIONS,
    TRIGGERS,
    Lifecycle,
    LifecycleError,
    TransitionConflict,
    TransitionNotModified,
    allowed,
    refusal,
)

PAIRS = list(itertools.product(TRIGGERS, STATES))


@pytest.mark.parametrize("trigger,state", [(t, s) for t, s in PAIRS if allowed(t, s)])
def test_allowed_transition_moves_to_its_destination(trigger: str, state: str) -> None:
    lc = Lifecycle(state, name="c1")
    lc.fire(trigger)
    (row,) = [t for t in TRANSITIONS if t.trigger == trigger and state in t.sources]
    assert lc.state == row.dest
    assert (lc.history[-1].trigger, lc.history[-1].source, lc.history[-1].dest) == (
        trigger, state, row.dest)


@pytest.mark.parametrize("trigger,state", [(t, s) for t, s in PAIRS if not allowed(t, s)])
def test_refused_transition_raises_typed_error_and_keeps_state(trigger: str, state: str) -> None:
    lc = Lifecycle(state, name="c1")
    with pytest.raises(LifecycleError) as info:
        lc.fire(trigger)
    assert lc.state == state
    assert lc.history == []
    r = refusal(trigger, state)
    if r is not None:
        assert type(info.value) is r.error
        assert str(info.value) == r.message.format(name="c1")
    else:
        assert type(info.value) is TransitionConflict


@pytest.mark.parametrize("state,error,message", [
    ("paused", TransitionConflict, "cannot start a paused container, try unpause instead"),
    ("removing", TransitionConflict, "container is marked for removal and cannot be started"),
    ("running", TransitionNotModified, "container is already running"),
])
def test_docker_start_refusals(state: str, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        Lifecycle(state).fire("start")


def test_remove_running_refused_with_docker_message() -> None:
    with pytest.raises(TransitionConflict, match="container is running: stop the container "
                       "before removing or force remove"):
        Lifecycle("running").fire("remove")


def test_refusals_never_name_an_allowed_pair() -> None:
    for r in REFUSALS:
        assert not allowed(r.trigger, r.state)


def test_start_callback_runs_in_starting_and_can_fail_to_dead() -> None:
    seen = []

    class Delegate:
        def on_start(self, event):
            seen.append(event.model.state)
            event.model.fire("fail", error="boom")

        def on_fail(self, event):
            seen.append((event.model.state, event.kwargs["error"]))

    lc = Lifecycle(delegate=Delegate())
    lc.fire("start")
    assert lc.state == "dead"
    assert seen == ["starting", ("dead", "boom")]
    assert [(h.trigger, h.dest, h.error) for h in lc.history] == [
        ("start", "starting", ""), ("fail", "dead", "boom")]


def test_no_auto_transitions() -> None:
    lc = Lifecycle()
    assert not hasattr(lc, "to_running")


def test_history_is_bounded() -> None:
    lc = Lifecycle("running")
    for _ in range(300):
        lc.fire("pause")
        lc.fire("unpause")
    assert len(lc.history) == 200


def test_states_package_is_pure() -> None:
    """states/ imports only the stdlib, transitions and itself."""
    root = Path(__file__).resolve().parents[2] / "states"
    allowed_top = {"transitions", "states", "__future__", "collections", "dataclasses",
                   "typing", "time", "itertools"}
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if node.level == 0 else []
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed_top, f"{path.name} imports {name}"


def test_failed_before_callback_keeps_the_state() -> None:
    class Delegate:
        def before_pause(self, event):
            raise OSError("freezer broke")

    lc = Lifecycle("running", delegate=Delegate())
    with pytest.raises(OSError):
        lc.fire("pause")
    assert lc.state == "running"
    assert lc.history == []
