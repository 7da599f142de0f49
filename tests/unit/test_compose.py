"""Deployment files: loading, interpolation, normalization, and a corpus of broken files that
must each be refused quickly with a message that names the line."""

from __future__ import annotations

import inspect
import json
import re
import textwrap
import time
from pathlib import Path

import jsonschema
import pytest

from engine.compose.interpolate import InterpolationError, interpolate, parse_env_file
from engine.compose.keys import parse_duration
from engine.compose.project import Project, load_project
from engine.compose.schema import ComposeError
from engine.core.engine import Engine
from engine.errors import InvalidParameter

CORPUS = Path(__file__).parent / "compose_corpus"
SCHEMA = Path(__file__).resolve().parents[2] / "engine/compose/schemas/compose-spec.json"
EXPECT = re.compile(r"^# expect: (?:line (\d+): )?(.+)$")


def write(folder: Path, text: str, name: str = "deploy.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def load(folder: Path, text: str, environ: dict[str, str] | None = None,
         **kwargs: str) -> Project:
    project = load_project(write(folder, text), environ=environ or {}, **kwargs)
    # Whatever corral accepts is a valid Compose file.
    jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).validate(project.source)
    return project


def refuse(folder: Path, text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ComposeError) as info:
        load_project(write(folder, text), environ=environ or {})
    return info.value.errors


# --- the corpus of broken files ---------------------------------------------------------------

CORPUS_FILES = sorted(CORPUS.glob("*.yaml"))


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS_FILES) >= 30


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.stem)
def test_corpus_file_is_refused(path: Path, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    expect = EXPECT.match(path.read_text().splitlines()[0] if path.read_text() else "")
    assert expect, f"{path.name} needs a first line '# expect: [line N: ]substring'"
    line, substring = expect.groups()
    monkeypatch.chdir(tmp_path)  # where a YAML tag that ran a command would leave its file
    before = sorted(CORPUS.iterdir())
    start = time.monotonic()
    with pytest.raises(ComposeError) as info:
        load_project(path, environ={})
    assert time.monotonic() - start < 1.0
    errors = info.value.errors
    assert str(info.value) == "\n".join(errors)
    matching = [e for e in errors if substring in e]
    assert matching, f"{substring!r} not in {errors}"
    if line:
        assert any(e.startswith(f"{path}:{line}: ") for e in matching), errors
    assert all(re.match(rf"{re.escape(str(CORPUS))}/[^:]+(:\d+)?: ", e) for e in errors)
    assert list(tmp_path.iterdir()) == []
    assert sorted(CORPUS.iterdir()) == before


def test_python_tag_does_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    errors = refuse(tmp_path, f"""\
        services:
          web:
            image: !!python/object/apply:os.system ["touch {marker}"]
            command: !!python/object/new:subprocess.Popen [["touch", "{marker}"]]
        """)
    assert errors[0].startswith(f"{tmp_path / 'deploy.yaml'}:3: services.web.image: YAML tag")
    assert not marker.exists()


def test_oversized_file_is_refused_at_once(tmp_path: Path) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_text("services:\n  web:\n    image: busybox\n" + "# padding\n" * 120_000)
    start = time.monotonic()
    with pytest.raises(ComposeError, match="larger than 1 MiB"):
        load_project(path, environ={})
    assert time.monotonic() - start < 1.0


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ComposeError, match="no such file"):
        load_project(tmp_path / "nope.yaml", environ={})


