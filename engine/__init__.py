"""corral's engine: everything with an effect (disk, kernel, processes).

The public API is ``Engine`` and the error classes. The library is silent: its logger is
disabled in loguru (see ``log``), and an embedder or the CLI turns it on with
``logger.enable("engine")``.
"""

from . import log

log.install()  # before any engine module runs: they may log at import

from .engine import Engine, ExecResult  # noqa: E402
from .errors import (  # noqa: E402
    Conflict,
    CorralError,
    InvalidParameter,
    NotFound,
    NotModified,
    StartFailed,
    SystemFailure,
)
from .steps import STEP_NAMES  # noqa: E402

__all__ = [
    "STEP_NAMES", "Conflict", "CorralError", "Engine", "ExecResult", "InvalidParameter",
    "NotFound", "NotModified", "StartFailed", "SystemFailure",
]
