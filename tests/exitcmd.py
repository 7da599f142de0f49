"""Engines whose containers' conmon runs another exit command, or none: for tests in which
only a later engine may notice an exit or finish a cleanup (the exit command, another process,
would race it), and for tests of what waits on that command."""

from __future__ import annotations

from typing import Any


def replace_exit_command(eng: Any, argv: list[str]) -> None:
    made = eng._context

    def context(c: Any, interactive: bool = False) -> Any:
        ctx = made(c, interactive)
        ctx.exit_command = list(argv)
        return ctx

    eng._context = context


def without_exit_command(eng: Any) -> None:
    replace_exit_command(eng, [])
