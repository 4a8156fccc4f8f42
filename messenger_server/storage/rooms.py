"""SQL for rooms, membership, read positions and send transaction ids
(SESSION_TB, SESSION_USER_RELATION_TB, ROOM_COUNTER_TB, SEND_TXN_TB)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Iterable

from messenger_protocol.messages import RoomKey

Cursor = Any

_ROOM_COLUMNS = """SESSION_ID, CREATOR_ID, SESSION_NM, HAS_IMAGE, LAST_SEQ, LAST_TIME, LAST_USER_ID,
                   LAST_TYPE, LAST_PREVIEW, ARCHIVE_DAY, ARCHIVE_SIZE, CREATED_AT, AUDIENCE_VERSION"""


@dataclass
class Room:
    """A SESSION_TB row. ``archive_day``/``archive_size`` are the committed state of the
    archive (see storage/archive.py); readers and writers go by them, not by the files."""

    key: RoomKey
    name: str
    has_image: bool
    last_seq: int
    last_time: dt.datetime | None
    last_user_id: str | None
    last_type: str | None
    last_preview: str | None
    archive_day: dt.date | None
    archive_size: int
    created_at: dt.datetime
    audience_version: int = 0   # bumped by every change of who hears the room (see bump_audience)


def _room(row: tuple) -> Room:
    return Room(RoomKey(row[0], row[1]), *row[2:])


def next_room_number(cur: Cursor, creator_id: str, day: str) -> int:
    """The creator's n-th room of ``day`` (YYYYMMDD), from 1; safe under concurrent creates."""
    cur.execute("""INSERT INTO ROOM_COUNTER_TB (CREATOR_ID, DAY, N) VALUES (%s, %s, 1)
                   ON CONFLICT (CREATOR_ID, DAY) DO UPDATE SET N = ROOM_COUNTER_TB.N + 1
                   RETURNING N""", (creator_id, day))
    return cur.fetchone()[0]


def insert_room(cur: Cursor, key: RoomKey, name: str, has_image: bool) -> None:
    cur.execute("INSERT INTO SESSION_TB (SESSION_ID, CREATOR_ID, SESSION_NM, HAS_IMAGE) VALUES (%s, %s, %s, %s)",
                (key.session_id, key.creator_id, name, has_image))


def get_room(cur: Cursor, key: RoomKey, *, lock: bool = False) -> Room | None:
    cur.execute(f"SELECT {_ROOM_COLUMNS} FROM SESSION_TB WHERE SESSION_ID = %s AND CREATOR_ID = %s"
                + (" FOR UPDATE" if lock else ""), key)
    row = cur.fetchone()
    return _room(row) if row else None


def update_name(cur: Cursor, key: RoomKey, name: str) -> None:
    cur.execute("UPDATE SESSION_TB SET SESSION_NM = %s WHERE SESSION_ID = %s AND CREATOR_ID = %s", (name, *key))


def set_has_image(cur: Cursor, key: RoomKey) -> None:
    cur.execute("UPDATE SESSION_TB SET HAS_IMAGE = true WHERE SESSION_ID = %s AND CREATOR_ID = %s", key)


@dataclass
class BatchState:
    """What one send batch needs to know, read under the rooms' locks in one round trip."""

    rooms: dict[RoomKey, Room]
    txns: dict[tuple[str, str], tuple[RoomKey, int, str]]


# Most send batches touch one room (every batch of a busy single room does). Their
# statements are prepared once per connection: PostgreSQL then skips parsing and analysis,
# and we skip building a VALUES list. They run with generic plans (plan_cache_mode =
# force_generic_plan): planning a custom plan was ~0.2 ms of PostgreSQL's ~0.5 ms of CPU per
# batch (BENCHMARKS.md). A generic plan is made at the statement's first EXECUTE and again
# whenever its tables' statistics change, and one made while a table is small would scan it
# whole (send_lock_one's read of SEND_TXN_TB does); every EXECUTE therefore runs behind
# _PLAN_GUARD, so whenever a plan is made it uses the primary keys, whatever the sizes.
_PLAN_GUARD = "SET LOCAL enable_seqscan = off;"
# Shared by both one-room record statements: $1, $2 the room; $3-$9 its new state; then the
# senders' read positions and the txn ids, as arrays (see _read_arrays, _txn_arrays).
_SET_ROOM = """SET LAST_SEQ = $3, LAST_TIME = $4, LAST_USER_ID = $5, LAST_TYPE = $6,
                   LAST_PREVIEW = $7, ARCHIVE_DAY = $8, ARCHIVE_SIZE = $9"""
