"""Storage-level checks of room SQL against a real PostgreSQL."""
from __future__ import annotations

import datetime as dt

import pytest

from messenger_protocol.messages import RoomKey
from messenger_server.storage import rooms as room_db
from messenger_server.storage import users as user_db


@pytest.mark.parametrize("room_count", [1, 2], ids=["one-room statements", "many-room statements"])
def test_send_batch_records_rooms_reads_and_txns(db, room_count: int) -> None:
    """A batch's lock and finish statements, on the prepared one-room path and the general
    path: rooms and earlier txns are read back, and a sender with two messages in the batch
    ends at the later one, whatever order PostgreSQL joins the rows in."""
    room_db.prepare_statements(db)
    for user in ("alice", "bob"):
        assert user_db.create_user(db, user, user, "x")
    keys = [RoomKey(f"20261124-000{n}", "alice") for n in range(1, room_count + 1)]
    for key in keys:
        room_db.insert_room(db, key, "club", False)
        room_db.add_members(db, key, ["alice", "bob"])
    now = dt.datetime.now(dt.timezone.utc)
    key = keys[0]

    state = room_db.lock_batch(db, keys, [("alice", "t1"), ("bob", "t2")])
    assert sorted(state.rooms) == sorted(keys) and state.txns == {}
    assert state.rooms[key].last_seq == 0 and state.rooms[key].name == "club"

    appends = [(k, 4, now, "alice", "text", "hi", now.date(), 400) for k in keys]
    # The later message listed first and last, so neither "first" nor "last" row wins by luck.
    reads = [(key, "alice", 4), (key, "alice", 1), (key, "bob", 2), (key, "alice", 3)]
    txns = [("alice", f"t{n}", key, n, now.isoformat()) for n in (1, 3, 4)] + [("bob", "t2", key, 2, now.isoformat())]
    assert room_db.finish_batch(db, appends, reads, txns) == {
        ("alice", "t1"), ("alice", "t3"), ("alice", "t4"), ("bob", "t2")}
    # The same txn ids again are not new: a retried send finds its first reply instead.
    assert room_db.finish_batch(db, appends, reads, txns) == set()

    positions = {m.user_id: m.read_seq for m in room_db.room_members(db, key)}
    assert positions == {"alice": 4, "bob": 2}
    room = room_db.get_room(db, key)
    assert (room.last_seq, room.last_user_id, room.last_preview, room.archive_size) == (4, "alice", "hi", 400)
    again = room_db.lock_batch(db, keys, [("alice", "t3"), ("bob", "t9")])
    assert again.rooms[key].last_seq == 4
    assert again.txns == {("alice", "t3"): (key, 3, now.isoformat())}


def test_lock_batch_of_a_missing_room_finds_nothing(db) -> None:
    room_db.prepare_statements(db)
    state = room_db.lock_batch(db, [RoomKey("20261124-0009", "nobody")], [("nobody", "t1")])
    assert state.rooms == {} and state.txns == {}


