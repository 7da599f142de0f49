"""The command line where it differed from Docker (issue 11, item 5), through the real CLI
with real runc, conmon, overlayfs and nft: each test reproduces a defect first fixed then.

The ``corral``/``bb`` fixtures (a root per test, torn down whatever happens) are
test_cli.py's.
"""

from __future__ import annotations

import json
import re
import socket
import time

import test_cli
from test_cli import Corral
from waiting import wait_for

corral = test_cli.corral  # the fixtures, shared
bb = test_cli.bb

ID_LINE = re.compile(r"^[0-9a-f]{64}$")
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}(Z|[+-]\d\d:\d\d)"


def _stderr_lines(r: object) -> list[str]:
    return [ln for ln in r.stderr.splitlines() if ln.strip()]  # type: ignore[attr-defined]


# -- run --rm and exec failures: one line, Docker's statuses ----------------------------------


def test_run_rm_failed_start_prints_one_error_line(bb: Corral) -> None:
    r = bb("run", "--rm", "--name", "nocmd", "busybox", "nosuchcmd")
    assert r.returncode == 127, r.stderr
    lines = _stderr_lines(r)
    # before: "WARNING engine.cli.main: No such container: ..." came first
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines
    assert "executable file not found" in lines[0]
    assert bb.ok("ps", "-aq") == ""


def test_exec_of_a_command_that_cannot_run(bb: Corral) -> None:
    bb.ok("run", "-d", "--name", "ex", "busybox", "sleep", "30")
    cases = [(["nosuch"], 127, 'exec: "nosuch": executable file not found in $PATH'),
             (["./nosuch"], 127, "no such file or directory"),
             (["/etc/passwd"], 126, "permission denied"),
             (["/etc"], 126, "is a directory")]
    for argv, code, text in cases:
        r = bb("exec", "ex", *argv)
        lines = _stderr_lines(r)
        # before: runc's raw 'time="..." level=error msg=...' line and status 255
        assert r.returncode == code, (argv, r.returncode, r.stderr)
        assert len(lines) == 1 and lines[0].startswith("Error: OCI runtime exec failed"), lines
        assert text in lines[0] and "level=error" not in lines[0]
    # a command found through the container's PATH, and one that fails on its own
    assert bb.ok("exec", "ex", "echo", "hi") == "hi\n"
    assert bb("exec", "ex", "sh", "-c", "exit 3").returncode == 3
    assert bb("exec", "-e", "PATH=/nowhere", "ex", "echo", "x").returncode == 127


def test_tty_without_stdin_terminal_and_term(bb: Corral) -> None:
    bb.ok("run", "-d", "--name", "tt", "busybox", "sleep", "30")
    # stdin is /dev/null here: Docker allows -t alone, refuses only -it
    r = bb("exec", "-t", "tt", "sh", "-c", "echo TERM=$TERM; [ -t 1 ] && echo tty")
    assert r.returncode == 0, r.stderr
    assert "TERM=xterm" in r.stdout and "tty" in r.stdout, r.stdout
    assert "TERM=vt100" in bb.ok("exec", "-t", "-e", "TERM=vt100", "tt", "sh", "-c",
                                 "echo TERM=$TERM")
    assert "TERM=" not in bb.ok("exec", "tt", "sh", "-c", "env | grep TERM= || true")
    r = bb("exec", "-it", "tt", "true")
    assert r.returncode != 0 and "the input device is not a TTY" in r.stderr
    r = bb("run", "--rm", "-t", "busybox", "sh", "-c", "echo TERM=$TERM; exit 3")
    assert r.returncode == 3 and "TERM=xterm" in r.stdout, (r.returncode, r.stdout, r.stderr)
    r = bb("run", "--rm", "-it", "busybox", "true")
    assert r.returncode == 125 and "the input device is not a TTY" in r.stderr
    assert bb.ok("ps", "-aq").split() == [bb.inspect("tt")["Id"][:12]]


# -- ps -------------------------------------------------------------------------------------


