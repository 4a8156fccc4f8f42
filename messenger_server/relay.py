"""Handing pushes between server processes through PostgreSQL (no broker of our own).

Used for the NAT fallback when a peer's listener cannot be reached and its session connection
is held by another process: the pushing process inserts the frames into PUSH_RELAY_TB and
NOTIFYs the owner; the owner, LISTENing on its own connection, takes its rows in ID order and
writes them to the session. A periodic sweep catches a notification missed during a
reconnect, and rows of processes that died are deleted with them.
"""
from __future__ import annotations

import logging
from typing import Callable

import gevent
import psycopg2
import psycopg2.extensions
from gevent.socket import wait_read

from .storage.pool import Pool

log = logging.getLogger(__name__)

CHANNEL = "messenger_relay"
SWEEP_SECONDS = 5.0


class PushRelay:
    """Send frames to a session held elsewhere; receive frames for sessions held here."""

    def __init__(self, dsn: str, pool: Pool, server_id: str,
                 deliver: Callable[[bytes, bytes], None]) -> None:
        self.dsn = dsn
        self.pool = pool
        self.server_id = server_id
        self.deliver = deliver
        self._listener: gevent.Greenlet | None = None
        self.relayed_in = 0

    def start(self) -> None:
        self._listener = gevent.spawn(self._listen_loop)

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.kill()

    def send(self, server_id: str, token_hash: bytes, frames: bytes) -> None:
        """Queue ``frames`` for the session ``token_hash`` held by process ``server_id``."""
        with self.pool.transaction("relay.send") as cur:
            cur.execute("INSERT INTO PUSH_RELAY_TB (SERVER_ID, TOKEN_HASH, FRAMES) VALUES (%s, %s, %s)",
                        (server_id, token_hash, frames))
            cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, server_id))

    def _take(self) -> None:
        with self.pool.transaction("relay.take") as cur:
            cur.execute("DELETE FROM PUSH_RELAY_TB WHERE SERVER_ID = %s RETURNING ID, TOKEN_HASH, FRAMES",
                        (self.server_id,))
            rows = sorted(cur.fetchall())
        for _, token_hash, frames in rows:
            self.relayed_in += 1
            try:
                self.deliver(bytes(token_hash), bytes(frames))
            except Exception:
                log.exception("relayed push could not be delivered")

    def _listen_loop(self) -> None:
        while True:
            conn = None
            try:
                conn = psycopg2.connect(self.dsn, application_name="messenger-relay")
                conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
                conn.cursor().execute(f"LISTEN {CHANNEL}")
                self._take()
                while True:
                    try:
                        wait_read(conn.fileno(), timeout=SWEEP_SECONDS)
                    except TimeoutError:
                        pass
                    conn.poll()
                    mine = [n for n in conn.notifies if n.payload == self.server_id]
                    conn.notifies.clear()
                    if mine:
                        self._take()
            except gevent.GreenletExit:
                raise
            except Exception as exc:
                log.warning("push relay listener: %s; reconnecting", exc)
                gevent.sleep(1.0)
            finally:
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        pass
