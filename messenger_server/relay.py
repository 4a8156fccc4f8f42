"""Handing pushes between server processes through PostgreSQL (no broker of our own).

Each process pushes only to the peer sessions it holds. Pushes for sessions held by another
process are handed to it: the pushing process inserts the frames, encoded once, with the
sessions that should get them into PUSH_RELAY_TB and NOTIFYs the owner; the owner, LISTENing
on its own connection, takes its rows in ID order and pushes them over its own links (the
listener, or the session connection when the listener cannot be reached). A message batch
writes its rows in its own transaction (``handoff_sql``), so one room's rows are in commit
order. A periodic sweep catches a notification missed during a reconnect, and rows of
processes that died are deleted with them.
"""
from __future__ import annotations

import logging
from typing import Callable, Sequence

import gevent
import psycopg2
import psycopg2.extensions
from gevent.socket import wait_read

from .storage.pool import Pool

log = logging.getLogger(__name__)

CHANNEL = "messenger_relay"
SWEEP_SECONDS = 5.0

# (owner process, the sessions' token hashes, the frames, how many frames)
Handoff = tuple[str, Sequence[bytes], bytes, int]


def handoff_sql(rows: Sequence[Handoff]) -> tuple[str, tuple]:
    """One statement that stores ``rows`` and wakes each owner (NOTIFY is sent at commit)."""
    values = ", ".join(["(%s, %s::bytea[], %s, %s)"] * len(rows))
    owners = sorted({server for server, *_ in rows})
    return (f"""WITH stored AS (INSERT INTO PUSH_RELAY_TB (SERVER_ID, TOKEN_HASHES, FRAMES, FRAME_COUNT)
                                VALUES {values})
                SELECT pg_notify(%s, owner) FROM unnest(%s::varchar[]) AS owner""",
            (*[v for server, tokens, frames, count in rows for v in (server, list(tokens), frames, count)],
             CHANNEL, owners))


class PushRelay:
    """Send frames to a session held elsewhere; receive frames for sessions held here."""

    def __init__(self, dsn: str, pool: Pool, server_id: str,
                 deliver: Callable[[list[bytes], bytes, int], None]) -> None:
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

    def send(self, rows: Sequence[Handoff]) -> None:
        """Hand ``rows`` to their owners now, in a transaction of their own."""
        if rows:
            with self.pool.transaction("relay.send") as cur:
                cur.execute(*handoff_sql(rows))

    def _take(self) -> None:
        with self.pool.transaction("relay.take") as cur:
            cur.execute("""DELETE FROM PUSH_RELAY_TB WHERE SERVER_ID = %s
                           RETURNING ID, TOKEN_HASHES, FRAMES, FRAME_COUNT""", (self.server_id,))
            rows = sorted(cur.fetchall())
        for _, token_hashes, frames, count in rows:
            self.relayed_in += 1
            try:
                self.deliver([bytes(t) for t in token_hashes], bytes(frames), count)
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