def test_every_error_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    errors = refuse(tmp_path, """\
        services:
          web:
            image: busybox
            build: .
            ports: ["8080:80", "70000:81"]
            restart: sometimes
            depends_on: [ghost]
          worker:
            image: busybox
            ports: ["8080:90"]
            mem_limit: lots
            healthcheck:
              test: ["CMD"]
              interval: soon
          broken:
            command: ${MISSING:?set it}
        volumes:
          data:
            driver: nfs
        """)
    f = tmp_path / "deploy.yaml"
    assert errors == [
        f"{f}:4: services.web.build is not supported",
        f'{f}:5: services.web.ports[1]: invalid port specification: "70000:81": host port '
        "must be a number from 1 to 65535",
        f"{f}:6: services.web.restart: invalid restart policy: 'sometimes'",
        f"{f}:7: services.web.depends_on[0]: service 'ghost' is not defined",
        f"{f}:10: services.worker.ports[0]: host port 8080/tcp is already published by "
        "services.web.ports[0] (line 5)",
        f"{f}:11: services.worker.mem_limit: invalid memory size: 'lots'",
        f"{f}:13: services.worker.healthcheck.test: invalid test ['CMD']: use a string, "
        '["CMD", program, args...], ["CMD-SHELL", command] or ["NONE"]',
        f"{f}:14: services.worker.healthcheck.interval: invalid duration 'soon' (use a number "
        "with a unit: 1m30s, 10s, 500ms, 1h)",
        f"{f}:15: services.broken: 'image' is required (corral does not build images)",
        f"{f}:16: services.broken.command: required variable MISSING is missing a value: "
        "set it",
        f"{f}:19: volumes.data.driver: driver 'nfs' is not supported (only local)",
    ]


def test_wrong_type_inside_a_oneof_names_the_inner_key(tmp_path: Path) -> None:
    errors = refuse(tmp_path, """\
        services:
          web:
            image: busybox
            ports:
              - target: 80
                published: 8080
                protcol: tcp
        """)
    assert errors == [f"{tmp_path / 'deploy.yaml'}:7: services.web.ports[0].protcol: Additional "
                      "properties are not allowed ('protcol' was unexpected); did you mean "
                      "'protocol'?"]


# --- good files -------------------------------------------------------------------------------

def test_environment_list_map_env_file_and_bare_keys(tmp_path: Path) -> None:
    (tmp_path / "app.env").write_text(textwrap.dedent("""\
        # comment
        export FROM_FILE=one
        QUOTED="a b # not a comment"
        SINGLE='$literal'
        OVERRIDDEN=file
        INHERITED
        """))
    p = load(tmp_path, """\
        services:
          a:
            image: busybox
            env_file: app.env
            environment:
              - OVERRIDDEN=list
              - INHERITED
              - NOT_SET_ANYWHERE
              - EMPTY=
          b:
            image: busybox
            env_file:
              - path: ./optional.env
                required: false
            environment:
              NUMBER: 3
              FLAG: true
              NOTHING:
              INHERITED:
        """, environ={"INHERITED": "from-env"})
    assert p.services["a"].environment == {
        "FROM_FILE": "one", "QUOTED": "a b # not a comment", "SINGLE": "$literal",
        "OVERRIDDEN": "list", "INHERITED": "from-env", "EMPTY": ""}
    assert p.services["b"].environment == {"NUMBER": "3", "FLAG": "true",
                                           "INHERITED": "from-env"}


def test_interpolation_forms_and_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TAG=1.36\nFROM_DOTENV='dotenv'\nSHADOWED=dotenv\n")
    p = load(tmp_path, """\
        services:
          web:
            image: busybox:${TAG}
            environment:
              PLAIN: $FROM_DOTENV
              SHADOWED: ${SHADOWED}
              COLON_DEFAULT: ${EMPTY:-fallback}
              DASH_DEFAULT: ${EMPTY-fallback}
              UNSET_DEFAULT: ${UNSET-fallback}
              NESTED: ${UNSET:-${TAG}}
              ALT: ${TAG:+set}
              ALT_EMPTY: ${EMPTY:+set}
              PLUS: ${EMPTY+set}
              REQUIRED: ${TAG:?needed}
              REQUIRED_EMPTY_OK: ${EMPTY?needed}
              DOLLAR: $$HOME and $${TAG}
              LONE: cost $5
              MISSING: x${NOT_SET}y
        """, environ={"EMPTY": "", "SHADOWED": "environ"})
    env = p.services["web"].environment
    assert p.services["web"].image == "busybox:1.36"
    assert env == {
        "PLAIN": "dotenv", "SHADOWED": "environ", "COLON_DEFAULT": "fallback",
        "DASH_DEFAULT": "", "UNSET_DEFAULT": "fallback", "NESTED": "1.36", "ALT": "set",
        "ALT_EMPTY": "", "PLUS": "set", "REQUIRED": "1.36", "REQUIRED_EMPTY_OK": "",
        "DOLLAR": "$HOME and ${TAG}", "LONE": "cost $5", "MISSING": "xy"}
    assert p.warnings == [f"{tmp_path / 'deploy.yaml'}:18: services.web.environment.MISSING: "
                          "the variable NOT_SET is not set, defaulting to a blank string"]


