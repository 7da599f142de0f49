"""The ``corral`` command line, run as a separate process per command, as a user runs it.

Real runc, conmon and overlayfs, no mocks. Each test has its own engine root; the fixture
force-removes whatever a test left and proves that no mount, conmon process or runc state of
that root remains, even when the test failed.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from schemas import OCI_SCHEMA
from waiting import wait_for

from engine.start.netsteps import veth_name

REPO = Path(__file__).resolve().parents[2]
ID_LEN = 64
# sleeps in steps of 0.1 s so that a TERM trap runs promptly; "ready" tells the test it runs
SERVER = ["sh", "-c", "trap 'echo bye; exit 0' TERM; echo ready; "
          "while true; do sleep 0.1; done"]


class Corral:
    """``corral --root ROOT ...`` as a subprocess."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {**os.environ, "CORRAL_VALIDATE_SPEC": str(OCI_SCHEMA)}
        self.env.pop("CORRAL_FAIL_POINTS", None)

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "engine", "--root", str(self.root), *args]

    def __call__(self, *args: str, input: str | None = None,  # noqa: A002 - subprocess's word
                 timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args), input=input, capture_output=True, text=True, env=self.env,
            cwd=REPO, timeout=timeout, stdin=None if input is not None else subprocess.DEVNULL)

    def ok(self, *args: str, **kwargs: object) -> str:
        """Run a command that must succeed; its stdout."""
        r = self(*args, **kwargs)  # type: ignore[arg-type]
        assert r.returncode == 0, f"corral {' '.join(args)}: {r.returncode}: {r.stderr}"
        return r.stdout

    def inspect(self, ref: str) -> dict:
        (info,) = json.loads(self.ok("inspect", ref))
        return info


def _mounts_under(*dirs: Path) -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        points = [line.split(" ", 5)[4] for line in f]
    return [p for p in points if any(p.startswith(f"{d}/") or p == str(d) for d in dirs)]


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmd = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmd:
                found.append(f"{entry.name}: {cmd}")
    return found


@pytest.fixture
def corral(tmp_path: Path) -> Iterator[Corral]:
    """A fresh root with the busybox image; torn down through the CLI whatever happens."""
    from engine.store.paths import Layout

    root = tmp_path / "root"  # tmp_path is on ext4 here: overlayfs accepts it as upper
    c = Corral(root)
    run_dir = Layout.for_root(root).run
    try:
        yield c
    finally:
        ids = c("ps", "-aq", "--no-trunc").stdout.split()
        removed = c("rm", "-f", *ids) if ids else None
        mounts = _mounts_under(root, run_dir)
        monitors = _processes_mentioning(str(run_dir))
        runc_state = sorted(p.name for p in (run_dir / "runc").glob("*"))
        from teardown import teardown_root  # last resort, so one failure cannot spread

        teardown_root(root)
        assert removed is None or removed.returncode == 0, removed.stderr
        assert mounts == [], f"mounts left under {root}: {mounts}"
        assert monitors == [], f"processes left: {monitors}"
        assert runc_state == [], f"runc state left: {runc_state}"


@pytest.fixture
def bb(corral: Corral) -> Corral:
    """``corral`` whose root holds the busybox image."""
    out = corral.ok("image", "busybox").strip()
    assert len(out) == ID_LEN and int(out, 16) >= 0
    return corral


def _listing(root: Path) -> list[str]:
    """Everything under the state folders that bad input must leave alone."""
    found = []
    for top in (root / "containers", root / "names"):
        for dirpath, dirnames, filenames in os.walk(top):
            found += [os.path.join(dirpath, n) for n in dirnames + filenames]
    return sorted(found)


