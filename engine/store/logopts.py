"""Log options as Docker's ``--log-opt max-size=10m --log-opt max-file=3``, checked at create.

corral has one log driver, conmon's ``k8s-file``; ``json-file`` is taken as its name (the
options are the same; the file format is k8s-file's). A container's options are its own
merged over the root's defaults, key by key as dockerd merges ``daemon.json``'s ``log-opts``,
and fixed at create. The root's defaults are ``<root>/daemon.json``'s ``log-opts`` when that
file exists, else ``DEFAULTS``: unlike Docker's json-file (unbounded), a log is capped unless
asked otherwise (``max-size=-1``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidParameter

DRIVER = "k8s-file"
DRIVERS = (DRIVER, "json-file")
DEFAULTS = {"max-size": "10m", "max-file": "3"}
ROOT_FILE = "daemon.json"
# go-units' RAMInBytes, which Docker parses max-size with: binary multiples, optional "b"/"ib"
_SIZE = re.compile(r"(\d+(?:\.\d+)?) ?([kmgtp]?)(?:i?b)?", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


@dataclass(frozen=True)
class LogLimits:
    """``max_size`` None: the log grows without a cap."""

    max_size: int | None
    max_file: int

    @property
    def rotates(self) -> bool:
        """More than one file is kept: the keeper runs beside conmon."""
        return self.max_size is not None and self.max_file > 1


def parse_size(value: str) -> int | None:
    """Bytes of a ``max-size`` value, None for ``-1`` (no cap)."""
    text = str(value).strip()
    if text == "-1":
        return None
    m = _SIZE.fullmatch(text)
    size = int(float(m.group(1)) * _UNITS[m.group(2).lower()]) if m else 0
    if size <= 0:
        raise InvalidParameter(f"invalid log option max-size={value!r}: expected a size such "
                               "as 10m, 512k or 1g (or -1 for no cap)")
    return size


def _max_file(value: str) -> int:
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
        raise InvalidParameter(f"invalid log option max-file={value!r}: expected a whole "
                               "number of at least 1")
    return int(text)


def check_driver(driver: str | None) -> None:
    if driver not in (None, "", *DRIVERS):
        raise InvalidParameter(f"log driver {driver!r} is not supported: corral writes "
                               f"{DRIVER} logs ({' or '.join(DRIVERS)} may be named)")


def check(opts: Mapping[str, object]) -> dict[str, str]:
    """The options as strings, each checked (together: ``limits``, once merged); an unknown
    one is refused by name."""
    if not isinstance(opts, Mapping):
        raise InvalidParameter(f"invalid log options {opts!r}: expected a mapping of "
                               "option to value")
    out = {}
    for key, value in opts.items():
        if key not in DEFAULTS:
            raise InvalidParameter(f"unknown log option {key!r} for the {DRIVER} log driver "
                                   f"(known: {', '.join(DEFAULTS)})")
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise InvalidParameter(f"invalid log option {key}={value!r}: expected a string")
        out[key] = str(value).strip()
        parse_size(out[key]) if key == "max-size" else _max_file(out[key])
    return out


def limits(opts: Mapping[str, str]) -> LogLimits:
    """What the options ask for; an empty mapping (containers made before options) is no cap."""
    size = parse_size(opts["max-size"]) if "max-size" in opts else None
    files = _max_file(opts["max-file"]) if "max-file" in opts else 1
    if files > 1 and size is None:
        raise InvalidParameter(f"invalid log option max-file={opts['max-file']!r}: max-file "
                               "needs max-size")
    return LogLimits(size, files)


def parse_cli(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``--log-opt KEY=VALUE`` items (the last of a key wins, as in Docker)."""
    from .config import parse_key_values

    return parse_key_values(items, "log option")


def root_defaults(root: Path) -> dict[str, str]:
    path = Path(root) / ROOT_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return dict(DEFAULTS)
    except (OSError, ValueError) as exc:
        raise InvalidParameter(f"cannot read {path}: {exc}") from exc
    opts = data.get("log-opts", DEFAULTS) if isinstance(data, dict) else None
    try:
        checked = check(opts if opts is not None else {})
        limits(checked)
        return checked
    except InvalidParameter as exc:
        raise InvalidParameter(f"{path}: log-opts: {exc}") from exc


def for_create(opts: Mapping[str, object] | None, driver: str | None,
               root: Path) -> dict[str, str]:
    """A new container's options: its own over the root's defaults, checked."""
    check_driver(driver)
    own = check(opts or {})
    merged = {**root_defaults(root), **own}
    if "max-size" in own and own["max-size"] == "-1" and "max-file" not in own:
        merged.pop("max-file", None)  # no cap asked: the default count means nothing
    limits(merged)
    return merged