@pytest.mark.parametrize(("text", "expected"), [
    ("${A}", "a"), ("$A", "a"), ("${A:-d}", "a"), ("${E:-d}", "d"), ("${E-d}", ""),
    ("${U-d}", "d"), ("${A:+x}", "x"), ("${E:+x}", ""), ("${E+x}", "x"), ("${U+x}", ""),
    ("$$A", "$A"), ("$", "$"), ("a$", "a$"), ("${U:-${A:-z}}", "a"), ("${U:-a}}", "a}"),
    ("$A_B", ""), ("${A}_B", "a_B"),
])
def test_interpolate(text: str, expected: str) -> None:
    assert interpolate(text, {"A": "a", "E": ""}.get) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("${A", "missing closing brace"), ("${}", "a variable name is expected"),
    ("${1A}", "a variable name is expected"), ("${A B}", "invalid interpolation format"),
    ("${U:?must be set}", "required variable U is missing a value: must be set"),
    ("${E:?}", "required variable E is missing a value: must be set and not empty"),
    ("${U?}", "required variable U is missing a value: must be set"),
])
def test_interpolate_errors(text: str, message: str) -> None:
    with pytest.raises(InterpolationError, match=re.escape(message)):
        interpolate(text, {"E": ""}.get)


def test_env_file_syntax() -> None:
    lines = parse_env_file('A=1\n  # c\nB = two words # comment\nC="x\\ny"\nD\n')
    assert [(e.line, e.key, e.value) for e in lines] == [
        (1, "A", "1"), (3, "B", "two words"), (4, "C", "x\ny"), (5, "D", None)]


def test_depends_on_list_and_map_and_start_order(tmp_path: Path) -> None:
    p = load(tmp_path, """\
        services:
          web:
            image: busybox
            depends_on:
              api:
                condition: service_healthy
              cache:
                condition: service_started
          api:
            image: busybox
            depends_on: [db, migrate]
            healthcheck:
              test: wget -q localhost
          migrate:
            image: busybox
            depends_on:
              db:
                condition: service_healthy
          cache:
            image: busybox
          db:
            image: busybox
            healthcheck:
              test: ["CMD-SHELL", "true"]
          lonely:
            image: busybox
            links: [db:database]
        """)
    assert p.services["web"].depends_on == {"api": "service_healthy",
                                            "cache": "service_started"}
    assert p.services["api"].depends_on == {"db": "service_started",
                                            "migrate": "service_started"}
    assert p.services["lonely"].depends_on == {"db": "service_started"}  # links order too
    assert p.start_order() == ["cache", "db", "migrate", "api", "web", "lonely"]
    assert p.stop_order() == ["lonely", "web", "api", "migrate", "db", "cache"]
    assert p.start_order(["migrate"]) == ["db", "migrate"]


def test_healthcheck_forms(tmp_path: Path) -> None:
    p = load(tmp_path, """\
        services:
          shell:
            image: busybox
            healthcheck:
              test: wget -q -O- localhost
              interval: 1m30s
              timeout: 500ms
              retries: 5
              start_period: 1h
          exec:
            image: busybox
            healthcheck:
              test: ["CMD", "true"]
          shell_list:
            image: busybox
            healthcheck:
              test: ["CMD-SHELL", "exit 0"]
          none:
            image: busybox
            healthcheck:
              test: ["NONE"]
          disabled:
            image: busybox
            healthcheck:
              disable: true
          plain:
            image: busybox
        """)
    hc = {name: s.healthcheck for name, s in p.services.items()}
    assert hc["shell"] is not None and hc["shell"].to_engine() == {
        "test": ["CMD-SHELL", "wget -q -O- localhost"], "interval": 90.0, "timeout": 0.5,
        "retries": 5, "start_period": 3600.0}
    assert hc["exec"] is not None and hc["exec"].test == ["CMD", "true"]
    assert hc["exec"].interval == 30.0 and hc["exec"].retries == 3
    assert hc["shell_list"] is not None and hc["shell_list"].test == ["CMD-SHELL", "exit 0"]
    assert hc["none"] is not None and hc["none"].disabled
    assert hc["disabled"] is not None and hc["disabled"].disabled
    assert hc["plain"] is None


