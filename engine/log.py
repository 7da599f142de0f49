"""The library's logger: loguru, imported when a record is to be written rather than when corral
is. Its import (with the asyncio it brings) is about 40 ms, most of a short ``corral ps`` that
logs nothing.

Semantics are loguru's, as if it were imported eagerly:

- the packages are disabled for loguru as soon as it is imported, by whom ever (an embedder,
  the CLI, this module), so an embedder's ``logger.enable("engine")`` turns them on;
- while loguru has not been imported, nobody can have enabled them, so records are dropped
  without importing it, unless a process (the CLI) has asked to be called at the first record
  of a level it shows (``on_first_record``).

Modules log with ``from .log import logger`` and the usual ``logger.warning("{}", x)``.
"""

from __future__ import annotations

import importlib.machinery
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

SILENCED = ("engine", "states")
LEVELS = {"TRACE": 5, "DEBUG": 10, "INFO": 20, "SUCCESS": 25, "WARNING": 30, "ERROR": 40,
          "CRITICAL": 50}

_first_record: tuple[int, Callable[[], None]] | None = None


def on_first_record(level: str, configure: Callable[[], None]) -> None:
    """Call ``configure`` (which imports and sets up loguru) before the first record of
    ``level`` or above; records below it are dropped while loguru is not imported."""
    global _first_record
    _first_record = (LEVELS[level], configure)


def _silence(loguru: ModuleType) -> None:
    for name in SILENCED:
        loguru.logger.disable(name)


class _SilenceOnImport:
    """Disables the packages right after loguru's own module has run, before any caller can
    reach ``logger.enable``. (A finder needs only ``find_spec``: ``importlib.abc`` would import
    ``importlib.resources`` and with it a dozen modules.)"""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "loguru":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        run_module = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run_module(module)
            _silence(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install() -> None:
    """Silence the packages in loguru now, or when loguru is first imported."""
    if "loguru" in sys.modules:
        _silence(sys.modules["loguru"])
    elif not any(isinstance(f, _SilenceOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _SilenceOnImport())


class _Logger:
    def _log(self, level: str, message: str, args: tuple, kwargs: dict, *,
             exception: bool = False) -> None:
        global _first_record
        loguru = sys.modules.get("loguru")
        if loguru is None:
            if _first_record is None or LEVELS[level] < _first_record[0]:
                return
            configure, _first_record = _first_record[1], None
            configure()
            loguru = sys.modules["loguru"]
        # depth 2: the record is named after the module that called logger.<level>, which is
        # what loguru's enable and disable match
        loguru.logger.opt(depth=2, exception=exception or None).log(level, message, *args,
                                                                      **kwargs)

    def trace(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._log("TRACE", message, args, kwargs)

    def debug(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._log("DEBUG", message, args, kwargs)

    def info(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._log("INFO", message, args, kwargs)

    def warning(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._log("WARNING", message, args, kwargs)

    def error(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._log("ERROR", message, args, kwargs)

    def exception(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._log("ERROR", message, args, kwargs, exception=True)


logger = _Logger()
