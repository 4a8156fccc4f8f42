"""SQL for push fan-out: which online sessions should receive a room's or a user's events."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from messenger_protocol.messages import RoomKey

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


def room_audiences(cur: Cursor, keys: Iterable[RoomKey]) -> dict[RoomKey, tuple[set[str], list[Target]]]:
    """Each room's members and their online sessions. Called with the rooms locked (by the
    send batch), so the answer is exact for the AUDIENCE_VERSION the lock read."""
    keys = sorted(set(keys))
    cur.execute("""SELECT r.SESSION_ID, r.CREATOR_ID, r.USER_ID, s.TOKEN_HASH, s.LISTEN_IP, s.LISTEN_PORT,
                          s.PUSH_SECRET, s.LISTEN_TLS_FP, s.SERVER_ID
                   FROM SESSION_USER_RELATION_TB r
                   LEFT JOIN USER_SESSION_TB s ON s.USER_ID = r.USER_ID AND s.ONLINE
                   WHERE (r.SESSION_ID, r.CREATOR_ID) IN (SELECT * FROM unnest(%s::varchar[], %s::varchar[]))
                   ORDER BY r.SESSION_ID, r.CREATOR_ID, r.USER_ID, s.CREATED_AT""",
                ([k[0] for k in keys], [k[1] for k in keys]))
    out: dict[RoomKey, tuple[set[str], list[Target]]] = {key: (set(), []) for key in keys}
    for sid, cid, user, token, ip, port, secret, fp, server in cur.fetchall():
        members, targets = out[RoomKey(sid, cid)]
        members.add(user)
        if token is not None:
            targets.append(Target(bytes(token), user, ip, port, bytes(secret),
                                  bytes(fp) if fp is not None else None, server))
    return out
