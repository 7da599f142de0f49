"""corral's engine: everything with an effect (disk, kernel, processes).

The public API is ``Engine`` and the error classes. The library is silent: its logger is
disabled here, and an embedder or the CLI turns it on with ``logger.enable("engine")``.
"""

from loguru import logger

from .engine import Engine, ExecResult
from .errors import (
    Conflict,
    CorralError,
    InvalidParameter,
    NotFound,
    NotModified,
    StartFailed,
    SystemFailure,
)
from .steps import STEP_NAMES

logger.disable("engine")
logger.disable("states")

__all__ = [
    "STEP_NAMES", "Conflict", "CorralError", "Engine", "ExecResult", "InvalidParameter",
    "NotFound", "NotModified", "StartFailed", "SystemFailure",
]
