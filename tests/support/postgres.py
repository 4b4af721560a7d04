"""Run a REAL PostgreSQL 15 server in a temporary directory for tests.

PostgreSQL refuses to run as root, so when the tests run as root the server runs as an
unprivileged system user (``adaprof-pg``, created with ``useradd`` if missing, else
``nobody``) through ``runuser``. It listens on 127.0.0.1 on a free port and on a Unix
socket in its own directory, with ``trust`` authentication (nothing else can reach it),
``fsync`` on as in production.

Usage::

    from tests.support.postgres import PostgresServer

    with PostgresServer() as pg:
        url = pg.create_database("t1")     # postgresql://adaprof@127.0.0.1:PORT/t1
        pg.restart()                       # the database restarted under the controller
    # stopped, its directory removed

The ``postgres_server`` fixture (session scope) starts one for the whole run and the
``postgres_url`` fixture gives each test a fresh database on it. Without the binaries
the tests are skipped, unless ``ADAPROF_REQUIRE_POSTGRES=1`` (set by ``.ci/run``), which
makes them fail instead.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

#: Where Debian's ``postgresql-15`` package puts the server binaries.
PG_BIN = Path(os.environ.get("ADAPROF_PG_BIN", "/usr/lib/postgresql/15/bin"))
#: Unprivileged account the server runs as when the tests run as root.
PG_USER = "adaprof-pg"
#: Superuser role created by ``initdb`` (the URL's user).
PG_ROLE = "adaprof"
START_TIMEOUT_S = 30.0


def postgres_available() -> bool:
    """The server binaries are installed."""
    return (PG_BIN / "initdb").exists() and (PG_BIN / "pg_ctl").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_user() -> str | None:
    """The account to run the server as (``None``: the current one, not root)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_USER)
        return PG_USER
    except KeyError:
        pass
    created = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
        capture_output=True,
        check=False,
    )
    if created.returncode == 0 or created.returncode == 9:  # 9: created meanwhile
        return PG_USER
    return "nobody"


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory, owned by an unprivileged user."""

    def __init__(self) -> None:
        if not postgres_available():
            raise RuntimeError(f"PostgreSQL binaries not found in {PG_BIN}")
        self.user = _server_user()
        self.dir = Path(tempfile.mkdtemp(prefix="adaprof-pg-"))
        self.data = self.dir / "data"
        self.socket_dir = self.dir / "run"
        self.log_path = self.dir / "server.log"
        self.port = 0
        self._initialised = False
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self.dir.chmod(0o755)

    # running the binaries as the server's user ---------------------------------------

    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(PG_BIN / cmd[0]), *cmd[1:]]
        if self.user is not None:
            argv = ["runuser", "-u", self.user, "--", *argv]
        result = subprocess.run(
            argv, capture_output=True, text=True, check=False, timeout=START_TIMEOUT_S
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{cmd[0]} failed ({result.returncode}): {result.stdout}{result.stderr}\n"
                f"{self.log()}"
            )
        return result

    def log(self) -> str:
        """The server's log so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # lifecycle ------------------------------------------------------------------------

    def start(self) -> PostgresServer:
        """initdb (first time) and start; waits until it accepts connections."""
        if not self._initialised:
            self._run(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                PG_ROLE,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
            )
            self._initialised = True
            self._make_socket_dir()
        if not self.port:
            self.port = _free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} "
            f"-c unix_socket_directories={self.socket_dir} "
            "-c max_connections=200 -c shared_buffers=32MB"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log_path),
            "-o",
            options,
            "-w",
            "-t",
            str(int(START_TIMEOUT_S)),
            "start",
        )
        return self

    def _make_socket_dir(self) -> None:
        self.socket_dir.mkdir(exist_ok=True)
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.socket_dir, entry.pw_uid, entry.pw_gid)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: disconnect clients; ``immediate``: like a crash)."""
        if self._initialised and self.running():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, mode: str = "fast", down_s: float = 0.0) -> None:
        """Stop, stay down ``down_s`` seconds, start again on the same port."""
        self.stop(mode)
        if down_s:
            time.sleep(down_s)
        self.start()

    def running(self) -> bool:
        """The server process is up."""
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def remove(self) -> None:
        """Stop and delete the directory."""
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.remove()

    # databases ------------------------------------------------------------------------

    def url(self, database: str = "postgres") -> str:
        """A libpq URL of one database over TCP on 127.0.0.1."""
        return f"postgresql://{PG_ROLE}@127.0.0.1:{self.port}/{database}"

    def socket_url(self, database: str = "postgres") -> str:
        """The same over the server's Unix socket."""
        return f"postgresql://{PG_ROLE}@/{database}?host={self.socket_dir}&port={self.port}"

    def execute(self, sql: str, database: str = "postgres") -> list[tuple[object, ...]]:
        """Run one SQL statement (autocommit) and return its rows, if any."""
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True, connect_timeout=5) as conn:
            cur = conn.execute(sql.encode())
            return list(cur.fetchall()) if cur.description else []

    def create_database(self, name: str | None = None) -> str:
        """A new, empty database; returns its URL."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def require_postgres() -> None:
    """Skip (or fail under ``ADAPROF_REQUIRE_POSTGRES=1``) without the binaries."""
    if postgres_available():
        return
    reason = f"PostgreSQL 15 not installed ({PG_BIN}/initdb missing)"
    if os.environ.get("ADAPROF_REQUIRE_POSTGRES") == "1":
        pytest.fail(reason + " and ADAPROF_REQUIRE_POSTGRES=1")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the whole test run."""
    require_postgres()
    server = PostgresServer().start()
    try:
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.remove()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh database on the shared server, as a ``postgresql://`` URL."""
    if not postgres_server.running():  # a test restarted it and failed before starting it
        postgres_server.start()
    return postgres_server.create_database()
