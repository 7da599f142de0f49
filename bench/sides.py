"""The three engines under test, behind one small interface: corral, Docker and Podman.

Each side is set up in a private folder of this run (its data, its run state, its socket), is
driven through its own command line as a user would type it, and is torn down by process id.

- corral: ``corral --root <tmp>`` with its default bridge given a name and a subnet of this run
  (``CORRAL_BRIDGE``, ``CORRAL_BRIDGE_SUBNET``); no daemon.
- Docker: Debian's ``dockerd`` started here with its own ``--data-root``, ``--exec-root``,
  ``--pidfile``, ``-H unix://<tmp>/docker.sock``, ``--bip`` on a free subnet and a cgroup parent
  of this run; it starts its own containerd under the exec root; the default runtime is runc.
- Podman: ``podman --root/--runroot/--tmpdir <tmp> --storage-driver overlay (vfs if overlay
  fails) --cgroup-manager cgroupfs --events-backend file --runtime runc``, a private
  ``containers.conf`` and network configuration folder, and a bridge network of this run made
  with netavark; ``--network none`` if that cannot be made, and the table says so.

The same busybox root filesystem (corral's ``image busybox``) is imported into each.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import json
import os
import signal
import socket
import subprocess
import tarfile
import time
from pathlib import Path

from common import (
    REPO,
    VENV_BIN,
    BenchError,
    child_env,
    find_pids,
    processes,
    pss_total_kb,
    python,
    run,
    timed,
    which,
)

IMAGE = "busybox"


def rootfs_tar(rootfs: Path) -> bytes:
    """A tar of ``rootfs`` (as ``tar -C rootfs -c .``), for ``docker import``/``podman import``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(str(rootfs), arcname=".")
    return buf.getvalue()


class Side:
    """One engine: how to run, remove and count its containers."""

    name = ""
    run_d_cmd = ""    # the command shown in the report
    run_rm_cmd = ""
    rm_cmd = ""
    note = ""         # a caveat that goes next to its figures

    def setup(self, rootfs: Path) -> None:
        raise NotImplementedError

    def run_detached(self) -> tuple[float, str]:
        raise NotImplementedError

    def run_rm_true(self) -> float:
        raise NotImplementedError

    # the Docker-style CLI in ``self.cli`` (corral and docker); podman overrides both
    cli: list[str]
    env: dict[str, str] | None

    def remove(self, cid: str) -> float:
        return timed([*self.cli, "rm", "-f", cid], env=self.env)[0]

    def remove_all(self) -> None:
        ids = run([*self.cli, "ps", "-aq"], env=self.env).stdout.decode().split()
        for i in range(0, len(ids), 100):
            run([*self.cli, "rm", "-f", *ids[i:i + 100]], env=self.env, check=False,
                timeout=1800)

    def monitor_pids(self) -> list[int]:
        """The per-container processes on the host (the container's own process excluded)."""
        raise NotImplementedError

    def engine_pids(self) -> list[int]:
        """The engine's own long-lived processes (a daemon), if any."""
        return []

    background_marker = ""  # an argument of the exit command its monitor runs after an exit

    def settle(self, timeout: float = 10.0) -> None:
        """Wait (untimed) until the exit commands that the monitors run in the background
        after a container exits are done, so that they do not slow the next measurement."""
        if not self.background_marker:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = [pid for pid, _comm, argv in processes()
                    if self.background_marker in argv and any(self.marker in a for a in argv)]
            if not busy:
                return
            time.sleep(0.02)

    @property
    def marker(self) -> str:
        return str(getattr(self, "root", getattr(self, "dir", "")))

    def teardown(self) -> None:
        raise NotImplementedError

    def versions(self) -> dict[str, str]:
        return {}


# -- corral ------------------------------------------------------------------------------------