_ROOM_STATE_TYPES = "varchar, varchar, bigint, timestamptz, varchar, varchar, varchar, date, bigint"
_ARRAY_TYPES = "varchar[], bigint[], varchar[], varchar[], bigint[], varchar[]"


def _record_one(first: int, only_if_room_updated: bool) -> str:
    """The read-position UPDATE and txn-id INSERT of a one-room record statement: the reads'
    arrays are parameters $first, $first+1, the txns' the four after."""
    u, s, tu, tx, ts, tt = (f"${first + i}" for i in range(6))
    guard = "EXISTS (SELECT FROM room)" if only_if_room_updated else "true"
    return f"""reads AS (UPDATE SESSION_USER_RELATION_TB r SET READ_SEQ = GREATEST(r.READ_SEQ, v.seq)
                       FROM unnest({u}, {s}) AS v(uid, seq)
                       WHERE r.SESSION_ID = $1 AND r.CREATOR_ID = $2 AND r.USER_ID = ANY({u})
                         AND r.USER_ID = v.uid AND {guard}),
             txns AS (INSERT INTO SEND_TXN_TB (USER_ID, TXN_ID, SESSION_ID, CREATOR_ID, SEQ, CHAT_TIME)
                      SELECT u, x, $1, $2, seq, t FROM unnest({tu}, {tx}, {ts}, {tt}) AS v(u, x, seq, t)
                      WHERE {guard}
                      ON CONFLICT DO NOTHING RETURNING USER_ID, TXN_ID)"""


