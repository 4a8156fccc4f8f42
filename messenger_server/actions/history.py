"""Reading history: ``init`` (after login: what each room's client lacks), ``history`` (page
back 3 days at a time) and ``fetch`` (messages after a seq, for filling a gap).

Everything is read from the archive files, cut at the committed size recorded in
SESSION_TB, so a reader never sees a record whose append has not committed.
"""
from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from messenger_protocol import ErrorCode, ProtocolError
from messenger_protocol.messages import MAX_ID, RoomKey, is_valid_session_id, is_valid_user_id

from ..storage import rooms as room_db
from ..storage.archive import Archive, filter_after, parse_day
from ..storage.pool import Pool
from . import Caller, Reply, check_logged_in
from .rooms import check_member, image_tag

DAYS_PER_PAGE = 3


class History:
    def __init__(self, pool: Pool, archive: Archive) -> None:
        self.pool = pool
        self.archive = archive

    def _committed_days(self, room: room_db.Room, before: dt.date | None = None) -> list[dt.date]:
        """Days with committed messages, newest first (strays past the committed day excluded)."""
        if room.archive_day is None:
            return []
        days = [d for d in self.archive.list_days(self.archive.room_dir(*room.key)) if d <= room.archive_day
                and (before is None or d < before)]
        days.sort(reverse=True)
        return days

    def _read(self, room: room_db.Room, day: dt.date) -> bytes | None:
        return self.archive.read_day(self.archive.room_dir(*room.key), day, room.archive_day, room.archive_size)

    def room_content(self, room: room_db.Room, known_seq: int) -> tuple[list[dict[str, Any]], bool]:
        """What a client that has everything up to ``known_seq`` lacks: at most 3 days of
        content, oldest first, and whether older missing messages remain (the gap flag)."""
        if known_seq >= room.last_seq:
            return [], False
        days = self._committed_days(room)
        content: list[dict[str, Any]] = []
        reached = False
        for day in days[:DAYS_PER_PAGE]:
            data = self._read(room, day)
            if data is None:
                continue
            if known_seq:
                newer = filter_after(data, known_seq)
                if newer is None:
                    reached = True
                    break
                if newer != data:
                    content.append({"chat_date": day.isoformat(), "content": newer})
                    reached = True
                    break
                data = newer
            content.append({"chat_date": day.isoformat(), "content": data})
        content.reverse()
        gap = not reached and len(days) > DAYS_PER_PAGE
        return content, gap

    def do_init(self, caller: Caller, rooms: list[dict[str, Any]]) -> Reply:
        me = check_logged_in(caller)
        known: dict[RoomKey, dict[str, Any]] = {}
        for entry in rooms:
            sid, cid = entry.get("session_id"), entry.get("creator_id")
            seq = entry.get("last_seq", 0)
            if not (is_valid_session_id(sid) and is_valid_user_id(cid)) or not isinstance(seq, int) \
                    or isinstance(seq, bool) or not 0 <= seq <= MAX_ID:
                raise ProtocolError(ErrorCode.BAD_REQUEST,
                                    "init: every entry of 'rooms' needs session_id, creator_id and last_seq")
            known[RoomKey(sid, cid)] = entry
        with self.pool.transaction("init") as cur:
            summaries = room_db.rooms_of_user(cur, me)
        data = []
        for summary in summaries:
            room = summary.room
            mine = known.get(room.key, {})
            content, gap = self.room_content(room, int(mine.get("last_seq", 0)))
            tag = image_tag(room, self.archive)
            data.append({**room.key.to_wire(), "session_name": room.name,
                         "session_img": self.archive.read_image(self.archive.room_dir(*room.key)) if tag and tag != mine.get("image_tag") else None,
                         "image_tag": tag, "content": content, "gap": gap, "last_seq": room.last_seq,
                         "read_seq": summary.read_seq, "unread": summary.unread, "members": summary.members})
        return {"chatroom_init_data": data}

    def do_history(self, caller: Caller, session_id: str, creator_id: str, before: str | None) -> Reply:
        me = check_logged_in(caller)
        key = RoomKey(session_id, creator_id)
        try:
            before_day = dt.date.fromisoformat(before) if before else None
        except ValueError:
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"history: {before!r} is not a date") from None
        with self.pool.transaction("history") as cur:
            check_member(cur, key, me)
            room = room_db.get_room(cur, key)
        assert room is not None
        days = self._committed_days(room, before_day)
        content = []
        for day in days[:DAYS_PER_PAGE]:
            data = self._read(room, day)
            if data is not None:
                content.append({"chat_date": day.isoformat(), "content": data})
        content.reverse()
        return {**key.to_wire(), "content": content, "beginning": len(days) <= DAYS_PER_PAGE}

    def do_fetch(self, caller: Caller, session_id: str, creator_id: str, after_seq: int, limit: int) -> Reply:
        me = check_logged_in(caller)
        key = RoomKey(session_id, creator_id)
        with self.pool.transaction("fetch") as cur:
            check_member(cur, key, me)
            room = room_db.get_room(cur, key)
        assert room is not None
        messages: list[dict[str, Any]] = []
        if after_seq < room.last_seq:
            for day in self._committed_days(room):
                data = self._read(room, day)
                newer = filter_after(data, after_seq) if data is not None else None
                if newer is None:
                    break
                messages[:0] = [{**m, "content": base64.b64decode(m["content"])} for m in parse_day(newer)]
                if newer != data:
                    break
        more = len(messages) > limit
        messages = messages[:limit]
        return {**key.to_wire(), "messages": messages, "more": more, "last_seq": room.last_seq}
