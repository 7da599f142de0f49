"""Leases: lowest free first, static addresses, release, reclaim, a full subnet."""

from __future__ import annotations

import threading

import pytest

from engine.errors import InvalidParameter
from engine.networks.ipam import Leases, SubnetFull


def leases(tmp_path, subnet="10.9.0.0/29", gateway="10.9.0.1") -> Leases:
    return Leases(tmp_path / "net.leases.json", subnet, gateway)


def test_lowest_free_skips_gateway_and_is_stable_per_container(tmp_path) -> None:
    lz = leases(tmp_path)
    assert lz.lease("a") == "10.9.0.2"
    assert lz.lease("b") == "10.9.0.3"
    assert lz.lease("a") == "10.9.0.2"
    lz.release("a")
    assert lz.lease("c") == "10.9.0.2"


def test_full_subnet_is_a_clear_error_and_changes_nothing(tmp_path) -> None:
    lz = leases(tmp_path)
    for i in range(5):  # /29: 6 hosts, one is the gateway
        lz.lease(f"c{i}")
    before = lz.table()
    with pytest.raises(SubnetFull, match="no address left in subnet 10.9.0.0/29"):
        lz.lease("late")
    assert lz.table() == before


@pytest.mark.parametrize("wanted,match", [
    ("10.9.1.5", "not a free host address"), ("10.9.0.1", "not a free host address"),
    ("10.9.0.0", "not a free host address"), ("nope", "invalid IP address"),
])
def test_static_address_checks(tmp_path, wanted, match) -> None:
    with pytest.raises(InvalidParameter, match=match):
        leases(tmp_path).lease("a", wanted)


def test_static_address_taken(tmp_path) -> None:
    lz = leases(tmp_path)
    assert lz.lease("a", "10.9.0.5") == "10.9.0.5"
    with pytest.raises(InvalidParameter, match="already in use"):
        lz.lease("b", "10.9.0.5")


def test_reclaim_drops_inactive_owners(tmp_path) -> None:
    lz = leases(tmp_path)
    lz.lease("live")
    lz.lease("gone")
    assert lz.reclaim(lambda cid: cid == "live") == ["10.9.0.3"]
    assert lz.table() == {"10.9.0.2": "live"}


def test_concurrent_leases_never_share_an_address(tmp_path) -> None:
    lz = leases(tmp_path, "10.9.0.0/24", "10.9.0.1")
    got: list[str] = []
    lock = threading.Lock()

    def take(i: int) -> None:
        ip = lz.lease(f"c{i}")
        with lock:
            got.append(ip)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 40
