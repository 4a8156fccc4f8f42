"""SQL for accounts and login sessions (USER_TB, USER_SESSION_TB). Functions take a cursor,
so callers decide the transaction."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .rooms import bump_audience

Cursor = Any

# Closed sessions are kept this long (--session-retention-days), then pruned by the
# heartbeat, at most PRUNE_LIMIT rows per heartbeat and process (a first upgrade of a large
# old table catches up over minutes).
CLOSED_SESSION_DAYS = 7.0
PRUNE_LIMIT = 1000
# A send retried later than this with the same txn_id is stored as a new message
# (--txn-retention-days).
SEND_TXN_DAYS = 7.0
# Up to this many txn ids per heartbeat (10 s) and process: ahead of any sustained send rate
# this server can take (W1 peaks at ~2,000 messages/s).
TXN_PRUNE_LIMIT = 50_000


@dataclass(frozen=True)
class User:
    user_id: str
    name: str
    image_path: str | None
    online: bool


def create_user(cur: Cursor, user_id: str, name: str, password_hash: str) -> bool:
    """Insert a user; False when the id is taken (by any process, thanks to the key)."""
    cur.execute("""INSERT INTO USER_TB (USER_ID, USER_NM, PASSWORD) VALUES (%s, %s, %s)
                   ON CONFLICT (USER_ID) DO NOTHING RETURNING USER_ID""",
                (user_id, name, password_hash))
    return cur.fetchone() is not None


def password_hash(cur: Cursor, user_id: str) -> str | None:
    cur.execute("SELECT PASSWORD FROM USER_TB WHERE USER_ID = %s", (user_id,))
    row = cur.fetchone()
    return row[0] if row else None


def get_user(cur: Cursor, user_id: str) -> User | None:
    cur.execute("SELECT USER_ID, USER_NM, IMAGE_PATH, LOGIN_IP IS NOT NULL FROM USER_TB WHERE USER_ID = %s",
                (user_id,))
    row = cur.fetchone()
    return User(*row) if row else None


def existing_user_ids(cur: Cursor, user_ids: list[str]) -> set[str]:
    cur.execute("SELECT USER_ID FROM USER_TB WHERE USER_ID = ANY(%s)", (list(user_ids),))
    return {row[0] for row in cur.fetchall()}


def update_profile(cur: Cursor, user_id: str, name: str | None, image_path: str | None) -> None:
    cur.execute("""UPDATE USER_TB SET USER_NM = COALESCE(%s, USER_NM),
                                      IMAGE_PATH = COALESCE(%s, IMAGE_PATH)
                   WHERE USER_ID = %s""", (name, image_path, user_id))


def open_session(cur: Cursor, token_hash: bytes, user_id: str, listen_ip: str | None,
                 listen_port: int | None, push_secret: bytes, server_id: str,
                 listen_tls_fp: bytes | None = None) -> None:
    """Record a login and point USER_TB's LOGIN_IP/LOGIN_PORT at its listener."""
    cur.execute("""INSERT INTO USER_SESSION_TB
                       (TOKEN_HASH, USER_ID, LISTEN_IP, LISTEN_PORT, PUSH_SECRET, SERVER_ID, LISTEN_TLS_FP)
                   VALUES (%s, %s, %s, %s, %s, %s, %s)""",
                (token_hash, user_id, listen_ip, listen_port, push_secret, server_id, listen_tls_fp))
    _sessions_changed(cur, [user_id])


def close_session(cur: Cursor, token_hash: bytes) -> str | None:
    """Mark a session offline; return its user. USER_TB's address falls back to another live
    session of the same user, or NULL when there is none."""
    cur.execute("""UPDATE USER_SESSION_TB SET ONLINE = false, LAST_SEEN = now()
                   WHERE TOKEN_HASH = %s AND ONLINE RETURNING USER_ID""", (token_hash,))
    row = cur.fetchone()
    if row is None:
        return None
    _sessions_changed(cur, [row[0]])
    return row[0]


def move_session(cur: Cursor, token_hash: bytes, server_id: str) -> str | None:
    """Record that another process of ours now holds an online session's connection (session
    affinity); its user, or None when the session is no longer online. Every audience that
    lists the session is bumped, so the next batch of each room pushes from the new holder."""
    cur.execute("""UPDATE USER_SESSION_TB SET SERVER_ID = %s
                   WHERE TOKEN_HASH = %s AND ONLINE RETURNING USER_ID""", (server_id, token_hash))
    row = cur.fetchone()
    if row is None:
        return None
    bump_audience(cur, users=[row[0]])
    return row[0]