class Corral(Side):
    name = "corral"
    background_marker = "container-exited"  # conmon's exit command: python -m engine ...

    def __init__(self, tmp: Path, subnet: ipaddress.IPv4Network, token: str) -> None:
        self.root = tmp / "corral-root"
        self.bridge = f"cbc{token}"
        self.env = child_env({"CORRAL_BRIDGE": self.bridge,
                              "CORRAL_BRIDGE_SUBNET": str(subnet),
                              "CORRAL_BRIDGE_GATEWAY": str(subnet[1])})
        corral_bin = VENV_BIN / "corral"
        self.cli = ([str(corral_bin)] if corral_bin.exists() else [python(), "-m", "engine"]) \
            + ["--root", str(self.root)]
        self.run_d_cmd = "corral run -d busybox sleep 30"
        self.run_rm_cmd = "corral run --rm busybox true"
        self.rm_cmd = "corral rm -f <id>"

    def image_rootfs(self) -> Path:
        found = sorted((self.root / "images").glob("*/rootfs"))
        if not found:
            raise BenchError("corral image busybox made no root filesystem")
        return found[0]

    def setup(self, rootfs: Path | None = None) -> None:
        run([*self.cli, "image", IMAGE], env=self.env)
        # warm-up: writes the .pyc files, makes the default bridge and the firewall table
        run([*self.cli, "run", "--rm", IMAGE, "true"], env=self.env)

    def run_detached(self) -> tuple[float, str]:
        t, out = timed([*self.cli, "run", "-d", IMAGE, "sleep", "30"], env=self.env)
        return t, out.strip()

    def run_rm_true(self) -> float:
        return timed([*self.cli, "run", "--rm", IMAGE, "true"], env=self.env)[0]

    def monitor_pids(self) -> list[int]:
        return find_pids(str(self.root), "conmon")

    def probe(self, *args: str, timeout: float = 1800,
              env: dict[str, str] | None = None) -> dict:
        """Run bench/corral_probe.py (a fresh process) and return its JSON answer."""
        proc = run([python(), str(REPO / "bench" / "corral_probe.py"), *args],
                   env=env or self.env, timeout=timeout)
        return json.loads(proc.stdout.decode().strip().splitlines()[-1])

    def serve_embedded(self) -> EmbeddedServer:
        return EmbeddedServer(self)

    def teardown(self) -> None:
        if self.root.exists():
            with contextlib.suppress(BenchError, subprocess.SubprocessError, ValueError):
                self.probe("cleanup", "--root", str(self.root))


class EmbeddedServer:
    """A process embedding one ``Engine``: ``sample()`` asks it for one create + start +
    remove and returns its JSON answer (start and remove in seconds, the parts of the start)."""

    name = "corral embedded"

    def __init__(self, corral: Corral) -> None:
        self.proc = subprocess.Popen(
            [python(), str(REPO / "bench" / "corral_probe.py"), "embedded-serve", "--root",
             str(corral.root)], env=corral.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True)
        if not json.loads(self._line()).get("ready"):
            raise BenchError("the embedded engine did not start")

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise BenchError(f"the embedded engine exited ({self.proc.wait()})")
        return line

    def sample(self) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write("start\n")
        self.proc.stdin.flush()
        return json.loads(self._line())

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            if self.proc.stdin is not None:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- Docker ------------------------------------------------------------------------------------