def test_ps_ports_format_filters_and_size(bb: Corral) -> None:
    web = bb.ok("run", "-d", "--name", "web", "-p", "0:80", "-l", "tier=front", "busybox",
                "sleep", "30").strip()
    bb.ok("run", "-d", "--name", "db", "-l", "tier=back", "-l", "env=prod", "-v",
          "dbdata:/data", "busybox", "sleep", "30")
    assert bb("run", "--name", "done", "busybox", "sh", "-c", "exit 3").returncode == 3
    # -p 0:80 published a free port, shown by inspect, port and ps
    host_port = bb.inspect("web")["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"]
    assert host_port.isdigit() and int(host_port) > 0
    assert bb.ok("port", "web") == f"80/tcp -> 0.0.0.0:{host_port}\n"
    assert bb.ok("port", "web", "80/tcp") == f"0.0.0.0:{host_port}\n"

    header, *rows = bb.ok("ps").splitlines()
    assert header.split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS",
                              "PORTS", "NAMES"]
    web_row = next(r for r in rows if r.endswith(" web"))
    assert f"0.0.0.0:{host_port}->80/tcp" in web_row and '"sleep 30"' in web_row

    fmt = bb.ok("ps", "--format", "{{.Names}}|{{.Ports}}|{{.State}}|{{.Label \"tier\"}}",
                "-f", "name=web")
    assert fmt == f"web|0.0.0.0:{host_port}->80/tcp|running|front\n"
    table = bb.ok("ps", "-a", "--format", "table {{.Names}}\\t{{.Status}}").splitlines()
    assert table[0].split() == ["NAMES", "STATUS"] and len(table) == 4
    (row,) = [json.loads(line) for line in bb.ok("ps", "--format", "{{json .}}",
                                                  "--filter", "label=env=prod").splitlines()]
    assert row["Names"] == "db" and row["Command"] == '"sleep 30"' and row["ID"] == \
        bb.inspect("db")["Id"][:12]
    assert bb.ok("ps", "--format", "{{.ID}}", "--no-trunc", "-f", "name=^web$") == web + "\n"

    def names(*args: str) -> list[str]:
        return sorted(bb.ok("ps", "--format", "{{.Names}}", *args).split())

    assert names("-f", "label=tier") == ["db", "web"]
    assert names("-f", "label=tier", "-f", "label=env") == ["db"]     # all labels
    assert names("-f", "name=web", "-f", "name=db") == ["db", "web"]  # one key: any
    assert names("-f", "status=exited") == ["done"]                   # without -a, as Docker
    assert names("-a", "-f", "exited=3") == ["done"]
    assert names("-f", "ancestor=busybox") == ["db", "web"]
    assert names("-n", "1") == ["done"] and names("-l") == ["done"]   # any state
    assert names("-f", "volume=dbdata") == ["db"]
    assert bb.ok("ps", "--format", "{{.Mounts}} {{.LocalVolumes}} {{.Networks}}",
                 "-f", "name=db") == "dbdata 1 bridge\n"
    r = bb("ps", "--format", "{{.Foo}}")
    assert r.returncode == 1 and "can't evaluate field Foo" in r.stderr
    r = bb("ps", "-f", "colour=red")
    assert r.returncode == 1 and "invalid filter 'colour'" in r.stderr

    # -s: the writable layer, and the image beside it
    bb.ok("exec", "db", "sh", "-c", "head -c 100000 /dev/zero > /big")
    sizes = dict(line.split("|") for line in bb.ok(
        "ps", "-s", "--format", "{{.Names}}|{{.Size}}").splitlines())
    assert re.fullmatch(r"0B \(virtual [\d.]+[kM]B\)", sizes["web"]), sizes
    assert re.fullmatch(r"10[0-9]kB \(virtual [\d.]+[kM]B\)", sizes["db"]), sizes
    assert bb.ok("ps", "-s", "-f", "name=db").splitlines()[0].endswith("SIZE")

    # the chosen port is the container's for as long as it runs, then free again
    bb.ok("stop", "-t", "0", "web")
    assert bb.ok("ps", "-a", "--format", "{{.Ports}}", "-f", "name=web") == "\n"


def test_inspect_format(bb: Corral) -> None:
    bb.ok("run", "-d", "--name", "ins", "-l", "k=v", "-e", "A=1", "busybox", "sleep", "30")
    info = bb.inspect("ins")
    out = bb.ok("inspect", "--format", "{{.State.Status}} {{.NetworkSettings.IPAddress}} "
                "{{index .Config.Labels \"k\"}} {{json .Config.Labels}}", "ins")
    assert out == f"running {info['NetworkSettings']['IPAddress']} v {{\"k\":\"v\"}}\n"
    assert json.loads(bb.ok("inspect", "-f", "{{json .Config}}", "ins")) == info["Config"]
    assert bb.ok("inspect", "-f", "{{range .Config.Env}}{{.}};{{end}}", "ins").startswith(
        "A=1;")
    r = bb("inspect", "-f", "{{.Stat}}", "ins")
    assert r.returncode == 1 and 'map has no entry for key "Stat"' in r.stderr


# -- events ---------------------------------------------------------------------------------


