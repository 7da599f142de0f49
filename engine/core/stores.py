"""The Engine's volumes and images: thin facades over their stores, refusing what is in use.
"""

from __future__ import annotations

import contextlib
from typing import Any

from ..errors import Conflict, CorralError
from ..images.store import Image
from ..volumes.store import Volume


class StoresMixin:
    """Volumes and images: their stores' facades, refusing what is in use."""

    def volume_create(self, name: str, labels: dict[str, str] | None = None) -> Volume:
        return self.volumes.create(name, labels)

    def volume_list(self) -> list[Volume]:
        return self.volumes.list()

    def volume_inspect(self, name: str) -> dict[str, Any]:
        return self.volumes.get(name).inspect()

    def _volume_users(self, name: str) -> list[str]:
        users = []
        for cid in self._ids():
            with contextlib.suppress(CorralError):
                if any(b.type == "volume" and b.source == name
                       for b in self._load(cid).config.binds):
                    users.append(cid)
        return users

    def volume_remove(self, name: str) -> None:
        """Remove a volume and its data; refused while any container refers to it."""
        self.volumes.remove(name, self._volume_users)

    def image_remove(self, ref: str) -> Image:
        img = self.images.get(ref)
        for cid in self._ids():
            with contextlib.suppress(CorralError):
                if self._load(cid).config.image == img.id:
                    raise Conflict(f"unable to remove image {ref}: image is being used by "
                                   f"container {cid[:12]}")
        return self.images.remove(img.id)
