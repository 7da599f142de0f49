"""corral's engine: everything with an effect (disk, kernel, processes).

The public API is ``Engine`` and the error classes. The library is silent: its logger is
disabled in loguru (see ``log``), and an embedder or the CLI turns it on with
``logger.enable("engine")``.

The names below are imported on first use (PEP 562), so that a process needing one small
module (conmon's exit command, ``engine.exited``) does not load the whole engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import log

log.install()  # before any engine module runs: they may log at import

if TYPE_CHECKING:
    from .core.engine import Engine
    from .core.exec import ExecResult
    from .errors import (
        Conflict,
        CorralError,
        ExecFailed,
        InvalidParameter,
        NotFound,
        NotModified,
        StartFailed,
        SystemFailure,
    )
    from .start.steps import STEP_NAMES

_HOMES = {
    "Engine": "core.engine", "ExecResult": "core.engine", "STEP_NAMES": "start.steps",
    **dict.fromkeys(("Conflict", "CorralError", "ExecFailed", "InvalidParameter", "NotFound",
                     "NotModified", "StartFailed", "SystemFailure"), "errors"),
}

__all__ = [
    "STEP_NAMES", "Conflict", "CorralError", "Engine", "ExecFailed", "ExecResult",
    "InvalidParameter", "NotFound", "NotModified", "StartFailed", "SystemFailure",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value
