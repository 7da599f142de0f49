"""The registry of outside programs (engine/programs.py) is the only place that names them: no
other module looks a program up on $PATH or runs one by a literal name."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from engine import programs

ENGINE = Path(__file__).resolve().parents[2] / "engine"
# runtime.find_runtime looks up an OCI runtime the caller names (crun, ...); runc itself comes
# from the registry
WHICH_ALLOWED = {("programs.py", "find"), ("host/runc.py", "find_runtime")}
SPAWNERS = {"run", "Popen", "call", "check_call", "check_output", "execv", "execvp", "spawnv"}


def _functions(tree: ast.AST) -> dict[ast.AST, str]:
    """Each node -> the name of the function it is in."""
    owner: dict[ast.AST, str] = {}
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(fn):
                owner.setdefault(node, fn.name)
    return owner


def test_no_module_but_the_registry_looks_programs_up() -> None:
    found = []
    for path in sorted(ENGINE.rglob("*.py")):
        name = str(path.relative_to(ENGINE))
        tree = ast.parse(path.read_text(), str(path))
        owner = _functions(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            if node.func.attr == "which" and (name, owner.get(node)) not in WHICH_ALLOWED:
                found.append(f"{name}:{node.lineno}: shutil.which")
            if node.func.attr in SPAWNERS and node.args:
                argv = node.args[0]
                first = argv.elts[0] if isinstance(argv, ast.List) and argv.elts else argv
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    found.append(f"{name}:{node.lineno}: runs {first.value!r} by name")
    assert not found, "programs must come from engine.programs.find: " + "; ".join(found)


def test_every_program_names_its_package() -> None:
    assert {"runc", "conmon", "nft"} <= set(programs.PROGRAMS)
    for name, prog in programs.PROGRAMS.items():
        assert prog.name == name and prog.package and prog.used_for


def test_an_environment_variable_names_another_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_NFT", "/nonexistent/nft")
    assert programs.find("nft") == "/nonexistent/nft"
    with pytest.raises(programs.ProgramMissing,
                       match="nft not found at /nonexistent/nft: install the Debian package "
                             "nftables"):
        programs.require("nft")


def test_require_refuses_a_file_that_cannot_run(tmp_path: Path) -> None:
    plain = tmp_path / "runc"
    plain.write_text("#!/bin/sh\n")
    os.chmod(plain, 0o644)
    with pytest.raises(programs.ProgramMissing, match="install the Debian package runc"):
        programs.require("runc", str(plain))
    os.chmod(plain, 0o755)
    assert programs.require("runc", str(plain)) == str(plain)