def test_events_kill_exec_network_filters_and_format(bb: Corral) -> None:
    since = f"{time.time() - 1:.3f}"
    cid = bb.ok("run", "-d", "--name", "ev", "-l", "team=a", "busybox", "sleep", "30").strip()
    bb.ok("run", "-d", "--name", "other", "busybox", "sleep", "30")
    assert bb("exec", "ev", "sh", "-c", "exit 4").returncode == 4
    bb.ok("stop", "-t", "1", "ev")   # sleep as pid 1 ignores SIGTERM: killed after 1 s
    bb.ok("start", "ev")
    bb.ok("rm", "-f", "ev")

    def events(*args: str) -> list[str]:
        return bb.ok("events", "--since", since, "--no-follow", *args).splitlines()

    actions = events("--filter", "container=ev", "--format",
                     "{{.Action}}{{with .Actor.Attributes.signal}} {{.}}{{end}}"
                     "{{with .Actor.Attributes.exitCode}} exit={{.}}{{end}}")
    assert actions == ["create", "start", "exec_create: sh -c exit 4", "exec_start: sh -c exit 4",
                       "exec_die exit=4", "kill 15", "kill 9", "die exit=137", "stop",
                       "start", "kill 9", "die exit=137", "destroy"], actions

    net = events("-f", "type=network", "--format",
                 "{{.Action}} {{.Actor.Attributes.container}} {{.Actor.Attributes.name}}")
    assert net.count(f"connect {cid} bridge") == 2 and net.count(
        f"disconnect {cid} bridge") == 2, net
    assert events("-f", "network=bridge", "-f", "event=connect",
                  "--format", "{{.Type}}") == ["network"] * 3   # ev twice, other once

    # label and event filters; exec_start matches "exec_start: <command>"
    assert {line.split()[0] for line in events(
        "-f", "label=team=a", "--format", "{{.Actor.Attributes.name}}")} == {"ev"}
    assert len(events("-f", "event=exec_start")) == 1
    assert bb.ok("events", "--no-follow", "-f", f"since={since}", "-f", "event=exec_die",
                 "--format", "{{.Actor.Attributes.exitCode}}") == "4\n"
    (line,) = events("-f", "container=ev", "-f", "event=create")
    assert re.fullmatch(rf"{STAMP} container create {cid} \(image=busybox, name=ev, team=a\)",
                        line), line
    (js,) = events("-f", "container=ev", "-f", "event=destroy", "--format", "{{json .}}")
    data = json.loads(js)
    assert data["status"] == "destroy" and data["id"] == cid and data["from"] == "busybox"
    assert data["Actor"]["Attributes"]["team"] == "a" and data["scope"] == "local"
    r = bb("events", "--no-follow", "--format", "{{.Nope}}")
    assert r.returncode == 1 and "can't evaluate field Nope in type events.Message" in r.stderr
    assert bb.ok("image", "inspect", "-f", "{{.Name}}", "busybox") == "busybox\n"
    r = bb("events", "--no-follow", "-f", "colour=red")
    assert r.returncode == 1 and "invalid filter 'colour'" in r.stderr


# -- links ----------------------------------------------------------------------------------


def test_link_with_a_one_letter_alias(bb: Corral) -> None:
    bb.ok("run", "-d", "--name", "web", "busybox", "sleep", "30")
    # before: "invalid link specification: 'web:w'"
    out = bb.ok("run", "--rm", "--name", "client", "--link", "web:w", "busybox", "sh", "-c",
                "grep -w w /etc/hosts >/dev/null && echo $W_NAME && ping -c1 -W2 w >/dev/null "
                "&& echo reached")
    assert out.split() == ["/client/w", "reached"], out


def test_publish_port_zero_picks_a_free_port_that_answers(bb: Corral) -> None:
    # before: 'invalid port specification: "0:80": host port must be a number from 1 to 65535'
    bb.ok("run", "-d", "--name", "srv", "-p", "0:80", "-p", "0:81", "busybox", "sh", "-c",
          "while true; do echo hello | nc -l -p 80; done")
    ports = bb.inspect("srv")["NetworkSettings"]["Ports"]
    chosen = [int(ports[k][0]["HostPort"]) for k in ("80/tcp", "81/tcp")]
    assert all(chosen) and chosen[0] != chosen[1]
    assert bb.ok("port", "srv", "80") == f"0.0.0.0:{chosen[0]}\n"
    assert bb.inspect("srv")["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"] == "0"

    def answer() -> bytes:
        try:
            with socket.create_connection(("127.0.0.1", chosen[0]), timeout=2) as s:
                return s.recv(100)
        except OSError:
            return b""

    wait_for(lambda: answer() == b"hello\n", timeout=10, what="an answer on the chosen port")
