"""A bounded, gevent-friendly pool of psycopg2 connections with named transactions.

With psycogreen's wait callback installed, a query yields to other greenlets while PostgreSQL
works. A connection that fails (server restarted, network cut) is thrown away and the request
gets ``unavailable``; the next request opens a fresh connection, so the server reconnects by
itself.
"""
from __future__ import annotations

import contextlib
import logging
import time
from typing import Callable, Iterator

import gevent.queue
import psycopg2
import psycopg2.extensions

from messenger_protocol import ErrorCode, ProtocolError

log = logging.getLogger(__name__)

# Errors that mean the connection or server is gone, not that the query was wrong.
_CONNECTION_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError)


class _TxCursor(psycopg2.extensions.cursor):
    """A cursor that opens its transaction with its first statement.

    psycopg2 (not in autocommit) sends ``BEGIN`` as a round trip of its own before the first
    query. Our connections are in autocommit and this cursor prefixes ``BEGIN;`` to the first
    statement instead, so a transaction costs one round trip fewer; a transaction that ran
    no statement costs none at all.
    """

    begun = False
    _with_commit: bytes = b""

    def execute(self, query, vars=None):  # type: ignore[override]
        if not self.begun:
            self.begun = True
            query = "BEGIN;" + query
        return super().execute(query, vars)

    def with_commit(self, query: str, vars: tuple | None = None) -> None:
        """Run ``query`` in the same round trip as this transaction's ``COMMIT`` (dropped
        on rollback): work the transaction must include, whose result nobody waits for."""
        self._with_commit += self.mogrify(query, vars) + b";"

    def end(self, command: str) -> None:
        """``COMMIT`` or ``ROLLBACK`` the transaction, if a statement opened one."""
        extra, self._with_commit = self._with_commit, b""
        if self.begun:
            self.begun = False
            if command == "COMMIT" and extra:
                super().execute(extra + b"COMMIT")
            else:
                super().execute(command)


class Pool:
    """At most ``size`` connections; callers wait (up to ``timeout``) when all are busy."""

    def __init__(self, dsn: str, size: int = 10, timeout: float = 10.0,
                 on_connect: Callable[[psycopg2.extensions.cursor], None] | None = None) -> None:
        """``on_connect`` runs on every new connection before first use (session settings,
        prepared statements)."""
        self.dsn = dsn
        self.on_connect = on_connect
        self.size = size
        self.timeout = timeout
        self._idle: gevent.queue.LifoQueue = gevent.queue.LifoQueue()
        self._created = 0
        self._closed = False

    def _connect(self) -> psycopg2.extensions.connection:
        try:
            conn = psycopg2.connect(self.dsn, application_name="messenger-server")
            conn.autocommit = True     # transactions are opened by _TxCursor
            if self.on_connect is not None:
                try:
                    with conn.cursor() as cur:
                        self.on_connect(cur)
                except BaseException:
                    conn.close()
                    raise
        except _CONNECTION_ERRORS as exc:
            raise ProtocolError(ErrorCode.UNAVAILABLE,
                                "the database is unavailable; try again shortly") from exc
        return conn

    def _acquire(self) -> psycopg2.extensions.connection:
        if self._closed:
            raise ProtocolError(ErrorCode.UNAVAILABLE, "the server is shutting down")
        try:
            return self._idle.get_nowait()
        except gevent.queue.Empty:
            pass
        if self._created < self.size:
            self._created += 1
            try:
                return self._connect()
            except BaseException:
                self._created -= 1
                raise
        try:
            return self._idle.get(timeout=self.timeout)
        except gevent.queue.Empty:
            raise ProtocolError(ErrorCode.UNAVAILABLE, "the database is busy; try again") from None

    def _release(self, conn: psycopg2.extensions.connection, broken: bool) -> None:
        if broken or self._closed or conn.closed:
            self._created -= 1
            with contextlib.suppress(Exception):
                conn.close()
            return
        self._idle.put(conn)

    @contextlib.contextmanager
    def transaction(self, name: str = "tx") -> Iterator[psycopg2.extensions.cursor]:
        """A cursor inside one transaction: committed on success, rolled back on error.

        ``name`` labels slow-transaction logs. Connection failures become ``unavailable``.
        """
        conn = self._acquire()
        broken = False
        started = time.monotonic()
        cur = conn.cursor(cursor_factory=_TxCursor)
        try:
            yield cur
            cur.end("COMMIT")
        except _CONNECTION_ERRORS as exc:
            broken = True
            log.warning("database connection lost during %s: %s", name, str(exc).strip())
            raise ProtocolError(ErrorCode.UNAVAILABLE,
                                "the database is unavailable; try again shortly") from exc
        except BaseException:
            try:
                if not conn.closed:
                    cur.end("ROLLBACK")
            except _CONNECTION_ERRORS:
                broken = True
            raise
        finally:
            cur.close()
            self._release(conn, broken)
            elapsed = time.monotonic() - started
            if elapsed > 1.0:
                log.warning("slow transaction %s: %.3f s", name, elapsed)

    def close(self) -> None:
        """Close idle connections now; busy ones are closed when they come back."""
        self._closed = True
        while True:
            try:
                conn = self._idle.get_nowait()
            except gevent.queue.Empty:
                break
            self._created -= 1
            with contextlib.suppress(Exception):
                conn.close()
