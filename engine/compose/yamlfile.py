"""Deployment YAML read with PyYAML's safe loader, keeping the line of every key and item.

The loader is a ``yaml.SafeLoader`` subclass with three changes:

- scalars resolve as YAML 1.2 (the Compose reference reads YAML 1.2): ``no``, ``on`` and
  ``off`` stay strings (``restart: no``), ``22:22`` is not the sexagesimal 1342, and nothing
  turns into a date;
- composing a node checks how large the document is *once aliases are expanded* and how deep it
  nests, so a billion-laughs file stops after a few thousand nodes instead of exhausting memory
  in whatever walks the data later;
- only the tags plain data needs are accepted; ``!!python/...``, ``!!binary``, ``!!set`` and
  custom tags are refused, with their line, before anything is constructed.

``load`` returns the data (a fresh tree of dict, list, str, int, float, bool and None with
string keys, aliases copied out) and ``lines``, the 1-based line of each key path: for a mapping
entry the line of its key, for a sequence item the line where the item starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_BYTES = 1 << 20
MAX_NODES = 10_000   # nodes after alias expansion; a large deployment has a few thousand
MAX_DEPTH = 64

KeyPath = tuple[str | int, ...]

_YAML = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_YAML + t for t in ("str", "int", "float", "bool", "null")}
_MERGE_TAG = _YAML + "merge"


class YamlError(Exception):
    """The file cannot be read as plain YAML data; ``line`` is 1-based (0 when unknown)."""

    def __init__(self, line: int, message: str, path: KeyPath = ()) -> None:
        super().__init__(message)
        self.line = line
        self.message = message
        self.path = path


@dataclass
class YamlDocument:
    data: Any
    lines: dict[KeyPath, int]
    # Problems that do not stop the reading (duplicate keys): (line, path, message).
    problems: list[tuple[int, KeyPath, str]] = field(default_factory=list)


class ComposeLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 scalars and limits on expansion and nesting."""

    yaml_implicit_resolvers: dict[str | None, list[tuple[str, re.Pattern[str]]]] = {}

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._sizes: dict[int, int] = {}
        self._depth = 0
        self._total = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        alias = self.check_event(AliasEvent)
        if alias:
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None and id(target) not in self._sizes:
                # The anchor is still being composed: the alias points into itself.
                raise YamlError(event.start_mark.line + 1,
                                f"recursive alias *{event.anchor} is not allowed")
        self._depth += 1
        if self._depth > MAX_DEPTH:
            mark = self.peek_event().start_mark
            raise YamlError(mark.line + 1, f"the document nests deeper than {MAX_DEPTH} levels")
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if not alias:
            # Children are complete by now, aliases included: this is the size of the subtree
            # once every alias is expanded, found in linear time however large it is.
            if isinstance(node, MappingNode):
                size = 1 + sum(self._sizes[id(k)] + self._sizes[id(v)] for k, v in node.value)
            elif isinstance(node, SequenceNode):
                size = 1 + sum(self._sizes[id(n)] for n in node.value)
            else:
                size = 1
            self._sizes[id(node)] = size
        # The running total of the expanded document stops a bomb (or a huge file) early.
        self._total += 1 if not alias else self._sizes[id(node)]
        if self._total > MAX_NODES:
            raise YamlError(node.start_mark.line + 1,
                            f"the document has more than {MAX_NODES} values once its aliases "
                            "are expanded (an alias bomb?)")
        return node


_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^(?:[-+]?(?:0|[1-9][0-9]*)|0x[0-9a-fA-F]+|0o[0-7]+)$")
_FLOAT = re.compile(r"^(?:[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
                    r"|[-+]?[0-9]+[eE][-+]?[0-9]+|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")

_ANY = re.compile(r"")
_SCALAR_FORMS = {_YAML + "bool": _BOOL, _YAML + "int": _INT, _YAML + "null": _NULL,
                 _YAML + "float": re.compile(f"{_FLOAT.pattern}|{_INT.pattern}")}

ComposeLoader.add_implicit_resolver(_YAML + "bool", _BOOL, list("tTfF"))
ComposeLoader.add_implicit_resolver(_YAML + "int", _INT, list("-+0123456789"))
ComposeLoader.add_implicit_resolver(_YAML + "float", _FLOAT, list("-+0123456789."))
ComposeLoader.add_implicit_resolver(_YAML + "null", _NULL, ["~", "n", "N", ""])
ComposeLoader.add_implicit_resolver(_MERGE_TAG, re.compile(r"^(?:<<)$"), ["<"])


def _construct_int(loader: ComposeLoader, node: ScalarNode) -> int:
    # YAML 1.2: a leading 0 is not octal; 0o and 0x prefixes are explicit.
    return int(node.value, 0) if node.value[:2] in ("0x", "0o") else int(node.value)


ComposeLoader.add_constructor(_YAML + "int", _construct_int)


def short_tag(tag: str) -> str:
    return "!!" + tag[len(_YAML):] if tag.startswith(_YAML) else tag


