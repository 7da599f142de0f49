"""A subset of Go's ``text/template``: what ``docker ps --format``, ``docker inspect --format``
and ``docker events --format`` users write.

Supported: text and actions with ``{{-``/``-}}`` trimming and ``{{/* comments */}}``; fields
and chains (``.State.Status``, ``$.Name``, ``(index .A "k").B``); methods with arguments
(``.Label "k"``); pipes (``.Names | upper``); variables (``$x := ...``, ``$x = ...``);
``if``/``else if``/``else``, ``range`` (with ``$i, $v :=`` and ``else``), ``with``;
string, raw string, number, ``true``/``false``/``nil`` literals; Go's functions ``and``,
``or``, ``not``, ``eq``, ``ne``, ``lt``, ``le``, ``gt``, ``ge``, ``index``, ``len``,
``slice``, ``print``, ``printf``, ``println``; and Docker's ``json``, ``join``, ``split``,
``title``, ``lower``, ``upper``, ``pad``, ``truncate``. Errors are worded as Go words them
(``template: :1:2: executing "" at <.Foo>: can't evaluate field Foo in type ...``).

Data: dicts are Go maps (a missing key is ``<no value>``, or an error when rendering with
``missing_key_error``, as ``docker inspect`` does); objects with a ``go_field`` method are Go
structs (see ``GoStruct``); lists are slices. Only the standard library: the CLI imports this
module only when a ``--format`` is given.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
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


# -- printing ---------------------------------------------------------------------------------


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


# -- lexing -----------------------------------------------------------------------------------


_TOKEN_RE = re.compile(r"""
    (?P<space>\s+)
  | (?P<declare>:=)
  | (?P<assign>=)
  | (?P<comma>,)
  | (?P<pipe>\|)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<char>'(?:[^'\\\n]|\\.)+')
  | (?P<number>[+-]?(?:0[xX][0-9a-fA-F_]+|(?:\d[\d_]*\.?\d*|\.\d+)(?:[eE][+-]?\d+)?))
  | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+)
  | (?P<dot>\.)
  | (?P<variable>\$[A-Za-z0-9_]*)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
