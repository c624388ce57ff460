"""What ``pip install`` gives a user is locked in the repository, and the lock agrees with pyproject.toml.

A new torchaudio release (2.11.1) once broke every new install while CI stayed green, because
nothing was locked. Now ``constraints.txt`` fixes every version the README's commands install (it
is made by the command in its own header, which the README gives), pyproject.toml keeps honest
ranges, and this file checks that the two agree and that this environment is what the lock says.
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from conftest import README, ROOT

LOCK = ROOT / "constraints.txt"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
NAME = canonicalize_name(PROJECT["name"])


def requirements() -> list[Requirement]:
    """Every requirement pyproject.toml declares, its extras' included (not the project itself)."""
    found = [Requirement(r) for r in PROJECT["dependencies"]]
    for extra in PROJECT["optional-dependencies"].values():
        found += [r for r in map(Requirement, extra) if canonicalize_name(r.name) != NAME]
    return found


def locked() -> dict[str, list[tuple[Version, Requirement]]]:
    """The lock's pins, by distribution name: ``[(version, requirement with its marker)]``."""
    pins: dict[str, list[tuple[Version, Requirement]]] = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==", line
        pins.setdefault(canonicalize_name(req.name), []).append((Version(spec.version), req))
    return pins


def applies(req: Requirement, python: str) -> bool:
    env = {
        **default_environment(),
        "python_version": python,
        "python_full_version": python + ".0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
    }
    return req.marker is None or req.marker.evaluate(env)


def test_the_lock_pins_everything_pyproject_asks_within_its_ranges():
    pins = locked()
    assert PROJECT["requires-python"] == ">=3.11,<3.14"  # the versions the lock resolves for
    for python in ("3.11", "3.12", "3.13"):
        for req in requirements():
            if not applies(req, python):
                continue
            versions = [v for v, pin in pins.get(canonicalize_name(req.name), []) if applies(pin, python)]
            assert len(versions) == 1, f"{req.name} on Python {python}: {versions or 'not in constraints.txt'}"
            assert req.specifier.contains(versions[0], prereleases=True), (
                f"constraints.txt pins {req.name}=={versions[0]}, outside pyproject.toml's {req.specifier}"
            )


def test_ranges_exclude_the_releases_known_to_break():
    wanted = {canonicalize_name(r.name): r.specifier for r in requirements()}
    assert not wanted["torchaudio"].contains("2.11.1")  # a py3-none wheel needing symbols torch 2.11.0 lacks
    assert wanted["torch"].contains("2.11.0") and wanted["torchaudio"].contains("2.11.0")  # the pair that works
    assert not wanted["torch"].contains("2.12.0")  # torchaudio 2.11.0 is built against torch 2.11.0 alone
    text = (ROOT / "pyproject.toml").read_text()
    for name in ("torch", "torchaudio"):  # the reason sits beside the pin
        line = next(i for i, row in enumerate(text.splitlines()) if row.strip().startswith(f'"{name}=='))
        assert "#" in "\n".join(text.splitlines()[line - 6 : line + 1]), name


def test_this_environment_is_what_the_lock_says():
    """The README's install and test commands install with ``-c constraints.txt``: every locked
    package present here has the locked version."""
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    wrong = []
    for name, pins in locked().items():
        try:
            have = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            continue  # another platform's or another extra's
        want = [v for v, pin in pins if applies(pin, python)]
        if want and have.public != want[0].public:
            wrong.append(f"{name} {have} (locked: {want[0]})")
    assert not wrong, wrong


def test_the_readme_installs_with_the_lock_and_says_how_to_remake_it():
    installs = re.findall(r"pip install [^\n`]*", README.read_text())
    assert installs
    for line in installs:
        if " -e " in f" {line} ":
            assert "-c constraints.txt" in line, line
    header = LOCK.read_text().splitlines()[:3]
    command = next(line.strip("# ").strip() for line in header if "uv pip compile" in line)
    assert command in README.read_text(), command
