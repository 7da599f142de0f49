"""Deployments with the keys real Compose files use (secrets, anonymous volumes, capabilities,
sysctls, ``~``, platform, several networks), ``up`` that makes nothing when an image is
missing, ``down`` that stops a level of services at once, and errors one per line."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path

import pytest
from clirun import corral as cli
from waiting import wait_for

from engine.compose.deploy import Deployment
from engine.compose.labels import MissingImages
from engine.compose.project import load_project


def write(folder: Path, text: str, name: str = "compose.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def deployment(engine, path: Path, name: str, environ: dict[str, str] | None = None
               ) -> Deployment:
    return Deployment(engine, load_project(path, project_name=name, environ=environ),
                      wait_timeout=60)


def output(engine, cid: str) -> list[str]:
    engine.wait(cid, timeout=30)
    return [r.text.rstrip("\n") for r in engine.logs(cid) if r.stream == "stdout"]


def project_objects(engine, name: str) -> list[str]:
    nets = [n.name for n in engine.network_list() if n.name.startswith(f"{name}_")]
    vols = [v.name for v in engine.volume_list()]
    return nets + vols + [c["Id"] for c in engine.list(all=True)]


def test_up_with_missing_images_creates_nothing_and_names_each(engine, busybox, tmp_path,
                                                               probe) -> None:
    path = write(tmp_path, """\
services:
  web:
    image: busybox
    networks: [front]
    volumes: [data:/data]
  db:
    image: no-such-db:1
  cache:
    image: no-such-cache
networks:
  front: {}
volumes:
  data: {}
""")
    dep = deployment(engine, path, "miss")
    with pytest.raises(MissingImages) as info:
        dep.up()
    assert info.value.errors == [
        f"{path}:7: services.db.image: no such image: no-such-db:1",
        f"{path}:9: services.cache.image: no such image: no-such-cache",
    ]
    assert project_objects(engine, "miss") == []
    bridges = subprocess.run(["ip", "-o", "link", "show", "type", "bridge"],
                             capture_output=True, text=True).stdout
    assert engine.networks._bridge_name("miss_front") not in bridges
    # through the CLI: one Error line per image, exit status not 0
    out = cli(engine.layout.root, "up", "-d", "-f", str(path), "-p", "miss")
    assert out.returncode != 0
    assert [line for line in out.stderr.splitlines() if line.startswith("Error:")] == [
        f"Error: {e}" for e in info.value.errors]
    assert project_objects(engine, "miss") == []


def test_file_errors_are_printed_one_per_line(root_dir, tmp_path) -> None:
    path = write(tmp_path, """\
services:
  web:
    build: .
  app:
    image: busybox
    restart: sometimes
    platform: linux/arm64
""")
    out = cli(root_dir, "up", "-d", "-f", str(path))
    assert out.returncode != 0
    assert out.stderr.splitlines() == [
        f"Error: {path}:3: services.web.build is not supported: corral does not build images; "
        "give an 'image'",
        f"Error: {path}:6: services.app.restart: invalid restart policy: 'sometimes'",
        f"Error: {path}:7: services.app.platform: platform 'linux/arm64' is not supported: "
        "corral runs linux/amd64 and linux/x86_64 images only",
    ]


def test_down_stops_each_level_at_once(engine, busybox, tmp_path) -> None:
    # PID 1 of a container ignores SIGTERM it has no handler for: each stop waits its grace
    path = write(tmp_path, """\
x-stubborn: &stubborn
  image: busybox
  command: ["sleep", "600"]
  stop_grace_period: 4s
  depends_on: [db]
services:
  db: {image: busybox, command: ["sleep", "600"], stop_grace_period: 4s}
  a: *stubborn
  b: *stubborn
  c: *stubborn
""")
    dep = deployment(engine, path, "par")
    dep.up()
    died: dict[str, float] = {}
    lock = threading.Lock()

    def seen(ev) -> None:
        if ev.action == "die":
            with lock:
                died[ev.attributes["name"]] = time.monotonic()

    engine.subscribe(seen)
    dep.down()
    assert set(died) == {"par-a-1", "par-b-1", "par-c-1", "par-db-1"}
    webs = [died[f"par-{s}-1"] for s in "abc"]
    # one after another, each would die a full grace period after the previous one
    assert max(webs) - min(webs) < 4.0
    assert died["par-db-1"] >= max(webs)  # the dependency goes after its dependents
    assert project_objects(engine, "par") == []


def test_secrets_are_mounted_read_only(engine, busybox, tmp_path) -> None:
    (tmp_path / "token.txt").write_text("s3cret\n")
    path = write(tmp_path, """\
