"""One owner per outside thing, where an import cannot say it.

import-linter's contracts (setup.cfg, run by ``make lint``) hold the layers and "only the netlink
driver imports pyroute2". Running a program or writing a file is no import, so these rules are
read from the sources here: only the runc driver makes runc's command lines, only the conmon
driver spawns conmon, only the nft driver runs nft, only the store writes state files.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parents[2] / "engine"

SPAWN_CALLS = {
    "subprocess.run", "subprocess.Popen", "subprocess.call", "subprocess.check_call",
    "subprocess.check_output", "os.execv", "os.execve", "os.execvp", "os.execvpe", "os.execl",
    "os.execlp", "os.spawnv", "os.spawnvp", "os.posix_spawn", "os.posix_spawnp", "os.system",
    "os.popen",
}
# who may start a process, and what it starts; a new entry is a design decision
SPAWNERS = {
    "host/runc.py": "runc",
    "host/conmon.py": "conmon",
    "host/nft.py": "nft",
    "host/pty.py": "a command on a pseudo-terminal (runc exec's argv, from the runc driver)",
    "core/exec.py": "runc exec, with the argv the runc driver makes",
    "start/steps.py": "runc run in the foreground, with the argv the runc driver makes",
    "start/health.py": "the health monitor (python -m engine health-monitor)",
    "logs/files.py": "the log keeper (python -m engine)",
    "logs/keeper.py": "the root's log keeper (its own file, run by a bare interpreter)",
    "images/store.py": "busybox --list-full (the applets of the busybox image)",
    "core/exits.py": "a detached exit command, to wait out a restart's backoff with no engine",
    "exited.py": "(before the move) the same detached exit command",
}
# argv that spawners outside the runc driver pass must come from the driver (Runtime.*_args)
RUNC_BORROWERS = ("core/exec.py", "start/steps.py")
# JSON files that are no state: (module, what it writes)
JSON_WRITERS = {
    "logs/keeper.py": "the keeper's work list in the run folder (tmpfs, renamed in)",
}
PROGRAMS = {"runc": "host/runc.py", "conmon": "host/conmon.py", "nft": "host/nft.py"}


@cache
def sources() -> dict[str, ast.Module]:
    return {str(p.relative_to(ENGINE)): ast.parse(p.read_text(), str(p))
            for p in sorted(ENGINE.rglob("*.py"))}


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return ""


def calls(tree: ast.AST) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)]


def spawns(tree: ast.AST) -> list[ast.Call]:
    return [c for c in calls(tree) if dotted(c.func) in SPAWN_CALLS]


def test_the_checks_see_the_engine() -> None:
    assert "host/runc.py" in sources() and "store/files.py" in sources()


def test_only_known_modules_start_processes() -> None:
    found = {name for name, tree in sources().items() if spawns(tree)}
    unknown = found - set(SPAWNERS)
    assert not unknown, (f"{sorted(unknown)} start processes: a program is run by its driver in "
                         f"engine/host/ (or add it to SPAWNERS with what it starts, and why)")


@pytest.mark.parametrize("name", RUNC_BORROWERS)
def test_runc_command_lines_come_from_the_runc_driver(name: str) -> None:
    tree = sources()[name]
    assert spawns(tree)
    for func in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
        made: dict[str, ast.AST] = {}
        for node in ast.walk(func):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                    isinstance(node.targets[0], ast.Name):
                made[node.targets[0].id] = node.value
        for call in spawns(func):
            argv = call.args[0] if call.args else None
            if isinstance(argv, ast.Name):
                argv = made.get(argv.id, argv)
            assert isinstance(argv, ast.Call) and dotted(argv.func).endswith("_args") and \
                "runtime" in dotted(argv.func), (
                    f"{name}:{call.lineno} starts {ast.unparse(call.args[0]) if call.args else '?'}"
                    f": a process outside the runc driver runs only argv that Runtime made")


def test_program_names_only_in_their_drivers() -> None:
    """A program's name as argv[0] or looked up on PATH: only in its driver."""
    for name, tree in sources().items():
        for node in ast.walk(tree):
            word = None
            if isinstance(node, ast.List) and node.elts and isinstance(node.elts[0], ast.Constant):
                word = node.elts[0].value
            elif isinstance(node, ast.Call) and dotted(node.func) == "shutil.which" and \
                    node.args and isinstance(node.args[0], ast.Constant):
                word = node.args[0].value
            owner = PROGRAMS.get(word) if isinstance(word, str) else None
            assert owner in (None, name), (
                f"{name}:{node.lineno} runs {word}: only {owner} runs it")


def _writes_json(call: ast.Call) -> bool:
    if dotted(call.func) == "json.dump":
        return True
    if isinstance(call.func, ast.Attribute) and call.func.attr in ("write_text", "write_bytes",
                                                                   "write"):
        return any(isinstance(n, ast.Call) and dotted(n.func) == "json.dumps"
                   for a in call.args for n in ast.walk(a))
    return False


def test_only_the_store_writes_state_files() -> None:
    """State is JSON on disk, written atomically (tmp, fsync, rename, fsync dir) by
    ``store.files``; a module elsewhere hands it an object, never writes the file itself."""
    for name, tree in sources().items():
        if name.startswith("store/"):
            continue
        for call in calls(tree) if name not in JSON_WRITERS else ():
            assert not _writes_json(call), (
                f"{name}:{call.lineno} writes JSON to a file: use store.files.atomic_write_json")
        for func in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
            names = {dotted(c.func) for c in calls(func)}
            assert not ("os.fsync" in names and names & {"os.rename", "os.replace"}), (
                f"{name}: {func.name} is an atomic write of its own: store.files has the one")
            assert "atomic" not in func.name, f"{name}: {func.name}: atomic writes live in store/"
