"""The engine's error hierarchy, typed by class as in moby's ``daemon/errors.go``.

    CorralError
    ├── NotFound            no such container, image, volume
    ├── Conflict            the object's state forbids the request (name taken, paused, ...)
    ├── InvalidParameter    the request itself is malformed (bad name, bad -e, bad -v, ...)
    ├── NotModified         nothing to do (start of a running container)
    └── SystemFailure       the host, the kernel or a runtime failed
        ├── StartFailed     a start step failed; names the step
        └── ExecFailed      an exec's command cannot be run (not found, not executable)

Lower-layer errors (OSError, CalledProcessError, ...) are mapped once, with ``raise ... from``.
"""

from __future__ import annotations


class CorralError(Exception):
    """Base of every error the engine raises on purpose."""


class NotFound(CorralError):
    pass


class Conflict(CorralError):
    pass


class InvalidParameter(CorralError):
    pass


class NotModified(CorralError):
    pass


class SystemFailure(CorralError):
    pass


class StartFailed(SystemFailure):
    """A start step failed; ``step`` names it and ``__cause__`` is the original error."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.message = message


class ExecFailed(SystemFailure):
    """The runtime could not run an exec's command; ``exit_code`` is Docker's for it (127 not
    found, 126 found but not executable)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
