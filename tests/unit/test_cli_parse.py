"""The CLI's parsing and formatting, without root and without an engine."""

from __future__ import annotations

import pytest

from engine import InvalidParameter
from engine.cli.container import _env_items, _labels
from engine.cli.image import _image_name_from
from engine.cli.main import _command_of, build_parser, main
from engine.cli.output import container_status, human_duration, human_size
from engine.cli.system import _event_filter
from engine.store.events import Event


def parse(*argv: str):
    return build_parser().parse_args(list(argv))


def test_run_stops_parsing_options_at_the_image() -> None:
    a = parse("run", "-d", "--rm", "-e", "A=1", "-e", "B=2", "busybox", "sh", "-c", "exit 3")
    assert (a.detach, a.rm, a.env, a.image) == (True, True, ["A=1", "B=2"], "busybox")
    assert a.command == ["sh", "-c", "exit 3"]
    a = parse("run", "busybox", "ls", "-d", "--rm")  # the command's own flags
    assert (a.detach, a.rm, a.command) == (False, False, ["ls", "-d", "--rm"])


def test_combined_short_flags_and_docker_spellings() -> None:
    a = parse("run", "-it", "-h", "box", "-w", "/tmp", "-u", "1:1", "-m", "64m", "busybox")
    assert (a.interactive, a.tty, a.hostname, a.workdir, a.user, a.memory) == (
        True, True, "box", "/tmp", "1:1", "64m")
    assert a.command == []
    a = parse("--root", "/r", "ps", "-aq")
    assert (a.root, a.all, a.quiet) == ("/r", True, True)
    a = parse("exec", "-it", "web", "sh", "-c", "ls -l")
    assert (a.container, a.command, a.tty) == ("web", ["sh", "-c", "ls -l"], True)
    assert parse("stop", "-t", "3", "a", "b").containers == ["a", "b"]
    assert parse("image", "busybox").name == "busybox"


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run"]) == 2
    assert main(["no-such-command"]) == 2
    assert main(["--help"]) == 0
    assert "container-exited" not in capsys.readouterr().out


def test_env_takes_bare_keys_from_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_TEST_VALUE", "v")
    monkeypatch.delenv("CORRAL_TEST_UNSET", raising=False)
    assert _env_items(["A=1", "CORRAL_TEST_VALUE", "CORRAL_TEST_UNSET", "=x"], []) == [
        "A=1", "CORRAL_TEST_VALUE=v", "=x"]  # "=x" is left for the engine to refuse


def test_labels() -> None:
    assert _labels(["a=1", "b", "c=x=y"]) == {"a": "1", "b": "", "c": "x=y"}
    with pytest.raises(InvalidParameter):
        _labels(["=1"])


def test_docker_durations_and_sizes() -> None:
    assert human_duration(0.4) == "Less than a second"
    assert human_duration(1) == "1 second"
    assert human_duration(59) == "59 seconds"
    assert human_duration(61) == "About a minute"
    assert human_duration(600) == "10 minutes"
    assert human_duration(3600) == "About an hour"
    assert human_duration(5 * 3600) == "5 hours"
    assert human_duration(3 * 86400) == "3 days"
    assert human_size(0) == "0B"
    assert human_size(1_980_000) == "1.98MB"
    assert human_size(312_456) == "312kB"


def test_ps_status_column() -> None:
    now = 1_000_000_000.0
    started = "2001-09-09T01:46:30Z"  # 10 s before now
    assert container_status({"State": "running", "StartedAt": started}, now) == "Up 10 seconds"
    assert container_status({"State": "paused", "StartedAt": started}, now) == (
        "Up 10 seconds (Paused)")
    assert container_status({"State": "dead", "ExitCode": 3, "StartedAt": started,
                             "FinishedAt": "2001-09-09T01:46:35Z"}, now) == (
        "Exited (3) 5 seconds ago")
    assert container_status({"State": "created", "StartedAt": "0001-01-01T00:00:00Z"},
                            now) == "Created"


def test_image_names_from_sources() -> None:
    assert _image_name_from("/x/Alpine Root.tar.gz") == "alpine-root"
    assert _image_name_from("/x/rootfs/") == "rootfs"
    assert _image_name_from("-") == "imported"


def test_event_filters() -> None:
    ev = Event(0.0, "container", "die", "abcdef" + "0" * 58, {"name": "web"})
    assert _event_filter([])(ev)
    assert _event_filter(["event=die", "event=start"])(ev)
    assert _event_filter(["container=web"])(ev) and _event_filter(["container=abc"])(ev)
    assert not _event_filter(["event=start"])(ev)
    assert not _event_filter(["event=die", "name=db"])(ev)
    with pytest.raises(InvalidParameter):
        _event_filter(["colour=red"])


@pytest.mark.parametrize("argv", [
    ["--root", "/r", "ps", "-a"],
    ["run", "-d", "--name", "x", "-p", "8080:80", "busybox", "sleep", "1"],
    ["network", "create", "--subnet", "10.1.2.0/24", "n"],
    ["compose", "-f", "f.yaml", "ps"],
    ["--log-level=debug", "volume", "ls"],
    ["--root=/r", "rm", "-f", "a", "b"],
    ["ls"],  # an alias
])
def test_building_only_the_command_parses_alike(argv: list[str]) -> None:
    def parsed(only: str | None) -> dict:
        found = vars(build_parser(only).parse_args(argv))
        found["func"] = found["func"].__qualname__  # compose binds a new lambda per build
        return found

    assert _command_of(argv) is not None
    assert parsed(_command_of(argv)) == parsed(None)


@pytest.mark.parametrize("argv,command", [
    (["--root", "/r", "--log-level", "info", "ps"], "ps"),
    (["--root=/r", "run", "busybox"], "run"),
    (["--help"], None),
    ([], None),
    (["--root"], None),
])
def test_command_of(argv: list[str], command: str | None) -> None:
    assert _command_of(argv) == command


def test_unknown_command_still_lists_them_all(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["psx"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'psx'" in err and "'ps'" in err and "'network'" in err
