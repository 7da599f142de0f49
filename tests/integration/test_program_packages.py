"""Every program the engine runs comes from a Debian package that the Makefile installs: on a
fresh Debian 12, ``make demo`` and ``make test`` then find all of them (nft was missing once)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from engine import programs

REPO = Path(__file__).resolve().parents[2]


# what the tests themselves run, beyond the engine's programs and Debian's essential set
TEST_PROGRAMS = {"ip": "iproute2"}


def makefile_debs(variable: str = "DEBS") -> set[str]:
    """The packages of the Makefile's ``DEBS :=`` line (continuation lines included)."""
    text = (REPO / "Makefile").read_text().replace("\\\n", " ")
    match = re.search(rf"^{variable}\s*:?=(.*)$", text, re.MULTILINE)
    assert match, f"the Makefile has no {variable} line"
    return set(match.group(1).split())


def _candidates(path: str) -> list[str]:
    """The path as found, its real path, and their names before the /usr merge (dpkg knows
    /bin/busybox, not /usr/bin/busybox)."""
    out = []
    for p in (os.path.abspath(path), os.path.realpath(path)):
        out.append(p)
        if p.startswith("/usr/"):
            out.append(p[len("/usr"):])
    return list(dict.fromkeys(out))


def owning_package(path: str) -> tuple[str, str] | None:
    """(package, path dpkg knows) of the first candidate of ``path`` that dpkg knows."""
    for candidate in _candidates(path):
        r = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
        if r.returncode == 0:
            return r.stdout.split(":", 1)[0].split(",")[0].strip(), candidate
    return None


def test_the_makefile_names_each_program_s_package() -> None:
    assert {p.package for p in programs.PROGRAMS.values()} <= makefile_debs()


@pytest.mark.parametrize("name", sorted(programs.PROGRAMS))
def test_each_program_is_installed_by_a_package_the_makefile_installs(name: str) -> None:
    path = programs.find(name)
    assert path, f"{name} is not installed: `make deps` installs {programs.PROGRAMS[name].package}"
    owner = owning_package(path)
    assert owner, f"{path} belongs to no Debian package: `make test` on a fresh machine would " \
                  "not install it"
    package, known = owner
    assert package in makefile_debs(), f"{known} comes from {package}, which the Makefile's " \
                                       f"DEBS ({sorted(makefile_debs())}) does not install"
    assert package == programs.PROGRAMS[name].package


@pytest.mark.parametrize("name", sorted(TEST_PROGRAMS))
def test_the_tests_programs_come_from_packages_make_test_installs(name: str) -> None:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    assert path, f"the tests run {name}: `make test` installs {TEST_PROGRAMS[name]}"
    owner = owning_package(path)
    assert owner and owner[0] == TEST_PROGRAMS[name]
    assert owner[0] in makefile_debs("TEST_DEBS")