_PREPARED = {
    "send_lock_one": f"""(varchar, varchar, varchar[], varchar[]) AS
        WITH locked AS (SELECT {_ROOM_COLUMNS} FROM SESSION_TB
                        WHERE SESSION_ID = $1 AND CREATOR_ID = $2 FOR UPDATE)
        SELECT locked.*,
               (SELECT json_agg(json_build_array(t.USER_ID, t.TXN_ID, t.SESSION_ID, t.CREATOR_ID,
                                                 t.SEQ, t.CHAT_TIME))
                FROM SEND_TXN_TB t JOIN unnest($3, $4) AS k(u, x) ON t.USER_ID = k.u AND t.TXN_ID = k.x)
        FROM (SELECT) AS one LEFT JOIN locked ON true""",
    "send_finish_one": f"""({_ROOM_STATE_TYPES}, {_ARRAY_TYPES}) AS
        WITH room AS (UPDATE SESSION_TB {_SET_ROOM} WHERE SESSION_ID = $1 AND CREATOR_ID = $2),
             {_record_one(10, only_if_room_updated=False)}
        SELECT * FROM txns""",
    # The whole batch of a room whose state this process already knows: the UPDATE takes
    # the row lock and applies only if the row is still as known ($10-$13: nobody else wrote
    # the room or changed who hears it); the read positions and txn ids follow only then.
    "send_known_one": f"""({_ROOM_STATE_TYPES}, bigint, date, bigint, bigint, {_ARRAY_TYPES}) AS
        WITH room AS (UPDATE SESSION_TB {_SET_ROOM}
                      WHERE SESSION_ID = $1 AND CREATOR_ID = $2 AND LAST_SEQ = $10
                        AND ARCHIVE_DAY IS NOT DISTINCT FROM $11 AND ARCHIVE_SIZE = $12
                        AND AUDIENCE_VERSION = $13
                      RETURNING 1),
             {_record_one(14, only_if_room_updated=True)}
        SELECT (SELECT count(*) FROM room), (SELECT count(*) FROM txns)""",
    # The same for batches of several rooms, every value an array: no statement text to
    # build per row, and no parsing or planning per batch (BENCHMARKS.md).
    "send_lock_many": f"""(varchar[], varchar[], varchar[], varchar[]) AS
        WITH locked AS (SELECT {_ROOM_COLUMNS} FROM SESSION_TB
                        WHERE (SESSION_ID, CREATOR_ID) IN (SELECT * FROM unnest($1, $2))
                        ORDER BY SESSION_ID, CREATOR_ID FOR UPDATE)
        SELECT (SELECT json_agg(json_build_array({_ROOM_COLUMNS})) FROM locked),
               (SELECT json_agg(json_build_array(t.USER_ID, t.TXN_ID, t.SESSION_ID, t.CREATOR_ID,
                                                 t.SEQ, t.CHAT_TIME))
                FROM SEND_TXN_TB t JOIN unnest($3, $4) AS k(u, x) ON t.USER_ID = k.u AND t.TXN_ID = k.x)""",
    # $1-$9 the rooms' new states (times and days as text), $10-$13 the read positions,
    # $14-$19 the txn ids.
    "send_finish_many": """(varchar[], varchar[], bigint[], varchar[], varchar[], varchar[], varchar[], varchar[],
                            bigint[], varchar[], varchar[], varchar[], bigint[],
                            varchar[], varchar[], varchar[], varchar[], bigint[], varchar[]) AS
        WITH room AS (UPDATE SESSION_TB s SET LAST_SEQ = v.seq, LAST_TIME = v.t::timestamptz, LAST_USER_ID = v.u,
                                              LAST_TYPE = v.ty, LAST_PREVIEW = v.p, ARCHIVE_DAY = v.d::date,
                                              ARCHIVE_SIZE = v.sz
                      FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9) AS v(sid, cid, seq, t, u, ty, p, d, sz)
                      WHERE s.SESSION_ID = v.sid AND s.CREATOR_ID = v.cid),
             reads AS (UPDATE SESSION_USER_RELATION_TB r SET READ_SEQ = GREATEST(r.READ_SEQ, v.seq)
                       FROM unnest($10, $11, $12, $13) AS v(sid, cid, uid, seq)
                       WHERE r.SESSION_ID = v.sid AND r.CREATOR_ID = v.cid AND r.USER_ID = v.uid),
             txns AS (INSERT INTO SEND_TXN_TB (USER_ID, TXN_ID, SESSION_ID, CREATOR_ID, SEQ, CHAT_TIME)
                      SELECT * FROM unnest($14, $15, $16, $17, $18, $19)
                      ON CONFLICT DO NOTHING RETURNING USER_ID, TXN_ID)
        SELECT * FROM txns""",
}


def _columns(rows: list[tuple], width: int) -> list[list]:
    """``rows`` turned into ``width`` column lists (the arrays of a *_many statement)."""
    return [list(column) for column in zip(*rows)] if rows else [[] for _ in range(width)]


def _last_reads(reads: Iterable[tuple[RoomKey, str, int]]) -> list[tuple[RoomKey, str, int]]:
    """One read position per (room, user), the highest. UPDATE ... FROM applies one arbitrary
    row per target when a (room, user) repeats, so a sender with several messages in a batch
    would not reliably move to its last one."""
    last: dict[tuple[RoomKey, str], int] = {}
    for key, user, seq in reads:
        last[key, user] = max(seq, last.get((key, user), seq))
    return [(key, user, seq) for (key, user), seq in last.items()]


def _read_arrays(reads: list[tuple[RoomKey, str, int]]) -> tuple[list[str], list[int]]:
    return [u for _, u, _ in reads], [seq for _, _, seq in reads]


def _txn_arrays(txns: list[tuple[str, str, RoomKey, int, str]]) -> tuple[list, list, list, list]:
    return [u for u, *_ in txns], [x for _, x, *_ in txns], [seq for *_, seq, _ in txns], [t for *_, t in txns]


