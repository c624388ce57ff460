"""A throwaway PostgreSQL server for the tests: ``initdb`` and ``pg_ctl`` in a temporary folder,
listening on a Unix socket in that folder only (no TCP port), removed when the test run ends.

The tests use it when ``SPEAKERID_TEST_POSTGRES`` names no server and PostgreSQL's server programs
are on the machine (Debian/Ubuntu: ``apt-get install postgresql``; they live in
``/usr/lib/postgresql/<version>/bin``). PostgreSQL refuses to run as root, so as root the server
runs as the ``postgres`` user (or ``nobody``).
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

DATABASE = "speakerid_test"
ROLE = "speakerid"


def server_programs() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``, or None."""
    found = shutil.which("initdb")
    candidates = ([Path(found).resolve().parent] if found else []) + [
        Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True)
    ]
    for folder in candidates:
        if all((folder / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def _version(folder: str) -> float:
    try:
        return float(Path(folder).parent.name)
    except ValueError:
        return 0.0


def _server_user() -> str | None:
    """Whom the server runs as: this user, or (as root, whom PostgreSQL refuses) postgres / nobody."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root, and there is no postgres or nobody user to run PostgreSQL as")


def start() -> str:
    """Start a server and create the test database; returns its URL. Stopped and removed at exit."""
    programs = server_programs()
    if programs is None:
        raise FileNotFoundError("PostgreSQL's server programs (initdb, pg_ctl) are not installed")
    user = _server_user()
    folder = Path(tempfile.mkdtemp(prefix="speakerid-pg-"))
    data, log = folder / "data", folder / "server.log"
    as_user: list[str] = []
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
        as_user = ["runuser", "-u", user, "--"]  # util-linux's, on every Linux that has PostgreSQL's packages
    folder.chmod(0o755)

    def run(*command: str) -> None:
        done = subprocess.run([*as_user, *command], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {(done.stderr or done.stdout).strip()[-500:]}")

    run(str(programs / "initdb"), "-D", str(data), "-U", ROLE, "-A", "trust", "-E", "UTF8", "--no-sync")
    atexit.register(_remove, programs, as_user, data, folder)
    run(
        str(programs / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(log),
        "-w",
        "-t",
        "60",
        "start",
        "-o",
        f"-k {folder} -c listen_addresses='' -c fsync=off -c max_connections=200",
    )
    url = f"postgresql://{ROLE}@/{DATABASE}?host={folder}"
    import psycopg

    with psycopg.connect(f"postgresql://{ROLE}@/postgres?host={folder}", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {DATABASE}")
    return url


def _remove(programs: Path, as_user: list[str], data: Path, folder: Path) -> None:
    subprocess.run(
        [*as_user, str(programs / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
        capture_output=True,
        timeout=60,
    )
    shutil.rmtree(folder, ignore_errors=True)
