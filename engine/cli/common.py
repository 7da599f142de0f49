"""What the verbs share: Docker's exit statuses, usage errors, the engine a command opens,
acting on each named object.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import CorralError, NotFound
from .output import _error, _out

if TYPE_CHECKING:
    from datetime import datetime

    from ..core.engine import Engine


EXIT_ENGINE_ERROR = 125  # docker run/create: the daemon failed before the container ran
EXIT_CANNOT_INVOKE = 126
EXIT_NOT_FOUND = 127
EXIT_INTERRUPTED = 130


class _Usage(Exception):
    """A usage error found after parsing (argparse's own exit 2 cannot see it)."""


# commands that only look: on a root never made they make nothing (no folder, run folder,
# bridge or firewall table), as ``ls`` of a missing folder makes none
READ_ONLY = {"ps", "ls", "inspect", "images", "image ls", "image list", "image inspect",
             "network ls", "network list", "network inspect", "volume ls", "volume list",
             "volume inspect"}


def _engine(args: argparse.Namespace, **kwargs: Any) -> Engine:
    from ..core.engine import Engine

    kwargs.setdefault("watch", False)
    kwargs.setdefault("reconcile", "touched")
    command = " ".join(filter(None, (args.command_name, getattr(
        args, f"{args.command_name}_command", None))))
    if command in READ_ONLY:
        from ..store.paths import Layout

        kwargs.setdefault("make_layout", Layout.for_root(args.root).root.is_dir())
    return Engine(args.root, **kwargs)


def _each(refs: Sequence[str], action: Callable[[str], object], echo: bool = True) -> int:
    """Apply ``action`` to every ref as Docker does: report each failure, go on, exit 1."""
    status = 0
    for ref in refs:
        try:
            action(ref)
        except CorralError as exc:
            _error(exc)
            status = 1
            continue
        if echo:
            _out(ref)
    return status


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    from ..logs.reader import parse_since

    return parse_since(value)


def _quietly(action: Callable[[], object]) -> None:
    from ..log import logger

    try:
        action()
    except NotFound:
        pass  # gone already: a failed start of a --rm container removes it itself
    except CorralError as exc:
        logger.warning("{}", exc)


def _container_gone(args: argparse.Namespace) -> bool:
    """For the commands that run in the background for one container (their engine makes no
    folder either, for a removal that comes after this check)."""
    from ..store.paths import container_gone

    return container_gone(args.root, args.id)
