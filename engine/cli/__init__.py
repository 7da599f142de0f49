"""The front end: the ``corral`` command line, one module per verb group.

Start-up time is benchmarked: a command imports only what it needs, inside the
functions that need it.
"""

from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    # `engine.cli:run` was the console script's entry point before the move: a script
    # made by an older install still names it. Imported on use, so that
    # `engine.cli.format` stays light.
    if name == "run":
        return importlib.import_module(f"{__name__}.main").run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