services:
  app:
    image: busybox
    command: ["sh", "-c", "cat /run/secrets/token /run/secrets/other /etc/tok;
              (echo x > /run/secrets/token) 2>/dev/null || echo read-only"]
    secrets:
      - token
      - {source: token, target: other}
      - {source: token, target: /etc/tok}
secrets:
  token:
    file: ./token.txt
""")
    dep = deployment(engine, path, "sec")
    (cid,) = dep.up()
    assert output(engine, cid) == ["s3cret", "s3cret", "s3cret", "read-only"]
    assert (tmp_path / "token.txt").read_text() == "s3cret\n"
    dep.down(timeout=1)


def test_anonymous_volume_is_made_at_create_and_removed_by_down_v(engine, busybox,
                                                                   tmp_path) -> None:
    path = write(tmp_path, """\
services:
  app:
    image: busybox
    command: ["sh", "-c", "echo kept > /app/node_modules/f; cat /app/node_modules/f;
              sleep 600"]
    volumes:
      - /app/node_modules
      - type: volume
        target: /cache
""")
    dep = deployment(engine, path, "anon")
    (cid,) = dep.up()
    wait_for(lambda: [r.text for r in engine.logs(cid)] == ["kept\n"])
    vols = engine.volume_list()
    assert len(vols) == 2 and all(re.fullmatch(r"[0-9a-f]{64}", v.name) for v in vols)
    mounts = {m["Destination"]: m for m in engine.inspect(cid)["Mounts"]}
    assert mounts["/app/node_modules"]["Type"] == "volume"
    assert {mounts["/app/node_modules"]["Name"], mounts["/cache"]["Name"]} == {
        v.name for v in vols}
    assert dep.up() == [cid]  # unchanged definition: the same container, no new volume
    assert len(engine.volume_list()) == 2
    dep.down(timeout=1)
    assert len(engine.volume_list()) == 2  # as Docker: only -v removes them
    dep.down(volumes=True, timeout=1)
    assert engine.volume_list() == []


def test_failed_create_removes_the_anonymous_volumes_it_made(engine, busybox,
                                                             tmp_path) -> None:
    path = write(tmp_path, """\
services:
  app:
    image: busybox
    container_name: taken
    volumes: [/data]
""")
    engine.create(busybox, ["true"], name="taken")
    dep = deployment(engine, path, "anonfail")
    with pytest.raises(Exception, match="taken"):
        dep.up()
    assert engine.volume_list() == []


def test_capabilities_sysctls_platform_and_home(engine, busybox, tmp_path) -> None:
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    (home / "data" / "hello").write_text("from-home\n")
    path = write(tmp_path, """\
services:
  app:
    image: busybox
    platform: linux/x86_64
    cap_add: [NET_ADMIN]
    cap_drop: [CHOWN]
    sysctls:
      net.ipv4.ip_unprivileged_port_start: 0
      kernel.shmmni: 1000
    volumes: ["~/data:/data:ro"]
    command: ["sh", "-c", "cat /data/hello; cat /proc/sys/net/ipv4/ip_unprivileged_port_start
              /proc/sys/kernel/shmmni; ip addr add 10.254.254.254/32 dev lo && echo admin;
              chown 1 /tmp 2>/dev/null || echo no-chown"]
""")
    dep = deployment(engine, path, "caps", environ={"HOME": str(home)})
    (cid,) = dep.up()
    assert output(engine, cid) == ["from-home", "0", "1000", "admin", "no-chown"]
    dep.down(timeout=1)


def test_service_on_two_networks(engine, busybox, tmp_path, probe) -> None:
    path = write(tmp_path, """\
services:
  web:
    image: busybox
    command: ["sh", "-c", "mkdir /w; echo web > /w/index.html; exec httpd -f -p 80 -h /w"]
    networks: [front]
  db:
    image: busybox
    command: ["sh", "-c", "mkdir /w; echo db > /w/index.html; exec httpd -f -p 80 -h /w"]
    networks: [back]
  app:
    image: busybox
    command: ["sleep", "600"]
    depends_on: [web, db]
    networks:
      front: {}
      back: {aliases: [api]}
networks:
  front: {}
  back: {}
""")
    dep = deployment(engine, path, "two")
    ids = dep.up()
    app = dep.containers()["app"]
    assert set(app["NetworkSettings"]["Networks"]) == {"two_front", "two_back"}
    assert app["NetworkSettings"]["Networks"]["two_back"]["Aliases"] == ["app", "api"]

    def get(url: str) -> str:
        result = engine.exec(app["Id"], ["wget", "-q", "-O", "-", url], capture=True)
        return result.output.decode() if result.exit_code == 0 else ""

    wait_for(lambda: get("http://web/") == "web\n")
    wait_for(lambda: get("http://db/") == "db\n")
    db_hosts = engine.exec(dep.containers()["db"]["Id"], ["cat", "/etc/hosts"],
                           capture=True).output.decode()
    assert "two-app-1 app api" in db_hosts
    dep.down(timeout=1)
    for cid in ids:
        assert probe.leaks(cid, removed=True) == []
    assert project_objects(engine, "two") == []
