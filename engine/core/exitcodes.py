"""The exit codes a container gets when it did not exit by itself, as moby's daemon sets them.

A start that fails in the runtime is classified as ``setExitCodeFromError`` in moby's
``daemon/errors.go`` does: 126 when the command cannot be invoked (permission denied, a
directory), 127 when it is not there (or a bind mount puts a file on a directory), else 128.
Errors of the steps before the runtime (network, mounts, ...) are 128, as moby's
``containerStart`` leaves them. Pure: no imports, so the light exit command may use it.
"""

from __future__ import annotations

CANNOT_INVOKE = 126
NOT_FOUND = 127
START_FAILED = 128  # moby's exitUnknown
LOST = 255  # the monitor or the runtime's state is gone: nobody kept the code

# only these come from the runtime itself (runc create / start, run through conmon)
_RUNTIME_PREFIXES = ("runc create:", "runc start:", "conmon:")
_NOT_FOUND = ("executable file not found", "no such file or directory",
              "system cannot find the file specified")


def start_failure_code(step: str, message: str) -> int:
    """The exit code of a start that failed at ``step`` with ``message``."""
    text = message.lower()
    if step != "process" or not text.startswith(_RUNTIME_PREFIXES):
        return START_FAILED
    if "permission denied" in text or "is a directory" in text:
        return CANNOT_INVOKE
    if "not a directory" in text or any(m in text for m in _NOT_FOUND):
        return NOT_FOUND
    return START_FAILED
