"""The exit codes of failed starts (moby's setExitCodeFromError) and the restarts the first
engine after a reboot makes: pure rules, no root."""

from __future__ import annotations

import pytest

from engine.core.exitcodes import start_failure_code
from engine.core.restart import after_reboot

RUNC = "runc create: runc create failed: unable to start container process: "


@pytest.mark.parametrize("step,message,code", [
    ("process", RUNC + 'exec: "/nope": stat /nope: no such file or directory', 127),
    ("process", RUNC + 'exec: "nope": executable file not found in $PATH', 127),
    ("process", RUNC + 'exec: "/etc": permission denied', 126),
    ("process", RUNC + 'exec: "/etc": is a directory', 126),
    ("process", RUNC + "error mounting ...: not a directory", 127),
    ("process", "runc start: container not running", 128),
    # not the runtime's: moby leaves 128
    ("process", "cannot run conmon: [Errno 2] No such file or directory: 'conmon'", 128),
    ("process", "cannot write /x/config.json: No space left on device", 128),
    ("mounts", "no such file or directory", 128),
    ("network", "port is already allocated", 128),
])
def test_start_failure_code(step: str, message: str, code: int) -> None:
    assert start_failure_code(step, message) == code


@pytest.mark.parametrize("policy,manual_stop,delay", [
    ("always", False, 0.0), ("unless-stopped", False, 0.0),
    ("always", True, None), ("unless-stopped", True, None),
    ("on-failure", False, None), ("no", False, None),
])
def test_after_reboot(policy: str, manual_stop: bool, delay: float | None) -> None:
    assert after_reboot({"Name": policy}, manual_stop=manual_stop) == delay
