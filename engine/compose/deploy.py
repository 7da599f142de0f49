"""Deployments: the services of one Compose-subset file brought up and down together.

Names follow Compose: containers ``<project>-<service>-1`` (or ``container_name``), networks
``<project>_<name>`` (``<project>_default`` when a service names none), volumes
``<project>_<name>``; every container carries the labels ``com.docker.compose.project`` and
``com.docker.compose.service``, which is how a deployment finds its containers again.
Services are started in ``depends_on`` order, each waiting for its dependencies' conditions.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import CorralError, NotFound, NotModified
from .bringup import _BringUp
from .labels import (
    CONFIG_LABEL,
    DEFAULT_WAIT,
    PROJECT_LABEL,
    SERVICE_LABEL,
    _quiet,
)

Progress = Callable[[str], None]


class Deployment(_BringUp):
    """One project on one engine."""

    def __init__(self, engine: Any, project: Any, *, progress: Progress = _quiet,
                 wait_timeout: float = DEFAULT_WAIT) -> None:
        self.engine = engine
        self.project = project
        self.progress = progress
        self.wait_timeout = wait_timeout

    # -- names -------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.project.name

    def container_name(self, service: str) -> str:
        return self.project.container_name(service)

    # -- what the engine is asked for ---------------------------------------------------------

    def create_kwargs(self, service: str) -> dict[str, Any]:
        """The project's mapping of a service, plus what a deployment adds: a network of its
        own when the service names none (as Compose's ``<project>_default``), the service name
        as an alias there, and a hash of the definition to notice when it changed."""
        svc = self.project.services[service]
        kwargs = self.project.create_kwargs(service)
        if svc.network_mode is None and not svc.networks:
            kwargs["network"] = self.project.network_name("default")
        if kwargs["network"].startswith(f"{self.name}_"):
            kwargs["aliases"] = [service, *kwargs.get("aliases", [])]
        kwargs["shm_size"] = svc.shm_size
        anonymous = self.project.anonymous_volumes(service)
        hashed = {**kwargs, "anonymous": anonymous} if anonymous else kwargs
        digest = hashlib.sha256(json.dumps(hashed, sort_keys=True, default=str).encode())
        kwargs["labels"] = {**kwargs["labels"], CONFIG_LABEL: digest.hexdigest()[:16]}
        return kwargs

    # -- what exists -------------------------------------------------------------------------

    def containers(self) -> dict[str, dict[str, Any]]:
        """service -> inspect() of its container, for the containers that exist."""
        out = {}
        for info in self.engine.list(all=True):
            with contextlib.suppress(NotFound):
                full = self.engine.inspect(info["Id"])
                labels = full["Config"]["Labels"]
                if labels.get(PROJECT_LABEL) == self.name:
                    out[labels.get(SERVICE_LABEL, "")] = full
        return out

    def _selected(self, services: list[str] | None, with_deps: bool = True) -> list[str]:
        order = self.project.start_order()
        if not services:
            return order
        for s in services:
            if s not in self.project.services:
                raise NotFound(f"no such service: {s}")
        wanted = set(services)
        if with_deps:
            todo = list(services)
            while todo:
                for dep in self.project.services[todo.pop()].depends_on:
                    if dep not in wanted:
                        wanted.add(dep)
                        todo.append(dep)
        return [s for s in order if s in wanted]

    # -- stop, start, restart, down ------------------------------------------------------------

    def stop(self, services: list[str] | None = None, timeout: float | None = None) -> None:
        existing = self.containers()
        chosen = [s for s in self._selected(services, with_deps=False) if s in existing]

        def stop_one(info: dict[str, Any]) -> None:
            self.engine.stop(info["Id"], timeout)
            self.progress(f"Container {info['Name'].lstrip('/')}  Stopped")

        for level in self._stop_levels(chosen):
            self._each_at_once([existing[s] for s in level], stop_one)

    def start(self, services: list[str] | None = None) -> None:
        existing = self.containers()
        for service in self._selected(services, with_deps=False):
            if service not in existing:
                raise NotFound(f"service {service} has no container: run up first")
            self._wait_dependencies(service)
            with contextlib.suppress(NotModified):
                self.engine.start(existing[service]["Id"])
                self.progress(f"Container {self.container_name(service)}  Started")

    def restart(self, services: list[str] | None = None, timeout: float | None = None) -> None:
        self.stop(services, timeout)
        self.start(services)

    def down(self, *, volumes: bool = False, timeout: float | None = None) -> None:
        """Stop and remove the project's containers and networks (and volumes with
        ``volumes``); named volumes otherwise survive for the next ``up``."""
        existing = self.containers()
        for level in self._stop_levels(list(existing)):
            self._each_at_once([existing[s] for s in level],
                               lambda info: self._remove_one(info, timeout))
        for net in self.engine.network_list():
            if net.labels.get(PROJECT_LABEL) == self.name:
                with contextlib.suppress(NotFound):
                    self.engine.network_remove(net.name)
                    self.progress(f"Network {net.name}  Removed")
        if volumes:
            for vol in self.engine.volume_list():
                if vol.labels.get(PROJECT_LABEL) == self.name:
                    self.engine.volume_remove(vol.name)
                    self.progress(f"Volume {vol.name}  Removed")

    def _stop_levels(self, present: list[str]) -> list[list[str]]:
        """The services to stop, in groups: first all that nothing present depends on, then
        those whose dependents are all stopped, and so on, as Compose's reverse traversal
        (services no longer in the file go with the first)."""
        known = [s for s in self.project.start_order() if s in present]
        level: dict[str, int] = {}
        for s in reversed(known):  # dependents before their dependencies
            level[s] = 1 + max((level[d] for d in known
                                if s in self.project.services[d].depends_on), default=-1)
        levels: list[list[str]] = [[] for _ in range(max(level.values(), default=0) + 1)]
        for s in known:
            levels[level[s]].append(s)
        levels[0] += [s for s in present if s not in level]
        return [lv for lv in levels if lv]

    def _each_at_once(self, infos: list[dict[str, Any]],
                      act: Callable[[dict[str, Any]], None]) -> None:
        """``act`` on every container at once (stops wait out their timeouts together); the
        first error is raised once all are done."""
        if len(infos) == 1:
            act(infos[0])
            return
        with ThreadPoolExecutor(max_workers=len(infos)) as pool:
            futures = [pool.submit(act, info) for info in infos]
        for f in futures:
            f.result()

    def _remove_one(self, info: dict[str, Any], timeout: float | None) -> None:
        with contextlib.suppress(NotFound):
            self.engine.stop(info["Id"], timeout)
            self.engine.remove(info["Id"], force=True)
            self.progress(f"Container {info['Name'].lstrip('/')}  Removed")

    def ps(self) -> list[dict[str, Any]]:
        rows = []
        for service, info in sorted(self.containers().items()):
            state = info["State"]
            rows.append({"Service": service, "Name": info["Name"].lstrip("/"),
                         "Id": info["Id"], "State": state["Status"],
                         "Health": (state.get("Health") or {}).get("Status", ""),
                         "ExitCode": state["ExitCode"], "StartedAt": state["StartedAt"],
                         "FinishedAt": state["FinishedAt"],
                         "Ports": info["NetworkSettings"]["Ports"]})
        return rows

    def logs(self, services: list[str] | None = None, *, follow: bool = False,
             stop: Callable[[], bool] | None = None) -> Iterator[tuple[str, Any]]:
        """(service, LogRecord) from the selected services, interleaved as they come."""
        existing = self.containers()
        chosen = [s for s in self._selected(services, with_deps=False) if s in existing]
        if not follow:
            for service in chosen:
                for rec in self.engine.logs(existing[service]["Id"]):
                    yield service, rec
            return
        q: queue.Queue = queue.Queue()
        done = object()

        def pump(service: str, cid: str) -> None:
            try:
                for rec in self.engine.logs(cid, follow=True):
                    q.put((service, rec))
                    if stop is not None and stop():
                        break
            except CorralError:
                pass
            finally:
                q.put(done)

        threads = [threading.Thread(target=pump, args=(s, existing[s]["Id"]), daemon=True)
                   for s in chosen]
        for t in threads:
            t.start()
        running = len(threads)
        while running:
            try:
                item = q.get(timeout=0.2)
            except queue.Empty:
                if stop is not None and stop():
                    return
                continue
            if item is done:
                running -= 1
                continue
            yield item
