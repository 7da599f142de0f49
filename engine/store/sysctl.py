"""Which kernel parameters a container may set (``--sysctl``, Compose ``sysctls``).

Only those the kernel keeps per namespace, as Docker allows (moby ``opts.ValidateSysctl``):
the IPC ones when the container has its own IPC namespace, ``net.*`` when it has its own
network namespace. Any other would change the host for every container, so it is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..errors import InvalidParameter

IPC_SYSCTLS = frozenset({
    "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
    "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
})
ALLOWED = "net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*"
# runc writes /proc/sys/<name with dots as slashes>: no empty part, no "..", no slash
_NAME = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$")


def check_sysctls(values: Mapping[str, Any], network: str, ipc: str) -> dict[str, str]:
    """The sysctls as runc takes them; raise InvalidParameter naming the first refused one.
    ``network`` and ``ipc`` are the container's modes (``host``, ``container:NAME``, ...)."""
    out: dict[str, str] = {}
    for key, raw in values.items():
        key = str(key)
        value = ("1" if raw else "0") if isinstance(raw, bool) else str(raw)
        if not _NAME.match(key):
            raise InvalidParameter(f"invalid sysctl name: {key!r}")
        if any(c in value for c in "\0\n"):
            raise InvalidParameter(f"invalid value for sysctl {key!r}: {value!r}")
        shared = _shared(network) if key.startswith("net.") else (
            _shared(ipc) if key in IPC_SYSCTLS or key.startswith("fs.mqueue.") else None)
        if shared is None:
            raise InvalidParameter(f"sysctl {key!r} is not allowed: only namespaced ones can "
                                   f"be set in a container ({ALLOWED})")
        if shared:
            kind = "network" if key.startswith("net.") else "IPC"
            raise InvalidParameter(f"sysctl {key!r} is not allowed with the {shared} {kind} "
                                   "namespace")
        out[key] = value
    return out


def _shared(mode: str) -> str:
    """'' when the container has a namespace of its own, else whose it shares."""
    if mode == "host":
        return "host"
    if mode.startswith("container:"):
        return f"container {mode.split(':', 1)[1]}'s"
    return ""
