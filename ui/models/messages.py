"""The open room's messages as chat bubbles, newest first.

Newest first because the chat ListView lays out bottom to top: a new message is row 0 and
the view stays pinned to the bottom, and older history appends at the end without moving what
is on screen. Rows are ``Message`` objects prepared off the Qt thread (``prepare``); roles that
depend on neighbours (day separators, sender grouping, time stamps) and the unread counter are
computed when QML asks, so a read receipt or a name change is one ``dataChanged``.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Iterable

from PyQt5.QtCore import QModelIndex, pyqtProperty, pyqtSignal

from ..emoticons import emoticon_url
from ..images import ImageStore, image_size
from .base import RoleListModel, clock, day_label, parse_time, role_enum

Roles = role_enum("MessageRoles", "seq", "userId", "senderName", "avatarSource", "isOwn", "chatType",
                  "text", "imageSource", "imageWidth", "imageHeight", "emoticonSource", "timeText",
                  "dayText", "showDay", "showSender", "showTime", "unreadCount")


@dataclass
class Message:
    """One message, decoded: text for text, the store key for images, the id for emoticons."""

    seq: int
    user_id: str
    chat_type: str
    chat_time: str
    when: dt.datetime | None
    text: str = ""
    image_key: str = ""
    width: int = 0
    height: int = 0

    @property
    def day(self) -> dt.date | None:
        return self.when.date() if self.when else None

    @property
    def minute(self) -> tuple[Any, ...]:
        return (self.day, self.when.hour, self.when.minute) if self.when else ()


def prepare(room_folder: str, message: dict[str, Any], images: ImageStore) -> Message:
    """Turn a peer message dict into a row. Pure apart from filing image bytes in ``images``;
    called on the hub thread so decoding never happens on the Qt thread."""
    content: bytes = message.get("content") or b""
    kind = message.get("chat_type", "text")
    row = Message(seq=int(message["seq"]), user_id=message["user_id"], chat_type=kind,
                  chat_time=message.get("chat_time", ""), when=parse_time(message.get("chat_time")))
    if kind == "image":
        row.image_key = f"msg/{room_folder}/{row.seq}"
        images.put(row.image_key, content)
        row.width, row.height = image_size(content)
    else:
        # Emoticons are ASCII ids; text is UTF-8. Anything undecodable is shown, not dropped.
        row.text = content.decode("utf-8", errors="replace")
    return row


class MessagesModel(RoleListModel):
    """Bubbles of one room. Change it only from the Qt thread."""

    Roles = Roles
    roomChanged = pyqtSignal()

    def __init__(self, images: ImageStore, parent: Any = None) -> None:
        super().__init__(parent)
        self.images = images
        self.me = ""
        self.room = ""
        self._names: dict[str, str] = {}
        self._avatars: dict[str, str] = {}
        self._read: dict[str, int] = {}     # member -> read_seq; only current members count

    # -- the room ------------------------------------------------------------------------
    def reset(self, room: str, me: str) -> None:
        """Empty the model for ``room`` (a folder name), seen by user ``me``."""
        self.beginResetModel()
        self.room, self.me = room, me
        self._rows = []
        self._names, self._avatars, self._read = {}, {}, {}
        self.endResetModel()
        self.roomChanged.emit()

    @pyqtProperty(str, notify=roomChanged)
    def roomFolder(self) -> str:  # noqa: N802 (a QML name)
        return self.room

    def set_members(self, members: Iterable[dict[str, Any]]) -> None:
        """Names and read positions of the current members (``room_members``)."""
        members = list(members)
        self._names.update({m["user_id"]: m.get("name") or m["user_id"] for m in members})
        self._read = {m["user_id"]: int(m.get("read_seq") or 0) for m in members}
        self._changed(0, len(self._rows) - 1, [Roles.senderName, Roles.unreadCount])

    def set_read(self, user_id: str, read_seq: int) -> None:
        """A member read up to ``read_seq``: counters of the rows in between go down."""
        old = self._read.get(user_id)
        if old is None or read_seq <= old:
            return
        self._read[user_id] = read_seq
        self._changed_seq_range(old + 1, read_seq, [Roles.unreadCount])

    def member_left(self, user_id: str) -> None:
        if self._read.pop(user_id, None) is not None:
            self._changed(0, len(self._rows) - 1, [Roles.unreadCount])

    def members_joined(self, user_ids: Iterable[str], read_seq: int = 0) -> None:
        for user_id in user_ids:
            self._read.setdefault(user_id, read_seq)
        self._changed(0, len(self._rows) - 1, [Roles.unreadCount])

    def set_avatar(self, user_id: str, url: str) -> None:
        self._avatars[user_id] = url
        self._changed(0, len(self._rows) - 1, [Roles.avatarSource])

    def unread_count(self, seq: int) -> int:
        """KakaoTalk's counter: how many current members have not read message ``seq``."""
        return sum(1 for read_seq in self._read.values() if read_seq < seq)

    # -- rows ----------------------------------------------------------------------------
    @property
    def newest_seq(self) -> int:
        return self._rows[0].seq if self._rows else 0

    @property
    def oldest_seq(self) -> int:
        return self._rows[-1].seq if self._rows else 0

    @property
    def oldest_day(self) -> dt.date | None:
        """The server-side day (the chat_time's own date) of the oldest row."""
        return dt.date.fromisoformat(self._rows[-1].chat_time[:10]) if self._rows else None

    def row(self, index: int) -> Message:
        return self._rows[index]

    def add_newer(self, rows: list[Message]) -> int:
        """Insert rows newer than everything shown (oldest first in ``rows``); returns how many."""
        fresh = [r for r in rows if r.seq > self.newest_seq]
        fresh.sort(key=lambda r: r.seq, reverse=True)
        if not fresh:
            return 0
        self.beginInsertRows(QModelIndex(), 0, len(fresh) - 1)
        self._rows[:0] = fresh
        self.endInsertRows()
        # The former newest row may lose its time stamp to a newer one of the same minute.
        self._changed(len(fresh), None, [Roles.showTime])
        for r in fresh:
            self._mark_sender_read(r)
        return len(fresh)

    def add_older(self, rows: list[Message]) -> int:
        """Append rows older than everything shown (any order in ``rows``); returns how many."""
        oldest = self.oldest_seq
        old = [r for r in rows if not self._rows or r.seq < oldest]
        old.sort(key=lambda r: r.seq, reverse=True)
        if not old:
            return 0
        first = len(self._rows)
        self.beginInsertRows(QModelIndex(), first, first + len(old) - 1)
        self._rows.extend(old)
        self.endInsertRows()
        # The former oldest row may lose its day separator and sender name to its new neighbour.
        self._changed(first - 1, None, [Roles.showDay, Roles.showSender])
        return len(old)

    def _mark_sender_read(self, row: Message) -> None:
        # Sending moves the sender's read position (docs/protocol.md, send), with no event for it.
        if row.user_id in self._read and self._read[row.user_id] < row.seq:
            self.set_read(row.user_id, row.seq)

    def _changed_seq_range(self, low: int, high: int, roles: list[int]) -> None:
        if not self._rows:
            return
        # Rows are newest first and contiguous by seq in practice; find the index span.
        first = next((i for i, r in enumerate(self._rows) if r.seq <= high), None)
        if first is None:
            return
        last = first
        while last + 1 < len(self._rows) and self._rows[last + 1].seq >= low:
            last += 1
        self._changed(first, last, roles)

    # -- roles ---------------------------------------------------------------------------
    def role_value(self, i: int, role: Any) -> Any:
        r = self._rows[i]
        if role == Roles.seq:
            return r.seq
        if role == Roles.userId:
            return r.user_id
        if role == Roles.senderName:
            return self._names.get(r.user_id, r.user_id)
        if role == Roles.avatarSource:
            return self._avatars.get(r.user_id, "")
        if role == Roles.isOwn:
            return r.user_id == self.me
        if role == Roles.chatType:
            return r.chat_type
        if role == Roles.text:
            return r.text if r.chat_type != "image" else ""
        if role == Roles.imageSource:
            return ImageStore.url(r.image_key) if r.image_key else ""
        if role == Roles.imageWidth:
            return r.width
        if role == Roles.imageHeight:
            return r.height
        if role == Roles.emoticonSource:
            return emoticon_url(r.text) if r.chat_type == "emoticon" else ""
        if role == Roles.timeText:
            return clock(r.when)
        if role == Roles.dayText:
            return day_label(r.day) if r.day else ""
        if role == Roles.showDay:
            return self._show_day(i)
        if role == Roles.showSender:
            older = self._rows[i + 1] if i + 1 < len(self._rows) else None
            # First of a run (same sender, same minute): where the name, picture and tail go.
            return older is None or older.user_id != r.user_id or older.minute != r.minute
        if role == Roles.showTime:
            newer = self._rows[i - 1] if i > 0 else None
            return newer is None or newer.user_id != r.user_id or newer.minute != r.minute
        if role == Roles.unreadCount:
            return self.unread_count(r.seq)
        return None

    def _show_day(self, i: int) -> bool:
        return i + 1 >= len(self._rows) or self._rows[i + 1].day != self._rows[i].day
