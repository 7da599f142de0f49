"""Compose's labels on what a deployment makes, its default wait, its errors.
"""

from __future__ import annotations

from ..errors import Conflict, NotFound

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
CONFIG_LABEL = "io.corral.config-hash"
ANONYMOUS_LABEL = "com.docker.volume.anonymous"
DEFAULT_WAIT = 120.0


class DependencyFailed(Conflict):
    pass


class MissingImages(NotFound):
    """Images the deployment needs that the engine does not have; ``errors`` names each, with
    its service and the line that asks for it."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = list(errors)


def _quiet(_: str) -> None:
    return None
