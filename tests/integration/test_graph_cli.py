"""``corral graph`` and ``corral history`` over a container whose start really failed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from engine import StartFailed
from engine.graphs import model as graph_model

REPO = Path(__file__).resolve().parents[2]


def _corral(root: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "CORRAL_FAIL_POINTS"}
    return subprocess.run([sys.executable, "-m", "engine", "--root", str(root), *args],
                          capture_output=True, env=env, cwd=REPO, timeout=60,
                          stdin=subprocess.DEVNULL)


def _ok(root: Path, *args: str) -> bytes:
    r = _corral(root, *args)
    assert r.returncode == 0, f"corral {' '.join(args)}: {r.returncode}: {r.stderr!r}"
    return r.stdout


def test_graph_and_history_of_a_failed_start(engine, busybox, root_dir, tmp_path) -> None:
    cid = engine.create(busybox, ["/bin/sleep", "30"], name="graph-fault")
    engine.fail_points = {"mounts"}
    with pytest.raises(StartFailed):
        engine.start(cid)
    with pytest.raises(StartFailed):  # a second try: the dead -> starting loop
        engine.start(cid)
    engine.fail_points = set()

    dot = _ok(root_dir, "graph", cid, "--format", "dot").decode()
    fill, border = graph_model.COLORS["failed"]
    mounts = next(line for line in dot.splitlines() if line.strip().startswith("step_mounts ["))
    assert f"fillcolor=\"{fill}\"" in mounts and f"color=\"{border}\"" in mounts
    assert "FAILED" in mounts
    for line in dot.splitlines():
        if re.match(r"\s*step_(?!mounts)\w+ \[", line):
            assert fill not in line, line
    restart = next(line for line in dot.splitlines() if line.strip().startswith(
        "dead -> starting"))
    assert "start ×1" in restart
    assert re.search(r"starting -> dead \[label=<\S*<b>fail ×2</b>", dot)
    dead = next(line for line in dot.splitlines() if line.strip().startswith("dead ["))
    assert graph_model.COLORS["current"][0] in dead

    rows = json.loads(_ok(root_dir, "history", cid, "--format", "json"))
    assert [(r["from"], r["to"], r["trigger"]) for r in rows] == [
        ("created", "starting", "start"), ("starting", "dead", "fail"),
        ("dead", "starting", "start"), ("starting", "dead", "fail")]
    assert rows[1]["error"].startswith("mounts: injected fault")
    assert all(r["duration"] is not None and r["duration"] >= 0 for r in rows)
    assert all(r["time"].endswith("Z") for r in rows)

    table = _ok(root_dir, "history", "graph-fault").decode().splitlines()
    assert table[0].split() == ["TIME", "FROM", "TO", "TRIGGER", "DURATION", "ERROR"]
    assert len(table) == 5

    # the picture, through the real dot
    out = tmp_path / "c.png"
    _ok(root_dir, "graph", "graph-fault", "-o", str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5 * 1024
    mermaid = _ok(root_dir, "graph", "graph-fault").decode()
    assert "class step_mounts s_failed" in mermaid

    missing = _corral(root_dir, "history", "no-such-container")
    assert missing.returncode != 0 and b"no-such-container" in missing.stderr
    engine.remove(cid)