def _placeholders(n: int) -> str:
    return ", ".join(["%s"] * n)


def prepare_statements(cur: Cursor) -> None:
    """Set up a new connection for the send path (see _PREPARED); one round trip."""
    cur.execute("SET plan_cache_mode = force_generic_plan;"
                + "".join(f"PREPARE {name}{body};" for name, body in _PREPARED.items()))


def _room_from_row(row: tuple | list) -> Room:
    """A Room from the _ROOM_COLUMNS values, as a row or as json_build_array gives them."""
    sid, cid, name, has_image, last_seq, last_time, user, ctype, prev, day, size, created, version = row
    if isinstance(created, str):
        last_time = dt.datetime.fromisoformat(last_time) if last_time else None
        day = dt.date.fromisoformat(day) if day else None
        created = dt.datetime.fromisoformat(created)
    return Room(RoomKey(sid, cid), name, has_image, last_seq, last_time, user, ctype, prev, day, size,
                created, version)


def _earlier_txns(rows: Iterable[list] | None) -> dict[tuple[str, str], tuple[RoomKey, int, str]]:
    return {(u, x): (RoomKey(s, c), seq, t) for u, x, s, c, seq, t in rows or ()}


def lock_batch(cur: Cursor, keys: Iterable[RoomKey], txns: Iterable[tuple[str, str]]) -> BatchState:
    """Lock the rooms (key order: processes never deadlock) and read, in the same round trip,
    any earlier sends with these (user, txn) ids. The locked rows are the newest versions
    (LAST_SEQ, the archive sizes and AUDIENCE_VERSION are exact)."""
    keys = sorted(set(keys))
    txns = sorted(set(txns))
    if len(keys) == 1:
        cur.execute(_PLAN_GUARD + "EXECUTE send_lock_one(%s, %s, %s, %s)",
                    (*keys[0], [u for u, _ in txns], [x for _, x in txns]))
        *room_row, txn_rows = cur.fetchone()
        rooms = {keys[0]: _room_from_row(room_row)} if room_row[0] is not None else {}
        return BatchState(rooms, _earlier_txns(txn_rows))
    cur.execute(_PLAN_GUARD + "EXECUTE send_lock_many(%s, %s, %s, %s)",
                ([k[0] for k in keys], [k[1] for k in keys], [u for u, _ in txns], [x for _, x in txns]))
    room_rows, txn_rows = cur.fetchone()
    rooms = {room.key: room for room in map(_room_from_row, room_rows or ())}
    return BatchState(rooms, _earlier_txns(txn_rows))


def finish_known_batch(cur: Cursor, known: Room, append: tuple, reads: list[tuple[RoomKey, str, int]],
                       txns: list[tuple[str, str, RoomKey, int, str]]) -> str:
    """Record a one-room batch numbered from ``known`` (this process's copy of the room's
    row) without a lock round trip. Returns "ok"; "moved" when the row is no longer as
    known (nothing was written); "repeated" when a txn id was stored before (the caller
    must roll back: the rest was written)."""
    key, *last = append
    cur.execute(f"{_PLAN_GUARD}EXECUTE send_known_one({_placeholders(19)})",
                (*key, *last, known.last_seq, known.archive_day, known.archive_size, known.audience_version,
                 *_read_arrays(_last_reads(reads)), *_txn_arrays(txns)))
    rooms, stored = cur.fetchone()
    if not rooms:
        return "moved"
    return "ok" if stored == len(txns) else "repeated"


