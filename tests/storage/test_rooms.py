"""Storage-level checks of room SQL against a real PostgreSQL."""
from __future__ import annotations

import datetime as dt

from messenger_protocol.messages import RoomKey
from messenger_server.storage import rooms as room_db
from messenger_server.storage import users as user_db


def test_finish_batch_moves_read_to_each_senders_last_message(db) -> None:
    """Two messages of one sender in one batch: the read position ends at the later one,
    whatever order PostgreSQL joins the rows in."""
    for user in ("alice", "bob"):
        assert user_db.create_user(db, user, user, "x")
    key = RoomKey("20261124-0001", "alice")
    room_db.insert_room(db, key, "club", False)
    room_db.add_members(db, key, ["alice", "bob"])
    now = dt.datetime.now(dt.timezone.utc)
    day = now.date()
    appends = [(key, 4, now, "alice", "text", "hi", day, 400)]
    # The later message listed first and last, so neither "first" nor "last" row wins by luck.
    reads = [(key, "alice", 4), (key, "alice", 1), (key, "bob", 2), (key, "alice", 3)]
    txns = [("alice", f"t{n}", key, n, now.isoformat()) for n in (1, 3, 4)] + [("bob", "t2", key, 2, now.isoformat())]

    new = room_db.finish_batch(db, appends, reads, txns)

    assert new == {("alice", "t1"), ("alice", "t3"), ("alice", "t4"), ("bob", "t2")}
    positions = {m.user_id: m.read_seq for m in room_db.room_members(db, key)}
    assert positions == {"alice": 4, "bob": 2}
    assert room_db.get_room(db, key).last_seq == 4