def test_send_statements_plan_by_key_even_on_empty_tables(db) -> None:
    """The send statements keep the plan of their first run (generic plans), so that plan
    must use the keys although the tables are still empty: otherwise every later batch
    scans SEND_TXN_TB whole. The plans are read back as cached, after real runs."""
    room_db.prepare_statements(db)
    assert user_db.create_user(db, "alice", "alice", "x")
    key, other = RoomKey("20261124-0001", "alice"), RoomKey("20261124-0002", "alice")
    for room in (key, other):
        room_db.insert_room(db, room, "club", False)
        room_db.add_members(db, room, ["alice"])
    known = room_db.get_room(db, key)
    now = dt.datetime.now(dt.timezone.utc)
    append = (key, 1, now, "alice", "text", "hi", now.date(), 100)
    reads, txns = [(key, "alice", 1)], [("alice", "t1", key, 1, now.isoformat())]
    room_db.lock_batch(db, [key], [("alice", "t1")])
    assert room_db.finish_known_batch(db, known, append, reads, txns) == "ok"
    room_db.finish_batch(db, [(key, 2, now, "alice", "text", "hi", now.date(), 200)],
                         [(key, "alice", 2)], [("alice", "t2", key, 2, now.isoformat())])
    both = room_db.lock_batch(db, [key, other], [("alice", "t3"), ("alice", "t4")])
    assert sorted(both.rooms) == [key, other] and both.txns == {}
    assert room_db.finish_batch(db, [(key, 3, now, "alice", "text", "a", now.date(), 300),
                                     (other, 1, now.isoformat(), "alice", "text", "b", now.date(), 100)],
                                [(key, "alice", 3), (other, "alice", 1)],
                                [("alice", "t3", key, 3, now.isoformat()), ("alice", "t4", other, 1, now.isoformat())]
                                ) == {("alice", "t3"), ("alice", "t4")}
    assert [(r.last_seq, r.last_preview, r.archive_size, r.archive_day, r.last_time)
            for r in (room_db.get_room(db, key), room_db.get_room(db, other))] == [(3, "a", 300, now.date(), now),
                                                                                 (1, "b", 100, now.date(), now)]
    assert {m.read_seq for m in room_db.room_members(db, other)} == {1}
    many = ([key[0], other[0]], [key[1], other[1]])
    statements = {
        "send_lock_one": (*key, ["alice"], ["t3"]),
        "send_known_one": (*key, *append[1:], 1, now.date(), 100, 0, ["alice"], [3], ["alice"], ["t3"], [3], [now]),
        "send_finish_one": (*key, *append[1:], ["alice"], [3], ["alice"], ["t3"], [3], [now]),
        "send_lock_many": (*many, ["alice"], ["t5"]),
        "send_finish_many": (*many, [4, 2], [str(now)] * 2, ["alice"] * 2, ["text"] * 2, ["c", "d"],
                             [str(now.date())] * 2, [400, 200], *many, ["alice"] * 2, [4, 2],
                             ["alice"] * 2, ["t5", "t6"], *many, [4, 2], [now.isoformat()] * 2),
    }
    for name, args in statements.items():
        db.execute(f"EXPLAIN EXECUTE {name}({', '.join(['%s'] * len(args))})", args)
        plan = "\n".join(row[0] for row in db.fetchall())
        assert "Seq Scan" not in plan and "Index Scan" in plan, f"{name}:\n{plan}"


def test_known_batch_applies_only_to_the_row_as_known(db) -> None:
    room_db.prepare_statements(db)
    for user in ("alice", "bob"):
        assert user_db.create_user(db, user, user, "x")
    key = RoomKey("20261124-0001", "alice")
    room_db.insert_room(db, key, "club", False)
    room_db.add_members(db, key, ["alice", "bob"])
    known = room_db.get_room(db, key)
    now = dt.datetime.now(dt.timezone.utc)

    def batch(seq: int, txn: str) -> tuple:
        return ((key, seq, now, "alice", "text", "hi", now.date(), 100 * seq),
                [(key, "alice", seq)], [("alice", txn, key, seq, now.isoformat())])

    assert room_db.finish_known_batch(db, known, *batch(1, "t1")) == "ok"
    assert room_db.get_room(db, key).last_seq == 1
    # The same known row again: it moved (seq 1 is stored), and nothing is written.
    assert room_db.finish_known_batch(db, known, *batch(1, "t2")) == "moved"
    assert room_db.get_room(db, key).last_seq == 1
    assert room_db.lock_batch(db, [key], [("alice", "t2")]).txns == {}
    # Who hears the room changed: the known row is stale too.
    now_known = room_db.get_room(db, key)
    room_db.bump_audience(db, rooms=[key])
    assert room_db.finish_known_batch(db, now_known, *batch(2, "t2")) == "moved"
    # A txn id stored before is reported (the caller rolls back and answers it as a retry).
    current = room_db.get_room(db, key)
    assert room_db.finish_known_batch(db, current, *batch(2, "t1")) == "repeated"


