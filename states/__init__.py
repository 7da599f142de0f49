"""The lifecycle model of a corral container: pure Python and ``transitions``, no I/O."""

from .errors import LifecycleError, TransitionConflict, TransitionNotModified
from .machine import HISTORY_LIMIT, HistoryEntry, Lifecycle
from .plan import InjectedFault, Step, StepFailure, StepRecord, run_steps, undo_steps
from .table import REFUSALS, TRANSITIONS, TRIGGERS, Refusal, Transition, allowed, refusal
from .vocabulary import ACTIVE, CREATED, DEAD, PAUSED, REMOVING, RUNNING, STARTING, STATES

__all__ = [
    "ACTIVE", "CREATED", "DEAD", "HISTORY_LIMIT", "PAUSED", "REFUSALS", "REMOVING", "RUNNING",
    "STARTING", "STATES", "TRANSITIONS", "TRIGGERS",
    "HistoryEntry", "InjectedFault", "Lifecycle", "LifecycleError", "Refusal", "Step",
    "StepFailure", "StepRecord", "Transition", "TransitionConflict", "TransitionNotModified",
    "allowed", "refusal", "run_steps", "undo_steps",
]