def _assert_one_line_error(r: subprocess.CompletedProcess[str], status: int | None = None,
                           contains: str = "") -> None:
    assert r.returncode != 0, r.stdout
    if status is not None:
        assert r.returncode == status, (r.returncode, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error"), r.stderr
    assert "Traceback" not in r.stderr
    assert contains in lines[0], lines[0]


# -- images ---------------------------------------------------------------------------------


def test_images(bb: Corral, tmp_path: Path) -> None:
    table = bb.ok("image", "ls").splitlines()
    assert table[0].split() == ["NAME", "ID", "CREATED", "SIZE"]
    assert table[1].startswith("busybox ")
    (short,) = bb.ok("image", "ls", "-q").split()
    assert len(short) == 12 and short in table[1]

    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "motd").write_text("hello\n")
    dir_id = bb.ok("image", "import", str(tree), "mytree").strip()
    archive = tmp_path / "tree.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname=".")
    tar_id = bb.ok("image", "import", str(archive)).strip()  # named after the file: "tree"
    assert len(dir_id) == len(tar_id) == ID_LEN
    names = [line.split()[0] for line in bb.ok("images").splitlines()[1:]]
    assert sorted(names) == ["busybox", "mytree", "tree"]
    assert json.loads(bb.ok("image", "inspect", "tree"))[0]["Id"] == tar_id

    out = bb.ok("image", "rm", "mytree", tar_id[:10]).splitlines()
    assert out == ["Untagged: mytree", f"Deleted: {dir_id}", "Untagged: tree",
                   f"Deleted: {tar_id}"]
    _assert_one_line_error(bb("image", "rm", "mytree"), contains="No such image")
    _assert_one_line_error(bb("image", "busybox"), contains="already in use")


# -- run in the foreground ------------------------------------------------------------------


def test_run_rm_prints_output_and_leaves_nothing(bb: Corral) -> None:
    r = bb("run", "--rm", "busybox", "echo", "hi")
    assert (r.returncode, r.stdout, r.stderr) == (0, "hi\n", "")
    assert bb.ok("ps", "-aq") == ""
    assert _listing(bb.root) == []


