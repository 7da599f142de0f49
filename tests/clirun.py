"""The ``corral`` command on a given root, as a child process (stdout and stderr captured)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def corral(root: Path, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", "--root", str(root), *argv],
                          capture_output=True, text=True, timeout=timeout)