def key_text(value: Any) -> str:
    """A mapping key as the Compose reference sees it (a string), whatever YAML made of it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def read_text(path: Path, what: str = "file") -> str:
    """The file's text, refusing what is too large or not UTF-8."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise YamlError(0, f"no such {what}") from None
    except OSError as exc:
        raise YamlError(0, f"cannot read the {what}: {exc.strerror or exc}") from None
    if len(raw) > MAX_BYTES:
        raise YamlError(0, f"the {what} is larger than {MAX_BYTES // (1 << 20)} MiB")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise YamlError(line, "the file is not valid UTF-8") from None


def load(path: Path) -> YamlDocument:
    """Read one YAML document from ``path``; raise ``YamlError`` when it is not plain data."""
    text = read_text(path)
    try:
        loader = ComposeLoader(text)  # the reader checks every character here already
    except yaml.reader.ReaderError as exc:
        raise YamlError(text.count("\n", 0, exc.position) + 1,
                        f"unacceptable character #x{exc.character:04x} (special characters "
                        "are not allowed)") from None
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            raise _from_yaml_error(exc) from None
        except RecursionError:
            raise YamlError(0, "the document nests too deeply") from None
        if node is None:
            raise YamlError(1, "the file is empty")
        problems: list[tuple[int, KeyPath, str]] = []
        _check_tags_and_keys(loader, node, problems)
        try:
            loader.construct_document(node)
        except yaml.MarkedYAMLError as exc:
            raise _from_yaml_error(exc) from None
        lines: dict[KeyPath, int] = {(): node.start_mark.line + 1}
        data = _plain(loader, node, (), lines)
    finally:
        loader.dispose()
    return YamlDocument(data, lines, problems)


def _from_yaml_error(exc: yaml.MarkedYAMLError) -> YamlError:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else 0
    problem = exc.problem or exc.context or "invalid YAML"
    if "'\\t'" in problem:
        return YamlError(line, "a tab character is not allowed here: YAML indents with spaces "
                               f"({problem})")
    message = problem
    if exc.context and problem.startswith("but "):  # "expected X" ... "but found Y"
        message = f"{exc.context}, {problem}"
    elif exc.context and exc.context_mark is not None and exc.problem:
        message += f" ({exc.context} at line {exc.context_mark.line + 1})"
    if isinstance(exc, yaml.scanner.ScannerError | yaml.parser.ParserError) and (
            "block" in message or "mapping values" in message):
        message += "; check the indentation"
    return YamlError(line, message)


def _check_tags_and_keys(loader: ComposeLoader, root: Node,
                         problems: list[tuple[int, KeyPath, str]]) -> None:
    """Refuse tags that are not plain data, and record duplicate keys (each node once)."""
    seen: set[int] = set()
    stack: list[tuple[Node, KeyPath]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        allowed = (_YAML + "map" if isinstance(node, MappingNode) else
                   _YAML + "seq" if isinstance(node, SequenceNode) else None)
        if node.tag != allowed and node.tag not in _SCALAR_TAGS:
            raise YamlError(node.start_mark.line + 1,
                            f"YAML tag {short_tag(node.tag)!r} is not allowed (corral reads "
                            "plain data with the safe loader)", path)
        if isinstance(node, ScalarNode) and not _SCALAR_FORMS.get(node.tag, _ANY).match(
                node.value):
            # An explicit tag on a value that is not of its kind (``!!int abc``).
            raise YamlError(node.start_mark.line + 1,
                            f"{node.value!r} is not a valid {short_tag(node.tag)}", path)
        if isinstance(node, SequenceNode):
            stack.extend((item, (*path, i)) for i, item in reversed(list(enumerate(node.value))))
            continue
        if not isinstance(node, MappingNode):
            continue
        first: dict[str, int] = {}
        children = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                children.append((value_node, path))
                continue
            if not isinstance(key_node, ScalarNode):
                raise YamlError(key_node.start_mark.line + 1,
                                "a mapping key must be a plain value, not a list or mapping",
                                path)
            if key_node.tag not in _SCALAR_TAGS:
                raise YamlError(key_node.start_mark.line + 1,
                                f"YAML tag {short_tag(key_node.tag)!r} is not allowed", path)
            key = key_text(loader.construct_object(key_node))
            line = key_node.start_mark.line + 1
            if key in first:
                problems.append((line, (*path, key),
                                 f"duplicate key {key!r} (first defined at line {first[key]})"))
            else:
                first[key] = line
            children.append((value_node, (*path, key)))
        stack.extend(reversed(children))


def _plain(loader: ComposeLoader, node: Node, path: KeyPath, lines: dict[KeyPath, int]) -> Any:
    """A fresh copy of the constructed data with string keys, recording each path's line.

    Works on the composed nodes (mappings already flattened for merge keys by the safe
    constructor) so that every alias gets its own copy and its own paths; the size limit of
    the loader bounds the work."""
    if isinstance(node, SequenceNode):
        out_list = []
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            out_list.append(_plain(loader, item, (*path, i), lines))
        return out_list
    if isinstance(node, MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = key_text(loader.construct_object(key_node))
            lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = _plain(loader, value_node, (*path, key), lines)
        return out
    return loader.construct_object(node)
