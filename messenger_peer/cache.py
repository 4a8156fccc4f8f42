"""The peer's local copy of history, in the same layout as the server's archive.

Each room keeps the messages from ``first_seq`` to ``last_seq`` with no hole, in day files
written with the archive's own append code, plus a small ``cache_state.json``. A restarted
client tells the server each room's ``last_seq`` at init and receives only the difference.
The cache is only a cache: when the server says a gap cannot be bridged, the room's copy is
reset and starts again from what the server sent. Without a folder it keeps messages in memory.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from messenger_protocol.messages import RoomKey

# The archive module is plain file I/O with no server state; sharing it keeps the two
# layouts identical by construction.
from messenger_server.storage.archive import Archive, ArchiveError, make_record, parse_day

log = logging.getLogger(__name__)

STATE_NAME = "cache_state.json"


def decode_records(day_json: bytes, room: RoomKey) -> list[dict[str, Any]]:
    """A DD.json's records as message dicts with the room and decoded content."""
    return [{**room.to_wire(), "seq": r["seq"], "user_id": r["user_id"], "chat_type": r["chat_type"],
             "content": base64.b64decode(r["content"]), "chat_time": r["chat_time"]}
            for r in parse_day(day_json)]


class HistoryCache:
    """Messages per room, contiguous by seq. ``root`` None keeps them in memory only."""

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self._memory: dict[RoomKey, list[dict[str, Any]]] = {}
        self._state: dict[RoomKey, dict[str, Any]] = {}
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)
            self.archive = Archive(root)
            self._load()

    def _load(self) -> None:
        assert self.root is not None
        for folder in self.root.iterdir():
            try:
                key = RoomKey.parse(folder.name)
                state = json.loads((folder / STATE_NAME).read_text())
                if state.get("day"):
                    self.archive.repair(folder, dt.date.fromisoformat(state["day"]), state["size"])
                self._state[key] = state
            except (ValueError, OSError, KeyError, ArchiveError) as exc:
                log.warning("dropping unreadable cache of %s: %s", folder.name, exc)
                shutil.rmtree(folder, ignore_errors=True)

    # -- reading -------------------------------------------------------------------------
    def rooms(self) -> dict[RoomKey, int]:
        """Every cached room and its last seq: what the client tells the server at init."""
        if self.root is None:
            return {k: v[-1]["seq"] for k, v in self._memory.items() if v}
        return {k: s["last_seq"] for k, s in self._state.items() if s.get("last_seq")}

    def last_seq(self, room: RoomKey) -> int:
        if self.root is None:
            msgs = self._memory.get(room)
            return msgs[-1]["seq"] if msgs else 0
        return self._state.get(room, {}).get("last_seq", 0)

    def messages(self, room: RoomKey) -> list[dict[str, Any]]:
        """The cached messages of a room, oldest first, content as bytes."""
        if self.root is None:
            return list(self._memory.get(room, ()))
        state = self._state.get(room)
        if not state or not state.get("day"):
            return []
        folder = self.archive.room_dir(*room)
        committed = dt.date.fromisoformat(state["day"])
        out: list[dict[str, Any]] = []
        for day in self.archive.list_days(folder):
            data = self.archive.read_day(folder, day, committed, state["size"])
            if data is not None:
                out += decode_records(data, room)
        return out

    # -- writing -------------------------------------------------------------------------
    def add(self, room: RoomKey, messages: list[dict[str, Any]]) -> None:
        """Append messages that continue the room's history (first seq = last_seq + 1, or
        any seq when the room's cache is empty)."""
        if not messages:
            return
        last = self.last_seq(room)
        if last and messages[0]["seq"] != last + 1:
            raise ValueError(f"cache of {room.folder}: seq {messages[0]['seq']} does not follow {last}")
        if self.root is None:
            self._memory.setdefault(room, []).extend(messages)
            return
        folder = self.archive.room_dir(*room)
        state = self._state.get(room) or {"first_seq": messages[0]["seq"], "last_seq": 0, "day": None, "size": 0}
        day = dt.date.fromisoformat(state["day"]) if state["day"] else None
        size = state["size"]
        for msg_day, group in _group_by_day(messages):
            msg_day = max(msg_day, day) if day else msg_day
            records = [make_record(m["user_id"], m["chat_time"], m["chat_type"], m["content"], m["seq"]) for m in group]
            size, pending = self.archive.write_records(folder, msg_day, records, day, size)
            pending.close()   # a cache needs no fsync: a torn copy is repaired or refetched
            day = msg_day
        state.update(last_seq=messages[-1]["seq"], day=day.isoformat(), size=size)
        self._state[room] = state
        _write_json(folder / STATE_NAME, state)

    def reset(self, room: RoomKey) -> None:
        """Forget a room's cached history (its copy can no longer be continued)."""
        self._memory.pop(room, None)
        if self.root is not None and room in self._state:
            del self._state[room]
            shutil.rmtree(self.archive.room_dir(*room), ignore_errors=True)


def _group_by_day(messages: list[dict[str, Any]]) -> list[tuple[dt.date, list[dict[str, Any]]]]:
    groups: list[tuple[dt.date, list[dict[str, Any]]]] = []
    for m in messages:
        day = dt.date.fromisoformat(m["chat_time"][:10])
        if groups and groups[-1][0] >= day:
            groups[-1][1].append(m)
        else:
            groups.append((day, [m]))
    return groups


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)
