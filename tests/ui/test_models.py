"""The list models fed with peer events and rows, without QML or a server."""
from __future__ import annotations

import datetime as dt

import pytest
from PyQt5.QtCore import QBuffer, QByteArray, QIODevice, QModelIndex
from PyQt5.QtGui import QColor, QImage

from ui.images import ImageProvider, ImageStore
from ui.models import MembersModel, MessagesModel, RoomsModel
from ui.models.base import short_when
from ui.models.messages import Roles as M, prepare
from ui.models.members import Roles as MR
from ui.models.rooms import Roles as R

FOLDER = "20260301_000001_kim"


def msg(seq, user="kim", text=None, when="2026-03-01T09:00:00.000+00:00", chat_type="text", content=None):
    return {"session_id": FOLDER[:15], "creator_id": "kim", "seq": seq, "user_id": user, "chat_type": chat_type,
            "content": content if content is not None else (text or f"message {seq}").encode(), "chat_time": when}


def png(width=4, height=3) -> bytes:
    image = QImage(width, height, QImage.Format_RGB32)
    image.fill(QColor("red"))
    buf = QBuffer()
    buf.open(QIODevice.WriteOnly)
    image.save(buf, "PNG")
    return bytes(buf.data())


@pytest.fixture
def messages(qtmodeltester):
    model = MessagesModel(ImageStore())
    model.reset(FOLDER, "me")
    yield model
    qtmodeltester.check(model)


def rows(model, images=None, *messages_):
    return [prepare(FOLDER, m, images or model.images) for m in messages_]


def value(model, row, role):
    return model.data(model.index(row), role)


def test_messages_newest_first_with_dedup(messages):
    assert messages.add_older(rows(messages, None, *(msg(s) for s in (3, 4, 5)))) == 3
    assert messages.add_newer(rows(messages, None, msg(5), msg(6))) == 1      # 5 is shown already
    assert messages.add_older(rows(messages, None, msg(1), msg(2), msg(4))) == 2
    assert [value(messages, i, M.seq) for i in range(messages.count)] == [6, 5, 4, 3, 2, 1]
    assert messages.newest_seq == 6 and messages.oldest_seq == 1
    assert messages.oldest_day == dt.date(2026, 3, 1)


def test_bubbles_group_by_sender_minute_and_day(messages):
    messages.add_older(rows(messages, None,
                            msg(1, "kim", when="2026-03-01T09:00:00.000+00:00"),
                            msg(2, "kim", when="2026-03-01T09:00:30.000+00:00"),
                            msg(3, "me", when="2026-03-01T09:00:40.000+00:00"),
                            msg(4, "kim", when="2026-03-02T10:00:00.000+00:00")))
    seq_row = {value(messages, i, M.seq): i for i in range(4)}
    show = {s: (value(messages, r, M.showDay), value(messages, r, M.showSender), value(messages, r, M.showTime))
            for s, r in seq_row.items()}
    # seq 1 starts the day and the run; 2 continues it and carries the run's time; 3 is mine;
    # 4 is on a new day (the days are local, so compare with the local dates).
    assert show[1] == (True, True, False)
    assert show[2] == (False, False, True)
    assert show[3][1:] == (True, True)
    new_day = dt.datetime.fromisoformat("2026-03-02T10:00:00+00:00").astimezone().date() != \
        dt.datetime.fromisoformat("2026-03-01T09:00:40+00:00").astimezone().date()
    assert show[4][0] is new_day
    assert value(messages, seq_row[3], M.isOwn) is True
    assert value(messages, seq_row[1], M.isOwn) is False
    assert value(messages, seq_row[1], M.timeText) == \
        dt.datetime.fromisoformat("2026-03-01T09:00:00+00:00").astimezone().strftime("%H:%M")
    assert "2026" in value(messages, seq_row[1], M.dayText)


def test_unread_counters_follow_read_positions(messages):
    messages.add_older(rows(messages, None, *(msg(s) for s in (1, 2, 3))))
    messages.set_members([{"user_id": "me", "name": "나", "read_seq": 3},
                          {"user_id": "kim", "name": "김철수", "read_seq": 3},
                          {"user_id": "lee", "name": "Lee", "read_seq": 1},
                          {"user_id": "park", "name": "Park", "read_seq": 0}])
    counts = lambda: [value(messages, i, M.unreadCount) for i in range(messages.count)]  # noqa: E731
    assert counts() == [2, 2, 1]           # rows newest first: seq 3, 2, 1
    changed = []
    messages.dataChanged.connect(lambda first, last, roles: changed.append((first.row(), last.row())))
    messages.set_read("lee", 3)
    assert counts() == [1, 1, 1] and changed == [(0, 1)]
    messages.member_left("park")
    assert counts() == [0, 0, 0]
    messages.add_newer(rows(messages, None, msg(4, "lee")))  # sending moves the sender's position
    assert value(messages, 0, M.unreadCount) == 2 and value(messages, 0, M.senderName) == "Lee"
    messages.members_joined(["choi"])
    assert value(messages, 0, M.unreadCount) == 3


