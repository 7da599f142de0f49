"""The container's lifecycle machine, built with ``transitions`` from the table.

``Lifecycle`` is the model. The engine hands it a delegate whose ``before_<trigger>`` methods
run before the state changes (a side effect that fails leaves the state as it was, as in
containerd) and whose ``on_<trigger>`` methods run as the transition's ``after`` callbacks:
the ``start`` transition's callback runs the start plan and then fires ``started`` or
``fail``; the failure callback carries out the cleanup. Refusals come from the table as typed
errors, never as a silent ``False``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from transitions import EventData, Machine

from .errors import TransitionConflict
from .table import TRANSITIONS, refusal
from .vocabulary import CREATED, STATES

HISTORY_LIMIT = 200


@dataclass
class HistoryEntry:
    time: float
    trigger: str
    source: str
    dest: str
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _machine_transitions() -> list[dict[str, Any]]:
    return [
        {"trigger": t.trigger, "source": list(t.sources), "dest": t.dest,
         # ``before`` runs before the state changes: a failed side effect keeps the state
         "before": f"_before_{t.trigger}",
         # the record comes first, so a trigger fired from a callback is recorded after it
         "after": ["_record", f"_after_{t.trigger}"]}
        for t in TRANSITIONS
    ]


class Lifecycle:
    """One container's state, its bounded history, and the guarded triggers of the table."""

    def __init__(
        self,
        state: str = CREATED,
        *,
        delegate: object | None = None,
        history: list[HistoryEntry] | None = None,
        clock: Callable[[], float] = time.time,
        name: str = "",
    ) -> None:
        self.delegate = delegate
        self.history: list[HistoryEntry] = list(history or [])
        self.name = name
        self._clock = clock
        self._errors: dict[int, str] = {}
        self.machine = Machine(
            model=self,
            states=list(STATES),
            initial=state,
            transitions=_machine_transitions(),
            auto_transitions=False,
            send_event=True,
        )

    def fire(self, trigger: str, **kwargs: Any) -> None:
        """Fire ``trigger`` or raise the table's refusal for the current state."""
        current = self.state
        r = refusal(trigger, current)
        if r is not None:
            raise r.error(r.message.format(name=self.name), trigger=trigger, state=current)
        if not self.machine.get_transitions(trigger, source=current):
            raise TransitionConflict(
                f"cannot {trigger} container {self.name} in state {current}".replace("  ", " "),
                trigger=trigger, state=current)
        self.trigger(trigger, **kwargs)

    def _record(self, event: EventData) -> None:
        err = event.kwargs.get("error")
        self.history.append(HistoryEntry(
            time=self._clock(), trigger=event.event.name, source=event.transition.source,
            dest=event.transition.dest, error=str(err) if err else ""))
        del self.history[:-HISTORY_LIMIT]

    def __getattr__(self, attr: str) -> Any:
        # transitions looks the ``after`` callbacks up on the model; route them to the
        # delegate's ``on_<trigger>`` so the engine owns every effect and this stays pure.
        for prefix, kind in (("_after_", "on_"), ("_before_", "before_")):
            if attr.startswith(prefix):
                handler = getattr(self.delegate, kind + attr[len(prefix):], None)
                return handler if handler is not None else _noop
        raise AttributeError(attr)


def _noop(event: EventData) -> None:
    return None
