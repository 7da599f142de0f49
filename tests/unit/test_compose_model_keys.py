"""The Compose keys corral took on (secrets, anonymous volumes, cap_add/cap_drop, sysctls,
``~``, platform, several networks): how they map onto ``Engine.create``, and that what corral
refuses of them is valid Compose (refused by corral, by name, not by the schema)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml

from engine.compose.deploy import Deployment
from engine.compose.project import load_project
from engine.compose.schema import ComposeError

CORPUS = Path(__file__).parent / "compose_corpus"
SCHEMA = Path(__file__).resolve().parents[2] / "engine/compose/schemas/compose-spec.json"
REFUSED_BY_CORRAL = ("secret_external", "secret_environment", "secret_missing_file",
                     "secret_undeclared", "platform_arm64", "sysctl_not_namespaced",
                     "sysctl_net_on_host_network", "cap_unknown", "home_of_other_user",
                     "build_without_image", "anonymous_volume_relative")


def load(folder: Path, text: str, environ: dict[str, str] | None = None):
    path = folder / "compose.yaml"
    path.write_text(textwrap.dedent(text))
    project = load_project(path, project_name="p", environ=environ or {})
    jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).validate(project.source)
    return project


@pytest.mark.parametrize("name", REFUSED_BY_CORRAL)
def test_refused_values_are_valid_compose(name: str) -> None:
    data = yaml.safe_load((CORPUS / f"{name}.yaml").read_text())
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    assert [e.message for e in validator.iter_errors(data)] == []
    with pytest.raises(ComposeError):
        load_project(CORPUS / f"{name}.yaml", environ={})


def test_build_service_gets_one_error(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    build: .\n")
    with pytest.raises(ComposeError) as info:
        load_project(tmp_path / "compose.yaml", environ={})
    assert len(info.value.errors) == 1 and "build is not supported" in info.value.errors[0]


def test_new_keys_map_onto_create(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("t")
    p = load(tmp_path, """\
        services:
          app:
            image: busybox
            platform: linux/amd64
            cap_add: [NET_ADMIN, ALL]
            cap_drop: [chown]
            sysctls: ["net.core.somaxconn=1024", "kernel.sem=250 32000 100 128"]
            volumes: ["/app/node_modules", "~/src:/src", "~:/home"]
            secrets: [token, {source: token, target: /etc/t}]
            networks:
              front: {aliases: [web]}
              back: {ipv4_address: 10.9.0.5, aliases: [api]}
        networks:
          front: {}
          back: {ipam: {config: [{subnet: 10.9.0.0/24}]}}
        secrets:
          token: {file: ./token}
        """, environ={"HOME": "/home/me"})
    kw = Deployment(None, p).create_kwargs("app")
    assert kw["cap_add"] == ["NET_ADMIN", "ALL"] and kw["cap_drop"] == ["chown"]
    assert kw["sysctls"] == {"net.core.somaxconn": "1024", "kernel.sem": "250 32000 100 128"}
    assert kw["volumes"] == ["/home/me/src:/src", "/home/me:/home",
                             f"{tmp_path}/token:/run/secrets/token:ro",
                             f"{tmp_path}/token:/etc/t:ro"]
    assert p.anonymous_volumes("app") == [("/app/node_modules", False)]
    assert kw["network"] == "p_front" and kw["aliases"] == ["app", "web"]
    assert kw["networks"] == [{"name": "p_back", "ip": "10.9.0.5", "aliases": ["app", "api"]}]


def test_stop_levels_go_from_dependents_to_dependencies(tmp_path: Path) -> None:
    p = load(tmp_path, """\
        services:
          db: {image: busybox}
          cache: {image: busybox}
          api: {image: busybox, depends_on: [db, cache]}
          web: {image: busybox, depends_on: [api]}
          worker: {image: busybox, depends_on: [db]}
        """)
    levels = Deployment(None, p)._stop_levels(["db", "cache", "api", "web", "worker", "gone"])
    assert levels == [["web", "worker", "gone"], ["api"], ["db", "cache"]]
    # every service goes after all that depend on it
    where = {s: i for i, level in enumerate(levels) for s in level}
    for name, svc in p.services.items():
        for dep in svc.depends_on:
            assert where[dep] > where[name]
