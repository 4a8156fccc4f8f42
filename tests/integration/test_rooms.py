"""Rooms end to end: ids, membership, names and images on disk, listing, read state."""
from __future__ import annotations

import datetime as dt
import json

import gevent
import pytest

from messenger_protocol import ErrorCode, ProtocolError
from messenger_protocol.messages import RoomKey

from ..support import PNG_1PX, JPEG_TINY


def key_of(reply) -> RoomKey:
    return RoomKey(reply["session_id"], reply["creator_id"])


def test_create_room_ids_and_membership(server, peers):
    kim, lee = peers("kim", "lee")
    reply = kim.create_room("family", invite=["lee"])
    today = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d")
    assert reply["session_id"] == f"{today}_000001" and reply["creator_id"] == "kim"
    assert reply["room"] == f"{today}_000001_kim"
    assert kim.create_room("second")["session_id"] == f"{today}_000002"
    assert lee.create_room("lee's own")["session_id"] == f"{today}_000001"
    members = kim.room_members(key_of(reply))
    assert [m["user_id"] for m in members] == ["kim", "lee"]
    info = json.loads((server.data_dir / "archive" / reply["room"] / "session_info.json").read_text())
    assert info == {"session_id": reply["session_id"], "session_name": "family", "creator_id": "kim"}


def test_concurrent_creates_never_collide(server, peers):
    kim = peers("kim")
    extra = [peers("kim", register=False) for _ in range(4)]
    clients = [kim, *extra]
    jobs = [gevent.spawn(clients[i % len(clients)].create_room, f"room {i}") for i in range(30)]
    gevent.joinall(jobs, raise_error=True)
    numbers = sorted(int(j.value["session_id"][-6:]) for j in jobs)
    assert numbers == list(range(1, 31))


def test_unknown_invitee_is_not_found_and_creates_nothing(server, peers, db):
    kim = peers("kim")
    with pytest.raises(ProtocolError) as info:
        kim.create_room("x", invite=["ghost"])
    assert info.value.code is ErrorCode.NOT_FOUND and "ghost" in info.value.message
    db.execute("SELECT count(*) FROM SESSION_TB")
    assert db.fetchone()[0] == 0


def test_rename_and_image(server, peers):
    kim, lee = peers("kim", "lee")
    key = key_of(kim.create_room("old", invite=["lee"], image=PNG_1PX))
    folder = server.data_dir / "archive" / key.folder
    assert (folder / "session_img.png").read_bytes() == PNG_1PX
    lee.rename_room(key, "새 이름")
    assert json.loads((folder / "session_info.json").read_text())["session_name"] == "새 이름"
    assert kim.list_rooms()[0]["name"] == "새 이름"
    with pytest.raises(ProtocolError) as info:
        kim.set_room_image(key, JPEG_TINY)     # room images are PNG
    assert info.value.code is ErrorCode.BAD_REQUEST
    tag = kim.set_room_image(key, PNG_1PX + b"")["image_tag"]
    assert tag and kim.list_rooms()[0]["image_tag"] == tag


def test_non_members_are_refused_everything(server, peers):
    kim, lee, eve = peers("kim", "lee", "eve")
    key = key_of(kim.create_room("private", invite=["lee"]))
    kim.send_text(key, "secret")
    refused = [
        lambda: eve.send_text(key, "let me in"),
        lambda: eve.history(key),
        lambda: eve.fetch(key, 0),
        lambda: eve.invite(key, ["eve"]),
        lambda: eve.rename_room(key, "mine"),
        lambda: eve.set_room_image(key, PNG_1PX),
        lambda: eve.room_members(key),
        lambda: eve.mark_read(key, 1),
        lambda: eve.leave(key),
    ]
    for attempt in refused:
        with pytest.raises(ProtocolError) as info:
            attempt()
        assert info.value.code is ErrorCode.FORBIDDEN
    assert eve.list_rooms() == []
    assert eve.init() == []
    # A room that does not exist looks the same.
    with pytest.raises(ProtocolError) as info:
        eve.history(RoomKey("20000101_000001", "kim"))
    assert info.value.code is ErrorCode.FORBIDDEN


def test_invite_and_leave(server, peers):
    kim, lee, park = peers("kim", "lee", "park")
    key = key_of(kim.create_room("club"))
    assert kim.invite(key, ["lee", "park"])["added"] == ["lee", "park"]
    assert kim.invite(key, ["lee"])["added"] == []
    with pytest.raises(ProtocolError) as info:
        kim.invite(key, ["ghost"])
    assert info.value.code is ErrorCode.NOT_FOUND
    lee.leave(key)
    assert [m["user_id"] for m in kim.room_members(key)] == ["kim", "park"]
    with pytest.raises(ProtocolError) as info:
        lee.send_text(key, "still here?")
    assert info.value.code is ErrorCode.FORBIDDEN


def test_list_rooms_order_preview_and_unread(server, peers):
    kim, lee = peers("kim", "lee")
    a = key_of(kim.create_room("a", invite=["lee"]))
    b = key_of(kim.create_room("b", invite=["lee"]))
    kim.send_text(b, "in b")
    kim.send_text(a, "first in a")
    kim.send_text(a, "second in a " + "x" * 200)
    rooms = lee.list_rooms()
    assert [r["name"] for r in rooms] == ["a", "b"]
    assert rooms[0]["unread"] == 2 and rooms[1]["unread"] == 1
    assert rooms[0]["last_preview"].startswith("second in a") and len(rooms[0]["last_preview"]) == 100
    assert rooms[0]["members"] == 2 and rooms[0]["last_user_id"] == "kim"
    assert kim.list_rooms()[0]["unread"] == 0, "your own messages are read"
    assert lee.mark_read(a, 1)["read_seq"] == 1
    assert lee.list_rooms()[0]["unread"] == 1
    assert lee.mark_read(a, 99)["read_seq"] == 2, "never past the last message"
    assert lee.mark_read(a, 1)["read_seq"] == 2, "never backwards"
    assert {m["user_id"]: m["read_seq"] for m in kim.room_members(a)} == {"kim": 2, "lee": 2}


@pytest.mark.parametrize("session_id, creator_id", [
    ("../x", "kim"), ("20230101_000001", "../../etc"), ("20230101_000001", "a/b"),
    ("20230101_000001", ".hidden"), ("20230101_000001\x00", "kim"), ("2023010_0000011", "kim"),
    ("20230101_000001", "x" * 51), ("20230101_000001", "김"),
])
def test_hostile_room_ids_never_reach_the_file_system(server, peers, session_id, creator_id):
    kim = peers("kim")
    before = sorted(p.name for p in (server.data_dir / "archive").iterdir())
    for op, extra in [("history", {}), ("send", {"chat_type": "text", "content": b"x", "txn_id": "1"}),
                      ("rename_room", {"name": "n"}), ("fetch", {"after_seq": 0})]:
        with pytest.raises(ProtocolError) as info:
            kim.request(op, session_id=session_id, creator_id=creator_id, **extra)
        assert info.value.code is ErrorCode.BAD_REQUEST
    assert sorted(p.name for p in (server.data_dir / "archive").iterdir()) == before
