"""Who hears each room's messages, kept in memory between send batches.

A send batch needs every room's members (to check the senders) and their online sessions (to
push to). Both change rarely next to how often people talk, so each server process keeps them
here, tagged with the room's AUDIENCE_VERSION. Everything that changes them (an invite, a
leave, a member's login, logout or dropped session) bumps that version in its own transaction,
under the same row lock a send batch takes (storage/rooms.py ``bump_audience``). So a batch
that reads version V under its lock and finds V here uses this entry; any other version is
reloaded in the batch's transaction after the lock, which makes the reload exact too. Several
processes on one database stay correct without any message between them.
"""
from __future__ import annotations

import collections
import functools
from dataclasses import dataclass
from typing import Any, Iterable

from messenger_protocol.messages import RoomKey

from .storage import push as push_db
from .storage.push import Target

MAX_ROOMS = 50_000


@dataclass(frozen=True)
class RoomAudience:
    """A room's members and their online sessions, as of ``version``."""

    version: int
    members: frozenset[str]
    targets: tuple[Target, ...]

    @functools.cached_property
    def by_server(self) -> dict[str, tuple[Target, ...]]:
        """The online sessions grouped by the process holding them (worked out once per
        version: every batch of the room pushes to the same groups)."""
        groups: dict[str, list[Target]] = {}
        for target in self.targets:
            groups.setdefault(target.server_id, []).append(target)
        return {server: tuple(targets) for server, targets in groups.items()}


class AudienceCache:
    """Room audiences by room, least recently used dropped beyond ``max_rooms``."""

    def __init__(self, max_rooms: int = MAX_ROOMS) -> None:
        self.max_rooms = max_rooms
        self._rooms: collections.OrderedDict[RoomKey, RoomAudience] = collections.OrderedDict()
        self.loads = 0

    def current(self, cur: Any, versions: dict[RoomKey, int]) -> dict[RoomKey, RoomAudience]:
        """The audience of every room at the given versions (read under the rooms' locks in
        the transaction of ``cur``); rooms not cached at that version are loaded in one query."""
        out: dict[RoomKey, RoomAudience] = {}
        stale = []
        for key, version in versions.items():
            entry = self.cached(key, version)
            if entry is not None:
                out[key] = entry
            else:
                stale.append(key)
        if stale:
            self.loads += 1
            for key, (members, targets) in push_db.room_audiences(cur, stale).items():
                out[key] = self._store(key, RoomAudience(versions[key], frozenset(members), tuple(targets)))
        return out

    def cached(self, key: RoomKey, version: int) -> RoomAudience | None:
        """The room's audience if it is cached at ``version`` (and now the most recently used)."""
        entry = self._rooms.get(key)
        if entry is None or entry.version != version:
            return None
        self._rooms.move_to_end(key)
        return entry

    def _store(self, key: RoomKey, entry: RoomAudience) -> RoomAudience:
        self._rooms[key] = entry
        self._rooms.move_to_end(key)
        while len(self._rooms) > self.max_rooms:
            self._rooms.popitem(last=False)
        return entry

    def forget(self, keys: Iterable[RoomKey]) -> None:
        for key in keys:
            self._rooms.pop(key, None)
