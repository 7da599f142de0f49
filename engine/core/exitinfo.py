"""What the core knows of an exit: the exit codes Docker gives those nobody saw, the
cleanup marker, the stop marker and conmon's exit file.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from ..store.container import Container
from . import exitcodes

EXIT_FILE_WAIT = 5.0
EXIT_FILE_POLL = 0.002  # conmon writes the exit file a few ms after the process ends
START_FAILED_EXIT_CODE = exitcodes.START_FAILED
LOST_EXIT_CODE = exitcodes.LOST
CLEANUP_INCOMPLETE = "cleanup incomplete"


@dataclass(frozen=True)
class _Exit:
    """An exit seen by looking (the exit file, or a monitor found gone)."""

    code: int
    error: str = ""
    rebooted: bool = False  # the run folder was emptied (a reboot): restart as at boot


def _stop_marker(c: Container) -> Path:
    """Beside conmon's exit file (in the run folder): the user stopped this exit, which the
    state file could not say (a full disk)."""
    return c.paths.exit_file.with_name(c.paths.exit_file.name + ".stopped")


def _forget_exit_file(c: Container) -> None:
    for path in (c.paths.exit_file, _stop_marker(c)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
