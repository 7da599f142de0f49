"""``python -m engine``: the CLI (also what conmon's exit command runs)."""

from .cli.main import run

run()
