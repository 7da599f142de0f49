"""Engines whose containers' conmon runs no exit command, for tests in which only a later
engine may notice an exit or finish a cleanup (the exit command, another process, would race
it)."""

from __future__ import annotations

from typing import Any


def without_exit_command(eng: Any) -> None:
    made = eng._context

    def context(c: Any, interactive: bool = False) -> Any:
        ctx = made(c, interactive)
        ctx.exit_command = []
        return ctx

    eng._context = context
