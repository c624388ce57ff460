"""The shape of the code: imports point one way (import-linter's contracts in pyproject.toml), all
SQL lives in store/, and modules stay small enough to read in one sitting."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("enroll", "speakerid", "store")
SQL = re.compile(r"\b(SELECT\s+[\w*(].*\bFROM|INSERT\s+INTO|DELETE\s+FROM|UPDATE\s+\w+\s+SET|CREATE\s+(TABLE|INDEX)|PRAGMA\s+\w)",
                 re.IGNORECASE)
MAX_LINES = 400


def sources(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 kept, 0 broken" in done.stdout, done.stdout


def test_no_sql_outside_the_store():
    found = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}" for p in sources("speakerid", "enroll")
             for n, line in enumerate(p.read_text().splitlines(), 1) if SQL.search(line)]
    assert not found, found
    assert any(SQL.search(p.read_text()) for p in sources("store"))  # the pattern does find SQL where it is


def test_modules_are_small():
    long = {str(p.relative_to(ROOT)): n for p in sources(*PACKAGES) if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long
