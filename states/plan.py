"""The step runner: do each step in order; on a failure undo what was done, in reverse.

A step is any object with ``name``, ``do(ctx)`` and ``undo(ctx)``. The undo of the step that
failed runs too, because a ``do`` may fail half-way and every undo is safe after a partial do.
Undo errors are collected and never replace the error that failed the plan (moby start.go).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


class Step(Protocol):
    name: str

    def do(self, ctx: Any) -> None: ...

    def undo(self, ctx: Any) -> None: ...


class InjectedFault(Exception):
    """Raised by a fail point that a test set on a step (``phase`` "do") or on its undo."""

    def __init__(self, step: str, phase: str = "do") -> None:
        super().__init__(f"injected fault at step {step}" if phase == "do"
                         else f"injected fault in the undo of step {step}")
        self.step = step
        self.phase = phase


@dataclass
class StepRecord:
    name: str
    duration: float = 0.0
    outcome: str = "pending"  # done | failed | undone | undo-failed
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StepFailure(Exception):
    step: str
    cause: BaseException
    undo_errors: list[tuple[str, BaseException]] = field(default_factory=list)
    records: list[StepRecord] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.step}: {self.cause}"


def undo_steps(steps: Iterable[Step], ctx: Any,
               records: dict[str, StepRecord] | None = None, *,
               fail_point: Callable[[str], bool] | None = None,
               ) -> list[tuple[str, BaseException]]:
    """Undo each step, going on past failures; return the failures.

    ``fail_point(name)`` true makes the undo of that step fail before it does anything, so a
    test sees what an undo that failed outright leaves behind."""
    errors: list[tuple[str, BaseException]] = []
    for step in steps:
        try:
            if fail_point is not None and fail_point(step.name):
                raise InjectedFault(step.name, "undo")
            step.undo(ctx)
        except Exception as exc:  # an undo error must never hide the cause or stop the rest
            errors.append((step.name, exc))
            if records is not None and step.name in records:
                records[step.name].outcome = "undo-failed"
                records[step.name].error = str(exc)
        else:
            if records is not None and step.name in records:
                rec = records[step.name]
                rec.outcome = "failed" if rec.outcome == "failed" else "undone"
    return errors


def run_steps(
    steps: Sequence[Step],
    ctx: Any,
    *,
    fail_point: Callable[[str], bool] | None = None,
    undo_fail_point: Callable[[str], bool] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> list[StepRecord]:
    """Run ``steps``; return their records, or raise ``StepFailure`` after undoing them.

    ``fail_point(name)`` is asked after each step's ``do`` (true: fail there);
    ``undo_fail_point(name)`` before each undo (true: that undo fails)."""
    records: dict[str, StepRecord] = {}
    done: list[Step] = []
    for step in steps:
        rec = records[step.name] = StepRecord(step.name)
        t0 = clock()
        try:
            step.do(ctx)
            if fail_point is not None and fail_point(step.name):
                raise InjectedFault(step.name)
        except BaseException as exc:
            rec.duration = clock() - t0
            rec.outcome, rec.error = "failed", str(exc)
            undo_errors = undo_steps([step, *reversed(done)], ctx, records,
                                     fail_point=undo_fail_point)
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt and friends: undone, then passed on unchanged
            raise StepFailure(step.name, exc, undo_errors, list(records.values())) from exc
        rec.duration = clock() - t0
        rec.outcome = "done"
        done.append(step)
    return list(records.values())
