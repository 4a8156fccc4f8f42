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
from ..storage.archive import Archive, cut_day, filter_after, parse_day
from ..storage.pool import Pool
from . import Caller, Reply, check_logged_in
from .rooms import check_member, image_tag

DAYS_PER_PAGE = 3
# Content per reply: well under the 16 MiB frame cap (msgpack and map overhead are small),
# yet at least one record always travels, and a 10 MiB image is 13.4 MiB in base64.
REPLY_BUDGET = 12 * 1024 * 1024


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

    def room_content(self, room: room_db.Room, known_seq: int, budget: int = REPLY_BUDGET
                     ) -> tuple[list[dict[str, Any]], bool, int]:
        """What a client that has everything up to ``known_seq`` lacks: at most 3 days of
        content, oldest first, within ``budget`` bytes; whether older missing messages remain
        (the gap flag); and the bytes used."""
        if known_seq >= room.last_seq or budget <= 0:
            return [], known_seq < room.last_seq, 0
        days = self._committed_days(room)
        content: list[dict[str, Any]] = []
        used = 0
        reached = False
        cut = False
        for day in days[:DAYS_PER_PAGE]:
            data = self._read(room, day)
            if data is None:
                continue
            whole = True
            if known_seq:
                newer = filter_after(data, known_seq)
                if newer is None:
                    reached = True
                    break
                whole = newer == data
                data = newer
            if used + len(data) > budget:
                if content:
                    cut = True
                    break
                data, _ = cut_day(data, budget=budget)
                assert data is not None
                whole = False
                cut = True
            content.append({"chat_date": day.isoformat(), "content": data})
            used += len(data)
            if cut or not whole:
                reached = not cut
                break
        content.reverse()
        gap = cut or (not reached and len(days) > DAYS_PER_PAGE)
        return content, gap, used

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
        budget = REPLY_BUDGET
        for summary in summaries:
            room = summary.room
            mine = known.get(room.key, {})
            content, gap, used = self.room_content(room, int(mine.get("last_seq", 0)), budget)
            budget -= used
            tag = image_tag(room, self.archive)
            image = None
            if tag and tag != mine.get("image_tag"):
                image = self.archive.read_image(self.archive.room_dir(*room.key))
                if image is not None and len(image) > budget:
                    image = None                # over this reply's budget: the next init sends it
                budget -= len(image or b"")
            data.append({**room.key.to_wire(), "session_name": room.name, "session_img": image,
                         "image_tag": tag if image is not None or tag == mine.get("image_tag") else None,
                         "content": content, "gap": gap, "last_seq": room.last_seq,
                         "read_seq": summary.read_seq, "unread": summary.unread, "members": summary.members})
        return {"chatroom_init_data": data}

    def do_history(self, caller: Caller, session_id: str, creator_id: str, before: str | None,
                   before_seq: int | None) -> Reply:
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
        # With before_seq the day named by ``before`` is included (cut below that seq): that is
        # how a client continues inside a day too big for one reply.
        limit = before_day + dt.timedelta(days=1) if before_day and before_seq else before_day
        days = self._committed_days(room, limit)
        content: list[dict[str, Any]] = []
        used = 0
        complete = True
        for day in days:
            if len(content) == DAYS_PER_PAGE:
                complete = False
                break
            data = self._read(room, day)
            if data is None:
                continue
            if before_seq is not None:
                data, _ = cut_day(data, before_seq=before_seq)
                if data is None:
                    continue
            if used + len(data) > REPLY_BUDGET:
                complete = False
                if content:
                    break
                data, _ = cut_day(data, budget=REPLY_BUDGET)
                assert data is not None
                content.append({"chat_date": day.isoformat(), "content": data})
                break
            content.append({"chat_date": day.isoformat(), "content": data})
            used += len(data)
        content.reverse()
        reply: dict[str, Any] = {**key.to_wire(), "content": content,
                                 "beginning": complete and len(content) == len(days[:DAYS_PER_PAGE])
                                 and len(days) <= DAYS_PER_PAGE}
        if content:
            first = parse_day(content[0]["content"])[0]["seq"]
            reply.update(next_before=content[0]["chat_date"], next_before_seq=first)
        return reply

    def do_fetch(self, caller: Caller, session_id: str, creator_id: str, after_seq: int, limit: int) -> Reply:
        me = check_logged_in(caller)
        key = RoomKey(session_id, creator_id)
        with self.pool.transaction("fetch") as cur:
            check_member(cur, key, me)
            room = room_db.get_room(cur, key)
        assert room is not None
        messages: list[dict[str, Any]] = []
        used = 0
        if after_seq < room.last_seq:
            # Find the day holding after_seq + 1 by first seqs alone, then read forward from it
            # only as much as the limits allow: never the whole history into memory.
            days = self._committed_days(room)
            folder = self.archive.room_dir(*room.key)
            start = 0
            for i, day in enumerate(days):
                first = self.archive.first_seq(folder, day)
                if first is not None and first <= after_seq + 1:
                    start = i
                    break
                start = i
            for day in reversed(days[:start + 1]):
                data = self._read(room, day)
                newer = filter_after(data, after_seq) if data is not None else None
                if newer is None:
                    continue
                for m in parse_day(newer):
                    size = len(m["content"])
                    if messages and (len(messages) > limit or used + size > REPLY_BUDGET):
                        break
                    messages.append({**m, "content": base64.b64decode(m["content"])})
                    used += size
                if len(messages) > limit or used >= REPLY_BUDGET:
                    break
        more = len(messages) > limit or (bool(messages) and messages[-1]["seq"] < room.last_seq)
        messages = messages[:limit]
        return {**key.to_wire(), "messages": messages, "more": more, "last_seq": room.last_seq}
