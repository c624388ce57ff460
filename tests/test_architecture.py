"""The shape of the code: layers are folders and imports point down (one import-linter ``layers``
contract over packages in pyproject.toml), every module sits in a layer, all SQL lives in store/,
the store's classes stay narrow, modules stay small enough to read in one sitting, and ruff's
lint and format hold."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("enroll", "speakerid", "store")
SQL = re.compile(
    r"\b(SELECT\s+[\w*(].*\bFROM|INSERT\s+INTO|DELETE\s+FROM|UPDATE\s+\w+\s+SET|CREATE\s+(TABLE|INDEX)|PRAGMA\s+\w)",
    re.IGNORECASE,
)
MAX_LINES = 400
MAX_PUBLIC_METHODS = 25  # per class in store/: a backend implements the roles one at a time


def sources(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(contracts())} kept, 0 broken" in done.stdout, done.stdout


def test_one_layers_contract_names_packages_and_covers_every_module():
    """Layers are packages (folders), never hand-kept module lists: a new module is covered by the
    folder it is put in. Only the facade (api.py) and the package's front door sit outside a folder."""
    (layers,) = [c for c in contracts() if c["type"] == "layers"]
    names = [name for entry in layers["layers"] for name in re.split(r"\s*[|:]\s*", entry)]
    for name in names:
        path = ROOT / name.replace(".", "/")
        assert (path / "__init__.py").is_file() or name == "speakerid.api", f"{name} is not a package"
    for package in (ROOT / "speakerid").iterdir():
        if package.is_dir() and (package / "__init__.py").is_file():
            assert f"speakerid.{package.name}" in names, f"speakerid/{package.name}/ is in no layer"
    loose = sorted(p.name for p in (ROOT / "speakerid").glob("*.py"))
    assert loose == ["__init__.py", "api.py"], loose
    for package in [ROOT / n.replace(".", "/") for n in names if n != "speakerid.api"]:
        doc = (package / "__init__.py").read_text()
        assert doc.lstrip().startswith('"""') and len(doc.split('"""')[1].split()) >= 25, f"{package}: say what it is"


def test_no_sql_outside_the_store():
    found = [
        f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
        for p in sources("speakerid", "enroll")
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if SQL.search(line)
    ]
    assert not found, found
    assert any(SQL.search(p.read_text()) for p in sources("store"))  # the pattern does find SQL where it is


def test_the_stores_classes_are_narrow():
    import importlib
    import pkgutil

    import store

    wide = {}
    for module in pkgutil.iter_modules(store.__path__):
        mod = importlib.import_module(f"store.{module.name}")
        for name, cls in inspect.getmembers(mod, inspect.isclass):
            if cls.__module__ == mod.__name__:
                public = [n for n, v in inspect.getmembers(cls) if not n.startswith("_") and callable(v)]
                if len(public) > MAX_PUBLIC_METHODS:
                    wide[f"{mod.__name__}.{name}"] = len(public)
    assert not wide, wide


def test_modules_are_small():
    long = {
        str(p.relative_to(ROOT)): n for p in sources(*PACKAGES) if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, long


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_ruff_holds(command):
    ruff = Path(sys.executable).with_name("ruff")
    done = subprocess.run([str(ruff), *command, "."], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]
