"""Named volumes: data outlives containers, a volume in use cannot be removed."""

from __future__ import annotations

import pytest

from engine import Conflict, InvalidParameter, NotFound


def test_named_volume_keeps_data_across_containers(engine, busybox) -> None:
    first = engine.create(busybox, ["/bin/sh", "-c", "echo kept > /data/f"],
                          volumes=["store:/data"])
    engine.start(first)
    assert engine.wait(first, timeout=10) == 0
    assert engine.inspect(first)["Mounts"][0]["Name"] == "store"
    engine.remove(first)
    second = engine.create(busybox, ["/bin/cat", "/data/f"], volumes=["store:/data:ro"])
    engine.start(second)
    assert engine.wait(second, timeout=10) == 0
    assert [r.text for r in engine.logs(second)] == ["kept\n"]
    with pytest.raises(Conflict, match="volume is in use"):
        engine.volume_remove("store")
    engine.remove(second)
    engine.volume_remove("store")
    assert engine.volume_list() == []


def test_volume_commands_and_errors(engine) -> None:
    vol = engine.volume_create("data1", labels={"a": "b"})
    assert engine.volume_inspect("data1")["Mountpoint"] == vol.mountpoint
    with pytest.raises(Conflict, match="already exists"):
        engine.volume_create("data1")
    with pytest.raises(InvalidParameter, match="invalid volume name"):
        engine.volume_create("../x")
    with pytest.raises(NotFound, match="no such volume: nope"):
        engine.volume_remove("nope")
    engine.volume_remove("data1")
