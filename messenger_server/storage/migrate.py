"""Schema migrations: apply db/migrations/NNNN_name.sql in order, each once.

Applied versions are recorded in SCHEMA_VERSION_TB. A transaction-level advisory lock makes
concurrent starts (several server processes on one database) apply each file exactly once.
Applied files are never edited; a change is a new numbered file.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import psycopg2

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "db" / "migrations"
_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")
_LOCK_KEY = 0x6D657373  # 'mess': any constant shared by every process of this app


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[tuple[int, Path]]:
    """The migration files, as (version, path), in version order."""
    if not directory.is_dir():
        raise RuntimeError(f"migrations folder not found: {directory}; install the project "
                           "from its source tree (make run-server does)")
    found = []
    for path in directory.iterdir():
        match = _NAME.fullmatch(path.name)
        if match:
            found.append((int(match.group(1)), path))
    found.sort()
    versions = [v for v, _ in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migrations share a number in {directory}")
    return found


def migrate(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[int]:
    """Bring the database at ``dsn`` up to date; return the versions applied now."""
    applied_now: list[int] = []
    conn = psycopg2.connect(dsn)
    try:
        with conn:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                cur.execute("""CREATE TABLE IF NOT EXISTS SCHEMA_VERSION_TB (
                                   VERSION integer PRIMARY KEY,
                                   NAME varchar(255) NOT NULL,
                                   APPLIED_AT timestamptz NOT NULL DEFAULT now())""")
                cur.execute("SELECT VERSION FROM SCHEMA_VERSION_TB")
                done = {row[0] for row in cur.fetchall()}
                for version, path in migration_files(directory):
                    if version in done:
                        continue
                    log.info("applying migration %s", path.name)
                    cur.execute(path.read_text(encoding="utf-8"))
                    cur.execute("INSERT INTO SCHEMA_VERSION_TB (VERSION, NAME) VALUES (%s, %s)",
                                (version, path.name))
                    applied_now.append(version)
    finally:
        conn.close()
    return applied_now
