"""Messages end to end: content checks, idempotent retries, gapless order under concurrency,
init diffs and history paging, all checked against the archive files."""
from __future__ import annotations

import base64

import gevent
import pytest

from messenger_protocol import ErrorCode, ProtocolError
from messenger_protocol.messages import RoomKey

from ..support import JPEG_TINY, PNG_1PX, archive_messages, day_messages


def room(peer, name="room", invite=()):
    reply = peer.create_room(name, invite=list(invite))
    return RoomKey(reply["session_id"], reply["creator_id"])


def test_each_type_is_stored_in_the_archive(server, peers):
    kim = peers("kim")
    key = room(kim)
    replies = [kim.send_text(key, "안녕 hello"), kim.send(key, "image", PNG_1PX),
               kim.send(key, "image", JPEG_TINY), kim.send(key, "emoticon", b"smile_01")]
    assert [r["seq"] for r in replies] == [1, 2, 3, 4]
    records = archive_messages(server.data_dir / "archive", key.folder)
    assert [r["seq"] for r in records] == [1, 2, 3, 4]
    assert [r["chat_type"] for r in records] == ["text", "image", "image", "emoticon"]
    assert base64.b64decode(records[0]["content"]).decode() == "안녕 hello"
    assert base64.b64decode(records[1]["content"]) == PNG_1PX
    assert all(r["user_id"] == "kim" for r in records)
    assert records[0]["chat_time"] == replies[0]["chat_time"]
    assert set(records[0]) >= {"user_id", "chat_time", "chat_type", "content", "seq"}


@pytest.mark.parametrize("chat_type, content, code", [
    ("text", b"\xff\xfe not utf-8", ErrorCode.BAD_REQUEST),
    ("text", b"   ", ErrorCode.BAD_REQUEST),
    ("text", "가".encode() * 30000, ErrorCode.TOO_LARGE),
    ("image", b"GIF89a....", ErrorCode.BAD_REQUEST),
    ("image", b"\x89PNG\r\n\x1a\n", ErrorCode.BAD_REQUEST),
    ("emoticon", b"../smile", ErrorCode.BAD_REQUEST),
    ("emoticon", b"x" * 65, ErrorCode.TOO_LARGE),
    ("video", b"x", ErrorCode.BAD_REQUEST),
])
def test_bad_content_is_refused_and_nothing_stored(server, peers, chat_type, content, code):
    kim = peers("kim")
    key = room(kim)
    with pytest.raises(ProtocolError) as info:
        kim.send(key, chat_type, content)
    assert info.value.code is code
    assert kim.send_text(key, "ok")["seq"] == 1


def test_retried_send_returns_the_first_reply(server, peers, db):
    kim = peers("kim")
    key = room(kim)
    first = kim.send_text(key, "once", txn_id="txn-1")
    again = kim.send_text(key, "once", txn_id="txn-1")
    assert again == first
    # concurrent duplicates in one batch
    jobs = [gevent.spawn(kim.send_text, key, "twice", "txn-2") for _ in range(5)]
    gevent.joinall(jobs, raise_error=True)
    assert len({j.value["seq"] for j in jobs}) == 1
    records = archive_messages(server.data_dir / "archive", key.folder)
    assert [r["seq"] for r in records] == [1, 2]


def test_twenty_clients_fifty_sends_give_gapless_order(server, peers):
    owner = peers("owner")
    names = [f"user{i:02d}" for i in range(20)]
    clients = [peers(n) for n in names]
    key = room(owner, invite=names)
    acked: dict[int, tuple[str, int]] = {}

    def sender(peer, name):
        last = 0
        for i in range(50):
            seq = peer.send_text(key, f"{name} {i}")["seq"]
            assert seq > last, "one sender's messages keep their order"
            last = seq
            acked[seq] = (name, i)
    gevent.joinall([gevent.spawn(sender, p, n) for p, n in zip(clients, names)], raise_error=True)
    assert sorted(acked) == list(range(1, 1001))
    records = archive_messages(server.data_dir / "archive", key.folder)
    assert [r["seq"] for r in records] == list(range(1, 1001))
    for r in records:
        name, i = acked[r["seq"]]
        assert r["user_id"] == name and base64.b64decode(r["content"]).decode() == f"{name} {i}"


def test_init_gives_only_what_the_client_lacks(server, peers):
    kim, lee = peers("kim", "lee")
    key = room(kim, invite=["lee"])
    for i in range(10):
        kim.send_text(key, f"m{i}")
    full = lee.init()
    assert len(full) == 1 and full[0]["session_name"] == "room" and full[0]["gap"] is False
    assert [m["seq"] for d in full[0]["content"] for m in day_messages(d["content"])] == list(range(1, 11))
    assert lee.init({key: 10})[0]["content"] == []
    diff = lee.init({key: 7})[0]["content"]
    assert [m["seq"] for d in diff for m in day_messages(d["content"])] == [8, 9, 10]


def test_fetch_after_a_seq(server, peers):
    kim = peers("kim")
    key = room(kim)
    for i in range(7):
        kim.send_text(key, f"m{i}")
    reply = kim.fetch(key, 3)
    assert [m["seq"] for m in reply["messages"]] == [4, 5, 6, 7]
    assert reply["messages"][0]["content"] == b"m3" and reply["more"] is False
    reply = kim.fetch(key, 0, limit=2)
    assert [m["seq"] for m in reply["messages"]] == [1, 2] and reply["more"] is True
