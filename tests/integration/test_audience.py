"""The per-process audience cache (messenger_server/audience.py) never pushes to the wrong set
of sessions: a member who logs in, possibly through another process, gets the next message
pushed; one who logged out or left gets nothing more; an invitee hears the next message.
Every case first warms the cache with a message, so a stale cache would show. (That a
logged-out session gets nothing rests on the version bump checked in the first test.)"""
from __future__ import annotations

from messenger_protocol.messages import RoomKey
from messenger_peer import Peer

from ..support import PASSWORD, logged_in_peer, wait_for


def _inbox(peer: Peer) -> list[int]:
    got: list[int] = []
    peer.on_event(lambda e: got.append(e["seq"]) if e["event"] == "message" else None)
    return got


def _versions(db, key: RoomKey) -> int:
    db.execute("SELECT AUDIENCE_VERSION FROM SESSION_TB WHERE SESSION_ID = %s AND CREATOR_ID = %s", key)
    return db.fetchone()[0]


def test_changes_of_audience_bump_the_room_version(server, db):
    a = logged_in_peer(server, "a")
    b = logged_in_peer(server, "b")
    room = a.create_room("r", invite=[])
    key = RoomKey(room["session_id"], room["creator_id"])
    steps = [lambda: a.invite(key, ["b"]), lambda: b.logout(), lambda: b.login("b", PASSWORD),
             lambda: b.leave(key)]
    before = _versions(db, key)
    for step in steps:
        step()
        after = _versions(db, key)
        assert after > before, f"step {steps.index(step)} bumped the room's audience version"
        before = after
    a.send_text(key, "no change of audience")
    assert _versions(db, key) == before, "a message is not an audience change"
    a.close()
    b.close()


def test_login_through_another_process_gets_the_next_push(server_factory, tmp_path):
    archive = tmp_path / "shared-archive"
    s1, s2 = (server_factory("--archive-dir", str(archive), data_dir=tmp_path / f"s{i}") for i in range(2))
    a = logged_in_peer(s1, "a")
    b = logged_in_peer(s2, "b")
    room = a.create_room("r", invite=["b"])
    key = RoomKey(room["session_id"], room["creator_id"])
    got_b = _inbox(b)
    a.send_text(key, "one")                     # s1 now holds the room's audience
    wait_for(lambda: got_b == [1], 10, "the first push at b")
    b.close()                                   # b's session ends on s2
    a.send_text(key, "two")
    c = Peer(s2.address).connect()              # b again, a new session on the other process
    got_c = _inbox(c)
    c.login("b", PASSWORD)
    a.send_text(key, "three")
    wait_for(lambda: 3 in got_c, 10, "the push of a message sent after the new login")
    assert got_c.count(3) == 1
    a.close()
    c.close()


def test_members_who_left_get_nothing_more_and_invitees_get_the_next(server):
    a = logged_in_peer(server, "a")
    c = logged_in_peer(server, "c")
    room = a.create_room("r", invite=["c"])
    key = RoomKey(room["session_id"], room["creator_id"])
    got_a, got_c = _inbox(a), _inbox(c)
    invited: list[str] = []
    c.on_event(lambda e: invited.append(e["session_id"]) if e["event"] == "invited" else None)
    a.send_text(key, "one")
    wait_for(lambda: got_c == [1], 10, "the first push at c")
    c.leave(key)
    a.send_text(key, "two")
    d = logged_in_peer(server, "d")
    got_d = _inbox(d)
    a.invite(key, ["d"])
    a.send_text(key, "three")
    wait_for(lambda: got_a[-1:] == [3] and got_d == [3], 10, "the third message at a and the new member d")
    # A barrier: pushes to one session leave in commit order on one connection, so once c
    # hears of a room created after "three", any push of "two" or "three" to c has arrived.
    other = a.create_room("later", invite=["c"])
    wait_for(lambda: other["session_id"] in invited, 10, "the invitation to the later room at c")
    assert got_c == [1], "a member who left receives nothing"
    for p in (a, c, d):
        p.close()
