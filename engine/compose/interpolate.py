"""Variable interpolation as in Compose, and the ``.env`` / ``env_file`` format.

Forms: ``$VAR``, ``${VAR}``, ``${VAR:-default}`` (unset or empty), ``${VAR-default}`` (unset),
``${VAR:?message}`` / ``${VAR?message}`` (an error), ``${VAR:+alt}`` / ``${VAR+alt}`` (the
alternative when set), and ``$$`` for a literal ``$``. Defaults, messages and alternatives may
themselves hold expressions (``${A:-${B}}``); they are expanded only when used. As in Compose,
a ``$`` that starts none of these (``$5``, ``$ ``) is kept as it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

_NAME = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")

Lookup = Callable[[str], str | None]


class InterpolationError(ValueError):
    """A malformed expression, or a required variable that is missing."""


def interpolate(text: str, lookup: Lookup, unset: Callable[[str], None] | None = None) -> str:
    """Expand the expressions of ``text``; ``unset(name)`` is called for each variable that is
    unset and has no default (it expands to the empty string, as in Compose)."""
    if "$" not in text:
        return text
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        j = text.find("$", i)
        if j < 0 or j == n - 1:
            out.append(text[i:])
            break
        out.append(text[i:j])
        nxt = text[j + 1]
        if nxt == "$":
            out.append("$")
            i = j + 2
        elif nxt == "{":
            end = _closing_brace(text, j + 2)
            if end < 0:
                raise InterpolationError(
                    f"invalid interpolation format in {text!r}: missing closing brace")
            out.append(_braced(text[j + 2:end], lookup, unset))
            i = end + 1
        else:
            m = _NAME.match(text, j + 1)
            if m is None:
                out.append("$")
                i = j + 1
                continue
            out.append(_value(m.group(), lookup, unset))
            i = m.end()
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    depth, i = 0, start
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    return -1


def _value(name: str, lookup: Lookup, unset: Callable[[str], None] | None) -> str:
    value = lookup(name)
    if value is None:
        if unset is not None:
            unset(name)
        return ""
    return value


def _braced(body: str, lookup: Lookup, unset: Callable[[str], None] | None) -> str:
    m = _NAME.match(body)
    if m is None:
        raise InterpolationError(f"invalid interpolation format: '${{{body}}}': "
                                 "a variable name is expected")
    name, rest = m.group(), body[m.end():]
    if not rest:
        return _value(name, lookup, unset)
    op = next((o for o in _OPERATORS if rest.startswith(o)), None)
    if op is None:
        raise InterpolationError(f"invalid interpolation format: '${{{body}}}'")
    arg = rest[len(op):]
    value = lookup(name)
    present = value is not None and (value != "" or not op.startswith(":"))
    if op.endswith("-"):
        return value if present and value is not None else interpolate(arg, lookup, unset)
    if op.endswith("+"):
        return interpolate(arg, lookup, unset) if present else ""
    if not present:  # ? and :?
        detail = interpolate(arg, lookup, unset) or ("must be set" if op == "?" else
                                                     "must be set and not empty")
        raise InterpolationError(f"required variable {name} is missing a value: {detail}")
    return value or ""


# --- .env files -------------------------------------------------------------------------------

@dataclass(frozen=True)
class EnvLine:
    line: int
    key: str
    value: str | None  # None: a bare ``KEY`` (its value comes from the caller's environment)


class EnvFileError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "$": "$"}


def parse_env_file(text: str) -> list[EnvLine]:
    """``KEY=VALUE`` lines as Compose reads them: ``#`` comments, an optional ``export``,
    single quotes (literal) or double quotes (with backslash escapes), and unquoted values whose
    `` #`` starts a comment."""
    out: list[EnvLine] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export ") or line.startswith("export\t"):
            line = line[7:].lstrip()
        key, sep, rest = line.partition("=")
        key = key.rstrip()
        if not _ENV_KEY.fullmatch(key):
            raise EnvFileError(number, f"invalid variable name {key!r}")
        if not sep:
            out.append(EnvLine(number, key, None))
            continue
        out.append(EnvLine(number, key, _env_value(rest.strip(), number)))
    return out


def _env_value(rest: str, number: int) -> str:
    if not rest or rest[0] not in "\"'":
        value, _, _comment = rest.partition(" #")
        return value.rstrip()
    quote = rest[0]
    chars: list[str] = []
    i = 1
    while i < len(rest):
        c = rest[i]
        if c == quote:
            tail = rest[i + 1:].strip()
            if tail and not tail.startswith("#"):
                raise EnvFileError(number, f"unexpected text after the closing quote: {tail!r}")
            return "".join(chars)
        if c == "\\" and quote == '"' and i + 1 < len(rest):
            nxt = rest[i + 1]
            chars.append(_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
            continue
        chars.append(c)
        i += 1
    raise EnvFileError(number, f"missing closing quote {quote} (values span one line)")
