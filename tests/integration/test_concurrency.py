"""Several corral processes at once: each acts on its own containers, nothing is corrupted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine import Engine

WORKER = """
import sys
from engine import Engine
root, prefix, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
eng = Engine(root, watch=False)
for i in range(rounds):
    cid = eng.create("busybox", ["/bin/sleep", "30"], name=f"{prefix}-{i}")
    eng.start(cid)
    assert eng.inspect(cid)["State"]["Status"] == "running"
    eng.remove(cid, force=True)
print("ok", prefix)
"""


def test_two_processes_start_and_remove_different_containers(root_dir: Path, probe) -> None:
    eng = Engine(root_dir, watch=False)
    eng.images.busybox()
    eng.close()
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(root_dir), p, "8"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for p in ("left", "right")]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert out.startswith("ok")
    assert os.listdir(root_dir / "containers") == []
    assert os.listdir(root_dir / "names") == []
    assert probe.mounts() == []


@pytest.mark.parametrize("clients", [2])
def test_cli_processes_racing_on_one_container(root_dir: Path, clients: int) -> None:
    corral = [sys.executable, "-m", "engine", "--root", str(root_dir)]
    subprocess.run(corral + ["image", "busybox"], check=True, capture_output=True)
    subprocess.run(corral + ["create", "--name", "shared", "busybox", "sleep", "30"],
                   check=True, capture_output=True)
    procs = [subprocess.Popen(corral + ["start", "shared"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(clients)]
    results = [(p.wait(60), p.stderr.read()) for p in procs]
    # one starts it; the other finds it running (Docker answers that start with no error)
    assert all(code == 0 for code, _ in results), results
    info = subprocess.run(corral + ["inspect", "shared"], capture_output=True, text=True)
    assert '"Status": "running"' in info.stdout
    subprocess.run(corral + ["rm", "-f", "shared"], check=True, capture_output=True)
