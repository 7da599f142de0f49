"""Exits: the in-process watcher of conmon's exits, and the Engine's handling of an exit.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def spawn_detached(root: Path | str, cid: str) -> int:
    """Run this exit command for ``cid`` in a session of its own, as conmon would have: for
    an exit found by a command whose container's conmon is gone, so that a restart the policy
    asks for is waited for and made with no engine alive. Returns its pid."""
    import subprocess

    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.exited", str(root), cid],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True,
        # fail points are for the process a test set them on
        env={k: v for k, v in os.environ.items() if k != "CORRAL_FAIL_POINTS"})
    return proc.pid
