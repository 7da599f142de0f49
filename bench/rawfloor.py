"""The raw floor: what the kernel, ``ip`` and runc need to run one busybox on a bridge, no engine.

Start (timed): ``ip netns add``; ``ip link add <host> master <bridge> up type veth peer name
eth0 netns <ns>``; one ``ip -n <ns> -batch -`` (address, ``eth0`` up, ``lo`` up, default
route); ``runc create`` on a prepared bundle (config.json written before the clock starts, the
image's root filesystem used read-only in place, no overlay); ``runc start``.
Stop and remove (timed): ``runc kill <id> KILL``; wait for the process to end (a pidfd);
``runc delete``; ``ip netns del``. (Not ``runc delete --force``: it polls the killed process
every 100 ms, which would put a sleep in the floor.)
``run true`` (timed): the same network, then ``runc run`` (which deletes the container when
it exits), ``ip netns del``.

The bundle is the OCI config corral writes (``engine.start.spec.build_spec``), so runc does the same
work as under corral. Everything lives on a bridge and a subnet made for this run, with names
of this run, and is deleted after each sample and at the end.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

from common import BenchError, run


class RawFloor:
    def __init__(self, tmp: Path, subnet: ipaddress.IPv4Network, token: str,
                 rootfs: Path) -> None:
        self.dir = tmp / "floor"
        self.state = self.dir / "runc"
        self.subnet = subnet
        self.token = token
        self.bridge = f"cbf{token}"
        self.cgroup_parent = f"cbench-floor-{token}"
        self.rootfs = rootfs
        self.count = 0
        self.live: list[tuple[str, str]] = []  # (runc id, netns) not yet deleted
        self.parts: list[dict[str, float]] = []  # the parts of each timed start

    def setup(self) -> None:
        self.dir.mkdir(parents=True)
        run(["ip", "link", "add", self.bridge, "type", "bridge"])
        run(["ip", "addr", "add", f"{self.subnet[1]}/{self.subnet.prefixlen}", "dev",
             self.bridge])
        run(["ip", "link", "set", self.bridge, "up"])

    def _prepare(self, args: list[str]) -> tuple[str, str, str, Path, str]:
        from engine.start.spec import SpecOptions, build_spec

        i = self.count
        self.count += 1
        ns, host, cid = f"cbf{self.token}n{i}", f"cbf{self.token}v{i}", \
            f"cbench-floor-{self.token}-{i}"
        bundle = self.dir / f"b{i}"
        bundle.mkdir()
        spec = build_spec(SpecOptions(
            args=args, rootfs=str(self.rootfs), readonly_rootfs=True,
            network=f"/run/netns/{ns}", hostname=cid[:12],
            cgroups_path=f"/{self.cgroup_parent}/{cid}"))
        (bundle / "config.json").write_text(json.dumps(spec))
        hosts = list(self.subnet.hosts())
        address = f"{hosts[1 + i % (len(hosts) - 1)]}/{self.subnet.prefixlen}"
        return ns, host, cid, bundle, address

    def _network(self, ns: str, host: str, address: str) -> None:
        run(["ip", "netns", "add", ns])
        run(["ip", "link", "add", host, "master", self.bridge, "up", "type", "veth", "peer",
             "name", "eth0", "netns", ns])
        batch = (f"addr add {address} dev eth0\nlink set eth0 up\nlink set lo up\n"
                 f"route add default via {self.subnet[1]}\n")
        run(["ip", "-n", ns, "-batch", "-"], input_bytes=batch.encode())

    def _runc(self, *args: str) -> None:
        # stdio to /dev/null and a file, never a pipe: the container inherits it, and a
        # pipe we wait on would stay open as long as the container runs
        with open(self.dir / "runc.err", "w+b") as err:
            proc = subprocess.run(["runc", f"--root={self.state}", *args],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=err, timeout=60, check=False)
            if proc.returncode != 0:
                err.seek(0)
                lines = err.read().decode(errors="replace").strip().splitlines()
                raise BenchError(f"runc {args[0]}: exit {proc.returncode}: "
                                 f"{lines[-1] if lines else ''}")

    def start(self) -> tuple[float, str, str]:
        """Start-to-running of one container; (seconds, runc id, netns)."""
        ns, host, cid, bundle, address = self._prepare(["/bin/sleep", "30"])
        t0 = time.perf_counter()
        self.live.append((cid, ns))
        self._network(ns, host, address)
        t1 = time.perf_counter()
        self._runc("create", "--bundle", str(bundle), "--pid-file", str(bundle / "pid"), cid)
        t2 = time.perf_counter()
        self._runc("start", cid)
        t3 = time.perf_counter()
        self.parts.append({"ip (3 processes)": t1 - t0, "runc create": t2 - t1,
                           "runc start": t3 - t2})
        return t3 - t0, cid, ns

    def remove(self, cid: str, ns: str) -> float:
        pid = int((self.dir / f"b{cid.rsplit('-', 1)[1]}" / "pid").read_text())
        t0 = time.perf_counter()
        fd = os.pidfd_open(pid)
        try:
            self._runc("kill", cid, "KILL")
            select.select([fd], [], [], 10)
        finally:
            os.close(fd)
        self._runc("delete", cid)
        run(["ip", "netns", "del", ns])
        elapsed = time.perf_counter() - t0
        self.live = [x for x in self.live if x != (cid, ns)]
        return elapsed

    def run_true(self) -> float:
        ns, host, cid, bundle, address = self._prepare(["/bin/true"])
        t0 = time.perf_counter()
        self.live.append((cid, ns))
        self._network(ns, host, address)
        self._runc("run", "--bundle", str(bundle), cid)  # runc run deletes it on exit
        run(["ip", "netns", "del", ns])
        elapsed = time.perf_counter() - t0
        self.live = [x for x in self.live if x != (cid, ns)]
        return elapsed

    def teardown(self) -> None:
        for cid, ns in self.live:
            with contextlib.suppress(BenchError, subprocess.SubprocessError):
                run(["runc", f"--root={self.state}", "delete", "--force", cid], check=False)
                run(["ip", "netns", "del", ns], check=False)
        self.live = []
        run(["ip", "link", "del", self.bridge], check=False)
        for ctrl in Path("/sys/fs/cgroup").iterdir():
            path = ctrl / self.cgroup_parent
            if path.is_dir():
                for _ in range(20):
                    with contextlib.suppress(OSError):
                        for child in path.iterdir():
                            if child.is_dir():
                                child.rmdir()
                        path.rmdir()
                    if not path.exists():
                        break
                    time.sleep(0.05)
        shutil.rmtree(self.dir, ignore_errors=True)
