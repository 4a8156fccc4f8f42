"""Members of the open room: name, profile picture, online state and read position."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from PyQt5.QtCore import QModelIndex

from .base import RoleListModel, role_enum

Roles = role_enum("MemberRoles", "userId", "name", "online", "readSeq", "avatarSource", "isMe")


@dataclass
class Member:
    user_id: str
    name: str
    online: bool = False
    read_seq: int = 0
    has_image: bool = False
    avatar: str = ""


class MembersModel(RoleListModel):
    """The open room's members, yourself first, then by name."""

    Roles = Roles

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.me = ""

    def reset(self, members: Iterable[dict[str, Any]], me: str) -> None:
        """Replace with ``room_members``' answer, keeping avatars already loaded."""
        avatars = {m.user_id: m.avatar for m in self._rows}
        rows = [Member(m["user_id"], m.get("name") or m["user_id"], bool(m.get("online")),
                       int(m.get("read_seq") or 0), bool(m.get("has_image")), avatars.get(m["user_id"], ""))
                for m in members]
        rows.sort(key=lambda m: (m.user_id != me, m.name.casefold()))
        self.beginResetModel()
        self.me, self._rows = me, rows
        self.endResetModel()

    def members(self) -> list[Member]:
        return list(self._rows)

    def get(self, user_id: str) -> Member | None:
        return next((m for m in self._rows if m.user_id == user_id), None)

    def set_avatar(self, user_id: str, url: str) -> None:
        for i, m in enumerate(self._rows):
            if m.user_id == user_id:
                m.avatar = url
                self._changed(i, None, [Roles.avatarSource])

    def set_read(self, user_id: str, read_seq: int) -> None:
        for i, m in enumerate(self._rows):
            if m.user_id == user_id and read_seq > m.read_seq:
                m.read_seq = read_seq
                self._changed(i, None, [Roles.readSeq])

    def remove(self, user_id: str) -> None:
        for i, m in enumerate(self._rows):
            if m.user_id == user_id:
                self.beginRemoveRows(QModelIndex(), i, i)
                del self._rows[i]
                self.endRemoveRows()
                return

    def role_value(self, i: int, role: Any) -> Any:
        m = self._rows[i]
        return {Roles.userId: m.user_id, Roles.name: m.name, Roles.online: m.online,
                Roles.readSeq: m.read_seq, Roles.avatarSource: m.avatar, Roles.isMe: m.user_id == self.me}.get(role)
