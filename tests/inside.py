"""Running one command in a fresh container and collecting what it wrote: how the hardening
and seccomp tests look at a container from inside."""

from __future__ import annotations

import uuid
from typing import Any

WAIT = 30.0


def run_in(engine: Any, image: str, cmd: list[str], *, prefix: str = "in",
           wait: float = WAIT, **kwargs: object) -> tuple[int, str]:
    """Run ``cmd`` as the first process of a new container without a network; its exit code
    and everything it wrote (stdout and stderr, in order). The container is removed."""
    cid = engine.create(image, cmd, network="none", name=f"{prefix}-{uuid.uuid4().hex[:8]}",
                        **kwargs)
    try:
        engine.start(cid)
        code = engine.wait(cid, timeout=wait)
        return code, "".join(r.text for r in engine.logs(cid))
    finally:
        engine.remove(cid, force=True)
