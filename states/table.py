"""The transition table: the single source of truth for the machine, its refusals and diagrams.

Each row says which states a trigger may leave and where it goes; each refusal says what a
trigger answers in a state it may not leave, with Docker's words. Nothing else in the project
lists transitions: the machine, the guards, the errors and the graphs all read these tuples.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import LifecycleError, TransitionConflict, TransitionNotModified
from .vocabulary import CREATED, DEAD, PAUSED, REMOVING, RUNNING, STARTING, STATES


@dataclass(frozen=True)
class Transition:
    trigger: str
    sources: tuple[str, ...]
    dest: str
    note: str = ""


@dataclass(frozen=True)
class Refusal:
    trigger: str
    state: str
    error: type[LifecycleError]
    message: str


TRANSITIONS: tuple[Transition, ...] = (
    Transition("start", (CREATED, DEAD), STARTING, "run the start plan"),
    Transition("started", (STARTING,), RUNNING, "every step succeeded"),
    Transition("fail", (STARTING,), DEAD, "a step failed: undo done steps"),
    Transition("pause", (RUNNING,), PAUSED, "cgroup freezer"),
    Transition("unpause", (PAUSED,), RUNNING, "cgroup freezer"),
    Transition("exit", (RUNNING, PAUSED), DEAD, "the process exited: clean up"),
    Transition("remove", (CREATED, DEAD), REMOVING, "delete the container"),
    Transition("remove_failed", (REMOVING,), DEAD, "removal failed: keep the container"),
)

# Messages are Docker's (daemon/start.go, daemon/delete.go, daemon/pause.go). ``{name}`` is
# filled in by the engine where Docker names the container.
REFUSALS: tuple[Refusal, ...] = (
    Refusal("start", PAUSED, TransitionConflict,
            "cannot start a paused container, try unpause instead"),
    Refusal("start", RUNNING, TransitionNotModified, "container is already running"),
    Refusal("start", STARTING, TransitionConflict, "container is already starting"),
    Refusal("start", REMOVING, TransitionConflict,
            "container is marked for removal and cannot be started"),
    Refusal("pause", PAUSED, TransitionConflict, "container {name} is already paused"),
    Refusal("pause", CREATED, TransitionConflict, "container {name} is not running"),
    Refusal("pause", STARTING, TransitionConflict, "container {name} is not running"),
    Refusal("pause", DEAD, TransitionConflict, "container {name} is not running"),
    Refusal("pause", REMOVING, TransitionConflict, "container {name} is not running"),
    Refusal("unpause", RUNNING, TransitionConflict, "container {name} is not paused"),
    Refusal("unpause", CREATED, TransitionConflict, "container {name} is not paused"),
    Refusal("unpause", STARTING, TransitionConflict, "container {name} is not paused"),
    Refusal("unpause", DEAD, TransitionConflict, "container {name} is not paused"),
    Refusal("unpause", REMOVING, TransitionConflict, "container {name} is not paused"),
    Refusal("remove", RUNNING, TransitionConflict,
            "container is running: stop the container before removing or force remove"),
    Refusal("remove", PAUSED, TransitionConflict,
            "cannot remove a paused container: unpause and then stop the container before "
            "attempting removal or force remove"),
    Refusal("remove", STARTING, TransitionConflict,
            "container is starting: stop the container before removing or force remove"),
    Refusal("remove", REMOVING, TransitionConflict,
            "removal of container {name} is already in progress"),
)

TRIGGERS: tuple[str, ...] = tuple(dict.fromkeys(t.trigger for t in TRANSITIONS))


def refusal(trigger: str, state: str) -> Refusal | None:
    for r in REFUSALS:
        if r.trigger == trigger and r.state == state:
            return r
    return None


def allowed(trigger: str, state: str) -> bool:
    return any(t.trigger == trigger and state in t.sources for t in TRANSITIONS)


def _check_table() -> None:
    """A trigger either moves a state or is refused there with a message, never both."""
    for t in TRANSITIONS:
        assert t.dest in STATES and all(s in STATES for s in t.sources), t
    for r in REFUSALS:
        assert not allowed(r.trigger, r.state), r


_check_table()
