"""The bridge against a real server and real PostgreSQL: login, live room list, sending,
history paging, the local cache, room management. Headless peers play the other people."""
from __future__ import annotations

import datetime as dt

import pytest

from messenger_protocol.messages import RoomKey

from ..support import JPEG_TINY, PASSWORD, logged_in_peer, seed_history
from .conftest import gevent_wait

pytestmark = pytest.mark.database
WAIT = 30_000   # ms; a generous bound, never a sleep


def logged_in_bridge(qtbot, bridge_factory, server, user_id="me", register=True, **kw):
    bridge = bridge_factory(server, **kw)
    with qtbot.waitSignal(bridge.roomsLoaded, timeout=WAIT):
        if register:
            bridge.register(user_id, PASSWORD, "나 Me")
        else:
            bridge.login(user_id, PASSWORD)
    assert bridge.loggedIn and bridge.userId == user_id
    return bridge


def room_of(bridge, folder):
    return bridge.rooms.get(folder)


def open_room(qtbot, bridge, folder):
    bridge.openRoom(folder)
    qtbot.waitUntil(lambda: not bridge.loadingRoom and bridge.members.count > 0, timeout=WAIT)


def test_login_lists_rooms_and_remembers_the_user(qtbot, bridge_factory, server):
    kim = logged_in_peer(server, "kim")
    kim.register("me", PASSWORD, "나")
    key = RoomKey(**{k: v for k, v in kim.create_room("가족 family", invite=["me"]).items()
                     if k in ("session_id", "creator_id")})
    kim.send_text(key, "안녕하세요 hello")
    bridge = logged_in_bridge(qtbot, bridge_factory, server, register=False)
    assert bridge.userName == "나"
    assert bridge.connectionState == "online"
    room = room_of(bridge, key.folder)
    assert room.name == "가족 family" and room.unread == 1 and room.preview == "안녕하세요 hello"
    assert bridge.lastUserId == "me"
    bridge.shutdown()                                  # a restart, with the same settings file
    assert bridge_factory(server, name="client").lastUserId == "me"
    kim.close()


def test_wrong_password_is_reported_in_words(qtbot, bridge_factory, server):
    logged_in_peer(server, "kim").close()
    bridge = bridge_factory(server)
    with qtbot.waitSignal(bridge.loginFailed, timeout=WAIT) as failed:
        bridge.login("kim", "not the password")
    assert failed.args == ["Wrong user id or password."]
    assert not bridge.loggedIn and not bridge.busy
    with qtbot.waitSignal(bridge.loginFailed, timeout=WAIT) as taken:
        bridge.register("kim", PASSWORD, "")
    assert "taken" in taken.args[0]


def test_room_list_follows_pushed_messages(qtbot, bridge_factory, server):
    kim = logged_in_peer(server, "kim")
    kim.register("me", PASSWORD)
    first = kim.create_room("first", invite=["me"])
    second = kim.create_room("second", invite=["me"])
    kim.send_text(RoomKey(second["session_id"], second["creator_id"]), "older news")
    bridge = logged_in_bridge(qtbot, bridge_factory, server, register=False)
    assert [r.folder for r in bridge.rooms.rooms()][0] == second["room"]
    kim.send_text(RoomKey(first["session_id"], first["creator_id"]), "새 소식 news")
    qtbot.waitUntil(lambda: bridge.rooms.rooms()[0].folder == first["room"], timeout=WAIT)
    top = bridge.rooms.rooms()[0]
    assert top.preview == "새 소식 news" and top.unread == 1
    third = kim.create_room("third", invite=["me"])     # an invitation adds the room live
    qtbot.waitUntil(lambda: room_of(bridge, third["room"]) is not None, timeout=WAIT)
    kim.close()


