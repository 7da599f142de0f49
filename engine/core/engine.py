"""The ``Engine``: the Python API that supervisors embed, and that the CLI drives.

Each container has its own lock (an flock on a file in its folder, as ``container.Lock()`` in
moby), held across a whole transition; no lock is shared by all containers. The lifecycle
machine decides what may happen; its delegate (``transitions._Transitions``) carries it out and
saves the state. The verbs come from one mixin per concern: ``create``, ``lifecycle``,
``exits``, ``reconcile``, ``exec``, ``networking``, ``stores``.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from states import (
    DEAD,
    PAUSED,
    REMOVING,
    RUNNING,
    STARTING,
    Lifecycle,
    TransitionConflict,
    TransitionNotModified,
)

from ..errors import (
    Conflict,
    CorralError,
    InvalidParameter,
    NotFound,
    NotModified,
    SystemFailure,
)
from ..host.conmon import Monitor, find_conmon
from ..host.runc import Runtime, find_runtime
from ..images.store import ImageStore
from ..log import logger
from ..networks.store import NetworkStore
from ..start.steps import STEP_NAMES
from ..store import config as cfg
from ..store.config import ContainerConfig
from ..store.container import Container, ContainerState
from ..store.events import Event, EventBus, EventJournal
from ..store.files import atomic_write_json, file_lock, read_json
from ..store.paths import Layout
from ..volumes.store import VolumeStore
from .create import CreateMixin
from .exec import ExecMixin, ExecResult
from .exits import ExitsMixin, _ExitWatcher
from .lifecycle import LifecycleMixin
from .networking import NetworksMixin
from .reconcile import ReconcileMixin
from .stores import StoresMixin

Hook = Callable[[dict[str, Any]], None]


def _fail_points_from_env() -> set[str]:
    return {p for p in os.environ.get("CORRAL_FAIL_POINTS", "").split(",") if p}


class Engine(
    CreateMixin,
    LifecycleMixin,
    ExitsMixin,
    ReconcileMixin,
    ExecMixin,
    NetworksMixin,
    StoresMixin,
):
    """A corral engine over one root directory.

    ``watch`` starts a thread that notices exits of the containers this engine started or
    found running, and calls the hooks. A short-lived CLI process passes ``watch=False``.

    ``reconcile``: ``True`` brings every stored container in line with what runs and sweeps
    what a crash left (``reconcile()``), as dockerd does when it starts; ``"touched"`` (the
    CLI, a process per command) does that only for the first engine since boot, and otherwise
    leaves each container to the commands that touch it, as Podman does: a crashed start or
    removal is finished when the container is next locked, an exit nobody handled is seen by
    ``inspect`` and ``list``. ``False``: nothing (conmon's exit command).

    ``make_layout=False`` creates none of the root's folders: for the processes that act on
    one container in the background (the exit command, the health monitor), which must not
    bring back a root that was torn down meanwhile, and for listings of a root never made.
    (The run folder is made by the first start in any case.)
    """

    def __init__(self, root: Path | str | None = None, *, watch: bool = True,
                 reconcile: bool | str = True, runtime: str | None = None,
                 conmon: str | None = None, fail_points: set[str] | None = None,
                 make_layout: bool = True) -> None:
        self.layout = Layout.for_root(root)
        try:
            if make_layout:  # not for a process acting on one container, which may be gone
                self.layout.ensure()
        except OSError as exc:
            raise SystemFailure(f"cannot use root {self.layout.root}: {exc}") from exc
        runtime_bin = find_runtime(runtime or "runc") or (runtime or "runc")
        self.runtime = Runtime(runtime_bin, self.layout.runc_root)
        conmon_bin = conmon or find_conmon() or "conmon"
        self.monitor = Monitor(conmon_bin, runtime_bin, self.layout.runc_root,
                               self.layout.logkeeper)
        self.images = ImageStore(self.layout.root)
        self.journal = EventJournal(self.layout.events)
        self.bus = EventBus()
        self.fail_points: set[str] = set(fail_points or ()) | _fail_points_from_env()
        self._hooks: dict[str, list[Hook]] = {}
        # id -> started_at of the last death given to hooks: one entry per container, so a
        # supervisor restarting a container for months does not grow it
        self._deaths_seen: dict[str, str] = {}
        self.networks = NetworkStore(self.layout)
        self.volumes = VolumeStore(self.layout.root)
        self._firewall: Any = None
        self._watcher: _ExitWatcher | None = _ExitWatcher(self) if watch else None
        if reconcile not in (True, False, "touched"):
            raise InvalidParameter(f"invalid reconcile: {reconcile!r}: True, False or "
                                   "'touched'")
        if reconcile is True or (reconcile == "touched" and not self._reconciled_marker.exists()):
            self.reconcile()

    # -- lookup and locking ------------------------------------------------------------------

    def _resolve(self, ref: str) -> str:
        """A container id from a name, a full id or a unique id prefix."""
        if not ref or "/" in ref or "\0" in ref or ref in (".", ".."):
            raise NotFound(f"No such container: {ref}")
        link = self.layout.names / ref
        with contextlib.suppress(OSError):
            return os.readlink(link)
        if cfg.ID_RE.match(ref) and (self.layout.containers / ref / "config.json").exists():
            return ref
        if len(ref) <= 64 and all(ch in "0123456789abcdef" for ch in ref):
            found = [d for d in self._ids() if d.startswith(ref)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise InvalidParameter(f"multiple IDs found with provided prefix: {ref}")
        raise NotFound(f"No such container: {ref}")

    def _ids(self) -> list[str]:
        try:
            return [e.name for e in os.scandir(self.layout.containers)
                    if not e.name.startswith(".") and cfg.ID_RE.match(e.name)]
        except FileNotFoundError:
            return []

    def _load(self, cid: str) -> Container:
        paths = self.layout.container(cid)
        try:
            config = ContainerConfig.from_dict(read_json(paths.config))
            state = ContainerState.from_dict(read_json(paths.state))
        except FileNotFoundError as exc:
            raise NotFound(f"No such container: {cid}") from exc
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise SystemFailure(f"container {cid}: unreadable state: {exc}") from exc
        return Container(config, state, paths)

    @contextlib.contextmanager
    def _locked(self, ref: str) -> Iterator[Container]:
        cid = self._resolve(ref)
        paths = self.layout.container(cid)
        try:
            lock = file_lock(paths.lock)
            lock.__enter__()
        except FileNotFoundError as exc:
            raise NotFound(f"No such container: {ref}") from exc
        try:
            c = self._load(cid)  # loaded under the lock: another process may have moved it
            if c.state.status in (STARTING, REMOVING):
                # we hold its lock, so whoever was starting or removing it died: finish that
                self._reconcile_locked(c)
                if not c.paths.dir.exists():
                    raise NotFound(f"No such container: {ref}")
                c = self._load(cid)
            yield c
        finally:
            lock.__exit__(None, None, None)

    def _save(self, c: Container, lc: Lifecycle | None = None) -> None:
        if lc is not None:
            c.state.status = lc.state
            c.state.history = [h.to_dict() for h in lc.history]
        atomic_write_json(c.paths.state, c.state.to_dict())

    def _lifecycle(self, c: Container, delegate: object | None = None) -> Lifecycle:
        return Lifecycle(c.state.status, delegate=delegate, name=c.name,
                         history=c.state.history_entries())

    def _fire(self, lc: Lifecycle, trigger: str, **kwargs: Any) -> None:
        """Fire a trigger, mapping the machine's refusals to the engine's errors once."""
        try:
            lc.fire(trigger, **kwargs)
        except TransitionNotModified as exc:
            raise NotModified(str(exc)) from exc
        except TransitionConflict as exc:
            raise Conflict(str(exc)) from exc

    # -- events and hooks --------------------------------------------------------------------

    def on(self, state: str, hook: Hook) -> Callable[[], None]:
        """Call ``hook(inspect_dict)`` whenever a container enters ``state``."""
        self._hooks.setdefault(state, []).append(hook)
        return lambda: self._hooks.get(state, []).remove(hook)

    def _enter(self, c: Container, state: str) -> None:
        if state == DEAD:
            if self._deaths_seen.get(c.id) == c.state.started_at:
                return
            self._deaths_seen[c.id] = c.state.started_at
        for hook in list(self._hooks.get(state, ())):
            try:
                hook(c.inspect())
            except Exception:  # an embedder's hook must not break the engine
                logger.exception("hook for {} failed", state)

    def _emit(self, action: str, c: Container, **attrs: str) -> None:
        # as Docker: the container's labels are attributes too (``events --filter label=``)
        attributes = {**c.config.labels, "name": c.name, "image": c.config.image_name, **attrs}
        self._publish(Event(time=time.time(), type="container", action=action, id=c.id,
                            attributes=attributes))

    def _emit_network(self, action: str, c: Container, network: str) -> None:
        """Docker's ``network connect``/``disconnect`` of ``c`` to a bridge network."""
        if not network:
            return
        try:
            net_id = self.networks.get(network).id
        except CorralError:
            return
        self._publish(Event(time=time.time(), type="network", action=action, id=net_id,
                            attributes={"container": c.id, "name": network, "type": "bridge"}))

    def _publish(self, event: Event) -> None:
        try:
            self.journal.append(event)
        except OSError as exc:
            logger.warning("cannot append to the event journal: {}", exc)
        self.bus.publish(event)

    def subscribe(self, callback: Callable[[Event], None],
                  filters: dict[str, str] | None = None) -> Callable[[], None]:
        return self.bus.subscribe(callback, filters)

    def events(self, *, since: float | None = None, until: float | None = None,
               follow: bool = False, stop: Callable[[], bool] | None = None) -> Iterator[Event]:
        if follow:
            # as ``docker events``: following without --since shows only what comes next
            for ev in self.journal.follow(since=time.time() if since is None else since,
                                          stop=stop):
                if until is not None and ev.time > until:
                    return
                yield ev
        else:
            yield from self.journal.read(since=since, until=until)

    # -- wait, inspect, list, logs -----------------------------------------------------------

    def inspect(self, ref: str) -> dict[str, Any]:
        cid = self._resolve(ref)
        c = self._load(cid)
        if c.state.status in (RUNNING, PAUSED):
            c = self._looked_at(c)  # an exit nobody has handled yet: as list() does
        return c.inspect()

    def get(self, ref: str) -> Container:
        return self._load(self._resolve(ref))

    def list(self, all: bool = False) -> list[dict[str, Any]]:  # noqa: A002 - Docker's word
        out = []
        for cid in self._ids():
            try:
                c = self._load(cid)
            except CorralError:
                continue
            if c.state.status in (RUNNING, PAUSED):
                try:
                    c = self._looked_at(c)
                except NotFound:
                    continue
            restarting = c.state.status == DEAD and c.state.restart_pending
            if not all and c.state.status not in (RUNNING, PAUSED) and not restarting:
                continue  # as ``docker ps``: a container in its restart backoff is listed
            out.append({"Id": c.id, "Name": c.name, "Image": c.config.image_name,
                        "Command": " ".join(c.config.cmd), "Created": c.config.created,
                        "State": c.state.status, "ExitCode": c.state.exit_code,
                        "Restarting": restarting,
                        "Health": c.state.health.get("Status", ""),
                        "StartedAt": c.state.started_at, "FinishedAt": c.state.finished_at,
                        # for ps's other columns and filters (engine.cli.format)
                        "ImageID": c.config.image, "Labels": dict(c.config.labels),
                        "Ports": list(c.state.ports), "Expose": list(c.config.expose),
                        "Network": c.state.network or c.config.network_mode,
                        "Mounts": [b.source for b in c.config.binds]})
        out.sort(key=lambda d: d["Created"], reverse=True)
        return out

    # -- networks ----------------------------------------------------------------------------

    def reset(self, *, volumes: bool = False) -> Any:
        """``corral system reset``: stop and remove every container, network and host object
        of this root (``engine.core.system.reset``); images are kept, volumes unless ``volumes``.
        Returns the ``ResetReport``; the engine stays usable."""
        from .system import reset

        report = reset(self.layout.root, volumes=volumes, engine=self)
        self.layout.ensure()
        return report

    # -- images ------------------------------------------------------------------------------

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.close()


__all__ = ["STEP_NAMES", "Engine", "ExecResult"]
