"""The step runner, with fake steps: order, undo in reverse, fail points, undo errors."""

from __future__ import annotations

import pytest

from states import InjectedFault, StepFailure, run_steps


class FakeStep:
    def __init__(self, name: str, log: list, fail_do: bool = False, fail_undo: bool = False):
        self.name, self.log, self.fail_do, self.fail_undo = name, log, fail_do, fail_undo

    def do(self, ctx):
        self.log.append(("do", self.name))
        if self.fail_do:
            raise RuntimeError(f"{self.name} broke")

    def undo(self, ctx):
        self.log.append(("undo", self.name))
        if self.fail_undo:
            raise OSError(f"{self.name} undo broke")


def steps(log, **kw):
    return [FakeStep(n, log, fail_do=kw.get("fail") == n, fail_undo=n in kw.get("bad_undo", ()))
            for n in ("a", "b", "c", "d")]


def test_all_steps_run_in_order() -> None:
    log: list = []
    records = run_steps(steps(log), None)
    assert log == [("do", n) for n in "abcd"]
    assert [r.outcome for r in records] == ["done"] * 4


def test_failure_undoes_failed_and_done_steps_in_reverse() -> None:
    log: list = []
    with pytest.raises(StepFailure) as info:
        run_steps(steps(log, fail="c"), None)
    assert log == [("do", "a"), ("do", "b"), ("do", "c"),
                   ("undo", "c"), ("undo", "b"), ("undo", "a")]
    assert info.value.step == "c"
    assert isinstance(info.value.cause, RuntimeError)
    assert info.value.__cause__ is info.value.cause
    assert [r.outcome for r in info.value.records] == ["undone", "undone", "failed"]


@pytest.mark.parametrize("point", list("abcd"))
def test_fail_point_after_each_step(point: str) -> None:
    log: list = []
    with pytest.raises(StepFailure) as info:
        run_steps(steps(log), None, fail_point=lambda name: name == point)
    assert isinstance(info.value.cause, InjectedFault)
    assert info.value.step == point
    done = "abcd"[: "abcd".index(point) + 1]
    assert log == [("do", n) for n in done] + [("undo", n) for n in reversed(done)]


def test_undo_errors_never_hide_the_cause_and_do_not_stop_other_undos() -> None:
    log: list = []
    with pytest.raises(StepFailure) as info:
        run_steps(steps(log, fail="d", bad_undo=("b", "d")), None)
    assert isinstance(info.value.cause, RuntimeError)
    assert [name for name, _ in info.value.undo_errors] == ["d", "b"]
    assert ("undo", "a") in log


def test_keyboard_interrupt_is_undone_and_passed_on() -> None:
    log: list = []

    class Interrupting(FakeStep):
        def do(self, ctx):
            raise KeyboardInterrupt

    seq = [FakeStep("a", log), Interrupting("b", log)]
    with pytest.raises(KeyboardInterrupt):
        run_steps(seq, None)
    assert log == [("do", "a"), ("undo", "b"), ("undo", "a")]
