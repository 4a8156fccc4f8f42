"""SQL for push fan-out: which online sessions should receive a room's or a user's events."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

Cursor = Any


@dataclass(frozen=True)
class Target:
    """One online session that should receive events: where its listener is, and its secret."""

    token_hash: bytes
    user_id: str
    listen_ip: str | None
    listen_port: int | None
    push_secret: bytes
    tls_fingerprint: bytes | None = None   # the listener speaks TLS with this certificate
    server_id: str = ""                    # the process holding the session's connection


def user_targets(cur: Cursor, user_ids: Iterable[str]) -> list[Target]:
    """Every online session of these users."""
    cur.execute("""SELECT TOKEN_HASH, USER_ID, LISTEN_IP, LISTEN_PORT, PUSH_SECRET, LISTEN_TLS_FP, SERVER_ID
                   FROM USER_SESSION_TB WHERE ONLINE AND USER_ID = ANY(%s)""", (list(user_ids),))
    return [Target(bytes(t), u, ip, port, bytes(s), bytes(fp) if fp is not None else None, sid)
            for t, u, ip, port, s, fp, sid in cur.fetchall()]
