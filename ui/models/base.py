"""Shared pieces of the list models: the role plumbing and how times are shown."""
from __future__ import annotations

import datetime as dt
from enum import IntEnum
from typing import Any

from PyQt5.QtCore import QAbstractListModel, QByteArray, QModelIndex, Qt, pyqtProperty, pyqtSignal


def role_enum(name: str, *roles: str) -> type[IntEnum]:
    """An IntEnum of roles numbered from Qt.UserRole + 1; QML sees the member names."""
    return IntEnum(name, {role: Qt.UserRole + 1 + i for i, role in enumerate(roles)})  # type: ignore[return-value]


class RoleListModel(QAbstractListModel):
    """A list model whose rows are Python objects and whose roles come from ``Roles``."""

    Roles: type[IntEnum]
    countChanged = pyqtSignal()

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._rows: list[Any] = []
        self.rowsInserted.connect(self.countChanged)
        self.rowsRemoved.connect(self.countChanged)
        self.modelReset.connect(self.countChanged)

    def roleNames(self) -> dict[int, QByteArray]:
        return {role.value: QByteArray(role.name.encode()) for role in self.Roles}

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    @pyqtProperty(int, notify=countChanged)
    def count(self) -> int:
        return len(self._rows)

    def data(self, index: QModelIndex, role: int = Qt.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        try:
            return self.role_value(index.row(), self.Roles(role))
        except ValueError:
            return None

    def role_value(self, row: int, role: IntEnum) -> Any:
        raise NotImplementedError

    def _changed(self, first: int, last: int | None = None, roles: list[int] | None = None) -> None:
        if self._rows and 0 <= first < len(self._rows):
            last = min(len(self._rows) - 1, first if last is None else last)
            self.dataChanged.emit(self.index(first), self.index(last), roles or [])


def parse_time(iso: str | None) -> dt.datetime | None:
    """A server timestamp (ISO 8601 with offset) in the local time zone, or None."""
    if not iso:
        return None
    try:
        return dt.datetime.fromisoformat(iso).astimezone()
    except ValueError:
        return None


def clock(when: dt.datetime | None) -> str:
    """``14:05``: the time shown beside a bubble."""
    return when.strftime("%H:%M") if when else ""


def day_label(day: dt.date) -> str:
    """``Thursday, 14 September 2023``: the text of a day separator."""
    return f"{day:%A}, {day.day} {day:%B %Y}"


def short_when(when: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """The room list's time: the clock today, 'Yesterday', 'Sep 14' this year, else the date."""
    if when is None:
        return ""
    now = now or dt.datetime.now().astimezone()
    if when.date() == now.date():
        return clock(when)
    if when.date() == now.date() - dt.timedelta(days=1):
        return "Yesterday"
    if when.year == now.year:
        return f"{when:%b} {when.day}"
    return when.strftime("%Y-%m-%d")
