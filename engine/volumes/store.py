"""Named volumes: a folder per volume under the engine's root, data kept until removed."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Conflict, InvalidParameter, NotFound
from ..store.container import now_rfc3339
from ..store.files import atomic_write_json, file_lock, read_json

VOLUME_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")


@dataclass
class Volume:
    name: str
    mountpoint: str
    created: str
    driver: str = "local"
    labels: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def inspect(self) -> dict[str, Any]:
        return {"Name": self.name, "Driver": self.driver, "Mountpoint": self.mountpoint,
                "CreatedAt": self.created, "Labels": dict(self.labels), "Scope": "local"}


def check_volume_name(name: str) -> str:
    if not isinstance(name, str) or not VOLUME_NAME_RE.match(name):
        raise InvalidParameter(f"invalid volume name: {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-]"
                               " are allowed")
    return name


class VolumeStore:
    def __init__(self, root: Path) -> None:
        self.dir = root / "volumes"

    def _meta(self, name: str) -> Path:
        return self.dir / name / "volume.json"

    def get(self, name: str) -> Volume:
        check_volume_name(name)
        try:
            return Volume(**read_json(self._meta(name)))
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise NotFound(f"no such volume: {name}") from exc

    def ensure(self, name: str, labels: dict[str, str] | None = None) -> Volume:
        """The volume ``name``, made if missing (as ``docker run -v name:/path`` does)."""
        with contextlib.suppress(NotFound):
            return self.get(name)
        return self.create(name, labels, exist_ok=True)

    def create(self, name: str, labels: dict[str, str] | None = None,
               exist_ok: bool = False) -> Volume:
        check_volume_name(name)
        self.dir.mkdir(parents=True, exist_ok=True)
        with file_lock(self.dir / ".lock"):
            if self._meta(name).exists():
                if exist_ok:
                    return self.get(name)
                raise Conflict(f"volume {name} already exists")
            data = self.dir / name / "_data"
            data.mkdir(parents=True, exist_ok=True, mode=0o755)
            vol = Volume(name=name, mountpoint=str(data), created=now_rfc3339(),
                         labels=dict(labels or {}))
            atomic_write_json(self._meta(name), vol.to_dict())
            return vol

    def list(self) -> list[Volume]:
        out = []
        with contextlib.suppress(FileNotFoundError):
            for entry in sorted(os.scandir(self.dir), key=lambda e: e.name):
                with contextlib.suppress(OSError, ValueError, TypeError):
                    out.append(Volume(**read_json(Path(entry.path) / "volume.json")))
        return out

    def remove(self, name: str, users: Callable[[str], list[str]]) -> None:
        vol = self.get(name)
        with file_lock(self.dir / ".lock"):
            using = users(name)
            if using:
                raise Conflict(f"remove {name}: volume is in use - "
                               f"[{', '.join(u[:12] for u in using)}]")
            # renamed first, so a half-deleted volume is never seen as one
            trash = self.dir / f".trash-{vol.name}"
            os.rename(self.dir / vol.name, trash)
            shutil.rmtree(trash, ignore_errors=True)
