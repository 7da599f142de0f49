"""Shared fixtures. Integration tests run as root with real runc, conmon and overlayfs; where
those are missing the run fails (never skips), so CI cannot pass without them."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from schemas import OCI_SCHEMA

# Every bundle the suite creates, through the API or the CLI, is validated against the OCI
# runtime-spec schema when written (engine.start.spec.write_spec), in this process and in children.
os.environ["CORRAL_VALIDATE_SPEC"] = str(OCI_SCHEMA)


def _missing_prerequisites() -> list[str]:
    missing = []
    if os.geteuid() != 0:
        missing.append("root")
    from engine import programs

    # every program the engine runs (nft missing once failed the suite by the hundred)
    for name, prog in programs.PROGRAMS.items():
        path = programs.find(name)
        if not (path and os.access(path, os.X_OK)):
            missing.append(f"{name} (Debian package {prog.package})")
    if not (OCI_SCHEMA / "config-schema.json").exists():
        missing.append(f"OCI schema at {OCI_SCHEMA}")
    return missing


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.path):
            item.add_marker(pytest.mark.integration)
    if any("integration" in str(i.path) for i in items):
        missing = _missing_prerequisites()
        if missing:
            raise pytest.UsageError(
                f"integration tests need {', '.join(missing)}; run them as root after "
                "`make test` installed the system packages")


RUN_BASE = Path("/run/corral")
KEEPER = str(Path(__file__).resolve().parents[1] / "engine" / "logs" / "keeper.py").encode()


def _run_folders() -> set[str]:
    try:
        return {e.name for e in os.scandir(RUN_BASE) if e.is_dir(follow_symlinks=False)}
    except FileNotFoundError:
        return set()


def _keepers() -> dict[int, str]:
    """Log keepers run from this checkout: pid -> the run folder of the root each keeps."""
    found = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                argv = Path(entry.path, "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if KEEPER in argv[:-1]:
                folder = Path(os.fsdecode(argv[argv.index(KEEPER) + 1]))
                found[int(entry.name)] = folder.parent.name
    return found


@pytest.fixture(scope="session", autouse=True)
def no_run_folders_left() -> Iterator[None]:
    """Every engine root a test makes is torn down with its run folder in /run/corral, and
    its log keeper with it; one left behind (a late background command making it again)
    fails the run."""
    before = _run_folders()
    yield
    deadline = time.monotonic() + 10  # exit commands of the last tests may still be running
    while True:
        left = _run_folders() - before
        keepers = {pid: run for pid, run in _keepers().items() if run not in before}
        if not (left or keepers) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not left, f"run folders left in {RUN_BASE}: {sorted(left)}"
    assert not keepers, f"log keepers left: {keepers}"


@pytest.fixture
def root_dir(tmp_path: Path) -> Iterator[Path]:
    """A fresh engine root, unique per test; whatever a test leaves is torn down after it."""
    root = tmp_path / f"corral-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    yield root
    from teardown import teardown_root

    teardown_root(root)


@pytest.fixture
def engine(root_dir: Path):
    from engine import Engine

    eng = Engine(root_dir)
    yield eng
    eng.close()


@pytest.fixture
def busybox(engine) -> str:
    return engine.images.busybox().name


@pytest.fixture
def probe(engine):
    from leakprobe import LeakProbe

    return LeakProbe(engine.layout)