def test_sending_from_the_ui_reaches_a_headless_peer(qtbot, bridge_factory, server):
    lee = logged_in_peer(server, "lee")
    received = []
    lee.on_event(lambda e: received.append(e) if e["event"] == "message" else None)
    bridge = logged_in_bridge(qtbot, bridge_factory, server)
    with qtbot.waitSignal(bridge.roomsLoaded, timeout=WAIT):
        bridge.createRoom("우리 방 our room", "", "lee")
    qtbot.waitUntil(lambda: bridge.currentRoom != "", timeout=WAIT)
    open_folder = bridge.currentRoom
    qtbot.waitUntil(lambda: not bridge.loadingRoom, timeout=WAIT)
    image = tmp_image(bridge)
    bridge.sendText("안녕 lee!\n두 번째 줄")
    bridge.sendEmoticon("smile")
    bridge.sendImage(image)
    qtbot.waitUntil(lambda: bridge.messages.count == 3, timeout=WAIT)   # our own, echoed
    gevent_wait(lambda: len(received) >= 3, what="lee receiving 3 messages")
    assert [(m["chat_type"], m["seq"]) for m in received] == [("text", 1), ("emoticon", 2), ("image", 3)]
    assert received[0]["content"].decode() == "안녕 lee!\n두 번째 줄"
    assert received[1]["content"] == b"smile"
    assert received[2]["content"].startswith(b"\x89PNG")
    assert f"{received[0]['session_id']}_{received[0]['creator_id']}" == open_folder
    newest = bridge.messages.row(0)
    assert newest.chat_type == "image" and newest.width == 3 and newest.height == 2
    lee.close()


def tmp_image(bridge) -> str:
    """A 3x2 BMP file (not PNG/JPEG, so the client has to convert it)."""
    import tempfile
    from PyQt5.QtGui import QColor, QImage
    image = QImage(3, 2, QImage.Format_RGB32)
    image.fill(QColor("orange"))
    path = tempfile.NamedTemporaryFile(suffix=".bmp", delete=False).name
    assert image.save(path, "BMP")
    return path


def test_headless_messages_arrive_live_with_read_counters(qtbot, bridge_factory, server):
    kim = logged_in_peer(server, "kim")
    kim.register("me", PASSWORD)
    reply = kim.create_room("live", invite=["me"])
    key = RoomKey(reply["session_id"], reply["creator_id"])
    bridge = logged_in_bridge(qtbot, bridge_factory, server, register=False)
    open_room(qtbot, bridge, reply["room"])
    kim.send_text(key, "first")
    kim.send(key, "image", JPEG_TINY)
    qtbot.waitUntil(lambda: bridge.messages.count == 2, timeout=WAIT)
    # The window counts as active, so the room is marked read and kim sees it.
    qtbot.waitUntil(lambda: room_of(bridge, reply["room"]).unread == 0, timeout=WAIT)
    # Each poll asks the server (running this thread's gevent hub) while Qt's loop runs between.
    qtbot.waitUntil(lambda: {m["user_id"]: m["read_seq"] for m in kim.room_members(key)}["me"] == 2,
                    timeout=WAIT)
    bridge.sendText("my reply")
    qtbot.waitUntil(lambda: bridge.messages.count == 3, timeout=WAIT)
    assert bridge.messages.unread_count(3) == 1    # kim has not read my reply yet
    kim.mark_read(key, 3)
    qtbot.waitUntil(lambda: bridge.messages.unread_count(3) == 0, timeout=WAIT)
    kim.close()


DAYS = {dt.date(2026, 3, d): n for d, n in [(1, 3), (2, 1), (4, 5), (9, 2), (10, 4), (20, 2), (21, 3)]}


def test_older_history_loads_three_days_at_a_time(qtbot, bridge_factory, server, db):
    kim = logged_in_peer(server, "kim")
    kim.register("me", PASSWORD)
    reply = kim.create_room("diary", invite=["me"])
    key = RoomKey(reply["session_id"], reply["creator_id"])
    total = seed_history(db, server.data_dir / "archive", key, DAYS, user_id="kim")
    bridge = logged_in_bridge(qtbot, bridge_factory, server, register=False)
    open_room(qtbot, bridge, reply["room"])
    qtbot.waitUntil(lambda: not bridge.loadingHistory, timeout=WAIT)
    # Login's catch-up cached the last 3 days (seq 12-20, from Mar 10); a room this short loads
    # a page at once: the oldest shown day again (it might be partial) and 2 before it (seq 5-11).
    assert bridge.messages.count == 16 and bridge.messages.oldest_seq == 5
    assert not bridge.historyComplete
    bridge.loadOlder()
    assert bridge.loadingHistory
    qtbot.waitUntil(lambda: not bridge.loadingHistory, timeout=WAIT)
    assert bridge.historyComplete
    assert [bridge.messages.row(i).seq for i in range(bridge.messages.count)] == list(range(total, 0, -1))
    assert bridge.messages.row(total - 1).text == "seeded message 1"
    kim.close()