def test_volumes_and_ports_short_and_long(tmp_path: Path) -> None:
    p = load(tmp_path, """\
        services:
          web:
            image: busybox
            volumes:
              - ./site:/srv:ro
              - /etc/hosts:/etc/extra-hosts
              - data:/data
              - type: bind
                source: ../shared
                target: /shared
                read_only: true
              - type: volume
                source: data
                target: /more
              - type: tmpfs
                target: /scratch
                tmpfs:
                  size: 64m
            tmpfs: /run
            ports:
              - 80
              - "8080:80"
              - 127.0.0.1:8443:443/tcp
              - "[::1]:5353:53/udp"
              - 127.0.0.1::9000
              - target: 22
                published: "2222"
              - target: 161
                published: 1161
                host_ip: 127.0.0.1
                protocol: udp
            expose: [9090, "9091/udp"]
            dns: 192.0.2.53
        volumes:
          data: {}
        """)
    s = p.services["web"]
    assert [(v.type, v.source, v.target, v.read_only, v.options) for v in s.volumes] == [
        ("bind", str(tmp_path / "site"), "/srv", True, ""),
        ("bind", "/etc/hosts", "/etc/extra-hosts", False, ""),
        ("volume", "data", "/data", False, ""),
        ("bind", str(tmp_path.parent / "shared"), "/shared", True, ""),
        ("volume", "data", "/more", False, ""),
        ("tmpfs", "", "/scratch", False, "size=64m"),
    ]
    assert s.ports == ["80/tcp", "8080:80/tcp", "127.0.0.1:8443:443/tcp", "[::1]:5353:53/udp",
                       "127.0.0.1::9000/tcp", "2222:22/tcp", "127.0.0.1:1161:161/udp"]
    assert s.tmpfs == ["/run"] and s.expose == ["9090/tcp", "9091/udp"]
    assert s.dns == ["192.0.2.53"]


def test_everything_else_and_the_engine_arguments(tmp_path: Path) -> None:
    folder = tmp_path / "My App!"
    folder.mkdir()
    p = load(folder, """\
        services:
          web:
            image: busybox
            entrypoint: /bin/sh -c
            command: ["echo hi; sleep 1"]
            working_dir: /srv
            user: "1000:1000"
            hostname: web.local
            networks:
              front:
                ipv4_address: 10.7.0.10
              back:
            restart: on-failure:3
            stop_signal: SIGINT
            stop_grace_period: 1m30s
            mem_limit: 64m
            cpus: 0.5
            cpu_shares: 512
            pids_limit: 100
            shm_size: 128m
            labels: [tier=front, marker]
            tty: true
            stdin_open: "true"
            read_only: true
            ipc: shareable
            links: [db]
          db:
            image: busybox
            container_name: the-db
            command: sleep 1000
            restart: no
            labels:
              com.example.role: db
            networks: [back]
          sidecar:
            image: busybox
            network_mode: service:web
            ipc: service:web
        networks:
          front:
            driver: bridge
            ipam:
              config:
                - subnet: 10.7.0.0/24
                  gateway: 10.7.0.1
          back:
        """)
    assert p.name == "myapp"
    web, db, sidecar = p.services["web"], p.services["db"], p.services["sidecar"]
    assert web.container_command == ["/bin/sh", "-c", "echo hi; sleep 1"]
    assert db.container_command == ["sleep", "1000"] and sidecar.container_command is None
    assert db.restart == "no"  # YAML 1.2: a bare no is a string, as in Compose
    assert web.mem_limit == 64 << 20 and web.shm_size == 128 << 20
    assert web.stop_grace_period == 90.0 and web.cpus == 0.5
    assert web.labels == {"tier": "front", "marker": ""}
    assert (web.tty, web.stdin_open, web.read_only) == (True, True, True)
    assert sidecar.depends_on == {"web": "service_started"} and sidecar.networks == {}
    assert p.networks["front"].subnet == "10.7.0.0/24"
    assert p.networks["front"].gateway == "10.7.0.1"
    assert set(p.networks) == {"front", "back"}  # no service uses the default network
    assert p.start_order() == ["db", "web", "sidecar"]

    kwargs = p.create_kwargs("web")
    assert set(kwargs) <= set(inspect.signature(Engine.create).parameters)
    assert kwargs["name"] == "myapp-web-1" and kwargs["network"] == "myapp_front"
    assert kwargs["ip"] == "10.7.0.10" and kwargs["links"] == ["the-db:db"]
    assert kwargs["stop_timeout"] == 90 and kwargs["memory"] == 64 << 20
    assert kwargs["restart"] == "on-failure:3" and kwargs["interactive"] is True
    assert p.create_kwargs("sidecar")["network"] == "container:myapp-web-1"
    assert p.create_kwargs("sidecar")["ipc"] == "container:myapp-web-1"
    assert p.create_kwargs("db")["name"] == "the-db"


