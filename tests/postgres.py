"""A throwaway PostgreSQL server for tests (Debian's `postgresql` package), registered as
a pytest plugin by conftest.py.

``postgres_url`` is the SQLAlchemy URL (driver psycopg2, as the course installs) of an
empty database of its own for each test module, on a server that the whole session
shares: a data folder in /tmp, a Unix socket there and no TCP, trust authentication.
PostgreSQL refuses to run as root, so as root the server runs as ``nobody``.
"""
from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require

DEBIAN_BINARIES = Path("/usr/lib/postgresql")
UNPRIVILEGED = "nobody"
SUPERUSER = "grader"


def binaries() -> Path | None:
    """The folder of PostgreSQL's initdb and pg_ctl: PATH's, else Debian's newest version."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    versions = [d for d in DEBIAN_BINARIES.glob("*/bin") if (d / "initdb").exists()]
    versions.sort(key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0)
    return versions[-1] if versions else None


def _as_server_user() -> dict[str, object]:
    """subprocess arguments that run a command as PostgreSQL may: ``nobody`` when root."""
    if os.geteuid() != 0:
        return {}
    user = pwd.getpwnam(UNPRIVILEGED)
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _run(*command: str | Path, folder: Path) -> None:
    """Run ``command`` in ``folder`` as the server's user; raise with its output on failure."""
    result = subprocess.run([str(part) for part in command], cwd=folder, capture_output=True,
                            text=True, timeout=120, check=False, **_as_server_user())
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, command))} failed:\n"
                           f"{result.stdout}{result.stderr}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Path]:
    """A PostgreSQL server for the session; yields the folder of its Unix socket. The
    server is stopped and its folder deleted afterwards, even when a test fails."""
    bin_dir = binaries()
    if bin_dir is None:
        require("PostgreSQL's initdb and pg_ctl are missing (not on PATH nor in "
                f"{DEBIAN_BINARIES}/*/bin): install Debian's package with "
                "'sudo apt-get install postgresql'")
    folder = Path(tempfile.mkdtemp(prefix="cnn-postgres-"))
    try:
        if os.geteuid() == 0:
            user = pwd.getpwnam(UNPRIVILEGED)
            os.chown(folder, user.pw_uid, user.pw_gid)
        folder.chmod(0o755)
        data, log = folder / "data", folder / "server.log"
        _run(bin_dir / "initdb", "--pgdata", data, "--username", SUPERUSER, "--auth", "trust",
             "--encoding", "UTF8", "--no-sync", folder=folder)
        try:
            _run(bin_dir / "pg_ctl", "--pgdata", data, "--log", log, "--wait", "--options",
                 f"-c listen_addresses='' -k '{folder}' -c fsync=off", "start", folder=folder)
        except RuntimeError as error:
            raise RuntimeError(f"{error}\n{log}:\n{log.read_text() if log.exists() else ''}") from None
        try:
            yield folder
        finally:
            _run(bin_dir / "pg_ctl", "--pgdata", data, "--mode", "immediate", "--wait", "stop",
                 folder=folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres_url(postgres_server: Path, request: pytest.FixtureRequest) -> str:
    """The SQLAlchemy URL of a new, empty database of this test module on the session's
    server."""
    import psycopg2

    name = re.sub(r"\W", "_", request.module.__name__).lower()
    server = psycopg2.connect(dbname="postgres", user=SUPERUSER, host=str(postgres_server))
    try:
        server.autocommit = True
        with server.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        server.close()
    return f"postgresql+psycopg2://{SUPERUSER}@/{name}?host={postgres_server}"