def test_reopening_shows_cached_history_at_once(qtbot, bridge_factory, server, tmp_path):
    kim = logged_in_peer(server, "kim")
    kim.register("me", PASSWORD)
    reply = kim.create_room("cache", invite=["me"])
    key = RoomKey(reply["session_id"], reply["creator_id"])
    for i in range(50):
        kim.send_text(key, f"message {i}")
    data = tmp_path / "shared-data"
    first = logged_in_bridge(qtbot, bridge_factory, server, register=False, data_dir=data, name="a")
    open_room(qtbot, first, reply["room"])
    assert first.messages.count == 50
    first.shutdown()
    kim.send_text(key, "while you were away")
    second = logged_in_bridge(qtbot, bridge_factory, server, register=False, data_dir=data, name="b")
    open_room(qtbot, second, reply["room"])
    assert second.messages.count == 51 and second.messages.row(0).text == "while you were away"
    kim.close()


def test_a_big_room_loads_in_chunks(qtbot, bridge_factory, server, db):
    kim = logged_in_peer(server, "kim")
    kim.register("me", PASSWORD)
    reply = kim.create_room("big", invite=["me"])
    key = RoomKey(reply["session_id"], reply["creator_id"])
    seed_history(db, server.data_dir / "archive", key, {dt.date(2026, 3, 1): 2000}, user_id="kim")
    bridge = logged_in_bridge(qtbot, bridge_factory, server, register=False)
    inserts = []
    bridge.messages.rowsInserted.connect(lambda parent, first, last: inserts.append(last - first + 1))
    open_room(qtbot, bridge, reply["room"])
    assert bridge.messages.count == 2000 and sum(inserts) == 2000
    assert max(inserts) <= 300 and len(inserts) >= 7     # many small inserts, the loop runs between
    kim.close()


def test_room_management(qtbot, bridge_factory, server):
    lee = logged_in_peer(server, "lee")
    park = logged_in_peer(server, "park")
    events = []
    lee.on_event(events.append)
    bridge = logged_in_bridge(qtbot, bridge_factory, server)
    with qtbot.waitSignal(bridge.roomsLoaded, timeout=WAIT):
        bridge.createRoom("project", "", "lee")
    qtbot.waitUntil(lambda: bridge.members.count == 2, timeout=WAIT)
    folder = bridge.currentRoom
    bridge.inviteMembers("park")
    qtbot.waitUntil(lambda: bridge.members.count == 3, timeout=WAIT)
    bridge.renameRoom("프로젝트 project")
    qtbot.waitUntil(lambda: bridge.currentRoomName == "프로젝트 project", timeout=WAIT)
    bridge.setRoomImage(tmp_image(bridge))
    qtbot.waitUntil(lambda: bridge.currentRoomImage != "", timeout=WAIT)
    bridge.setProfile("새 이름", tmp_image(bridge))
    qtbot.waitUntil(lambda: bridge.userName == "새 이름" and bridge.avatarSource != "", timeout=WAIT)
    park.leave(RoomKey.parse(folder))
    qtbot.waitUntil(lambda: bridge.members.count == 2, timeout=WAIT)
    gevent_wait(lambda: {"invited", "members_joined", "room_renamed", "room_image"}
                <= {e["event"] for e in events}, what="lee hearing of the changes")
    bridge.leaveRoom()
    qtbot.waitUntil(lambda: bridge.currentRoom == "" and room_of(bridge, folder) is None, timeout=WAIT)
    lee.close()
    park.close()


def test_reconnects_and_catches_up_after_the_server_restarts(qtbot, bridge_factory, server):
    kim = logged_in_peer(server, "kim")
    kim.register("me", PASSWORD)
    reply = kim.create_room("resilient", invite=["me"])
    key = RoomKey(reply["session_id"], reply["creator_id"])
    bridge = logged_in_bridge(qtbot, bridge_factory, server, register=False)
    open_room(qtbot, bridge, reply["room"])
    states = []
    bridge.connectionChanged.connect(lambda: states.append(bridge.connectionState))
    port = server.address[1]
    kim.close()
    server.terminate()
    qtbot.waitUntil(lambda: bridge.connectionState != "online", timeout=WAIT)
    server.start(port=port)
    kim = logged_in_peer(server, "kim", register=False)
    kim.send_text(key, "sent while you were reconnecting")
    qtbot.waitUntil(lambda: bridge.connectionState == "online", timeout=WAIT)
    qtbot.waitUntil(lambda: bridge.messages.count == 1, timeout=WAIT)
    assert bridge.messages.row(0).text == "sent while you were reconnecting"
    assert "offline" in states or "reconnecting" in states
    kim.close()
