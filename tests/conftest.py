"""Shared fixtures: a real PostgreSQL (embedded, or MESSENGER_DATABASE_URL), one fresh
database per test cloned from a migrated template, and real server processes on port 0."""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import psycopg2
import psycopg2.errors
import pytest

from messenger_server.storage import migrate
from messenger_server.storage.embedded import EmbeddedPostgres, url_with_database

from .support import ServerProcess, admin_connection, wait_for

TEMPLATE_DB = "messenger_test_template"


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a PostgreSQL server where tests may create databases."""
    external = os.environ.get("MESSENGER_DATABASE_URL")
    if external:
        yield external
        return
    # Not under pytest's basetemp: pytest resets that tree to mode 0700 whenever a session
    # starts, and as root the embedded server runs as another user who must traverse it.
    folder = Path(tempfile.mkdtemp(prefix="messenger-test-pg-"))
    embedded = EmbeddedPostgres(folder / "pg")
    url = embedded.start()
    try:
        yield url
    finally:
        embedded.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def template_url(pg_admin_url: str) -> str:
    """A database with the schema applied once, cloned for every test (fast, isolated)."""
    with admin_connection(pg_admin_url) as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
    url = url_with_database(pg_admin_url, TEMPLATE_DB)
    migrate.migrate(url)
    return url


@pytest.fixture
def database_url(pg_admin_url: str, template_url: str) -> Iterator[str]:
    """A fresh, migrated database for one test, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    with admin_connection(pg_admin_url) as cur:
        cur.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"')
    try:
        yield url_with_database(pg_admin_url, name)
    finally:
        drop_database(pg_admin_url, name)


def drop_database(admin_url: str, name: str, timeout: float = 60.0) -> None:
    """Drop a test database, ending its sessions. A role that may not end an autovacuum
    worker visiting it (not a superuser, not in pg_signal_backend) waits for the worker."""
    def dropped() -> bool:
        with admin_connection(admin_url) as cur:
            try:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except (psycopg2.errors.InsufficientPrivilege, psycopg2.errors.ObjectInUse):
                return False
        return True
    wait_for(dropped, timeout, f"database {name} dropped (an autovacuum worker may hold it)", interval=0.2)


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg2.extensions.cursor]:
    """An autocommit cursor on the test's database, for checking what the server stored."""
    with admin_connection(database_url) as cur:
        yield cur


@pytest.fixture
def server_factory(database_url: str, tmp_path: Path) -> Iterator:
    """Start real ``messenger-server`` processes on port 0 against the test's database."""
    started: list[ServerProcess] = []

    def start(*extra: str, data_dir: Path | None = None, database: str | None = database_url,
              env: dict[str, str] | None = None) -> ServerProcess:
        proc = ServerProcess(data_dir or tmp_path / f"server{len(started)}", database, list(extra), env)
        started.append(proc)
        proc.start()
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def server(server_factory) -> ServerProcess:
    """One running server."""
    return server_factory()


@pytest.fixture
def private_dir() -> Iterator[Path]:
    """A folder outside pytest's basetemp, for servers that run their own embedded PostgreSQL
    (see pg_admin_url for why)."""
    folder = Path(tempfile.mkdtemp(prefix="messenger-test-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
