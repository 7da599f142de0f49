"""Go's view of the values a template reads: fields and methods, printing as Go's fmt does,
truth, JSON, and the template's errors.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import InvalidParameter


class TemplateError(InvalidParameter):
    """The template cannot be parsed, or its execution failed; worded as Go's."""


class _Missing:
    """A map's missing key: Go prints it as ``<no value>``."""

    def __repr__(self) -> str:
        return "<no value>"


MISSING = _Missing()


class Method:
    """A struct's method: called with the action's arguments (``{{.Label "k"}}``)."""

    def __init__(self, fn: Callable[..., Any], name: str) -> None:
        self.fn, self.name = fn, name

    def call(self, args: Sequence[Any]) -> Any:
        try:
            return self.fn(*args)
        except TypeError:
            raise _ExecError(f"wrong number of args for {self.name}: got {len(args)}") from None


class GoStruct:
    """A Go struct as templates see it: ``go_type`` names it in errors, ``go_field`` gives a
    field (a ``Method`` for a method) or raises KeyError, ``go_json`` is what ``json`` prints.
    This base class serves fields from a dict."""

    go_type = "struct"

    def __init__(self, fields: Mapping[str, Any], go_type: str | None = None,
                 as_json: Any = None) -> None:
        self._fields = dict(fields)
        if go_type:
            self.go_type = go_type
        self._json = as_json

    def go_field(self, name: str) -> Any:
        return self._fields[name]

    def go_json(self) -> Any:
        return self._fields if self._json is None else self._json


def go_float(value: float) -> str:
    """Go's ``%v`` of a float64: the shortest digits, ``%e`` form when the exponent is below
    -4 or at least 6 (1e+06, 1.5, 100000)."""
    from decimal import Decimal

    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    _, digit_tuple, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    exp = len(digits) + int(exponent) - 1
    if exp < -4 or exp >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if exp < 0:
        return f"{sign}0.{'0' * (-exp - 1)}{digits}"
    whole = digits[:exp + 1].ljust(exp + 1, "0")
    frac = digits[exp + 1:]
    return sign + whole + ("." + frac if frac else "")


def to_text(value: Any) -> str:
    """Go's ``fmt.Sprint`` of ``value``."""
    if isinstance(value, str):
        return value
    if value is MISSING:
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{to_text(k)}:{to_text(value[k])}"
                                 for k in sorted(value, key=str)) + "]"
    if isinstance(value, GoStruct):
        return to_text(value.go_json())
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(to_text(v) for v in value) + "]"
    return str(value)


def to_json(value: Any) -> str:
    """Go's ``json.Marshal``: compact, ``<``, ``>``, ``&`` escaped as HTML-safe."""
    def plain(v: Any) -> Any:
        if isinstance(v, GoStruct):
            return plain(v.go_json())
        if isinstance(v, Mapping):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if v is MISSING:
            return None
        return v

    text = json.dumps(plain(value), separators=(",", ":"), ensure_ascii=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def truth(value: Any) -> bool:
    """Go's ``if``: false, 0, nil, and empty strings, slices and maps are false."""
    if value is None or value is MISSING:
        return False
    if isinstance(value, GoStruct):
        return True
    if isinstance(value, (str, bytes, list, tuple, Mapping, int, float)):
        return bool(value)
    return True


class _ExecError(Exception):
    pass
