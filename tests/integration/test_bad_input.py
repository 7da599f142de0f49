"""Bad input through the API: a typed error naming the field and value, nothing written."""

from __future__ import annotations

import os
import threading

import pytest

from engine import Conflict, InvalidParameter, NotFound


def snapshot(engine) -> tuple[list[str], list[str]]:
    return sorted(os.listdir(engine.layout.containers)), sorted(os.listdir(engine.layout.names))


@pytest.mark.parametrize("name", ["../x", "a/b", "", "x" * 300, "-root=/tmp", "a\0b", "a"])
def test_invalid_names(engine, busybox, name: str) -> None:
    before = snapshot(engine)
    with pytest.raises(InvalidParameter, match="Invalid container name"):
        engine.create(busybox, ["/bin/true"], name=name)
    assert snapshot(engine) == before


@pytest.mark.parametrize("kwargs,error,match", [
    ({"env": ["=x"]}, InvalidParameter, "invalid environment variable: '=x'"),
    ({"env": ["A\nB=1"]}, InvalidParameter, "invalid environment variable"),
    ({"volumes": ["./relative:/x"]}, InvalidParameter, "source must be an absolute path"),
    ({"volumes": ["/a"]}, InvalidParameter, "invalid volume specification: '/a'"),
    ({"volumes": ["/a:/b:zz"]}, InvalidParameter, "invalid mode 'zz'"),
    ({"volumes": ["/a:relative"]}, InvalidParameter, "target must be an absolute path"),
    ({"tmpfs": ["relative"]}, InvalidParameter, "target must be an absolute path"),
    ({"memory": "12q"}, InvalidParameter, "invalid memory size: '12q'"),
    ({"memory": "1k"}, InvalidParameter, "minimum memory limit is 6MB"),
    ({"cpus": "lots"}, InvalidParameter, "invalid cpus: 'lots'"),
    ({"restart": "sometimes"}, InvalidParameter, "invalid restart policy: 'sometimes'"),
    ({"network": "container:"}, InvalidParameter, "invalid network mode: 'container:'"),
    ({"network": "bridgeX"}, NotFound, "network bridgeX not found"),
    ({"working_dir": "rel/dir"}, InvalidParameter, "needs to be an absolute path"),
    ({"stop_signal": "SIGNOPE"}, InvalidParameter, "invalid signal: 'SIGNOPE'"),
])
def test_malformed_options(engine, busybox, kwargs, error, match) -> None:
    before = snapshot(engine)
    with pytest.raises(error, match=match):
        engine.create(busybox, ["/bin/true"], **kwargs)
    assert snapshot(engine) == before


def test_unknown_image(engine) -> None:
    before = snapshot(engine)
    with pytest.raises(NotFound, match="No such image: nothere"):
        engine.create("nothere", ["/bin/true"])
    assert snapshot(engine) == before


def test_duplicate_name_is_dockers_conflict(engine, busybox) -> None:
    first = engine.create(busybox, ["/bin/true"], name="twin")
    before = snapshot(engine)
    with pytest.raises(Conflict, match=f'The container name "/twin" is already in use by '
                       f'container "{first}"'):
        engine.create(busybox, ["/bin/true"], name="twin")
    assert snapshot(engine) == before


@pytest.mark.parametrize("ref", ["nosuch", "../../etc", "a/b", "", "0" * 64])
def test_unknown_container(engine, ref: str) -> None:
    with pytest.raises(NotFound, match="No such container"):
        engine.start(ref)


def test_eight_concurrent_creates_with_one_name_one_wins(engine, busybox) -> None:
    results: list[str] = []
    barrier = threading.Barrier(8)

    def go():
        barrier.wait()
        try:
            engine.create(busybox, ["/bin/true"], name="only")
            results.append("won")
        except Conflict:
            results.append("conflict")

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == ["conflict"] * 7 + ["won"]
    assert len(engine.list(all=True)) == 1


def test_id_prefix_and_ambiguity(engine, busybox) -> None:
    cid = engine.create(busybox, ["/bin/true"], name="pfx")
    assert engine.inspect(cid[:8])["Id"] == cid
    assert engine.inspect("pfx")["Id"] == cid
