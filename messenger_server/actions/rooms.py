"""Room ops: create, rename, set image, invite, leave, list, members, mark read.

Authorisation is one rule: only a member may act on a room (read, write, invite, rename).
A room that does not exist looks the same as one you are not in, so ids cannot be probed.
Events for the push hub are emitted only after the transaction commits.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Callable

from messenger_protocol import ErrorCode, ProtocolError
from messenger_protocol.messages import RoomKey

from ..config import Config
from ..media import check_image
from ..storage import rooms as room_db
from ..storage import users as user_db
from ..storage.archive import IMAGE_NAME, Archive
from ..storage.pool import Pool
from . import Caller, Reply, check_logged_in

log = logging.getLogger(__name__)

# (event, room, data, audience): the audience is the user ids that should hear of it, fixed in
# the transaction that made the change, so a member who leaves right after still hears of
# everything that happened while they were in.
EventSink = Callable[[str, RoomKey, dict[str, Any], list[str]], None]
MAX_ROOMS_LISTED = 5000


def check_member(cur: Any, key: RoomKey, user_id: str) -> None:
    """Raise ``forbidden`` unless ``user_id`` is a member of ``key``."""
    if not room_db.is_member(cur, key, user_id):
        raise ProtocolError(ErrorCode.FORBIDDEN, f"you are not a member of room {key.folder}")


def image_tag(room: room_db.Room, archive: Archive) -> str | None:
    """A short tag that changes when the room image changes, so clients fetch it only then."""
    return room_image_tag(archive, room.key) if room.has_image else None


def room_image_tag(archive: Archive, key: RoomKey) -> str | None:
    try:
        st = (archive.room_dir(*key) / IMAGE_NAME).stat()
    except FileNotFoundError:
        return None
    return f"{st.st_size:x}-{st.st_mtime_ns:x}"


def room_summary(summary: room_db.RoomSummary, archive: Archive) -> dict[str, Any]:
    """What list_rooms (and the UI's room list) shows for one room."""
    room = summary.room
    return {**room.key.to_wire(), "name": room.name, "members": summary.members,
            "last_seq": room.last_seq, "read_seq": summary.read_seq, "unread": summary.unread,
            "last_time": room.last_time.isoformat(timespec="milliseconds") if room.last_time else None,
            "last_user_id": room.last_user_id, "last_type": room.last_type, "last_preview": room.last_preview,
            "image_tag": image_tag(room, archive)}


class Rooms:
    def __init__(self, config: Config, pool: Pool, archive: Archive, events: EventSink) -> None:
        self.config = config
        self.pool = pool
        self.archive = archive
        self.events = events

    def _check_sizes(self, cur: Any, key: RoomKey | None, joining: list[str]) -> None:
        """Refuse (``too_large``) a change that makes a room or a user's room list too big."""
        members = len(room_db.member_ids(cur, key)) if key is not None else 0
        if members + len(joining) > self.config.max_room_members:
            raise ProtocolError(ErrorCode.TOO_LARGE,
                                f"a room holds at most {self.config.max_room_members} members")
        full = [u for u, n in room_db.room_counts(cur, joining).items() if n >= self.config.max_rooms_per_user]
        if full:
            raise ProtocolError(ErrorCode.TOO_LARGE, f"{', '.join(sorted(full))} already "
                                f"belong(s) to {self.config.max_rooms_per_user} rooms, the most allowed")

    def _check_room_image(self, image: bytes) -> None:
        check_image(image, self.config.max_image_bytes, "the room image", allowed=("png",))

    def do_create_room(self, caller: Caller, name: str, image: bytes | None, invite: list[str]) -> Reply:
        me = check_logged_in(caller)
        if image is not None:
            self._check_room_image(image)
        invitees = sorted(set(invite) - {me})
        today = dt.datetime.now(self.config.zone).strftime("%Y%m%d")
        with self.pool.transaction("create_room") as cur:
            missing = set(invitees) - user_db.existing_user_ids(cur, invitees)
            if missing:
                raise ProtocolError(ErrorCode.NOT_FOUND, f"no such user: {', '.join(sorted(missing))}")
            self._check_sizes(cur, None, [me, *invitees])
            number = room_db.next_room_number(cur, me, today)
            key = RoomKey(f"{today}_{number:06d}", me)
            room_db.insert_room(cur, key, name, image is not None)
            room_db.add_members(cur, key, [me, *invitees])
            # Files before commit: a crash in between leaves a folder that the next create
            # of the same number (the counter was not committed either) simply overwrites.
            self.archive.write_info(self.archive.room_dir(*key), name)
            if image is not None:
                self.archive.write_image(self.archive.room_dir(*key), image)
        room_info = {**key.to_wire(), "name": name, "members": [me, *invitees], "last_seq": 0}
        for user_id in invitees:
            self.events("invited", key, {**room_info, "user_id": user_id, "by": me}, [user_id])
        log.info("%s created room %s with %d members", me, key.folder, 1 + len(invitees))
        return {**key.to_wire(), "room": key.folder, "name": name, "members": [me, *invitees]}

    def do_rename_room(self, caller: Caller, session_id: str, creator_id: str, name: str) -> Reply:
        me = check_logged_in(caller)
        key = RoomKey(session_id, creator_id)
        with self.pool.transaction("rename_room") as cur:
            check_member(cur, key, me)
            room_db.get_room(cur, key, lock=True)   # serialise renames with each other
            room_db.update_name(cur, key, name)
            self.archive.write_info(self.archive.room_dir(*key), name)
            audience = room_db.member_ids(cur, key)
        self.events("room_renamed", key, {"name": name, "by": me}, audience)
        return {**key.to_wire(), "name": name}

    def do_set_room_image(self, caller: Caller, session_id: str, creator_id: str, image: bytes) -> Reply:
        me = check_logged_in(caller)
        key = RoomKey(session_id, creator_id)
        self._check_room_image(image)
        with self.pool.transaction("set_room_image") as cur:
            check_member(cur, key, me)
            room_db.get_room(cur, key, lock=True)
            room_db.set_has_image(cur, key)
            self.archive.write_image(self.archive.room_dir(*key), image)
            audience = room_db.member_ids(cur, key)
        tag = room_image_tag(self.archive, key)
        self.events("room_image", key, {"image_tag": tag, "by": me}, audience)
        return {**key.to_wire(), "image_tag": tag}

    def do_invite(self, caller: Caller, session_id: str, creator_id: str, user_ids: list[str]) -> Reply:
        me = check_logged_in(caller)
        key = RoomKey(session_id, creator_id)
        with self.pool.transaction("invite") as cur:
            check_member(cur, key, me)
            missing = set(user_ids) - user_db.existing_user_ids(cur, user_ids)
            if missing:
                raise ProtocolError(ErrorCode.NOT_FOUND, f"no such user: {', '.join(sorted(missing))}")
            room = room_db.get_room(cur, key, lock=True)   # one invite at a time: sizes stay true
            assert room is not None
            self._check_sizes(cur, key, sorted(set(user_ids) - set(room_db.member_ids(cur, key))))
            added = room_db.add_members(cur, key, user_ids)
            members = room_db.member_ids(cur, key)
        room_info = {**key.to_wire(), "name": room.name, "members": members, "last_seq": room.last_seq}
        for user_id in added:
            self.events("invited", key, {**room_info, "user_id": user_id, "by": me}, [user_id])
        if added:
            self.events("members_joined", key, {"user_ids": added, "by": me}, members)
        return {**key.to_wire(), "added": added}

    def do_leave(self, caller: Caller, session_id: str, creator_id: str) -> Reply:
        me = check_logged_in(caller)
        key = RoomKey(session_id, creator_id)
        with self.pool.transaction("leave") as cur:
            room_db.get_room(cur, key, lock=True)   # not while a send batch holds the room
            audience = room_db.member_ids(cur, key)
            if not room_db.remove_member(cur, key, me):
                raise ProtocolError(ErrorCode.FORBIDDEN, f"you are not a member of room {key.folder}")
        self.events("member_left", key, {"user_id": me}, audience)
        return {**key.to_wire()}

    def do_list_rooms(self, caller: Caller) -> Reply:
        me = check_logged_in(caller)
        with self.pool.transaction("list_rooms") as cur:
            summaries = room_db.rooms_of_user(cur, me)
        return {"rooms": [room_summary(s, self.archive) for s in summaries[:MAX_ROOMS_LISTED]]}

    def do_room_members(self, caller: Caller, session_id: str, creator_id: str) -> Reply:
        me = check_logged_in(caller)
        key = RoomKey(session_id, creator_id)
        with self.pool.transaction("room_members") as cur:
            check_member(cur, key, me)
            members = room_db.room_members(cur, key)
        return {**key.to_wire(), "members": [
            {"user_id": m.user_id, "name": m.name, "read_seq": m.read_seq, "online": m.online,
             "has_image": m.has_image} for m in members]}

    def do_mark_read(self, caller: Caller, session_id: str, creator_id: str, seq: int) -> Reply:
        me = check_logged_in(caller)
        key = RoomKey(session_id, creator_id)
        with self.pool.transaction("mark_read") as cur:
            read_seq = room_db.set_read(cur, key, me, seq)
            if read_seq is None:
                raise ProtocolError(ErrorCode.FORBIDDEN, f"you are not a member of room {key.folder}")
            audience = room_db.member_ids(cur, key)
        self.events("read", key, {"user_id": me, "read_seq": read_seq}, audience)
        return {**key.to_wire(), "read_seq": read_seq}