def bump_audience(cur: Cursor, *, rooms: Iterable[RoomKey] = (), users: Iterable[str] = ()) -> None:
    """Record that who hears these rooms, or every room of these users, changed (membership,
    or a member's sessions). The rows are locked in key order, like a send batch locks them,
    so this waits for a batch in flight and a later batch sees the new version."""
    keys = set(rooms)
    user_ids = sorted(set(users))
    if user_ids:
        # A statement of its own: folded into the lock below (as an OR of two IN lists)
        # it made PostgreSQL filter every row of SESSION_TB, at every login and logout.
        cur.execute("SELECT SESSION_ID, CREATOR_ID FROM SESSION_USER_RELATION_TB WHERE USER_ID = ANY(%s::varchar[])",
                    (user_ids,))
        keys.update(RoomKey(*row) for row in cur.fetchall())
    if not keys:
        return
    ordered = sorted(keys)
    # Lock in key order first (the UPDATE alone would lock in whatever order it scans), then
    # update the rows now ours; both by index, in one round trip.
    cur.execute("""SELECT FROM SESSION_TB
                   WHERE (SESSION_ID, CREATOR_ID) IN (SELECT * FROM unnest(%(s)s::varchar[], %(c)s::varchar[]))
                   ORDER BY SESSION_ID, CREATOR_ID FOR UPDATE;
                   UPDATE SESSION_TB SET AUDIENCE_VERSION = AUDIENCE_VERSION + 1
                   WHERE (SESSION_ID, CREATOR_ID) IN (SELECT * FROM unnest(%(s)s::varchar[], %(c)s::varchar[]))""",
                {"s": [k[0] for k in ordered], "c": [k[1] for k in ordered]})


def finish_batch(cur: Cursor, appends: list[tuple], reads: list[tuple[RoomKey, str, int]],
                 txns: list[tuple[str, str, RoomKey, int, str]]) -> set[tuple[str, str]]:
    """Record a batch in one round trip: each room's new LAST_SEQ, last message and committed
    archive size (``appends``: key, seq, time, user, type, preview, day, size), the senders'
    read positions, and the txn ids. Returns the (user, txn) ids that were new; fewer than
    given means another process stored one meanwhile."""
    reads = _last_reads(reads)
    if len(appends) == 1 and all(key == appends[0][0] for key, _, _ in reads) \
            and all(key == appends[0][0] for _, _, key, _, _ in txns):
        key, *last = appends[0]
        cur.execute(f"{_PLAN_GUARD}EXECUTE send_finish_one({_placeholders(15)})",
                    (*key, *last, *_read_arrays(reads), *_txn_arrays(txns)))
    else:
        rooms = _columns([(k[0], k[1], seq, str(t), u, ty, p, str(d), sz) for k, seq, t, u, ty, p, d, sz in appends], 9)
        cur.execute(f"{_PLAN_GUARD}EXECUTE send_finish_many({_placeholders(19)})",
                    (*rooms, *_columns([(k[0], k[1], u, seq) for k, u, seq in reads], 4),
                     *_columns([(u, x, k[0], k[1], seq, t) for u, x, k, seq, t in txns], 6)))
    return {(u, x) for u, x in cur.fetchall()}


# -- membership ------------------------------------------------------------------------------
def add_members(cur: Cursor, key: RoomKey, user_ids: Iterable[str], read_seq: int = 0) -> list[str]:
    """Add members; return the ones that were not members before."""
    ids = sorted(set(user_ids))
    if not ids:
        return []
    cur.execute("""INSERT INTO SESSION_USER_RELATION_TB (SESSION_ID, CREATOR_ID, USER_ID, READ_SEQ)
                   SELECT %s, %s, u, %s FROM unnest(%s::varchar[]) AS u
                   ON CONFLICT DO NOTHING RETURNING USER_ID""", (*key, read_seq, ids))
    added = sorted(row[0] for row in cur.fetchall())
    if added:
        bump_audience(cur, rooms=[key])
    return added


def remove_member(cur: Cursor, key: RoomKey, user_id: str) -> bool:
    cur.execute("""DELETE FROM SESSION_USER_RELATION_TB
                   WHERE SESSION_ID = %s AND CREATOR_ID = %s AND USER_ID = %s RETURNING 1""", (*key, user_id))
    if cur.fetchone() is None:
        return False
    bump_audience(cur, rooms=[key])
    return True


def is_member(cur: Cursor, key: RoomKey, user_id: str) -> bool:
    cur.execute("""SELECT 1 FROM SESSION_USER_RELATION_TB
                   WHERE SESSION_ID = %s AND CREATOR_ID = %s AND USER_ID = %s""", (*key, user_id))
    return cur.fetchone() is not None


