"""Bringing a deployment up: images checked, networks and volumes made, services created and
started in dependency order, each waiting for the conditions it depends on.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

from ..errors import CorralError, NotFound, NotModified
from .labels import ANONYMOUS_LABEL, CONFIG_LABEL, PROJECT_LABEL, DependencyFailed, MissingImages


class _BringUp:
    """Bringing a deployment up, in dependency order."""

    def up(self, services: list[str] | None = None) -> list[str]:
        """Create what is missing and start the services in dependency order; return the
        container ids. A dependency that fails its condition stops ``up`` with its name."""
        selected = self._selected(services)
        self._check_images(selected)  # before anything is made
        wanted = []
        for s in selected:
            kwargs = self.create_kwargs(s)
            wanted += [kwargs["network"], *(n["name"] for n in kwargs.get("networks", []))]
        self._ensure_networks(wanted)
        self._ensure_volumes()
        ids = []
        for service in selected:
            self._wait_dependencies(service)
            ids.append(self._up_one(service))
        return ids

    def _check_images(self, services: list[str]) -> None:
        missing = []
        for s in services:
            svc = self.project.services[s]
            try:
                self.engine.images.get(svc.image)
            except NotFound:
                missing.append(f"{svc.image_at}: services.{s}.image: no such image: "
                               f"{svc.image}")
        if missing:
            raise MissingImages(missing)

    def _ensure_networks(self, networks: list[str]) -> None:
        for net_name in dict.fromkeys(networks):
            if not net_name.startswith(f"{self.name}_"):
                continue  # bridge, host, none, container:<name>: not the project's to make
            spec = self.project.networks.get(net_name[len(self.name) + 1:])
            try:
                self.engine.networks.get(net_name)
            except NotFound:
                self.engine.network_create(
                    net_name, subnet=spec.subnet if spec else None,
                    gateway=spec.gateway if spec else None, labels={PROJECT_LABEL: self.name})
                self.progress(f"Network {net_name}  Created")

    def _ensure_volumes(self) -> None:
        for vol in (self.project.volumes or {}):
            name = self.project.volume_name(vol)
            try:
                self.engine.volumes.get(name)
            except NotFound:
                self.engine.volume_create(name, labels={PROJECT_LABEL: self.name})
                self.progress(f"Volume {name}  Created")

    def _up_one(self, service: str) -> str:
        kwargs = self.create_kwargs(service)
        name = kwargs["name"]
        image = kwargs.pop("image")
        existing = self.containers().get(service)
        if existing is not None and existing["Config"]["Labels"].get(CONFIG_LABEL) != \
                kwargs["labels"][CONFIG_LABEL]:
            self.engine.remove(existing["Id"], force=True)  # its definition changed
            self.progress(f"Container {name}  Recreated")
            existing = None
        if existing is None:
            made: list[str] = []
            try:
                self._anonymous_volumes(service, kwargs, made)
                cid = self.engine.create(image, kwargs.pop("cmd"), **kwargs)
            except BaseException:
                for vol in made:
                    with contextlib.suppress(CorralError):
                        self.engine.volume_remove(vol)
                raise
            self.progress(f"Container {name}  Created")
        else:
            cid = existing["Id"]
        try:
            self.engine.start(cid)
            self.progress(f"Container {name}  Started")
        except NotModified:
            self.progress(f"Container {name}  Running")
        return cid

    def _anonymous_volumes(self, service: str, kwargs: dict[str, Any], made: list[str]) -> None:
        """Make the service's anonymous volumes (``- /app/node_modules``), named and labelled
        as Docker makes them, plus the project's label so ``down -v`` removes them; each name
        goes into ``made`` as soon as it exists, for the caller's undo."""
        for target, read_only in self.project.anonymous_volumes(service):
            name = os.urandom(32).hex()
            self.engine.volume_create(name, labels={PROJECT_LABEL: self.name,
                                                    ANONYMOUS_LABEL: ""})
            made.append(name)
            kwargs["volumes"] = [*kwargs["volumes"], f"{name}:{target}{':ro' if read_only else ''}"]

    def _wait_dependencies(self, service: str) -> None:
        for dep, condition in self.project.services[service].depends_on.items():
            self._wait_condition(service, dep, condition)

    def _wait_condition(self, service: str, dep: str, condition: str) -> None:
        name = self.container_name(dep)
        deadline = time.monotonic() + self.wait_timeout
        announced = False
        while True:
            try:
                state = self.engine.inspect(name)["State"]
            except NotFound as exc:
                raise DependencyFailed(f"service {service}: dependency {dep} has no "
                                       "container") from exc
            status = state["Status"]
            health = (state.get("Health") or {}).get("Status", "")
            if condition == "service_started" and status in ("running", "dead"):
                return
            if condition == "service_healthy":
                if health == "healthy":
                    return
                if health == "unhealthy" or (status == "dead" and not state.get("Restarting")):
                    raise DependencyFailed(f"dependency failed to start: container {name} is "
                                           f"{health or 'not running'} (service {dep})")
                if not state.get("Health") and status == "running":
                    raise DependencyFailed(f"service {service} waits for {dep} to be healthy, "
                                           f"but {dep} has no healthcheck")
            if condition == "service_completed_successfully" and status == "dead" \
                    and not state.get("Restarting"):
                if state["ExitCode"] == 0:
                    return
                raise DependencyFailed(f"service {dep} didn't complete successfully: exit "
                                       f"{state['ExitCode']}")
            if time.monotonic() > deadline:
                raise DependencyFailed(f"service {service}: timed out waiting for {dep} "
                                       f"({condition})")
            if not announced:
                self.progress(f"Container {name}  Waiting ({condition})")
                announced = True
            time.sleep(0.1)
