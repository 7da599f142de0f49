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

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .gofuncs import _HEADER_FUNCTIONS, FUNCTIONS, _go_type_name
from .goparse import (
    _Action,
    _Branch,
    _Command,
    _Node,
    _Operand,
    _ParseError,
    _Parser,
    _Pipeline,
    _Text,
)
from .govalues import MISSING, GoStruct, Method, TemplateError, _ExecError, to_text, truth

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

