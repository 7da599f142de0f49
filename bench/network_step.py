"""Bridge network set-up per container, printed next to a plain ``ip``-command baseline.

One set-up is what the network step does for a container in bridge mode once the bridge
exists: a named network namespace with ``lo`` up, a veth pair whose container end ``eth0`` is
made inside the namespace and whose host end is on the bridge, the address, ``eth0`` up and
the default route via the gateway.

- corral: ``engine.host.netlink.create_netns`` + ``create_veth`` + ``configure_container``, in this
  process (pyroute2 is imported once, before timing; its import time is printed apart);
- baseline: the same through ``ip`` commands (``ip netns add``, ``ip link add ... type veth
  peer name eth0 netns X``, ``ip link set master``/``up``, ``ip -n X addr add``,
  ``ip -n X link set up``, ``ip -n X route add default``), one process per command.

Both run in the same loop, alternating which goes first, on a private bridge and subnet made
for the run; everything is torn down after each set-up (outside the timing) and at the end.
Each figure is the median of N set-ups (default 50). It prints, it never asserts.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:7.2f} ms"


def free_subnet(network: object) -> ipaddress.IPv4Network:
    """A /24 under 10.214.0.0/16 that no host route touches, so no traffic can leave."""
    for third in range(256):
        subnet = ipaddress.IPv4Network(f"10.214.{third}.0/24")
        if network.overlapping_route(str(subnet)) is None:  # type: ignore[attr-defined]
            return subnet
    raise SystemExit("no free /24 under 10.214.0.0/16")


def run_ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, stdout=subprocess.DEVNULL)


def setup_ip(ns: str, host: str, bridge: str, cidr: str, gateway: str) -> None:
    run_ip("netns", "add", ns)
    run_ip("link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns)
    run_ip("link", "set", host, "master", bridge, "up")
    run_ip("-n", ns, "addr", "add", cidr, "dev", "eth0")
    run_ip("-n", ns, "link", "set", "eth0", "up")
    run_ip("-n", ns, "link", "set", "lo", "up")
    run_ip("-n", ns, "route", "add", "default", "via", gateway)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50, help="set-ups per figure (default 50)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (namespaces, veth, bridge)")

    t0 = time.perf_counter()
    from engine.host import netlink as network
    network._pyroute2()  # imported at its first use; timed here, apart from the set-ups
    import_time = time.perf_counter() - t0

    token = secrets.token_hex(2)
    bridge = f"cbench{token}"
    subnet = free_subnet(network)
    gateway = subnet[1]
    prefix = subnet.prefixlen
    ours: list[float] = []
    baseline: list[float] = []
    made: list[tuple[str, str]] = []

    def teardown(ns: str, host: str) -> None:
        # the veth first: it goes at once, while a namespace takes its links ~15 ms later
        with contextlib.suppress(Exception):
            network.delete_veth(host)
        with contextlib.suppress(Exception):
            network.delete_netns(ns)

    network.ensure_bridge(bridge, f"{gateway}/{prefix}")
    try:
        for i in range(args.n):
            runs = [("c", ours), ("i", baseline)]
            if i % 2:
                runs.reverse()
            for kind, samples in runs:
                ns, host = f"corral-bench-{token}-{kind}{i}", f"vb{token}{kind}{i}"
                # each set-up is torn down before the next: addresses can be reused
                address = f"{subnet[2 + len(made) % (subnet.num_addresses - 3)]}/{prefix}"
                made.append((ns, host))
                start = time.perf_counter()
                if kind == "c":
                    network.create_netns(ns)
                    network.create_veth(host, ns, bridge)
                    network.configure_container(ns, address_cidr=address,
                                                gateway=str(gateway))
                else:
                    setup_ip(ns, host, bridge, address, str(gateway))
                samples.append(time.perf_counter() - start)
                teardown(ns, host)
    finally:
        for ns, host in made:
            teardown(ns, host)
        network.delete_bridge(bridge)

    print(f"bridge set-up per container, median of {args.n} (bridge {bridge}, {subnet})")
    print(f"  corral (pyroute2, in process)   {ms(ours)}")
    print(f"  ip commands (7 processes)       {ms(baseline)}")
    print(f"  once per process: import engine.host.netlink + pyroute2 {import_time * 1000:.0f} ms")


if __name__ == "__main__":
    main()
