"""The library's logger imports loguru only when a record is written, and behaves as an eager
import would: silent by default, on with ``logger.enable("engine")`` whichever was imported
first. Each case runs in a fresh interpreter, since import order is what is tested."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# a record "from" an engine module: loguru names it after the calling frame's module
EMIT = textwrap.dedent("""
    from engine.log import logger as lib_logger
    def emit(text, level="warning"):
        exec(f"lib_logger.{level}(text)", {"__name__": "engine.probe", "lib_logger": lib_logger,
                                           "text": text})
""")


def run(*parts: str) -> str:
    code = "\n".join(textwrap.dedent(part) for part in parts)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_importing_the_engine_does_not_import_loguru() -> None:
    out = run("""
        import sys
        import engine, engine.cli.main
    """, EMIT, """
        emit("dropped")
        print("loguru" in sys.modules)
    """)
    assert out.split() == ["False"]


@pytest.mark.parametrize("loguru_first", [True, False])
def test_silent_until_enabled_whichever_is_imported_first(loguru_first: bool) -> None:
    first, second = ("from loguru import logger", "import engine") if loguru_first else (
        "import engine", "from loguru import logger")
    out = run(f"""
        {first}
        {second}
        import sys
        logger.remove()
        logger.add(lambda m: print(m.record["message"], m.record["name"]), format="{{message}}")
    """, EMIT, """
        emit("before")
        logger.enable("engine")
        emit("after")
        logger.disable("engine")
        emit("again off")
    """)
    assert out.splitlines() == ["after engine.probe"]


def test_cli_configures_loguru_at_the_first_record_it_shows() -> None:
    out = run("""
        import sys
        from engine.cli import main as cli
        cli._setup_logging("error")
    """, EMIT, """
        emit("a warning, below the level")
        print("loguru" in sys.modules)
        sys.stderr = sys.stdout
        emit("shown", "error")
        print("loguru" in sys.modules)
    """)
    lines = out.splitlines()
    assert lines[0] == "False"
    assert lines[1].endswith("ERROR engine.probe: shown")
    assert lines[2] == "True"
