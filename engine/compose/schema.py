"""A deployment file checked against the Compose schema: errors reported with file and line,
``.env`` and interpolation over the tree.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import json
import re
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from ..errors import InvalidParameter
from .interpolate import EnvFileError, InterpolationError, interpolate, parse_env_file
from .yamlfile import KeyPath, YamlError, read_text

_SIMPLE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


class ComposeError(InvalidParameter):
    """The deployment file is refused; ``errors`` lists every problem, each with its line."""

    def __init__(self, errors: list[str], warnings: list[str] | None = None) -> None:
        super().__init__("\n".join(errors))
        self.errors = list(errors)
        self.warnings = list(warnings or [])


class _Report:
    """Collects errors and warnings with their lines; a path's line is that of its nearest
    recorded ancestor."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: dict[KeyPath, int] = {}
        self.problems: list[tuple[int, int, str]] = []
        self.failed: set[KeyPath] = set()
        self.warnings: list[str] = []

    def line(self, path: KeyPath) -> int:
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 0)

    def _where(self, path: KeyPath, line: int | None, file: str | None) -> str:
        line = self.line(path) if line is None else line
        return f"{file or self.file}:{line}" if line else (file or self.file)

    def error(self, path: KeyPath, message: str, *, line: int | None = None,
              file: str | None = None) -> None:
        text = f"{_path_text(path)}: {message}" if path else message
        self._add(path, text, line, file)

    def unsupported(self, path: KeyPath, why: str = "") -> None:
        self._add(path, f"{_path_text(path)} is not supported{why}", None, None)

    def _add(self, path: KeyPath, text: str, line: int | None, file: str | None) -> None:
        self.failed.add(path)
        entry = f"{self._where(path, line, file)}: {text}"
        if all(entry != p[2] for p in self.problems):
            self.problems.append((self.line(path) if line is None else line,
                                  len(self.problems), entry))

    def warn(self, path: KeyPath, message: str) -> None:
        entry = f"{self._where(path, None, None)}: {_path_text(path)}: {message}"
        if entry not in self.warnings:
            self.warnings.append(entry)

    def broken(self, path: KeyPath) -> bool:
        """Whether an error was reported at ``path`` or below it."""
        return any(p[:len(path)] == path for p in self.failed)

    @contextlib.contextmanager
    def catch(self, path: KeyPath) -> Iterator[None]:
        try:
            yield
        except (InvalidParameter, ValueError) as exc:  # ipaddress speaks ValueError
            self.error(path, str(exc))

    def failure(self) -> ComposeError:
        return ComposeError([p[2] for p in sorted(self.problems)], self.warnings)


def _path_text(path: KeyPath) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _SIMPLE_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            type(None): "empty", int: "a number", float: "a number"}.get(type(value), "a value")


def _read_dotenv(path: Path, report: _Report) -> dict[str, str]:
    try:
        lines = parse_env_file(read_text(path, ".env file"))
    except YamlError as exc:
        if "no such" not in exc.message:
            report.error((), exc.message, line=exc.line, file=str(path))
        return {}
    except EnvFileError as exc:
        report.error((), exc.message, line=exc.line, file=str(path))
        return {}
    return {e.key: e.value for e in lines if e.value is not None}


def _interpolate_tree(value: Any, path: KeyPath, variables: Mapping[str, str],
                      report: _Report) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate_tree(v, (*path, k), variables, report) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate_tree(v, (*path, i), variables, report) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value
    try:
        return interpolate(value, variables.get, lambda name: report.warn(
            path, f"the variable {name} is not set, defaulting to a blank string"))
    except InterpolationError as exc:
        report.error(path, str(exc))
        return value


@functools.cache
def _validator() -> jsonschema.Draft7Validator:
    text = resources.files(__package__).joinpath("schemas/compose-spec.json").read_text("utf-8")
    return jsonschema.Draft7Validator(json.loads(text))


def _short(value: Any) -> str:
    try:  # as YAML would spell it: true, null, "text"
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _schema_messages(err: jsonschema.ValidationError) -> list[tuple[KeyPath, str]]:
    """One error of jsonschema as (path, message) pairs, made readable: an unexpected key
    points at its own line; a ``oneOf`` says what the value failed to be."""
    path: KeyPath = tuple(err.absolute_path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        props = err.schema.get("properties", {})
        patterns = [p for p in err.schema.get("patternProperties", {}) if p != "^x-"]
        out = []
        for key in err.instance:
            if key in props or any(re.search(p, key) for p in err.schema.get(
                    "patternProperties", {})):
                continue
            if props:
                hint = difflib.get_close_matches(key, list(props), n=1)
                message = f"Additional properties are not allowed ({key!r} was unexpected)"
                out.append(((*path, key), message + (f"; did you mean {hint[0]!r}?"
                                                     if hint else "")))
            else:
                out.append(((*path, key), f"invalid name {key!r}: it must match "
                                          f"{' or '.join(patterns)}"))
        return out
    if err.validator in ("oneOf", "anyOf") and err.context:
        branches: dict[Any, list[jsonschema.ValidationError]] = {}
        for sub in err.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        # A branch whose own type matched is the one the author meant; report its errors.
        for subs in branches.values():
            if not any(s.validator == "type" and not s.relative_path for s in subs):
                return [m for s in subs for m in _schema_messages(s)]
        types = [t for subs in branches.values() for s in subs
                 if s.validator == "type" and not s.relative_path
                 for t in ([s.validator_value] if isinstance(s.validator_value, str)
                           else s.validator_value)]
        return [(path, f"{_short(err.instance)} is not of type "
                       f"{', '.join(repr(t) for t in dict.fromkeys(types))}")]
    if err.validator == "type":
        expected = err.validator_value
        shown = ", ".join(repr(t) for t in ([expected] if isinstance(expected, str)
                                            else expected))
        return [(path, f"{_short(err.instance)} is not of type {shown}")]
    message = err.message if len(err.message) <= 200 else err.message[:197] + "..."
    return [(path, message)]
