"""Refusals of the lifecycle, typed by class as moby's errdefs: conflict, not modified.

    LifecycleError
    ├── TransitionConflict    the state forbids the trigger (paused, removing, running, ...)
    └── TransitionNotModified the trigger has nothing to do (start of a running container)

The engine maps them once, with ``raise ... from``, to its own ``Conflict`` and ``NotModified``.
"""

from __future__ import annotations


class LifecycleError(Exception):
    def __init__(self, message: str, *, trigger: str = "", state: str = "") -> None:
        super().__init__(message)
        self.trigger = trigger
        self.state = state


class TransitionConflict(LifecycleError):
    pass


class TransitionNotModified(LifecycleError):
    pass
