"""Seccomp profiles: the default one shipped as data, a user's file, and their resolution.

A profile here has the shape Docker's daemon takes (moby ``profiles/seccomp``): the OCI
``linux.seccomp`` object plus an ``archMap`` and, on each syscall rule, ``includes`` and
``excludes`` conditions on the container's capabilities, the machine's architecture and the
kernel's version. :func:`resolve` keeps the rules whose conditions hold for one container and
returns a plain OCI ``linux.seccomp`` object, the form runc takes.

The default profile is ``default.json`` beside this file: Docker's default with two refusals
more (io_uring, and device nodes through ``mknod``/``mknodat``); DESIGN-NOTES.md says why.
``--security-opt seccomp=unconfined`` runs without a filter, ``seccomp=PROFILE.json`` with the
user's profile (read and checked at create, stored in the container's config).
"""

from __future__ import annotations

import functools
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from ...errors import InvalidParameter

__all__ = ["DEFAULT", "UNCONFINED", "default_profile", "parse_security_opt", "resolve"]

DEFAULT = "default"
UNCONFINED = "unconfined"
_DEFAULT_FILE = Path(__file__).with_name("default.json")
_MAX_PROFILE = 4 << 20  # Docker's own default profile is 20 KB

ACTIONS = frozenset({
    "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG",
})
OPERATORS = frozenset({
    "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
})
FLAGS = frozenset({"SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                   "SECCOMP_FILTER_FLAG_SPEC_ALLOW"})
_ARCH_RE = re.compile(r"SCMP_ARCH_[A-Z0-9_]+")
_UINT32, _UINT64 = (1 << 32) - 1, (1 << 64) - 1

# uname's machine name -> (Go's name, which conditions use as Docker does; libseccomp's name)
_MACHINES: dict[str, tuple[str, str]] = {
    "x86_64": ("amd64", "SCMP_ARCH_X86_64"),
    "aarch64": ("arm64", "SCMP_ARCH_AARCH64"),
    "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"),
    "s390x": ("s390x", "SCMP_ARCH_S390X"),
    "riscv64": ("riscv64", "SCMP_ARCH_RISCV64"),
    "armv7l": ("arm", "SCMP_ARCH_ARM"),
}


@functools.cache
def default_profile() -> dict[str, Any]:
    """The shipped default profile (unresolved); a copy is never needed since nothing edits it."""
    return json.loads(_DEFAULT_FILE.read_bytes())


def parse_security_opt(options: list[str] | tuple[str, ...]) -> str | dict[str, Any]:
    """The seccomp choice of ``--security-opt`` values: ``"default"``, ``"unconfined"`` or a
    checked profile (read from the file it names, or given inline as JSON as Docker's API
    allows). ``no-new-privileges`` is accepted (corral always sets it); anything else is
    refused by name."""
    choice: str | dict[str, Any] = DEFAULT
    for opt in options:
        if not isinstance(opt, str):
            raise InvalidParameter(f"invalid --security-opt: {opt!r}")
        if "\0" in opt:
            raise InvalidParameter(f"invalid --security-opt {opt!r}: it contains a NUL byte")
        key, sep, value = opt.partition("=")
        if not sep:  # Docker still takes the old ':' spelling
            key, sep, value = opt.partition(":")
        if key == "no-new-privileges" and value in ("", "true"):
            continue
        if key != "seccomp" or not value:
            raise InvalidParameter(
                f"invalid --security-opt {opt!r}: corral takes seccomp=unconfined, "
                "seccomp=PROFILE.json and no-new-privileges")
        if value == UNCONFINED:
            choice = UNCONFINED
        elif value.lstrip().startswith("{"):
            choice = check_profile(_parse_json(value, opt), opt)
        else:
            choice = check_profile(_parse_json(_read(value, opt), opt), opt)
    return choice


def _read(path: str, opt: str) -> str:
    def bad(why: str) -> InvalidParameter:
        return InvalidParameter(
            f"invalid --security-opt {opt!r}: cannot read the profile {path}: {why}")

    try:
        # O_NONBLOCK: a FIFO named as the profile must not hang the create.
        fd = os.open(os.path.expanduser(path), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise bad(exc.strerror or str(exc)) from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise bad("not a regular file")
    with open(fd, "rb") as f:
        try:
            data = f.read(_MAX_PROFILE + 1)
        except OSError as exc:
            raise bad(exc.strerror or str(exc)) from exc
    if len(data) > _MAX_PROFILE:
        raise bad(f"larger than {_MAX_PROFILE} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad("not UTF-8 text") from exc


def _parse_json(text: str, opt: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidParameter(
            f"invalid --security-opt {opt!r}: the profile is not valid JSON: {exc}") from exc


def check_profile(profile: Any, opt: str = "seccomp") -> dict[str, Any]:
    """``profile`` if it is a seccomp profile resolve can turn into valid OCI; else
    ``InvalidParameter`` naming the option and the faulty field."""
    def bad(where: str, what: str) -> InvalidParameter:
        return InvalidParameter(f"invalid --security-opt {opt!r}: {where}: {what}")

    if not isinstance(profile, dict):
        raise bad("the profile", "want a JSON object")
    if profile.get("defaultAction") not in ACTIONS:
        raise bad("defaultAction", f"unknown action {profile.get('defaultAction')!r}")
    _check_uint(profile, "defaultErrnoRet", _UINT32, bad, "the profile")
    if "architectures" in profile and profile.get("archMap"):
        raise bad("the profile", "use either 'architectures' or 'archMap', not both")
    arches = profile.get("architectures") or []
    if not isinstance(arches, list) or not all(isinstance(a, str) and _ARCH_RE.fullmatch(a)
                                               for a in arches):
        raise bad("architectures", f"want a list of SCMP_ARCH_* names, got {arches!r}")
    arch_map = profile.get("archMap") or []
    if not isinstance(arch_map, list) or not all(
            isinstance(a, dict) and isinstance(a.get("architecture"), str)
            and isinstance(a.get("subArchitectures") or [], list) for a in arch_map):
        raise bad("archMap", "want a list of {architecture, subArchitectures}")
    flags = profile.get("flags") or []
    if not isinstance(flags, list) or not set(flags) <= FLAGS:
        raise bad("flags", f"unknown flags {flags!r}")
    syscalls = profile.get("syscalls") or []
    if not isinstance(syscalls, list):
        raise bad("syscalls", "want a list")
    for i, rule in enumerate(syscalls):
        _check_rule(rule, f"syscalls[{i}]", bad)
    return profile


def _check_uint(obj: dict[str, Any], key: str, top: int, bad: Any, where: str) -> None:
    if key in obj and (type(obj[key]) is not int or not 0 <= obj[key] <= top):
        raise bad(f"{where}.{key}", f"want an integer from 0 to {top}, got {obj[key]!r}")


def _check_rule(rule: Any, where: str, bad: Any) -> None:
    if not isinstance(rule, dict):
        raise bad(where, "want an object")
    names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
    if not names or not isinstance(names, list) or not all(
            isinstance(n, str) and n for n in names):
        raise bad(where, "want 'names', a list of system call names")
    if rule.get("action") not in ACTIONS:
        raise bad(f"{where}.action", f"unknown action {rule.get('action')!r}")
    _check_uint(rule, "errnoRet", _UINT32, bad, where)
    args = rule.get("args") or []
    if not isinstance(args, list):
        raise bad(f"{where}.args", "want a list")
    for j, arg in enumerate(args):
        here = f"{where}.args[{j}]"
        if not isinstance(arg, dict) or arg.get("op") not in OPERATORS:
            raise bad(here, f"want an object with an op among {sorted(OPERATORS)}")
        if type(arg.get("index")) is not int or not 0 <= arg["index"] <= 5:
            raise bad(f"{here}.index", f"want 0 to 5, got {arg.get('index')!r}")
        for key in ("value", "valueTwo"):
            _check_uint(arg, key, _UINT64, bad, here)
        if "value" not in arg:
            raise bad(here, "no value")
    for cond in ("includes", "excludes"):
        c = rule.get(cond) or {}
        if not isinstance(c, dict) or not all(
                isinstance(c.get(k) or [], list) for k in ("caps", "arches")) or not isinstance(
                c.get("minKernel") or "", str):
            raise bad(f"{where}.{cond}", "want {caps: [...], arches: [...], minKernel: 'X.Y'}")


def _kernel_at_least(wanted: str, release: str) -> bool:
    def parts(text: str) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", text)[:2])
    return parts(release) >= parts(wanted)


def _applies(rule: dict[str, Any], caps: frozenset[str], goarch: str, release: str) -> bool:
    """Docker's reading of a rule's conditions: every included cap held, the machine among the
    included arches, the kernel recent enough; no excluded cap held, not an excluded arch."""
    inc = rule.get("includes") or {}
    exc = rule.get("excludes") or {}
    if inc.get("arches") and goarch not in inc["arches"]:
        return False
    if inc.get("caps") and not set(inc["caps"]) <= caps:
        return False
    if inc.get("minKernel") and not _kernel_at_least(inc["minKernel"], release):
        return False
    if goarch in (exc.get("arches") or ()):
        return False
    return not set(exc.get("caps") or ()) & caps


def resolve(profile: str | dict[str, Any], caps: list[str] | tuple[str, ...] | frozenset[str],
            *, machine: str | None = None, release: str | None = None
            ) -> dict[str, Any] | None:
    """The OCI ``linux.seccomp`` object of ``profile`` (``"default"``, ``"unconfined"`` or a
    checked profile) for a container whose bounding set is ``caps``; None for unconfined."""
    if profile == UNCONFINED:
        return None
    data = default_profile() if profile == DEFAULT else profile
    if not isinstance(data, dict):
        raise InvalidParameter(f"invalid seccomp profile: {profile!r}")
    uname = os.uname()
    machine = machine or uname.machine
    release = release or uname.release
    goarch, native = _MACHINES.get(machine, (machine, ""))
    held = frozenset(caps)

    out: dict[str, Any] = {"defaultAction": data["defaultAction"]}
    if "defaultErrnoRet" in data:
        out["defaultErrnoRet"] = data["defaultErrnoRet"]
    if data.get("architectures"):
        out["architectures"] = list(data["architectures"])
    else:
        # The machine's native arch and its compat ones, so a 32-bit call cannot go around
        # a rule written for the 64-bit one.
        arches = [a for m in data.get("archMap") or () if m["architecture"] == native
                  for a in (m["architecture"], *(m.get("subArchitectures") or ()))]
        if arches:
            out["architectures"] = arches
    if data.get("flags"):
        out["flags"] = list(data["flags"])
    rules = []
    for rule in data.get("syscalls") or ():
        if not _applies(rule, held, goarch, release):
            continue
        entry: dict[str, Any] = {"names": list(rule.get("names") or [rule["name"]]),
                                 "action": rule["action"]}
        if "errnoRet" in rule:
            entry["errnoRet"] = rule["errnoRet"]
        if rule.get("args"):
            entry["args"] = [{k: a[k] for k in ("index", "value", "valueTwo", "op") if k in a}
                             for a in rule["args"]]
        rules.append(entry)
    out["syscalls"] = rules
    return out
