"""The Go-template subset (engine.cli.gotemplate): output and errors as Go's text/template."""

from __future__ import annotations

import pytest

from engine.cli.gofuncs import go_quote
from engine.cli.gotemplate import render
from engine.cli.govalues import GoStruct, Method, TemplateError, go_float

INSPECT = {
    "Id": "abc",
    "Name": "/web",
    "State": {"Status": "running", "Pid": 42, "Running": True, "ExitCode": 0},
    "Config": {"Labels": {"k": "v", "tier": "<front>"}, "Env": ["A=1", "B=2"],
               "Healthcheck": None},
    "NetworkSettings": {"IPAddress": "10.0.0.2", "Ports": {}},
}


@pytest.mark.parametrize("template, expected", [
    ("{{.State.Status}}", "running"),
    ("{{.State.Pid}}", "42"),
    ("{{.State.Running}}", "true"),
    ("{{.NetworkSettings.IPAddress}}", "10.0.0.2"),
    ('{{index .Config.Labels "k"}}', "v"),
    ('{{index .Config.Labels "missing"}}', ""),
    ("{{index .Config.Env 1}}", "B=2"),
    ("{{json .Config.Labels}}", '{"k":"v","tier":"\\u003cfront\\u003e"}'),
    ("{{json .State.Running}}", "true"),
    ("{{.Config.Healthcheck}}", "<nil>"),
    ("{{.Config.Labels}}", "map[k:v tier:<front>]"),
    ("{{.Config.Env}}", "[A=1 B=2]"),
    ("{{range .Config.Env}}[{{.}}]{{end}}", "[A=1][B=2]"),
    ("{{range $i, $e := .Config.Env}}{{$i}}:{{$e}} {{end}}", "0:A=1 1:B=2 "),
    ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}", "k=v;tier=<front>;"),
    ("{{range .NetworkSettings.Ports}}x{{else}}none{{end}}", "none"),
    ('{{if eq .State.Status "running"}}up{{else}}down{{end}}', "up"),
    ('{{if ne .State.Status "running"}}a{{else if .State.Running}}b{{else}}c{{end}}', "b"),
    ("{{with .State}}{{.Status}}/{{$.Name}}{{end}}", "running//web"),
    ("{{$n := .Name}}{{$n}}{{$n = .Id}} {{$n}}", "/web abc"),
    ("{{.Name | printf \"%q\"}}", '"/web"'),
    ('{{printf "%s-%05d|%-4s|" .Id .State.Pid "x"}}', "abc-00042|x   |"),
    ("{{upper .State.Status}} {{lower \"AB\"}} {{title \"a b\"}}", "RUNNING ab A B"),
    ('{{join .Config.Env ","}} {{split "a:b" ":"}}', "A=1,B=2 [a b]"),
    ('{{truncate .State.Status 3}}{{pad "x" 1 2}}|', "run x  |"),
    ("{{len .Config.Env}} {{len .Name}}", "2 4"),
    ("{{and 1 0}} {{or 0 \"\" \"x\"}} {{not .State.Running}}", "0 x false"),
    ("{{lt 1 2}} {{ge 2.5 3}} {{eq .State.Pid 1 42}}", "true false true"),
    ("a  {{- .Id -}}  b", "aabcb"),
    ("{{/* a comment */}}x", "x"),
    ("{{(index .Config.Env 0)}}", "A=1"),
    ("{{slice .Id 1}}", "bc"),
    ("{{print 1 2 \"a\" 3}}", "1 2a3"),
    ("{{`raw\\n`}}", "raw\\n"),
])
def test_renders_as_go(template: str, expected: str) -> None:
    assert render(template, INSPECT) == expected


def test_missing_key_is_no_value_unless_asked_to_fail() -> None:
    assert render("{{.Nope}}", INSPECT) == "<no value>"
    with pytest.raises(TemplateError) as info:
        render("x {{.State.Nope}}", INSPECT, missing_key_error=True)
    assert str(info.value) == ('template: :1:4: executing "" at <.State.Nope>: '
                               'map has no entry for key "Nope"')
    # Go maps in Docker's types (labels) stay lenient
    assert render("{{.Config.Labels.zz}}", INSPECT, missing_key_error=True,
                  lenient_keys=frozenset({"Labels"})) == "<no value>"


class _Row(GoStruct):
    go_type = "*formatter.ContainerContext"

    def __init__(self) -> None:
        pass

    def go_field(self, name: str) -> object:
        if name == "Label":
            return Method(lambda key: {"a": "1"}.get(key, ""), "Label")
        return {"ID": "abc", "Names": "web"}[name]

    def go_json(self) -> dict:
        return {"ID": "abc", "Names": "web"}


def test_structs_fields_methods_and_unknown_fields() -> None:
    row = _Row()
    assert render('{{.ID}} {{.Label "a"}}|{{.Label "b"}}|', row) == "abc 1||"
    assert render("{{json .}}", row) == '{"ID":"abc","Names":"web"}'
    with pytest.raises(TemplateError) as info:
        render("{{.Names}}\n{{.Foo}}", row)
    assert str(info.value) == ('template: :2:2: executing "" at <.Foo>: can\'t evaluate '
                               'field Foo in type *formatter.ContainerContext')
    with pytest.raises(TemplateError, match="wrong number of args for Label"):
        render("{{.Label}}", row)
    with pytest.raises(TemplateError, match="Names has arguments"):
        render('{{.Names "x"}}', row)


@pytest.mark.parametrize("template, message", [
    ("{{.Id", "template: :1: unclosed action"),
    ("{{if .Id}}x", "template: :1: unexpected EOF"),
    ("{{end}}", "template: :1: unexpected {{end}}"),
    ("{{nosuch .Id}}", 'template: :1: function "nosuch" not defined'),
    ("a\n{{.Id | }}", "template: :2: missing value for command"),
    ("{{define \"x\"}}{{end}}", "template: :1: {{define}} is not supported"),
])
def test_parse_errors_as_go(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        render(template, INSPECT)
    assert str(info.value) == message


def test_execution_errors() -> None:
    with pytest.raises(TemplateError, match="index out of range: 5"):
        render("{{index .Config.Env 5}}", INSPECT)
    with pytest.raises(TemplateError, match="incompatible types for comparison"):
        render('{{lt .State.Pid "a"}}', INSPECT)
    with pytest.raises(TemplateError, match="can't evaluate field X in type string"):
        render("{{.Name.X}}", INSPECT)
    with pytest.raises(TemplateError, match="undefined variable"):
        render("{{$x}}", INSPECT)


def test_go_number_and_string_formatting() -> None:
    assert [go_float(f) for f in (1e6, 1234567.0, 100000.0, 0.5, 3.0, 1e-5, -2.25)] == [
        "1e+06", "1.234567e+06", "100000", "0.5", "3", "1e-05", "-2.25"]
    assert go_quote('sh -c "echo\tx"\n') == '"sh -c \\"echo\\tx\\"\\n"'
    assert go_quote("caf\u00e9 \x01") == '"caf\u00e9 \\x01"'
