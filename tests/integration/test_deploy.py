"""Deployments from Compose-subset files, with real containers: the examples in configs/,
health-gated dependencies, named volumes across down/up, names on the project network."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from waiting import wait_for

from engine.compose.deploy import Deployment
from engine.compose.labels import DependencyFailed
from engine.compose.project import load_project

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def deployment(engine, path: Path, name: str | None = None) -> Deployment:
    return Deployment(engine, load_project(path, project_name=name), wait_timeout=60)


def leaves_nothing(engine, probe, dep: Deployment, ids: list[str]) -> None:
    for cid in ids:
        assert probe.leaks(cid, removed=True) == []
    assert not [n for n in engine.network_list() if n.name.startswith(f"{dep.name}_")]


def test_web_client_example(engine, busybox, probe) -> None:
    dep = deployment(engine, CONFIGS / "web-client.yaml", "wc")
    ids = dep.up()
    rows = {r["Service"]: r for r in dep.ps()}
    assert rows["web"]["Health"] == "healthy"  # the client waited for this
    wait_for(lambda: {r["Service"]: r for r in dep.ps()}["client"]["State"] == "dead")
    client = {r["Service"]: r for r in dep.ps()}["client"]
    assert client["ExitCode"] == 0
    out = "".join(rec.text for svc, rec in dep.logs(["client"]))
    assert "hello from corral" in out and "client done" in out  # reached "web" by name
    dep.down(timeout=1)
    leaves_nothing(engine, probe, dep, ids)


def test_worker_restart_example(engine, busybox, probe) -> None:
    dep = deployment(engine, CONFIGS / "worker-restart.yaml", "wr")
    ids = dep.up()
    def finished() -> bool:
        # One snapshot: two inspects could pair attempt 1's running exit code (0) with its
        # later death (1), before any restart happened.
        state = engine.inspect(ids[0])["State"]
        return state["Status"] == "dead" and state["ExitCode"] == 0

    wait_for(finished)
    info = engine.inspect(ids[0])
    assert info["RestartCount"] == 2
    assert [r.text.strip() for _, r in dep.logs()][-1] == "worker done"
    dep.down(volumes=True, timeout=1)
    leaves_nothing(engine, probe, dep, ids)
    assert engine.volume_list() == []


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "deploy.yaml"
    path.write_text(text)
    return path


def test_never_healthy_dependency_fails_up_naming_it(engine, busybox, tmp_path, probe) -> None:
    path = write(tmp_path, """
services:
  db:
    image: busybox
    command: ["sleep", "60"]
    healthcheck: {test: ["CMD", "false"], interval: 0.1s, timeout: 1s, retries: 2}
  app:
    image: busybox
    command: ["sleep", "60"]
    depends_on: {db: {condition: service_healthy}}
""")
    dep = deployment(engine, path, "sick")
    with pytest.raises(DependencyFailed, match="sick-db-1 is unhealthy"):
        dep.up()
    assert "app" not in dep.containers()
    ids = [info["Id"] for info in dep.containers().values()]
    dep.down(timeout=1)
    leaves_nothing(engine, probe, dep, ids)


def test_named_volume_survives_down_and_down_v_removes_it(engine, busybox, tmp_path) -> None:
    path = write(tmp_path, """
services:
  box:
    image: busybox
    command: ["sh", "-c", "echo run >> /data/log; cat /data/log | wc -l"]
    volumes: [keep:/data]
volumes:
  keep: {}
""")
    dep = deployment(engine, path, "vol")
    for expected in ("1", "2"):
        (cid,) = dep.up()
        engine.wait(cid, timeout=10)
        assert [r.text.strip() for _, r in dep.logs()][-1] == expected
        dep.down(timeout=1)
    assert [v.name for v in engine.volume_list()] == ["vol_keep"]
    dep.up()
    dep.down(volumes=True, timeout=1)
    assert engine.volume_list() == []


def test_depends_on_orders_start_and_stop(engine, busybox, tmp_path) -> None:
    path = write(tmp_path, """
services:
  c: {image: busybox, command: ["sleep", "60"], depends_on: [b]}
  b: {image: busybox, command: ["sleep", "60"], depends_on: [a]}
  a: {image: busybox, command: ["sleep", "60"]}
""")
    dep = deployment(engine, path, "ord")
    got = []
    engine.subscribe(lambda ev: got.append((ev.action, ev.attributes.get("name"))))
    dep.up()
    dep.down(timeout=1)
    starts = [n for a, n in got if a == "start"]
    stops = [n for a, n in got if a == "die"]
    assert starts == ["ord-a-1", "ord-b-1", "ord-c-1"]
    assert stops == ["ord-c-1", "ord-b-1", "ord-a-1"]


def test_up_and_down_through_the_cli(root_dir, tmp_path) -> None:
    corral = [sys.executable, "-m", "engine", "--root", str(root_dir)]
    subprocess.run(corral + ["image", "busybox"], check=True, capture_output=True)
    path = write(tmp_path, """
name: clidemo
services:
  one: {image: busybox, command: ["sh", "-c", "echo from-one; sleep 60"]}
""")
    up = subprocess.run(corral + ["up", "-d", "-f", str(path)], capture_output=True, text=True)
    assert up.returncode == 0, up.stderr
    assert "clidemo-one-1" in up.stderr
    ps = subprocess.run(corral + ["compose", "-f", str(path), "ps"], capture_output=True,
                        text=True)
    assert "clidemo-one-1" in ps.stdout and "Up" in ps.stdout
    wait_for(lambda: "one | from-one" in subprocess.run(
        corral + ["compose", "-f", str(path), "logs"], capture_output=True, text=True).stdout)
    bad = subprocess.run(corral + ["up", "-f", str(tmp_path / "missing.yaml")],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "missing.yaml" in bad.stderr and "Traceback" not in bad.stderr
    down = subprocess.run(corral + ["down", "-t", "1", "-f", str(path)], capture_output=True,
                          text=True)
    assert down.returncode == 0, down.stderr
    assert subprocess.run(corral + ["ps", "-aq"], capture_output=True, text=True).stdout == ""


def test_foreground_up_streams_prefixed_logs_and_ctrl_c_stops(root_dir, tmp_path) -> None:
    import signal

    corral = [sys.executable, "-m", "engine", "--root", str(root_dir)]
    subprocess.run(corral + ["image", "busybox"], check=True, capture_output=True)
    path = write(tmp_path, """
name: fg
services:
  ticker:
    image: busybox
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do echo tick; sleep 0.2; done"]
""")
    proc = subprocess.Popen(corral + ["up", "-f", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.strip() == "ticker | tick"
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        assert "Gracefully stopping" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    info = subprocess.run(corral + ["inspect", "fg-ticker-1"], capture_output=True, text=True)
    assert '"Status": "dead"' in info.stdout
    subprocess.run(corral + ["down", "-t", "1", "-f", str(path)], check=True,
                   capture_output=True)
