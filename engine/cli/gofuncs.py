"""The functions a template may call: Go's builtins (eq, index, len, printf...) and Docker's
(json, join, title, upper, pad, truncate).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from .govalues import MISSING, GoStruct, _ExecError, to_json, to_text, truth


def go_quote(text: str) -> str:
    """Go's ``strconv.Quote``: double quotes, Go escapes, printable non-ASCII kept."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append({"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
                        "\t": "\\t", "\v": "\\v"}[ch])
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def _go_type_name(value: Any) -> str:
    if isinstance(value, GoStruct):
        return value.go_type
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "map[string]interface {}"
    if isinstance(value, (list, tuple)):
        return "[]interface {}"
    return "interface {}"


def _compare(name: str, a: Any, b: Any) -> int:
    numbers = (int, float)
    if isinstance(a, bool) or isinstance(b, bool) or not (
            (isinstance(a, numbers) and isinstance(b, numbers))
            or (isinstance(a, str) and isinstance(b, str))):
        if name in ("eq", "ne") and type(a) is type(b):
            return 0 if a == b else 1
        raise _ExecError(f"error calling {name}: incompatible types for comparison")
    return (a > b) - (a < b)


def _eq(a: Any, *others: Any) -> bool:
    if not others:
        raise _ExecError("error calling eq: missing argument for comparison")
    return any(_compare("eq", a, b) == 0 for b in others)


def _index(item: Any, *keys: Any) -> Any:
    for key in keys:
        if item is None or item is MISSING:
            raise _ExecError("error calling index: index of untyped nil")
        if isinstance(item, Mapping):
            # Docker's maps (labels, options) are map[string]string: a missing key is ""
            item = item.get(key, "")
        elif isinstance(item, (list, tuple, str)):
            if not isinstance(key, int) or isinstance(key, bool):
                raise _ExecError(f"error calling index: cannot index slice/array with type "
                                 f"{_go_type_name(key)}")
            if not 0 <= key < len(item):
                raise _ExecError(f"error calling index: index out of range: {key}")
            item = item[key] if not isinstance(item, str) else ord(item[key])
        else:
            raise _ExecError(f"error calling index: can't index item of type "
                             f"{_go_type_name(item)}")
    return item


def _len(item: Any) -> int:
    if isinstance(item, (str, list, tuple, Mapping)):
        return len(item.encode() if isinstance(item, str) else item)
    raise _ExecError(f"error calling len: len of type {_go_type_name(item)}")


def _slice(item: Any, *bounds: int) -> Any:
    if not isinstance(item, (str, list, tuple)):
        raise _ExecError(f"error calling slice: can't slice item of type {_go_type_name(item)}")
    if len(bounds) > 2:
        raise _ExecError("error calling slice: too many slice indexes")
    start = bounds[0] if bounds else 0
    stop = bounds[1] if len(bounds) > 1 else len(item)
    if not 0 <= start <= stop <= len(item):
        raise _ExecError(f"error calling slice: index out of range: {stop}")
    return item[start:stop]


def _sprint(*args: Any) -> str:
    out = []
    for i, arg in enumerate(args):
        if i and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(to_text(arg))
    return "".join(out)


_VERB_RE = re.compile(r"%([-+# 0]*)(\d+)?(?:\.(\d+))?([a-zA-Z%])")


def _sprintf(fmt: str, *args: Any) -> str:
    rest = list(args)
    out, i = [], 0
    for m in _VERB_RE.finditer(fmt):
        out.append(fmt[i:m.start()])
        i = m.end()
        flags, width, precision, verb = m.groups()
        if verb == "%":
            out.append("%")
            continue
        if not rest:
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = rest.pop(0)
        spec = f"{flags.replace('#', '')}{width or ''}" + (
            f".{precision}" if precision is not None else "")
        try:
            if verb in "dxXob" and isinstance(arg, int) and not isinstance(arg, bool):
                out.append(format(arg, spec + verb))
            elif verb in "xX" and isinstance(arg, str):
                out.append(format(arg.encode().hex(), spec.replace("0", "")).upper()
                           if verb == "X" else format(arg.encode().hex(), spec))
            elif verb in "eEfFgG" and isinstance(arg, (int, float)) and not isinstance(
                    arg, bool):
                out.append(format(float(arg), spec + verb))
            elif verb == "q":
                out.append(format(go_quote(to_text(arg)), spec))
            elif verb == "t" and isinstance(arg, bool):
                out.append(format(to_text(arg), spec))
            elif verb == "c" and isinstance(arg, int):
                out.append(format(chr(arg), spec))
            elif verb in "sv":
                text = to_text(arg)
                if precision is not None and verb == "s":
                    text = text[:int(precision)]
                size = int(width or 0)
                out.append(text.ljust(size) if "-" in flags else text.rjust(size))
            else:
                out.append(f"%!{verb}({_go_type_name(arg)}={to_text(arg)})")
        except (ValueError, TypeError):
            out.append(f"%!{verb}({_go_type_name(arg)}={to_text(arg)})")
    out.append(fmt[i:])
    if rest:
        out.append("%!(EXTRA " + ", ".join(f"{_go_type_name(a)}={to_text(a)}" for a in rest)
                   + ")")
    return "".join(out)


def _need_str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _ExecError(f"error calling {name}: wrong type for value; expected string; got "
                         f"{_go_type_name(value)}")
    return value


def _join(items: Any, sep: str) -> str:
    if not isinstance(items, (list, tuple)):
        raise _ExecError(f"error calling join: wrong type for value; expected []string; got "
                         f"{_go_type_name(items)}")
    return _need_str("join", sep).join(to_text(v) for v in items)


def _title(text: Any) -> str:
    return re.sub(r"(^|[\s\W])(\w)", lambda m: m.group(1) + m.group(2).upper(),
                  _need_str("title", text))


def _pad(text: Any, prefix: int, suffix: int) -> str:
    return " " * prefix + _need_str("pad", text) + " " * suffix


def _truncate(text: Any, length: int) -> str:
    text = _need_str("truncate", text)
    return text if len(text) < length else text[:length]


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "and": lambda *a: next((x for x in a if not truth(x)), a[-1]),
    "or": lambda *a: next((x for x in a if truth(x)), a[-1]),
    "not": lambda x: not truth(x),
    "eq": _eq,
    "ne": lambda a, b: _compare("ne", a, b) != 0,
    "lt": lambda a, b: _compare("lt", a, b) < 0,
    "le": lambda a, b: _compare("le", a, b) <= 0,
    "gt": lambda a, b: _compare("gt", a, b) > 0,
    "ge": lambda a, b: _compare("ge", a, b) >= 0,
    "index": _index,
    "len": _len,
    "slice": _slice,
    "print": _sprint,
    "println": lambda *a: " ".join(to_text(x) for x in a) + "\n",
    "printf": lambda fmt, *a: _sprintf(_need_str("printf", fmt), *a),
    # Docker's own (cli/templates)
    "json": to_json,
    "join": _join,
    "split": lambda s, sep: _need_str("split", s).split(_need_str("split", sep)),
    "title": _title,
    "lower": lambda s: _need_str("lower", s).lower(),
    "upper": lambda s: _need_str("upper", s).upper(),
    "pad": _pad,
    "truncate": _truncate,
}

# In a table's header row Docker's functions leave the column title as it is
_HEADER_FUNCTIONS = {name: (lambda first, *_: first) for name in
                     ("json", "join", "split", "title", "lower", "upper", "pad", "truncate")}