def test_run_propagates_exit_code_and_streams(bb: Corral) -> None:
    r = bb("run", "--name", "three", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")
    state = bb.inspect("three")["State"]
    assert (state["Status"], state["ExitCode"]) == ("dead", 3)
    assert bb.ok("wait", "three") == "3\n"
    # Docker's statuses for a command that cannot run
    r = bb("run", "--rm", "busybox", "/no/such/command")
    assert r.returncode == 127, r.stderr
    assert "Traceback" not in r.stderr
    assert bb.ok("ps", "-aq") != ""  # "three" is kept: no --rm
    assert len(bb.ok("ps", "-aq").split()) == 1  # the failed --rm one is gone


def test_create_then_start_attached(bb: Corral) -> None:
    cid = bb.ok("create", "--name", "later", "-e", "GREETING=hello", "busybox",
                "sh", "-c", 'echo "$GREETING"; exit 2').strip()
    assert len(cid) == ID_LEN
    assert bb.inspect("later")["State"]["Status"] == "created"
    assert "Created" in bb.ok("ps", "-a")
    r = bb("start", "-a", "later")
    assert (r.returncode, r.stdout) == (2, "hello\n"), r.stderr
    assert bb.ok("start", cid[:8]) == f"{cid[:8]}\n"  # a dead container starts again
    assert bb.ok("wait", "later") == "2\n"
    assert bb.ok("logs", "later") == "hello\nhello\n"


def test_run_interactive(bb: Corral) -> None:
    r = bb("run", "-i", "--rm", "busybox", "sh", "-c", "cat; exit 6", input="piped\n")
    assert (r.returncode, r.stdout) == (6, "piped\n"), r.stderr

    # -t needs a terminal: give the CLI one
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execve(sys.executable, bb.argv("run", "-t", "--rm", "busybox", "sh", "-c",
                                          "tty; exit 7"), bb.env)
    output = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 7, output
    assert b"/dev/pts/" in output
    assert bb.ok("ps", "-aq") == ""


# -- detached containers --------------------------------------------------------------------


def test_detached_lifecycle(bb: Corral) -> None:
    cid = bb.ok("run", "-d", "--name", "web", "-l", "tier=front", "busybox", *SERVER).strip()
    assert len(cid) == ID_LEN
    table = bb.ok("ps").splitlines()
    assert table[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS",
                                "PORTS", "NAMES"]
    assert len(table) == 2 and table[1].startswith(cid[:12]) and " Up " in table[1]
    assert table[1].endswith("web") and "busybox" in table[1]
    assert bb.ok("ps", "-q") == f"{cid[:12]}\n"
    assert bb.ok("ps", "-q", "--no-trunc") == f"{cid}\n"
    wait_for(lambda: "ready" in bb.ok("logs", "web"), timeout=10, what="output")

    info = bb.inspect(cid[:6])  # a unique id prefix works wherever a name does
    for key in ("Id", "Name", "Created", "State", "RestartCount", "Config", "HostConfig",
                "Mounts"):
        assert key in info, key
    for key in ("Status", "Running", "Paused", "Pid", "ExitCode", "Error", "StartedAt",
                "FinishedAt"):
        assert key in info["State"], key
    assert (info["Id"], info["Name"], info["State"]["Status"]) == (cid, "/web", "running")
    assert info["State"]["Running"] and info["State"]["Pid"] > 0
    assert info["Config"]["Labels"] == {"tier": "front"}
    assert json.loads(bb.ok("inspect", "web", "busybox"))[1]["Name"] == "busybox"

    assert bb.ok("pause", "web") == "web\n"
    assert bb.inspect("web")["State"]["Paused"]
    assert "(Paused)" in bb.ok("ps")
    _assert_one_line_error(bb("exec", "web", "true"), contains="paused")
    assert bb.ok("unpause", "web") == "web\n"
    assert not bb.inspect("web")["State"]["Paused"]

    r = bb("exec", "web", "sh", "-c", "echo inside; exit 5")
    assert (r.returncode, r.stdout) == (5, "inside\n"), r.stderr
    assert bb.ok("exec", "-e", "X=42", cid[:10], "sh", "-c", "echo $X") == "42\n"

    _assert_one_line_error(bb("rm", "web"), contains="stop the container")
    assert bb.ok("stop", "-t", "5", "web") == "web\n"
    assert bb.ok("ps").splitlines()[1:] == []
    row = bb.ok("ps", "-a").splitlines()[1]
    assert "Exited (0)" in row and row.endswith("web")
    state = bb.inspect("web")["State"]
    assert (state["Status"], state["Running"], state["ExitCode"]) == ("dead", False, 0)
    assert bb.ok("logs", "web") == "ready\nbye\n"
    assert bb.ok("logs", "--tail", "1", "web") == "bye\n"
    stamped = bb.ok("logs", "-t", "web").splitlines()
    assert stamped[0].endswith(" ready") and stamped[0][:4].isdigit()
    assert bb.ok("rm", "web") == "web\n"
    assert bb.ok("ps", "-aq") == ""
    assert _listing(bb.root) == []


def test_exit_is_seen_by_the_next_process(bb: Corral) -> None:
    cid = bb.ok("run", "-d", "busybox", "sh", "-c", "sleep 1; exit 4").strip()
    assert bb.inspect(cid)["State"]["Status"] == "running"

    def dead() -> bool:
        return bb.inspect(cid)["State"]["Status"] == "dead"

    wait_for(dead, timeout=10, what="exit seen")
    state = bb.inspect(cid)["State"]
    assert (state["ExitCode"], state["Running"], state["Pid"]) == (4, False, 0)
    assert state["FinishedAt"] > state["StartedAt"]
    assert bb.ok("wait", cid) == "4\n"


def test_kill_restart_and_force_remove(bb: Corral) -> None:
    bb.ok("run", "-d", "--name", "ka", "busybox", *SERVER)
    bb.ok("run", "-d", "--name", "kb", "--rm", "busybox", *SERVER)
    assert bb.ok("kill", "ka") == "ka\n"
    state = bb.inspect("ka")["State"]
    assert (state["Status"], state["ExitCode"]) == ("dead", 137)
    assert bb.ok("restart", "-t", "1", "ka") == "ka\n"
    assert bb.inspect("ka")["State"]["Status"] == "running"
    assert bb.ok("kill", "-s", "TERM", "kb") == "kb\n"  # --rm: removed once it exits
    wait_for(lambda: bb.ok("ps", "-aq").split() == [bb.inspect("ka")["Id"][:12]],
             timeout=10, what="auto-removal")
    assert bb.ok("rm", "-f", "ka") == "ka\n"
    assert bb.ok("ps", "-aq") == ""



def test_stop_and_remove_of_a_bridge_container_do_not_load_pyroute2(bb: Corral) -> None:
    """Tearing a bridge container down deletes its veth with one request the network module
    writes itself: pyroute2 costs ~75 ms of import, paid only by commands that make links."""

    def loads_pyroute2(*args: str) -> bool:
        r = subprocess.run([sys.executable, "-X", "importtime", *bb.argv(*args)[1:]],
                           capture_output=True, text=True, env=bb.env, cwd=REPO, timeout=30,
                           stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r.stderr
        return "pyroute2" in r.stderr

    cid = bb.ok("run", "-d", "--name", "lean", "busybox", *SERVER).strip()
    veth = veth_name(cid)
    assert Path("/sys/class/net", veth).exists()
    assert not loads_pyroute2("stop", "-t", "5", "lean")
    assert not Path("/sys/class/net", veth).exists()
    bb.ok("start", "lean")
    assert not loads_pyroute2("rm", "-f", "lean")
    assert not Path("/sys/class/net", veth).exists()
    assert bb.ok("ps", "-aq") == ""

# -- events ---------------------------------------------------------------------------------


def test_events(bb: Corral) -> None:
    since = f"{time.time() - 1:.3f}"
    bb.ok("run", "--rm", "--name", "ev", "busybox", "true")
    until = f"{time.time() + 0.5:.3f}"
    # --until in the future: follows, then returns once the clock passes it
    lines = bb.ok("events", "--since", since, "--until", until, "--format", "json",
                  "--filter", "container=ev").splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["Action"] for e in events] == ["create", "start", "die", "destroy"], events
    assert events[2]["Actor"]["Attributes"]["exitCode"] == "0"
    text = bb.ok("events", "--since", since, "--no-follow", "-f", "event=die").splitlines()
    assert len(text) == 1 and " container die " in text[0] and "name=ev" in text[0]


# -- bad input ------------------------------------------------------------------------------


BAD_INPUT = [
    (["run", "--name", "../x", "busybox", "true"], 125, "Invalid container name"),
    (["create", "--name", "a/b", "busybox"], 125, "Invalid container name"),
    (["run", "--name", "", "busybox", "true"], 125, "Invalid container name"),
    (["create", "--name", "x" * 300, "busybox"], 125, "Invalid container name"),
    (["run", "nosuchimage", "true"], 125, "No such image"),
    (["run", "--name", "dup", "busybox", "true"], 125, "is already in use"),
    (["run", "-e", "=x", "busybox", "true"], 125, "environment variable"),
    (["run", "-v", "./relative:/x", "busybox", "true"], 125, "volume"),
    (["create", "-v", "/a", "busybox"], 125, "volume"),
    (["run", "-v", "/a:/b:zz", "busybox", "true"], 125, "mode"),
    (["stop", "nope"], 1, "No such container: nope"),
    (["rm", "-f", "nope"], 1, "No such container: nope"),
    (["logs", "nope"], 1, "No such container: nope"),
    (["exec", "nope", "true"], 1, "No such container: nope"),
    (["start", "../nope"], 1, "No such container"),
]


def test_bad_input(bb: Corral) -> None:
    """Each a one-line error and a non-zero status; nothing written to the state folders.

    One root for all cases: a fresh root each would cost seconds, and the listing before and
    after each command is what proves nothing was written."""
    bb.ok("create", "--name", "dup", "busybox", "true")
    before = _listing(bb.root)
    for argv, status, message in BAD_INPUT:
        r = bb(*argv)
        _assert_one_line_error(r, status, message)
        assert _listing(bb.root) == before, argv


def test_overlong_reference_is_no_such_container(bb: Corral) -> None:
    _assert_one_line_error(bb("stop", "x" * 300), 1, "No such container")


def test_usage_and_hidden_commands(bb: Corral) -> None:
    r = bb("run")  # no image: argparse's usage error
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "container-exited" not in bb.ok("--help")
    # conmon's exit command for a container that is gone: silent success
    r = bb("container-exited", "0" * ID_LEN)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")


def test_detached_tty_is_held_by_conmon(bb: Corral) -> None:
    cid = bb.ok("run", "-d", "-t", "busybox", "sh", "-c", "tty").strip()
    assert bb.ok("wait", cid).strip() == "0"
    assert bb.ok("logs", cid).strip().startswith("/dev/pts/")