def test_images_emoticons_and_names(messages):
    images = messages.images
    messages.add_newer(rows(messages, None, msg(1, chat_type="image", content=png(40, 30)),
                            msg(2, chat_type="emoticon", content=b"smile"),
                            msg(3, chat_type="emoticon", content=b"from_the_future"),
                            msg(4, text="한국어와 English")))
    assert value(messages, 3, M.imageSource) == f"image://store/msg/{FOLDER}/1"
    assert (value(messages, 3, M.imageWidth), value(messages, 3, M.imageHeight)) == (40, 30)
    assert images.get(f"msg/{FOLDER}/1").startswith(b"\x89PNG")
    assert value(messages, 2, M.emoticonSource).endswith("/ui/emoticons/smile.png")
    assert value(messages, 1, M.emoticonSource) == "" and value(messages, 1, M.text) == "from_the_future"
    assert value(messages, 0, M.text) == "한국어와 English"
    assert value(messages, 0, M.senderName) == "kim"        # no member list yet: the id
    messages.set_avatar("kim", "image://store/round/user/kim/1")
    assert value(messages, 0, M.avatarSource) == "image://store/round/user/kim/1"


def test_image_provider_decodes_and_rounds(qapp):
    store = ImageStore()
    store.put("pic", png(40, 30))
    provider = ImageProvider(store)
    from PyQt5.QtCore import QSize
    image, size = provider.requestImage("pic", QSize(20, 0))
    assert size == QSize(40, 30) and image.width() == 20
    image, _ = provider.requestImage("round/pic", QSize(16, 16))
    assert image.width() == image.height() == 16 and image.pixelColor(0, 0).alpha() == 0
    image, _ = provider.requestImage("missing", QSize())
    assert image.width() == 1


def summary(sid, name, last_time, last_seq=1, read_seq=1, unread=0, **kw):
    return {"session_id": sid, "creator_id": "kim", "name": name, "members": 3, "last_seq": last_seq,
            "read_seq": read_seq, "unread": unread, "last_time": last_time, "last_user_id": "kim",
            "last_type": "text", "last_preview": "hi", "image_tag": None, **kw}


def test_rooms_follow_messages(qtmodeltester):
    rooms = RoomsModel()
    rooms.reset([summary("20260301_000001", "old", "2026-03-01T09:00:00.000+00:00"),
                 summary("20260301_000002", "new", "2026-03-02T09:00:00.000+00:00", unread=2, last_seq=3)])
    qtmodeltester.check(rooms)
    assert [r.name for r in rooms.rooms()] == ["new", "old"]
    event = msg(2, "lee", "새 메시지", "2026-03-03T09:00:00.000+00:00")
    assert rooms.on_message(event, "me", reading=False)
    top = rooms.rooms()[0]
    assert (top.name, top.preview, top.unread, top.last_seq) == ("old", "새 메시지", 1, 2)
    assert rooms.data(rooms.index(0), R.unread) == 1
    rooms.on_message({**msg(3, "me", when="2026-03-03T09:01:00.000+00:00")}, "me", reading=False)
    assert rooms.rooms()[0].unread == 0                     # my own message reads the room
    rooms.on_message({**msg(4, "kim", when="2026-03-03T09:02:00.000+00:00"), "chat_type": "image"},
                     "me", reading=True)
    assert rooms.rooms()[0].unread == 0 and rooms.rooms()[0].preview == "Photo"
    assert not rooms.on_message({**msg(1), "session_id": "20990101_000001"}, "me", False)
    rooms.set_read("20260301_000002_kim", 3)
    assert rooms.get("20260301_000002_kim").unread == 0
    rooms.update("20260301_000002_kim", name="renamed")
    assert rooms.data(rooms.index(1), R.name) == "renamed"
    rooms.remove("20260301_000002_kim")
    assert rooms.count == 1 and rooms.indexOf("20260301_000001_kim") == 0
    qtmodeltester.check(rooms)


def test_room_times():
    now = dt.datetime(2026, 3, 10, 15, 0).astimezone()
    assert short_when(now.replace(hour=9, minute=5), now) == "09:05"
    assert short_when(now - dt.timedelta(days=1), now) == "Yesterday"
    assert short_when(now - dt.timedelta(days=5), now) == "Mar 5"
    assert short_when(now.replace(year=2024), now) == "2024-03-10"
    assert short_when(None, now) == ""


def test_members(qtmodeltester):
    members = MembersModel()
    members.reset([{"user_id": "lee", "name": "Lee", "read_seq": 1, "online": True, "has_image": False},
                   {"user_id": "me", "name": "나", "read_seq": 2, "online": True, "has_image": True},
                   {"user_id": "kim", "name": "김", "read_seq": 0, "online": False, "has_image": False}], "me")
    qtmodeltester.check(members)
    assert [m.user_id for m in members.members()] == ["me", "lee", "kim"]
    members.set_read("kim", 2)
    members.set_avatar("me", "image://store/round/user/me/1")
    assert members.get("kim").read_seq == 2 and members.data(members.index(0), MR.avatarSource) == \
        "image://store/round/user/me/1"
    members.remove("lee")
    assert members.count == 2
    assert members.rowCount(QModelIndex()) == 2 and QByteArray(b"userId") in members.roleNames().values()