@dataclass(frozen=True)
class Member:
    user_id: str
    name: str
    read_seq: int
    online: bool
    has_image: bool


def room_members(cur: Cursor, key: RoomKey) -> list[Member]:
    cur.execute("""SELECT u.USER_ID, u.USER_NM, r.READ_SEQ, u.LOGIN_IP IS NOT NULL, u.IMAGE_PATH IS NOT NULL
                   FROM SESSION_USER_RELATION_TB r JOIN USER_TB u ON u.USER_ID = r.USER_ID
                   WHERE r.SESSION_ID = %s AND r.CREATOR_ID = %s ORDER BY r.JOINED_AT, u.USER_ID""", key)
    return [Member(*row) for row in cur.fetchall()]


def member_ids(cur: Cursor, key: RoomKey) -> list[str]:
    cur.execute("""SELECT USER_ID FROM SESSION_USER_RELATION_TB
                   WHERE SESSION_ID = %s AND CREATOR_ID = %s ORDER BY USER_ID""", key)
    return [row[0] for row in cur.fetchall()]


def room_counts(cur: Cursor, user_ids: Iterable[str]) -> dict[str, int]:
    """How many rooms each user belongs to."""
    ids = sorted(set(user_ids))
    if not ids:
        return {}
    cur.execute("""SELECT u, (SELECT count(*) FROM SESSION_USER_RELATION_TB r WHERE r.USER_ID = u)
                   FROM unnest(%s::varchar[]) AS u""", (ids,))
    return dict(cur.fetchall())


def set_read(cur: Cursor, key: RoomKey, user_id: str, seq: int) -> int | None:
    """Move a member's read position forward (never back, never past the last message)."""
    cur.execute("""UPDATE SESSION_USER_RELATION_TB r
                   SET READ_SEQ = GREATEST(r.READ_SEQ, LEAST(%s, s.LAST_SEQ))
                   FROM SESSION_TB s
                   WHERE r.SESSION_ID = %s AND r.CREATOR_ID = %s AND r.USER_ID = %s
                     AND s.SESSION_ID = r.SESSION_ID AND s.CREATOR_ID = r.CREATOR_ID
                   RETURNING r.READ_SEQ""", (seq, *key, user_id))
    row = cur.fetchone()
    return row[0] if row else None


@dataclass(frozen=True)
class RoomSummary:
    room: Room
    members: int
    read_seq: int

    @property
    def unread(self) -> int:
        return max(0, self.room.last_seq - self.read_seq)


def room_keys_of_user(cur: Cursor, user_id: str) -> list[RoomKey]:
    """The keys of every room the user belongs to."""
    cur.execute("SELECT SESSION_ID, CREATOR_ID FROM SESSION_USER_RELATION_TB WHERE USER_ID = %s", (user_id,))
    return [RoomKey(*row) for row in cur.fetchall()]


def rooms_of_user(cur: Cursor, user_id: str) -> list[RoomSummary]:
    """Every room the user belongs to, most recent activity first."""
    cur.execute(f"""SELECT {', '.join('s.' + c.strip() for c in _ROOM_COLUMNS.split(','))},
                           (SELECT count(*) FROM SESSION_USER_RELATION_TB m
                            WHERE m.SESSION_ID = s.SESSION_ID AND m.CREATOR_ID = s.CREATOR_ID),
                           r.READ_SEQ
                    FROM SESSION_USER_RELATION_TB r
                    JOIN SESSION_TB s ON s.SESSION_ID = r.SESSION_ID AND s.CREATOR_ID = r.CREATOR_ID
                    WHERE r.USER_ID = %s
                    ORDER BY COALESCE(s.LAST_TIME, s.CREATED_AT) DESC, s.SESSION_ID DESC, s.CREATOR_ID""",
                (user_id,))
    n = len(_ROOM_COLUMNS.split(","))
    return [RoomSummary(_room(row[:n]), row[n], row[n + 1]) for row in cur.fetchall()]
