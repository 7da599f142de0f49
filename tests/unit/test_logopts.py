"""engine.store.logopts: Docker's --log-opt max-size/max-file, checked with the option named; the
root's default; compose's ``logging``."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from engine.compose.project import load_project
from engine.compose.schema import ComposeError
from engine.errors import InvalidParameter
from engine.store import logopts


@pytest.mark.parametrize(("value", "size"), [
    ("10m", 10 << 20), ("512k", 512 << 10), ("1g", 1 << 30), ("100", 100), ("10MiB", 10 << 20),
    ("1.5k", 1536), ("2 mb", 2 << 20), ("-1", None)])
def test_sizes(value: str, size: int | None) -> None:
    assert logopts.parse_size(value) == size


@pytest.mark.parametrize(("opts", "named"), [
    ({"max-size": "ten"}, "max-size='ten'"),
    ({"max-size": "0"}, "max-size='0'"),
    ({"max-size": "10m", "max-file": "0"}, "max-file='0'"),
    ({"max-size": "10m", "max-file": "three"}, "max-file='three'"),
    ({"compress": "true"}, "unknown log option 'compress'"),
])
def test_bad_options_name_the_option(opts: dict[str, str], named: str) -> None:
    with pytest.raises(InvalidParameter, match=named.replace("(", r"\(")):
        logopts.check(opts)


def test_defaults_merge_key_by_key(tmp_path: Path) -> None:
    assert logopts.for_create(None, "", tmp_path) == {"max-size": "10m", "max-file": "3"}
    assert logopts.for_create({"max-file": "5"}, "json-file", tmp_path) == {
        "max-size": "10m", "max-file": "5"}
    assert logopts.for_create({"max-size": "-1"}, None, tmp_path) == {"max-size": "-1"}
    with pytest.raises(InvalidParameter, match="max-file='3': max-file needs max-size"):
        logopts.for_create({"max-size": "-1", "max-file": "3"}, None, tmp_path)
    (tmp_path / "daemon.json").write_text(json.dumps({"log-opts": {"max-size": "1m"}}))
    assert logopts.for_create({}, "", tmp_path) == {"max-size": "1m"}
    assert logopts.limits({"max-size": "1m"}) == logopts.LogLimits(1 << 20, 1)
    (tmp_path / "daemon.json").write_text(json.dumps({"log-opts": {"max-file": "x"}}))
    with pytest.raises(InvalidParameter, match="daemon.json: log-opts: .*max-file='x'"):
        logopts.for_create({}, "", tmp_path)


def test_other_drivers_are_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameter, match="log driver 'syslog' is not supported"):
        logopts.for_create({}, "syslog", tmp_path)


def test_cli_items() -> None:
    assert logopts.parse_cli(["max-size=1m", "max-file=2", "max-size=2m"]) == {
        "max-size": "2m", "max-file": "2"}
    with pytest.raises(InvalidParameter, match="'max-size': expected KEY=VALUE"):
        logopts.parse_cli(["max-size"])


def _compose(tmp_path: Path, logging: str) -> Path:
    path = tmp_path / "deploy.yaml"
    path.write_text(textwrap.dedent("""\
        services:
          web:
            image: busybox
            logging:
        """) + textwrap.indent(textwrap.dedent(logging), "      "))
    return path


def test_compose_logging_options(tmp_path: Path) -> None:
    project = load_project(_compose(tmp_path, """\
        driver: json-file
        options:
          max-size: 5m
          max-file: "4"
        """), environ={})
    assert project.create_kwargs("web")["log_opts"] == {"max-size": "5m", "max-file": "4"}


def test_compose_logging_refusals_name_the_line(tmp_path: Path) -> None:
    with pytest.raises(ComposeError) as info:
        load_project(_compose(tmp_path, """\
            driver: syslog
            options:
              max-size: ten
            """), environ={})
    errors = "\n".join(info.value.errors)
    assert "deploy.yaml:5: services.web.logging.driver: log driver 'syslog' is not " \
        "supported" in errors
    assert "deploy.yaml:6: services.web.logging.options: invalid log option " \
        "max-size='ten'" in errors
