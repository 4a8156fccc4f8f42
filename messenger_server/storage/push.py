"""SQL for push fan-out: which online sessions should receive a room's or a user's events."""
from __future__ import annotations

from collections import defaultdict
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


def online_targets(cur: Cursor, rooms: Iterable[RoomKey]) -> dict[RoomKey, list[Target]]:
    """Every online session of every member, per room, in one query."""
    rooms = sorted(set(rooms))
    if not rooms:
        return {}
    cur.execute("""SELECT r.SESSION_ID, r.CREATOR_ID, s.TOKEN_HASH, s.USER_ID, s.LISTEN_IP, s.LISTEN_PORT, s.PUSH_SECRET
                   FROM SESSION_USER_RELATION_TB r
                   JOIN USER_SESSION_TB s ON s.USER_ID = r.USER_ID AND s.ONLINE
                   WHERE (r.SESSION_ID, r.CREATOR_ID) IN (SELECT * FROM unnest(%s::varchar[], %s::varchar[]))""",
                ([k[0] for k in rooms], [k[1] for k in rooms]))
    out: dict[RoomKey, list[Target]] = defaultdict(list)
    for sid, cid, token, user, ip, port, secret in cur.fetchall():
        out[RoomKey(sid, cid)].append(Target(bytes(token), user, ip, port, bytes(secret)))
    return out


def user_targets(cur: Cursor, user_ids: Iterable[str]) -> list[Target]:
    """Every online session of these users."""
    cur.execute("""SELECT TOKEN_HASH, USER_ID, LISTEN_IP, LISTEN_PORT, PUSH_SECRET FROM USER_SESSION_TB
                   WHERE ONLINE AND USER_ID = ANY(%s)""", (list(user_ids),))
    return [Target(bytes(t), u, ip, port, bytes(s)) for t, u, ip, port, s in cur.fetchall()]