def close_server_sessions(cur: Cursor, server_id: str) -> list[str]:
    """Mark every session held by one server process offline (its shutdown or restart)."""
    cur.execute("""UPDATE USER_SESSION_TB SET ONLINE = false, LAST_SEEN = now()
                   WHERE SERVER_ID = %s AND ONLINE RETURNING USER_ID""", (server_id,))
    users = sorted({row[0] for row in cur.fetchall()})
    _sessions_changed(cur, users)
    return users


def _sessions_changed(cur: Cursor, user_ids: list[str]) -> None:
    """After sessions of these users opened or closed: point USER_TB's address at the newest
    live session, and tell every server process's audience cache (rooms.bump_audience)."""
    if not user_ids:
        return
    # A row sub-select that finds nothing assigns NULLs: offline in the original's terms.
    cur.execute("""UPDATE USER_TB u SET (LOGIN_IP, LOGIN_PORT) =
                       (SELECT LISTEN_IP, LISTEN_PORT FROM USER_SESSION_TB s
                        WHERE s.USER_ID = u.USER_ID AND ONLINE ORDER BY CREATED_AT DESC LIMIT 1)
                   WHERE u.USER_ID = ANY(%s::varchar[])""", (sorted(user_ids),))
    bump_audience(cur, users=user_ids)


def register_server(cur: Cursor, server_id: str, stale_after: float) -> list[str]:
    """Record a live server process and close the sessions of processes that stopped
    heartbeating (crashed or killed); return the users whose sessions were closed."""
    cur.execute("""INSERT INTO SERVER_TB (SERVER_ID) VALUES (%s)
                   ON CONFLICT (SERVER_ID) DO UPDATE SET HEARTBEAT = now()""", (server_id,))
    cur.execute("""DELETE FROM SERVER_TB WHERE HEARTBEAT < now() - make_interval(secs => %s)
                   RETURNING SERVER_ID""", (stale_after,))
    dead = [row[0] for row in cur.fetchall()]
    cur.execute("""SELECT DISTINCT SERVER_ID FROM USER_SESSION_TB
                   WHERE ONLINE AND SERVER_ID NOT IN (SELECT SERVER_ID FROM SERVER_TB)""")
    dead += [row[0] for row in cur.fetchall()]
    users: set[str] = set()
    for sid in set(dead):
        users.update(close_server_sessions(cur, sid))
        cur.execute("DELETE FROM PUSH_RELAY_TB WHERE SERVER_ID = %s", (sid,))
    return sorted(users)


def prune(cur: Cursor, txn_days: float = SEND_TXN_DAYS, session_days: float = CLOSED_SESSION_DAYS
          ) -> tuple[int, int]:
    """Upkeep for the heartbeat: forget send txn ids older than ``txn_days`` and sessions
    closed more than ``session_days`` ago; returns how many of each went."""
    return prune_send_txns(cur, txn_days), prune_closed_sessions(cur, session_days)


def prune_send_txns(cur: Cursor, older_than_days: float = SEND_TXN_DAYS, limit: int = TXN_PRUNE_LIMIT) -> int:
    """Delete up to ``limit`` send txn ids stored more than ``older_than_days`` ago (a retry
    that late is not recognised). Returns how many."""
    cur.execute("""DELETE FROM SEND_TXN_TB WHERE ctid = ANY(ARRAY(
                       SELECT ctid FROM SEND_TXN_TB
                       WHERE CREATED_AT < now() - %s * interval '1 day' LIMIT %s))""", (older_than_days, limit))
    return cur.rowcount


def prune_closed_sessions(cur: Cursor, older_than_days: float = CLOSED_SESSION_DAYS,
                          limit: int = PRUNE_LIMIT) -> int:
    """Delete up to ``limit`` sessions closed more than ``older_than_days`` ago (nothing reads
    a closed session; kept a while for whoever looks into a problem). Returns how many."""
    # = ANY(ARRAY(...)): the rows go by primary key; an IN (subquery) of LIMIT rows made
    # PostgreSQL hash-join it against a scan of the whole table.
    cur.execute("""DELETE FROM USER_SESSION_TB WHERE TOKEN_HASH = ANY(ARRAY(
                       SELECT TOKEN_HASH FROM USER_SESSION_TB
                       WHERE NOT ONLINE AND LAST_SEEN < now() - %s * interval '1 day'
                       LIMIT %s))""", (older_than_days, limit))
    return cur.rowcount


def unregister_server(cur: Cursor, server_id: str) -> None:
    close_server_sessions(cur, server_id)
    cur.execute("DELETE FROM SERVER_TB WHERE SERVER_ID = %s", (server_id,))
    cur.execute("DELETE FROM PUSH_RELAY_TB WHERE SERVER_ID = %s", (server_id,))