def test_project_name_sources(tmp_path: Path) -> None:
    text = "services:\n  web:\n    image: busybox\n"
    assert load(tmp_path, text, project_name="given").name == "given"
    assert load(tmp_path, "name: from-file\n" + text).name == "from-file"
    assert load(tmp_path, "name: from-file\n" + text, project_name="given").name == "given"
    p = load(tmp_path, text)
    assert p.name == re.sub(r"[^a-z0-9_-]", "", tmp_path.name.lower()).lstrip("_-")
    assert p.networks["default"].name == "default"
    assert p.services["web"].networks == {"default": p.services["web"].networks["default"]}


def test_yaml_anchors_merge_keys_and_extensions(tmp_path: Path) -> None:
    p = load(tmp_path, """\
        x-common: &common
          image: busybox
          restart: always
          environment:
            SHARED: "1"
        services:
          a:
            <<: *common
          b:
            <<: *common
            restart: unless-stopped
            x-note: ignored
            ports:
              - 22:22
        """)
    assert p.services["a"].restart == "always" and p.services["b"].restart == "unless-stopped"
    assert p.services["a"].environment == p.services["b"].environment == {"SHARED": "1"}
    assert p.services["b"].ports == ["22:22/tcp"]  # not the sexagesimal 1342 of YAML 1.1


def test_version_key_is_a_warning(tmp_path: Path) -> None:
    p = load(tmp_path, 'version: "3.8"\nservices:\n  web:\n    image: busybox\n')
    assert p.warnings == [f"{tmp_path / 'deploy.yaml'}:1: version: the attribute is "
                          "obsolete and ignored"]


def test_loading_creates_nothing(tmp_path: Path) -> None:
    write(tmp_path, "services:\n  web:\n    image: busybox\n    volumes: [./data:/data]\n")
    before = sorted(tmp_path.rglob("*"))
    load_project(tmp_path / "deploy.yaml", environ={})
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize(("text", "seconds"), [
    ("10s", 10.0), ("1m30s", 90.0), ("500ms", 0.5), ("1h", 3600.0), ("1.5s", 1.5), ("0", 0.0),
    ("2h45m", 9900.0), ("100us", 1e-4),
])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["10", "", "1d", "s", "1m 30s", "-1s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(InvalidParameter, match="invalid duration"):
        parse_duration(text)


def test_security_opt_profile_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "p.json").write_text('{"defaultAction": "SCMP_ACT_ALLOW"}')
    p = load(tmp_path, """\
        services:
          a:
            image: busybox
            security_opt: ["seccomp=profiles/p.json", "no-new-privileges:true"]
          b:
            image: busybox
            security_opt: [seccomp=unconfined]
        """)
    assert p.services["a"].security_opt[0] == f"seccomp={tmp_path / 'profiles' / 'p.json'}"
    assert p.create_kwargs("b")["security_opt"] == ["seccomp=unconfined"]
    errors = refuse(tmp_path, """\
        services:
          a:
            image: busybox
            security_opt:
              - seccomp=missing.json
        """)
    assert len(errors) == 1 and "deploy.yaml:5:" in errors[0] and "missing.json" in errors[0]
