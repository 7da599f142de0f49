"""A template's lexer and parser: text and actions into a tree of nodes, with Go's messages.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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
