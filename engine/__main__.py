"""``python -m engine``: the CLI (also what conmon's exit command runs)."""

from .cli import run

run()