def test_bump_audience_by_rooms_and_by_users(db) -> None:
    """Each named room, and each room of each named user, gets one new audience version
    (once, even when named both ways); other rooms keep theirs."""
    for user in ("alice", "bob", "carol"):
        assert user_db.create_user(db, user, user, "x")
    keys = [RoomKey(f"20261124-000{n}", "alice") for n in range(1, 5)]
    for key in keys:
        room_db.insert_room(db, key, "club", False)
    room_db.add_members(db, keys[0], ["alice", "bob"])
    room_db.add_members(db, keys[1], ["bob"])
    room_db.add_members(db, keys[2], ["carol"])

    def versions() -> list[int]:
        return [room_db.get_room(db, key).audience_version for key in keys]

    before = versions()
    room_db.bump_audience(db, rooms=[keys[0], keys[3]], users=["bob"])
    assert [a - b for a, b in zip(versions(), before)] == [1, 1, 0, 1]
    before = versions()
    room_db.bump_audience(db, users=["carol", "nobody"])
    assert [a - b for a, b in zip(versions(), before)] == [0, 0, 1, 0]
    before = versions()
    room_db.bump_audience(db, users=["nobody"])
    room_db.bump_audience(db)
    assert versions() == before


def test_heartbeat_prunes_sessions_closed_a_week_ago(db) -> None:
    """Closed sessions older than CLOSED_SESSION_DAYS go at the next heartbeat's upkeep, a bounded
    number at a time; recent closed sessions and online ones stay."""
    assert user_db.create_user(db, "alice", "alice", "x")
    tokens = [bytes([n]) * 32 for n in range(6)]
    for token in tokens:
        user_db.open_session(db, token, "alice", "127.0.0.1", 9000, b"s" * 32, "srv-a")
    for token in tokens[:5]:
        assert user_db.close_session(db, token) == "alice"
    db.execute("UPDATE USER_SESSION_TB SET LAST_SEEN = now() - interval '8 days' WHERE TOKEN_HASH = ANY(%s)",
               ([token for token in tokens[:3]],))

    def left() -> set[bytes]:
        db.execute("SELECT TOKEN_HASH FROM USER_SESSION_TB")
        return {bytes(row[0]) for row in db.fetchall()}

    assert user_db.prune_closed_sessions(db, limit=2) == 2
    assert len(left()) == 4
    assert user_db.prune(db) == (0, 1)
    assert left() == set(tokens[3:]), "the old closed ones went; a recent closed one and the online one stay"


def test_heartbeat_prunes_send_txn_ids_older_than_a_week(db) -> None:
    """A txn id stays answerable for SEND_TXN_DAYS; older ones go at the heartbeat's upkeep."""
    room_db.prepare_statements(db)
    assert user_db.create_user(db, "alice", "alice", "x")
    key = RoomKey("20261124-0001", "alice")
    room_db.insert_room(db, key, "club", False)
    db.execute("""INSERT INTO SEND_TXN_TB (USER_ID, TXN_ID, SESSION_ID, CREATOR_ID, SEQ, CHAT_TIME, CREATED_AT)
                  SELECT 'alice', 'old' || g, %s, %s, g, 't', now() - interval '8 days' FROM generate_series(1, 5) g
                  UNION ALL
                  SELECT 'alice', 'new' || g, %s, %s, 5 + g, 't', now() - interval '6 days' FROM generate_series(1, 2) g""",
               (*key, *key))
    assert user_db.prune_send_txns(db, limit=3) == 3
    assert user_db.prune(db) == (2, 0)
    assert set(room_db.lock_batch(db, [key], [("alice", f"old{g}") for g in range(1, 6)]).txns) == set()
    kept = room_db.lock_batch(db, [key], [("alice", "new1"), ("alice", "new2")]).txns
    assert {txn for _, txn in kept} == {"new1", "new2"}
