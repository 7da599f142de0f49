"""The state machine's callbacks: what each transition of a container does, and saves.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from states import DEAD, PAUSED, RUNNING, Lifecycle, StepFailure, TransitionConflict, run_steps

from ..errors import CorralError, SystemFailure
from ..host import cgroups
from ..log import logger
from ..start import health
from ..start.context import StartContext
from ..start.steps import START_PLAN
from ..store.container import Container, now_rfc3339
from . import exitcodes
from .exitinfo import CLEANUP_INCOMPLETE, LOST_EXIT_CODE, _forget_exit_file, _stop_marker
from .restart import after_reboot, next_delay

if TYPE_CHECKING:
    from .engine import Engine


class _Transitions:
    """The callbacks of one container's machine: where each transition's effects happen.

    ``before_*`` callbacks run before the state changes, so a failed side effect leaves the
    state as it was (containerd's rule); ``on_*`` run after it changed.
    """

    def __init__(self, engine: Engine, c: Container, ctx: StartContext | None) -> None:
        self.engine, self.c, self.ctx = engine, c, ctx
        self.failure: StepFailure | None = None

    def on_start(self, event: Any) -> None:
        e, c, ctx = self.engine, self.c, self.ctx
        assert ctx is not None
        c.state.manual_stop = False
        c.state.restart_pending = False  # whoever starts it makes the restart a policy asked for
        c.state.error = c.state.error_step = ""
        e._save(c, event.model)  # a crash from here on is seen as ``starting`` and undone
        try:
            records = run_steps(START_PLAN, ctx, fail_point=e._fail_point,
                                undo_fail_point=e._undo_fail_point)
        except StepFailure as failure:
            self.failure = failure
            event.model.fire("fail", error=failure)
            return
        c.state.steps = [r.to_dict() for r in records]
        c.state.exit_code = 0  # as Docker: a running container has no exit code yet
        c.state.oom_killed = False
        c.state.pid, c.state.conmon_pid = ctx.pid, ctx.conmon_pid
        c.state.ip, c.state.network = ctx.ip, ctx.net.name if ctx.net else ""
        c.state.ports = [{k: p[k] for k in ("container_port", "proto", "host_ip", "host_port")}
                         for p in ctx.published]
        c.state.extra_networks = dict(ctx.extra_ips)
        c.state.health = health.initial() if c.config.healthcheck else {}
        c.state.health_pid = ctx.health_pid
        c.state.started_at = now_rfc3339()
        c.state.finished_at = c.state.finished_at
        event.model.fire("started")

    def on_started(self, event: Any) -> None:
        e, c = self.engine, self.c
        e._save(c, event.model)
        e._sync_network_hosts(c.state.network, *c.state.extra_networks)
        for net in (c.state.network, *c.state.extra_networks):
            e._emit_network("connect", c, net)
        e._emit("start", c)
        if e._watcher is not None and c.state.conmon_pid:
            e._watcher.add(c)
        e._enter(c, RUNNING)

    def on_fail(self, event: Any) -> None:
        e, c = self.engine, self.c
        failure: StepFailure = event.kwargs["error"]
        c.state.steps = [r.to_dict() for r in failure.records]
        c.state.exit_code = exitcodes.start_failure_code(failure.step, str(failure.cause))
        c.state.error = str(failure)
        c.state.error_step = failure.step
        c.state.pid = c.state.conmon_pid = 0
        c.state.ip = c.state.network = ""
        c.state.ports = []
        c.state.extra_networks = {}
        c.state.finished_at = now_rfc3339()
        for step, exc in failure.undo_errors:
            logger.error("container {}: undo of step {} failed: {}", c.name, step, exc)
        if failure.undo_errors:
            c.state.error += f"; {CLEANUP_INCOMPLETE}: " + "; ".join(
                f"undo of {step} failed: {exc}" for step, exc in failure.undo_errors)
        c.state.cleanup_pending = bool(failure.undo_errors)
        _forget_exit_file(c)
        e._save(c, event.model)
        e._emit("die", c, exitCode=str(c.state.exit_code), error=c.state.error)
        e._enter(c, DEAD)
        if c.config.auto_remove:
            self._auto_remove(event.model)

    def on_exit(self, event: Any) -> None:
        e, c = self.engine, self.c
        # read before the cleanup removes the cgroup that counted it
        c.state.oom_killed = cgroups.host().oom_kills(c.id) > 0
        errors = e._cleanup(c, self.ctx, keep_exit_file=True)
        left = [c.state.network, *c.state.extra_networks]
        c.state.ip = c.state.network = ""
        c.state.ports = []
        c.state.extra_networks = {}
        c.state.exit_code = int(event.kwargs.get("exit_code", LOST_EXIT_CODE))
        c.state.error = "; ".join([event.kwargs.get("error") or "",
                                   *([f"{CLEANUP_INCOMPLETE}: {'; '.join(errors)}"]
                                     if errors else [])]).strip("; ")
        c.state.cleanup_pending = bool(errors)
        c.state.pid = c.state.conmon_pid = 0
        c.state.finished_at = now_rfc3339()
        if event.kwargs.get("rebooted"):
            delay = after_reboot(c.config.restart_policy, manual_stop=c.state.manual_stop)
        else:
            delay = next_delay(c.config.restart_policy, exit_code=c.state.exit_code,
                               manual_stop=c.state.manual_stop,
                               restart_count=c.state.restart_count,
                               previous_delay=c.state.restart_delay,
                               started_at=c.state.started_at,
                               finished_at=c.state.finished_at)
        c.state.restart_pending = delay is not None
        if delay is not None:
            c.state.restart_delay = delay
        # kept through the cleanup, which a crash may cut short; gone before the record, so
        # whoever reads ``dead`` finds nothing of the run left
        _forget_exit_file(c)
        try:
            e._save(c, event.model)
        except SystemFailure:
            # the stored state still says running: leave the code where the next look finds it
            with contextlib.suppress(OSError):
                c.paths.exit_file.write_text(f"{c.state.exit_code}\n")
                if c.state.manual_stop:  # nor must that look restart what the user stopped
                    _stop_marker(c).touch()
            raise
        e._sync_network_hosts(*left)
        if c.state.oom_killed:
            e._emit("oom", c)  # as Docker: oom, then die
        e._emit("die", c, exitCode=str(c.state.exit_code))
        for net in left:
            e._emit_network("disconnect", c, net)
        e._enter(c, DEAD)
        if c.config.auto_remove:
            self._auto_remove(event.model)

    def _auto_remove(self, lc: Lifecycle) -> None:
        try:
            lc.fire("remove")
        except (CorralError, TransitionConflict) as exc:
            logger.warning("auto-remove of {} failed: {}", self.c.name, exc)

    def before_pause(self, event: Any) -> None:
        cgroups.host().check_pause(self.c.id)
        self.engine.runtime.pause(self.c.id)

    def on_pause(self, event: Any) -> None:
        try:
            self.engine._save(self.c, event.model)
        except SystemFailure:
            # what is stored must stay what runc says: thaw it, as if the pause never was
            with contextlib.suppress(SystemFailure):
                self.engine.runtime.resume(self.c.id)
            raise
        self.engine._emit("pause", self.c)
        self.engine._enter(self.c, PAUSED)

    def before_unpause(self, event: Any) -> None:
        self.engine.runtime.resume(self.c.id)

    def on_unpause(self, event: Any) -> None:
        try:
            self.engine._save(self.c, event.model)
        except SystemFailure:
            with contextlib.suppress(SystemFailure):
                self.engine.runtime.pause(self.c.id)
            raise
        self.engine._emit("unpause", self.c)
        self.engine._enter(self.c, RUNNING)

    def on_remove(self, event: Any) -> None:
        e, c = self.engine, self.c
        e._save(c, event.model)
        try:
            e._finish_remove(c)
        except (CorralError, OSError) as exc:
            event.model.fire("remove_failed", error=str(exc))
            raise SystemFailure(f"cannot remove container {c.name}: {exc}") from exc

    def on_remove_failed(self, event: Any) -> None:
        self.c.state.error = event.kwargs.get("error", "")
        self.c.state.cleanup_pending = True  # the removal stopped at its cleanup, or after it
        self.engine._save(self.c, event.model)
