"""The room list: image, name, last message preview, time and unread badge, most recent first.

It starts from ``list_rooms`` and then follows pushed events by itself (a new message moves
its room to the top and bumps the badge), so the list is live without asking the server again.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from PyQt5.QtCore import QModelIndex, pyqtSlot

from .base import RoleListModel, parse_time, role_enum, short_when

Roles = role_enum("RoomRoles", "folder", "name", "memberCount", "preview", "timeText", "unread",
                  "imageSource", "lastSeq")

PREVIEWS = {"image": "Photo", "emoticon": "Emoticon"}


@dataclass
class Room:
    folder: str
    session_id: str
    creator_id: str
    name: str
    members: int = 1
    last_seq: int = 0
    read_seq: int = 0
    unread: int = 0
    last_time: str | None = None
    last_user_id: str | None = None
    last_type: str | None = None
    last_preview: str = ""
    image_tag: str | None = None
    image_url: str = ""

    @property
    def preview(self) -> str:
        if self.last_type in PREVIEWS:
            return PREVIEWS[self.last_type]
        return (self.last_preview or "").replace("\n", " ")


def room_from_summary(summary: dict[str, Any]) -> Room:
    """A row from one ``list_rooms`` entry."""
    return Room(folder=f"{summary['session_id']}_{summary['creator_id']}", session_id=summary["session_id"],
                creator_id=summary["creator_id"], name=summary.get("name") or "", members=summary.get("members") or 1,
                last_seq=summary.get("last_seq") or 0, read_seq=summary.get("read_seq") or 0,
                unread=summary.get("unread") or 0, last_time=summary.get("last_time"),
                last_user_id=summary.get("last_user_id"), last_type=summary.get("last_type"),
                last_preview=summary.get("last_preview") or "", image_tag=summary.get("image_tag"))


class RoomsModel(RoleListModel):
    """Rooms of the logged-in user, most recent activity first."""

    Roles = Roles

    def reset(self, summaries: Iterable[dict[str, Any]]) -> None:
        """Replace the list with ``list_rooms``' answer, keeping known room images."""
        images = {r.folder: r.image_url for r in self._rows}
        rows = [room_from_summary(s) for s in summaries]
        for r in rows:
            r.image_url = images.get(r.folder, "") if r.image_tag else ""
        rows.sort(key=lambda r: r.last_time or "", reverse=True)
        self.beginResetModel()
        self._rows = rows
        self.endResetModel()

    def get(self, folder: str) -> Room | None:
        return next((r for r in self._rows if r.folder == folder), None)

    def index_of(self, folder: str) -> int:
        return next((i for i, r in enumerate(self._rows) if r.folder == folder), -1)

    @pyqtSlot(str, result=int)
    def indexOf(self, folder: str) -> int:  # noqa: N802 (a QML name)
        return self.index_of(folder)

    def rooms(self) -> list[Room]:
        return list(self._rows)

    def on_message(self, event: dict[str, Any], me: str, reading: bool) -> bool:
        """Apply a message event; ``reading`` when the user has that room open. Returns False
        when the room is not in the list (the caller then asks for the list again)."""
        folder = f"{event['session_id']}_{event['creator_id']}"
        i = self.index_of(folder)
        if i < 0:
            return False
        room = self._rows[i]
        if event["seq"] <= room.last_seq and room.last_time:
            return True     # already counted by list_rooms
        room.last_seq, room.last_time = event["seq"], event.get("chat_time")
        room.last_user_id, room.last_type = event["user_id"], event.get("chat_type")
        if room.last_type == "text":
            room.last_preview = bytes(event.get("content") or b"").decode("utf-8", "replace")[:100]
        if event["user_id"] == me or reading:
            room.read_seq, room.unread = max(room.read_seq, event["seq"]), 0
        else:
            room.unread = max(0, room.last_seq - room.read_seq)
        self._changed(i)
        self._move_to_top(i)
        return True

    def set_read(self, folder: str, read_seq: int) -> None:
        """Our own read position moved (here or on another device)."""
        i = self.index_of(folder)
        if i >= 0:
            room = self._rows[i]
            room.read_seq = max(room.read_seq, read_seq)
            room.unread = max(0, room.last_seq - room.read_seq)
            self._changed(i, None, [Roles.unread])

    def update(self, folder: str, **fields: Any) -> None:
        """Change fields of a room (name, image_url, members ...) in place."""
        i = self.index_of(folder)
        if i >= 0:
            for key, value in fields.items():
                setattr(self._rows[i], key, value)
            self._changed(i)

    def remove(self, folder: str) -> None:
        i = self.index_of(folder)
        if i >= 0:
            self.beginRemoveRows(QModelIndex(), i, i)
            del self._rows[i]
            self.endRemoveRows()

    def _move_to_top(self, i: int) -> None:
        if i > 0:
            self.beginMoveRows(QModelIndex(), i, i, QModelIndex(), 0)
            self._rows.insert(0, self._rows.pop(i))
            self.endMoveRows()

    def role_value(self, i: int, role: Any) -> Any:
        r = self._rows[i]
        return {
            Roles.folder: r.folder, Roles.name: r.name, Roles.memberCount: r.members,
            Roles.preview: r.preview, Roles.timeText: short_when(parse_time(r.last_time)),
            Roles.unread: r.unread, Roles.imageSource: r.image_url, Roles.lastSeq: r.last_seq,
        }.get(role)
