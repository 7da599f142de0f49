"""Every outside program the engine runs, the Debian package that installs it, and where it is
looked for.

One list, so that nothing the engine runs can be forgotten by the Makefile's install list
(``DEBS``): a test checks that ``dpkg -S`` of each program found here names a package the
Makefile installs. A module that runs a program takes its path from ``find``; none calls
``shutil.which`` itself.

``CORRAL_<NAME>`` (``CORRAL_RUNC``, ``CORRAL_CONMON``, ``CORRAL_NFT``, ``CORRAL_BUSYBOX``...)
names another path for a program, taken as given even when nothing is there: how a test (or a
user) points the engine at another build, or at a program that is missing.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from .errors import SystemFailure

__all__ = ["PROGRAMS", "Program", "ProgramMissing", "find", "require"]


@dataclass(frozen=True)
class Program:
    name: str
    package: str  # the Debian package that installs it
    used_for: str
    # looked in after $PATH: a root shell's PATH may lack the sbin folders
    dirs: tuple[str, ...] = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")

    @property
    def env(self) -> str:
        return f"CORRAL_{self.name.upper()}"


PROGRAMS: dict[str, Program] = {p.name: p for p in (
    Program("runc", "runc", "running containers"),  # host/runc.py
    Program("conmon", "conmon", "watching containers",  # host/conmon.py
            dirs=("/usr/bin", "/usr/libexec/podman", "/usr/sbin")),
    Program("nft", "nftables", "bridge networking: masquerade and published ports"),  # host/nft.py
    Program("busybox", "busybox-static", "the busybox image"),  # images/store.py
    # logs/keeper.py, optional: without it the log keeper forks itself (10 ms instead of 1)
    Program("setsid", "util-linux", "starting the log keeper"),
    # graphs/dot.py: run by the graphviz library, which looks it up on $PATH itself
    Program("dot", "graphviz", "svg and png graphs"),
)}


class ProgramMissing(SystemFailure):
    """A program the engine needs is not where it is looked for."""


def find(name: str) -> str | None:
    """The path of program ``name`` (a key of ``PROGRAMS``): ``$CORRAL_<NAME>`` when set, else
    the first on ``$PATH`` or in the program's usual folders; None when there is none."""
    prog = PROGRAMS[name]
    given = os.environ.get(prog.env)
    if given:
        return given
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(prog.dirs))


def require(name: str, path: str | None = None) -> str:
    """``path`` (default: ``find(name)``) when it is an executable file; else ``ProgramMissing``
    naming the program and the package to install."""
    prog = PROGRAMS[name]
    path = path or find(name)
    if path and os.path.isfile(path) and os.access(path, os.X_OK):
        return path
    where = f" at {path}" if path else ""
    raise ProgramMissing(f"{name} not found{where}: install the Debian package {prog.package} "
                         f"(needed for {prog.used_for})")