class Docker(Side):
    name = "docker"

    def __init__(self, tmp: Path, subnet: ipaddress.IPv4Network, token: str) -> None:
        self.dir = tmp / "docker"
        self.sock = self.dir / "docker.sock"
        self.pidfile = self.dir / "docker.pid"
        self.subnet = subnet
        self.cgroup_parent = f"/cbench-docker-{token}"
        self.env = child_env({"DOCKER_CONFIG": str(self.dir / "client")})
        self.proc: subprocess.Popen | None = None
        self.log: io.BufferedWriter | None = None
        self.docker = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
        self.cli = [self.docker, "-H", f"unix://{self.sock}"]
        self.run_d_cmd = "docker run -d busybox sleep 30"
        self.run_rm_cmd = "docker run --rm busybox true"
        self.rm_cmd = "docker rm -f <id>"

    def setup(self, rootfs: Path) -> None:
        dockerd = which("dockerd")
        if not dockerd or not Path(self.docker).exists() and not which("docker"):
            raise BenchError("docker.io is not installed")
        if Path("/sys/class/net/docker0").exists():
            raise BenchError("a docker0 bridge exists already (another Docker runs here)")
        if Path("/run/containerd/containerd.sock").exists():
            raise BenchError("a system containerd runs: dockerd would use it, not its own")
        self.dir.mkdir(parents=True)
        (self.dir / "daemon.json").write_text("{}\n")
        gw = f"{self.subnet[1]}/{self.subnet.prefixlen}"
        args = [dockerd, "--data-root", str(self.dir / "data"),
                "--exec-root", str(self.dir / "exec"), "--pidfile", str(self.pidfile),
                "-H", f"unix://{self.sock}", "--config-file", str(self.dir / "daemon.json"),
                "--bip", gw, "--cgroup-parent", self.cgroup_parent, "--log-level", "warn"]
        self.log = open(self.dir / "dockerd.log", "wb")  # noqa: SIM115 - closed in teardown
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log, start_new_session=True,
                                     env=child_env())
        deadline = time.monotonic() + 60
        while not self._ping():
            if self.proc.poll() is not None:
                tail = (self.dir / "dockerd.log").read_text(errors="replace").splitlines()
                raise BenchError(f"dockerd exited {self.proc.returncode}: "
                                 f"{tail[-1] if tail else ''}")
            if time.monotonic() > deadline:
                raise BenchError("dockerd did not answer in 60 s")
            time.sleep(0.1)
        runtime = run([*self.cli, "info", "--format", "{{.DefaultRuntime}}"],
                      env=self.env).stdout.decode().strip()
        self.note = f"default runtime {runtime}"
        run([*self.cli, "import", "-", f"{IMAGE}:latest"], env=self.env,
            input_bytes=rootfs_tar(rootfs))
        run([*self.cli, "run", "--rm", "--pull=never", IMAGE, "true"], env=self.env)

    def _ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect(str(self.sock))
                s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
                return b"200 OK" in s.recv(256)
        except OSError:
            return False

    def run_detached(self) -> tuple[float, str]:
        t, out = timed([*self.cli, "run", "-d", "--pull=never", IMAGE, "sleep", "30"],
                       env=self.env)
        return t, out.strip()

    def run_rm_true(self) -> float:
        return timed([*self.cli, "run", "--rm", "--pull=never", IMAGE, "true"],
                     env=self.env)[0]

    def monitor_pids(self) -> list[int]:
        return find_pids(str(self.dir), "containerd-shim")

    def engine_pids(self) -> list[int]:
        pids = []
        if self.proc is not None and self.proc.poll() is None:
            pids.append(self.proc.pid)
        pids += [p for p in find_pids(str(self.dir), "containerd") if
                 not _comm(p).startswith("containerd-shim")]
        return pids

    def versions(self) -> dict[str, str]:
        out = {}
        with contextlib.suppress(BenchError):
            out["docker"] = run([*self.cli, "version", "--format",
                                 "{{.Server.Version}}"], env=self.env).stdout.decode().strip()
        return out

    def teardown(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(BenchError, subprocess.SubprocessError):
            if self.proc.poll() is None:
                self.remove_all()
        _stop_pid(self.proc, 30)
        # containerd, which dockerd started, normally goes with it; if not, by its pid
        for pid in find_pids(str(self.dir)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.log is not None:
            self.log.close()


# -- Podman ------------------------------------------------------------------------------------


class Podman(Side):
    name = "podman"
    background_marker = "cleanup"  # conmon's exit command: podman ... container cleanup

    def __init__(self, tmp: Path, subnet: ipaddress.IPv4Network, token: str) -> None:
        self.dir = tmp / "podman"
        self.subnet = subnet
        self.token = token
        self.network = f"cbench{token}"
        self.driver = "overlay"
        self.cgroup_parent = f"/cbench-podman-{token}"
        self.env = child_env({"CONTAINERS_CONF": str(self.dir / "containers.conf"),
                              "CONTAINERS_REGISTRIES_CONF": str(self.dir / "registries.conf"),
                              "TMPDIR": str(self.dir / "tmpdir")})
        self.net_args = ["--network", self.network]
        self.run_d_cmd = "podman run -d busybox sleep 30"
        self.run_rm_cmd = "podman run --rm busybox true"
        self.rm_cmd = "podman rm -f -t 0 <id>"

    @property
    def cli(self) -> list[str]:
        d = self.dir
        return ["podman", "--root", str(d / "root"), "--runroot", str(d / "run"),
                "--tmpdir", str(d / "tmp"), "--storage-driver", self.driver,
                "--cgroup-manager", "cgroupfs", "--events-backend", "file",
                "--runtime", "runc", "--network-config-dir", str(d / "net")]

    def _conf(self) -> None:
        # Podman's default rlimits (1048576 open files) exceed this host's hard limits and
        # runc cannot raise them without CAP_SYS_RESOURCE: ask for the host's open-files
        # limit instead (Docker and corral set none: the container inherits the engine's)
        import resource

        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        limit = hard if hard != resource.RLIM_INFINITY else 1048576
        (self.dir / "containers.conf").write_text(
            "[containers]\n"
            f'default_ulimits = ["nofile={limit}:{limit}", "nproc={limit}:{limit}"]\n'
            "[engine]\n"
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{self.dir / "events.log"}"\n'
            'runtime = "runc"\n'
            f'tmp_dir = "{self.dir / "tmp"}"\n'
            f'volume_path = "{self.dir / "volumes"}"\n'
            "[network]\n"
            'network_backend = "netavark"\n'
            f'network_config_dir = "{self.dir / "net"}"\n')
        (self.dir / "registries.conf").write_text("")

    def setup(self, rootfs: Path) -> None:
        if not which("podman"):
            raise BenchError("podman is not installed")
        for d in ("root", "run", "tmp", "net", "tmpdir"):
            (self.dir / d).mkdir(parents=True, exist_ok=True)
        self._conf()
        tar = self.dir / "busybox.tar"
        tar.write_bytes(rootfs_tar(rootfs))
        try:
            run([*self.cli, "import", str(tar), f"{IMAGE}:latest"], env=self.env)
        except BenchError:
            self.driver = "vfs"
            self.note = "storage driver vfs (overlay failed)"
            run([*self.cli, "import", str(tar), f"{IMAGE}:latest"], env=self.env)
        try:
            run([*self.cli, "network", "create", "--subnet", str(self.subnet),
                 "--gateway", str(self.subnet[1]), "--disable-dns", self.network],
                env=self.env)
            run([*self.cli, "run", "--rm", "--pull", "never", *self.net_args,
                 "--cgroup-parent", self.cgroup_parent, IMAGE, "true"], env=self.env)
        except BenchError as exc:
            self.net_args = ["--network", "none"]
            self.note = f"--network none: bridge failed ({exc})"
            run([*self.cli, "run", "--rm", "--pull", "never", *self.net_args,
                 "--cgroup-parent", self.cgroup_parent, IMAGE, "true"], env=self.env)

    def _run(self, *args: str) -> list[str]:
        return [*self.cli, "run", "--pull", "never", *self.net_args,
                "--cgroup-parent", self.cgroup_parent, *args]

    def run_detached(self) -> tuple[float, str]:
        t, out = timed(self._run("-d", IMAGE, "sleep", "30"), env=self.env)
        return t, out.strip()

    def run_rm_true(self) -> float:
        return timed(self._run("--rm", IMAGE, "true"), env=self.env)[0]

    def remove(self, cid: str) -> float:
        # -t 0: podman's rm -f otherwise waits the stop timeout (10 s) before SIGKILL, and
        # sleep as pid 1 ignores SIGTERM; docker rm -f and corral rm -f send SIGKILL at once
        return timed([*self.cli, "rm", "-f", "-t", "0", cid], env=self.env)[0]

    def remove_all(self) -> None:
        run([*self.cli, "rm", "-a", "-f", "-t", "0"], env=self.env, check=False, timeout=1800)

    def monitor_pids(self) -> list[int]:
        return find_pids(str(self.dir), "conmon")

    def versions(self) -> dict[str, str]:
        return {}

    def teardown(self) -> None:
        if not self.dir.exists():
            return
        with contextlib.suppress(BenchError, subprocess.SubprocessError):
            self.remove_all()
            run([*self.cli, "network", "rm", "-f", self.network], env=self.env, check=False)
        # podman's overlay mounts and netns are left to the host guard (by path)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _stop_pid(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM the process we started, SIGKILL it after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def memory_of(side: Side) -> tuple[float, float, int, float]:
    """(per-container Pss MB, per-container Rss MB, monitors counted, engine Pss MB)."""
    mon = side.monitor_pids()
    pss, rss, n = pss_total_kb(mon)
    eng_pss, _eng_rss, _ = pss_total_kb(side.engine_pids())
    if n == 0:
        return float("nan"), float("nan"), 0, eng_pss / 1024
    return pss / n / 1024, rss / n / 1024, n, eng_pss / 1024