""", re.VERBOSE)


@dataclass
class _Token:
    kind: str
    text: str
    pos: int


def _lex_action(src: str, start: int) -> tuple[list[_Token], int, bool]:
    """The tokens of the action from ``start`` (just past ``{{`` and any ``- ``), the offset
    past its ``}}``, and whether it ended with `` -}}``."""
    tokens: list[_Token] = []
    i = start
    while True:
        if src.startswith(" -}}", i) or src.startswith("\t-}}", i) or src.startswith(
                "\n-}}", i):
            return tokens, i + 4, True
        if src.startswith("}}", i):
            return tokens, i + 2, False
        if i >= len(src):
            raise _ParseError(src, start, "unclosed action")
        m = _TOKEN_RE.match(src, i)
        if m is None:
            raise _ParseError(src, i, f"unexpected {src[i]!r} in command")
        kind = m.lastgroup or ""
        if kind != "space":
            tokens.append(_Token(kind, m.group(), i))
        elif src.startswith("-}}", m.end()) and m.end() - i >= 1:
            return tokens, m.end() + 3, True
        i = m.end()


# -- parse tree --------------------------------------------------------------------------------


@dataclass
class _Node:
    pos: int


@dataclass
class _Text(_Node):
    text: str


@dataclass
class _Operand(_Node):
    kind: str            # field, dot, variable, literal, ident, pipeline
    value: Any = None    # literal value, identifier, variable name, or a _Pipeline
    chain: list[str] = field(default_factory=list)
    source: str = ""


@dataclass
class _Command(_Node):
    operands: list[_Operand]


@dataclass
class _Pipeline(_Node):
    commands: list[_Command]
    variables: list[str] = field(default_factory=list)
    declare: bool = True
    source: str = ""


@dataclass
class _Action(_Node):
    pipeline: _Pipeline


@dataclass
class _Branch(_Node):
    kind: str                    # if, range, with
    pipeline: _Pipeline
    body: list[_Node]
    otherwise: list[_Node] = field(default_factory=list)


class _ParseError(Exception):
    def __init__(self, src: str, pos: int, message: str) -> None:
        super().__init__(message)
        self.line = 1 + src.count("\n", 0, max(0, pos))
        self.message = message


class _ExecError(Exception):
    pass


_UNESCAPE = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "a": "\a",
             "b": "\b", "f": "\f", "v": "\v", "0": "\0"}


def _unquote(text: str) -> str:
    body = text[1:-1]
    if text[0] == "`":
        return body
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[nxt]
            out.append(chr(int(body[i + 2:i + 2 + width], 16)))
            i += 2 + width
        else:
            out.append(_UNESCAPE.get(nxt, nxt))
            i += 2
    return "".join(out)


def _number(text: str) -> int | float:
    clean = text.replace("_", "")
    if clean.lower().lstrip("+-").startswith("0x"):
        return int(clean, 16)
    if re.fullmatch(r"[+-]?\d+", clean):
        return int(clean)
    return float(clean)


class _Parser:
    def __init__(self, src: str, funcs: Mapping[str, Any]) -> None:
        self.src = src
        self.funcs = funcs

    def parse(self) -> list[_Node]:
        items = self._items()
        nodes, end = self._list(items, 0, top=True)
        if end < len(items):
            raise _ParseError(self.src, items[end][1], f"unexpected {{{{{items[end][0]}}}}}")
        return nodes

    def _items(self) -> list[tuple[str, int, Any]]:
        """The template as (kind, pos, payload): ``text`` with its text, ``action`` with its
        tokens, ``end``/``else``/``if``/``range``/``with`` with tokens after the keyword."""
        src, out, i = self.src, [], 0
        trim_next = False
        while i <= len(src):
            j = src.find("{{", i)
            text = src[i:] if j < 0 else src[i:j]
            if trim_next:
                text = text.lstrip(" \t\r\n")
            start = j + 2
            trim_prev = j >= 0 and src[start:start + 2] in ("- ", "-\t", "-\n", "-\r")
            if trim_prev:
                text = text.rstrip(" \t\r\n")
            if text:
                out.append(("text", i, text))
            if j < 0:
                break
            if trim_prev:
                start += 2
            if src.startswith("/*", start):
                close = src.find("*/", start)
                if close < 0:
                    raise _ParseError(src, start, "unclosed comment")
                after = close + 2
                m = re.match(r"\s*(-)?}}", src[after:])
                if not m:
                    raise _ParseError(src, start, "comment ends before closing delimiter")
                trim_next, i = bool(m.group(1)), after + m.end()
                continue
            tokens, i, trim_next = _lex_action(src, start)
            if not tokens:
                raise _ParseError(src, start, "missing value for command")
            head = tokens[0]
            if head.kind == "ident" and head.text in ("end", "else", "if", "range", "with",
                                                      "break", "continue", "define",
                                                      "template", "block"):
                out.append((head.text, head.pos, tokens[1:]))
            else:
                out.append(("action", head.pos, tokens))
        return out

    def _list(self, items: list[tuple[str, int, Any]], k: int,
              top: bool = False) -> tuple[list[_Node], int]:
        nodes: list[_Node] = []
        while k < len(items):
            kind, pos, payload = items[k]
            if kind == "text":
                nodes.append(_Text(pos, payload))
            elif kind == "action":
                nodes.append(_Action(pos, self._pipeline(payload, pos, allow_decl=True)))
            elif kind in ("if", "range", "with"):
                node, k = self._branch(items, k)
                nodes.append(node)
                continue
            elif kind in ("end", "else"):
                if top:
                    raise _ParseError(self.src, pos, f"unexpected {{{{{kind}}}}}")
                return nodes, k
            else:
                raise _ParseError(self.src, pos, f"{{{{{kind}}}}} is not supported")
            k += 1
        if not top:
            raise _ParseError(self.src, len(self.src), "unexpected EOF")
        return nodes, k

    def _branch(self, items: list[tuple[str, int, Any]], k: int,
                head: tuple[str, int, Any] | None = None) -> tuple[_Branch, int]:
        kind, pos, payload = head or items[k]
        if not payload:
            raise _ParseError(self.src, pos, f"missing value for {kind}")
        node = _Branch(pos, kind, self._pipeline(payload, pos, allow_decl=True), [])
        node.body, k = self._list(items, k + 1)
        end_kind, end_pos, end_payload = items[k]
        if end_kind == "else":
            first = end_payload[0] if end_payload else None
            if first is not None and first.kind == "ident" and first.text in ("if", "with"):
                # {{else if ...}}: a nested branch that shares our {{end}}
                nested, k = self._branch(items, k, (first.text, end_pos, end_payload[1:]))
                node.otherwise = [nested]
                return node, k
            if end_payload:
                raise _ParseError(self.src, end_pos, "unexpected tokens after {{else}}")
            node.otherwise, k = self._list(items, k + 1)
            end_kind, end_pos, end_payload = items[k]
        if end_kind != "end":
            raise _ParseError(self.src, end_pos, f"expected end; found {{{{{end_kind}}}}}")
        if end_payload:
            raise _ParseError(self.src, end_pos, "unexpected tokens after {{end}}")
        return node, k + 1

    def _pipeline(self, tokens: list[_Token], pos: int, allow_decl: bool) -> _Pipeline:
        source = self.src[tokens[0].pos:tokens[-1].pos + len(tokens[-1].text)] if tokens else ""
        variables: list[str] = []
        declare = True
        rest = tokens
        if allow_decl:
            # $x := ..., $x = ..., $i, $v := ...
            names, j = [], 0
            while j < len(rest) and rest[j].kind == "variable":
                names.append(rest[j].text)
                if j + 1 < len(rest) and rest[j + 1].kind == "comma":
                    j += 2
                    continue
                j += 1
                break
            if names and j < len(rest) and rest[j].kind in ("declare", "assign"):
                variables, declare, rest = names, rest[j].kind == "declare", rest[j + 1:]
        commands: list[_Command] = []
        current: list[_Operand] = []
        j = 0
        while j < len(rest):
            tok = rest[j]
            if tok.kind == "pipe":
                if not current:
                    raise _ParseError(self.src, tok.pos, "missing command before |")
                commands.append(_Command(current[0].pos, current))
                current = []
                j += 1
                continue
            operand, j = self._operand(rest, j)
            current.append(operand)
        if not current:
            raise _ParseError(self.src, pos, "missing value for command")
        commands.append(_Command(current[0].pos, current))
        for cmd in commands[1:]:
            first = cmd.operands[0]
            if first.kind not in ("ident", "field", "variable") and not (
                    first.kind == "pipeline"):
                raise _ParseError(self.src, first.pos,
                                  "non executable command in pipeline stage")
        return _Pipeline(pos, commands, variables, declare, source)

    def _operand(self, tokens: list[_Token], j: int) -> tuple[_Operand, int]:
        tok = tokens[j]
        kind = tok.kind
        if kind == "lparen":
            depth, k = 1, j + 1
            while k < len(tokens) and depth:
                depth += {"lparen": 1, "rparen": -1}.get(tokens[k].kind, 0)
                k += 1
            if depth:
                raise _ParseError(self.src, tok.pos, "unclosed left paren")
            inner = self._pipeline(tokens[j + 1:k - 1], tok.pos, allow_decl=False)
            op = _Operand(tok.pos, "pipeline", inner, source=f"({inner.source})")
            j = k
            if j < len(tokens) and tokens[j].kind == "field" and tokens[j].pos == \
                    tokens[j - 1].pos + 1:
                op.chain = tokens[j].text[1:].split(".")
                op.source += tokens[j].text
                j += 1
            return op, j
        if kind == "field":
            return _Operand(tok.pos, "field", chain=tok.text[1:].split("."),
                            source=tok.text), j + 1
        if kind == "dot":
            return _Operand(tok.pos, "dot", source="."), j + 1
        if kind == "variable":
            op = _Operand(tok.pos, "variable", tok.text, source=tok.text)
            j += 1
            if j < len(tokens) and tokens[j].kind == "field" and tokens[j].pos == \
                    tok.pos + len(tok.text):
                op.chain = tokens[j].text[1:].split(".")
                op.source += tokens[j].text
                j += 1
            return op, j
        if kind in ("string", "raw"):
            try:
                value = _unquote(tok.text)
            except (ValueError, IndexError):
                raise _ParseError(self.src, tok.pos, f"invalid syntax: {tok.text}") from None
            return _Operand(tok.pos, "literal", value, source=tok.text), j + 1
        if kind == "char":
            return _Operand(tok.pos, "literal", ord(_unquote(tok.text)[0]),
                            source=tok.text), j + 1
        if kind == "number":
            try:
                value = _number(tok.text)
            except ValueError:
                raise _ParseError(self.src, tok.pos, f"bad number syntax: {tok.text!r}") \
                    from None
            return _Operand(tok.pos, "literal", value, source=tok.text), j + 1
        if kind == "ident":
            if tok.text in ("true", "false"):
                return _Operand(tok.pos, "literal", tok.text == "true", source=tok.text), j + 1
            if tok.text == "nil":
                return _Operand(tok.pos, "literal", None, source="nil"), j + 1
            if tok.text not in self.funcs:
                raise _ParseError(self.src, tok.pos, f'function "{tok.text}" not defined')
            return _Operand(tok.pos, "ident", tok.text, source=tok.text), j + 1
        raise _ParseError(self.src, tok.pos, f"unexpected {tok.text!r} in command")


# -- functions ----------------------------------------------------------------------------------


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


# -- execution ----------------------------------------------------------------------------------


class _NoValue:
    pass


_NONE = _NoValue()


class _Executor:
    def __init__(self, src: str, root: Any, funcs: Mapping[str, Callable[..., Any]],
                 missing_key_error: bool, lenient_keys: frozenset[str]) -> None:
        self.src = src
        self.funcs = funcs
        self.missing_key_error = missing_key_error
        self.lenient_keys = lenient_keys
        self.scopes: list[dict[str, Any]] = [{"$": root}]

    def fail(self, node: _Node, source: str, message: str) -> TemplateError:
        line_start = self.src.rfind("\n", 0, node.pos) + 1
        line = 1 + self.src.count("\n", 0, node.pos)
        return TemplateError(f'template: :{line}:{node.pos - line_start}: executing "" at '
                             f"<{source}>: {message}")

    # variables
    def get_var(self, node: _Node, name: str) -> Any:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        raise self.fail(node, name, f"undefined variable: {name}")

    def set_var(self, node: _Node, name: str, value: Any, declare: bool) -> None:
        if declare:
            self.scopes[-1][name] = value
            return
        for scope in reversed(self.scopes):
            if name in scope:
                scope[name] = value
                return
        raise self.fail(node, name, f"undefined variable: {name}")

    # walking
    def walk(self, nodes: list[_Node], dot: Any, out: list[str]) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                out.append(node.text)
            elif isinstance(node, _Action):
                value = self.pipeline(node.pipeline, dot)
                if not node.pipeline.variables:
                    out.append(to_text(value))
            elif isinstance(node, _Branch):
                self.branch(node, dot, out)

    def branch(self, node: _Branch, dot: Any, out: list[str]) -> None:
        self.scopes.append({})
        try:
            if node.kind == "range":
                self.range(node, dot, out)
                return
            value = self.pipeline(node.pipeline, dot)
            if truth(value):
                self.walk(node.body, value if node.kind == "with" else dot, out)
            else:
                self.walk(node.otherwise, dot, out)
        finally:
            self.scopes.pop()

    def range(self, node: _Branch, dot: Any, out: list[str]) -> None:
        pipe = node.pipeline
        value = self.pipeline(_Pipeline(pipe.pos, pipe.commands, source=pipe.source), dot)
        if value is None or value is MISSING:
            items: list[tuple[Any, Any]] = []
        elif isinstance(value, Mapping):
            items = [(k, value[k]) for k in sorted(value, key=str)]
        elif isinstance(value, (list, tuple)):
            items = list(enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            items = [(i, i) for i in range(value)]
        else:
            raise self.fail(node, pipe.source,
                            f"range can't iterate over {to_text(value)}")
        if not items:
            self.walk(node.otherwise, dot, out)
            return
        for key, item in items:
            if len(pipe.variables) == 1:
                self.scopes[-1][pipe.variables[0]] = item
            elif len(pipe.variables) >= 2:
                self.scopes[-1][pipe.variables[0]] = key
                self.scopes[-1][pipe.variables[1]] = item
            self.walk(node.body, item, out)

    def pipeline(self, pipe: _Pipeline, dot: Any) -> Any:
        value: Any = _NONE
        for cmd in pipe.commands:
            value = self.command(cmd, dot, value)
        for name in pipe.variables[:1]:
            self.set_var(pipe, name, value, pipe.declare)
        return value

    def command(self, cmd: _Command, dot: Any, piped: Any) -> Any:
        first, rest = cmd.operands[0], cmd.operands[1:]
        args = [self.arg(a, dot) for a in rest]
        if piped is not _NONE:
            args.append(piped)
        source = " ".join(o.source for o in cmd.operands)
        if first.kind == "ident":
            fn = self.funcs[first.value]
            try:
                return fn(*args)
            except _ExecError as exc:
                raise self.fail(first, source, str(exc)) from None
            except TypeError:
                raise self.fail(first, source, f"wrong number of args for {first.value}: "
                                f"got {len(args)}") from None
        if first.kind == "field":
            return self.chain(first, dot, first.chain, args)
        if first.kind == "variable":
            base = self.get_var(first, first.value)
            if first.chain:
                return self.chain(first, base, first.chain, args)
        elif first.kind == "pipeline":
            base = self.pipeline(first.value, dot)
            if first.chain:
                return self.chain(first, base, first.chain, args)
        else:
            base = dot if first.kind == "dot" else first.value
        if args:
            raise self.fail(first, source, f"can't give argument to non-function {first.source}")
        return base

    def arg(self, op: _Operand, dot: Any) -> Any:
        if op.kind == "ident":
            fn = self.funcs[op.value]
            try:
                return fn()
            except (TypeError, _ExecError):
                raise self.fail(op, op.source, f"wrong number of args for {op.value}: "
                                "got 0") from None
        return self.command(_Command(op.pos, [op]), dot, _NONE)

    def chain(self, node: _Operand, receiver: Any, names: list[str], args: list[Any]) -> Any:
        parent = ""
        for i, name in enumerate(names):
            last = i == len(names) - 1
            receiver = self.field(node, receiver, name, args if last else [], parent)
            parent = name
        return receiver

    def field(self, node: _Operand, receiver: Any, name: str, args: list[Any],
              parent: str) -> Any:
        source = node.source
        if isinstance(receiver, GoStruct):
            try:
                value = receiver.go_field(name)
            except KeyError:
                raise self.fail(node, source, f"can't evaluate field {name} in type "
                                f"{receiver.go_type}") from None
            if isinstance(value, Method):
                try:
                    return value.call(args)
                except _ExecError as exc:
                    raise self.fail(node, source, str(exc)) from None
            if args:
                raise self.fail(node, source,
                                f"{name} has arguments but cannot be invoked as function")
            return value
        if isinstance(receiver, Mapping):
            if args:
                raise self.fail(node, source, f"{name} is not a method but has arguments")
            if name in receiver:
                return receiver[name]
            if self.missing_key_error and parent not in self.lenient_keys:
                raise self.fail(node, source, f'map has no entry for key "{name}"')
            return MISSING
        if receiver is None or receiver is MISSING:
            raise self.fail(node, source, f"nil pointer evaluating interface {{}}.{name}")
        raise self.fail(node, source, f"can't evaluate field {name} in type "
                        f"{_go_type_name(receiver)}")


@dataclass
class Template:
    """A parsed template; ``render`` runs it over data."""

    source: str
    nodes: list[_Node]

    def render(self, data: Any, *, missing_key_error: bool = False,
               lenient_keys: frozenset[str] = frozenset(), header: bool = False) -> str:
        """The text of the template over ``data``; TemplateError when execution fails.

        ``missing_key_error``: a missing map key is an error (``docker inspect``), except in
        maps reached through a key of ``lenient_keys`` (Go maps in Docker's types: labels).
        ``header``: Docker's functions return their argument unchanged (a table's titles)."""
        funcs = {**FUNCTIONS, **_HEADER_FUNCTIONS} if header else FUNCTIONS
        out: list[str] = []
        _Executor(self.source, data, funcs, missing_key_error, lenient_keys).walk(
            self.nodes, data, out)
        return "".join(out)


def parse(source: str) -> Template:
    """The template ``source``; TemplateError (as Go words it) when it is malformed."""
    try:
        return Template(source, _Parser(source, FUNCTIONS).parse())
    except _ParseError as exc:
        raise TemplateError(f"template: :{exc.line}: {exc.message}") from None


def render(source: str, data: Any, **options: Any) -> str:
    """``parse(source).render(data, **options)``."""
    return parse(source).render(data, **options)

