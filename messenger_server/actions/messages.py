"""Sending messages: checks, then a group-commit pipeline that stores many sends at once.

Each ``send`` is validated in its own greenlet and queued; a committer greenlet takes every
queued send at once and, in one PostgreSQL transaction, locks the rooms (in key order, so
processes never deadlock), finds retried transaction ids, checks membership against the
rooms' cached audiences (audience.py), numbers the messages from the rooms' LAST_SEQ, appends
them to the day files, fsyncs every touched file (storage/syncing.py), records the new committed
archive sizes, and commits. Only then is each send acknowledged and handed to the push hub.
While one batch commits the next one fills, so under load the cost of a commit and an fsync
is shared by many messages.
"""
from __future__ import annotations

import datetime as dt
import functools
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any, Callable, TypeVar

import gevent
import gevent.event
import psycopg2

from messenger_protocol import ErrorCode, ProtocolError, encode
from messenger_protocol.messages import RoomKey
from messenger_protocol.push import push_frame

from ..audience import AudienceCache, RoomAudience
from ..config import Config
from ..limits import Limits
from ..media import check_image
from ..storage import rooms as room_db
from ..storage.archive import Archive, ArchiveError, make_record, size_after
from ..storage.pool import Pool
from ..storage.syncing import SyncRunner
from ..relay import Handoff, handoff_sql
from ..affinity import Affinity
from . import Caller, Reply, check_logged_in

log = logging.getLogger(__name__)
T = TypeVar("T")

PREVIEW_CHARS = 100
MAX_BATCH = 2000
COMMIT_LANES = 1   # more lanes measured slower on 2 cores: smaller batches, same CPU (BENCHMARKS.md)
TXN_RACE_ATTEMPTS = 5
# Between batches the committer waits until the hub has nothing else ready, at most this long
# (see _settle; 1 and 2 ms measured alike).
SETTLE_SECONDS = 0.001


class _TxnRace(Exception):
    """Another process stored one of the batch's txn ids between our read and our insert."""


class _NotAsKnown(Exception):
    """A room's row changed since this process last committed to it (or a txn id repeats):
    the batch goes the locking way instead."""


MAX_KNOWN_ROOMS = 10_000
# After another process wrote a room under us, its batches take the locking way for a while
# (two processes sending to one room would otherwise pay a wasted round trip each time).
CONTENDED_SECONDS = 1.0


@dataclass
class StoredMessage:
    """A committed message, as the push hub and the history ops see it."""

    room: RoomKey
    seq: int
    user_id: str
    chat_type: str
    content: bytes
    chat_time: str

    def to_wire(self) -> dict[str, Any]:
        return {**self.room.to_wire(), "seq": self.seq, "user_id": self.user_id,
                "chat_type": self.chat_type, "content": self.content, "chat_time": self.chat_time}

    @functools.cached_property
    def push_bytes(self) -> bytes:
        """The message's push frame, encoded once for every recipient in every process."""
        return encode(push_frame("message", self.to_wire()))


@dataclass
class _Pending:
    room: RoomKey
    user_id: str
    chat_type: str
    content: bytes
    txn_id: str
    result: gevent.event.AsyncResult = field(default_factory=gevent.event.AsyncResult)


# Control characters (NUL above all: PostgreSQL text cannot hold it) become spaces.
_CONTROLS_TO_SPACES = {c: " " for c in range(32)}


def preview(chat_type: str, content: bytes) -> str:
    """The room list's one-line preview of a message."""
    if chat_type == "text":
        return content.decode("utf-8")[:PREVIEW_CHARS].translate(_CONTROLS_TO_SPACES)
    return f"[{chat_type}]"


class Messages:
    """The ``send`` op and its commit pipeline."""

    def __init__(self, config: Config, pool: Pool, archive: Archive, limits: Limits,
                 on_committed: Callable[[list[StoredMessage], dict[RoomKey, RoomAudience]], None],
                 audiences: AudienceCache | None = None,
                 handoffs: Callable[[list[StoredMessage], dict[RoomKey, RoomAudience]], list[Handoff]] | None = None
                 ) -> None:
        """``handoffs`` says what other server processes must push of a batch (written in
        the batch's transaction); ``on_committed`` gets every batch after its commit."""
        self.config = config
        self.handoffs = handoffs
        self.audiences = audiences if audiences is not None else AudienceCache()
        self.pool = pool
        self.archive = archive
        self.on_committed = on_committed
        self.limits = limits
        self._queue: list[_Pending] = []
        self._wake = gevent.event.Event()
        self._committers: list[gevent.Greenlet] = []
        self._in_flight: set[RoomKey] = set()    # rooms of the batches being committed
        # Each room's row as of this process's last commit to it (see _commit_known).
        self._known: dict[RoomKey, room_db.Room] = {}
        self._contended: dict[RoomKey, float] = {}
        self.syncs = SyncRunner()
        self.affinity: Affinity | None = None    # set by a worker of --workers N (affinity.py)
        self._to_siblings: list = []             # the committing batch's pushes for siblings
        self.batches = 0                         # batches taken, and the sends in them (logged at stop)
        self.batched = 0

    def start(self) -> None:
        self._committers = [gevent.spawn(self._commit_loop) for _ in range(COMMIT_LANES)]

    def stop(self) -> None:
        for committer in self._committers:
            committer.kill()
        self.syncs.stop()

    # -- the op --------------------------------------------------------------------------
    def check_content(self, chat_type: str, content: bytes) -> None:
        limits = {"text": self.config.max_text_bytes, "image": self.config.max_image_bytes,
                  "emoticon": self.config.max_emoticon_bytes}
        if len(content) > limits[chat_type]:
            raise ProtocolError(ErrorCode.TOO_LARGE,
                                f"a {chat_type} message is limited to {limits[chat_type]} bytes; this one has {len(content)}")
        if chat_type == "text":
            try:
                text = content.decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolError(ErrorCode.BAD_REQUEST, "text content must be UTF-8") from None
            if not text.strip():
                raise ProtocolError(ErrorCode.BAD_REQUEST, "text content is empty")
        elif chat_type == "image":
            check_image(content, self.config.max_image_bytes, "the image")
        elif chat_type == "emoticon":
            if not content.isascii() or not content.replace(b"_", b"").replace(b"-", b"").isalnum():
                raise ProtocolError(ErrorCode.BAD_REQUEST, "an emoticon is an id of A-Z a-z 0-9 _ -")

    def do_send(self, caller: Caller, session_id: str, creator_id: str, chat_type: str,
                content: bytes, txn_id: str) -> Reply:
        me = check_logged_in(caller)
        self.limits.sends_per_user.check(me)
        self.limits.sends_per_address.check(caller.peer_ip)
        self.check_content(chat_type, content)
        room = RoomKey(session_id, creator_id)
        if self.affinity is not None:
            owner = self.affinity.owner(room)
            if owner is not None:
                reply = self.affinity.hand_over(owner, room, me, chat_type, content, txn_id)
                if reply is not None:
                    caller.consider_move()      # session affinity: it may belong there
                    return reply
        return self.submit(room, me, chat_type, content, txn_id)

    def submit(self, room: RoomKey, user_id: str, chat_type: str, content: bytes, txn_id: str) -> Reply:
        """Commit one checked send in this process; the reply once it is stored."""
        pending = _Pending(room, user_id, chat_type, content, txn_id)
        self._queue.append(pending)
        self._wake.set()
        return pending.result.get()

    # -- the pipeline --------------------------------------------------------------------
    # Commit lanes: several committers, each taking every queued send whose room is not in a
    # batch being committed. One room's batches are thus committed (and pushed) one after
    # the other, in order, while batches of other rooms go on beside them instead of waiting
    # for an fsync and a COMMIT they have no part in.
    def _commit_loop(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                self._wake.wait()
                self._wake.clear()
                continue
            rooms = {item.room for item in batch}
            self._in_flight |= rooms
            self.batches += 1
            self.batched += len(batch)
            try:
                committed, audience = self._store(batch)
                siblings, self._to_siblings = self._to_siblings, []   # taken before any yield
                if committed:
                    # The senders' acknowledgements go out before the fan-out's writes: a
                    # closed-loop sender sends its next message that much sooner, and the
                    # next batch fills while this one is pushed.
                    gevent.sleep(0)
                    if siblings:
                        assert self.affinity is not None
                        try:
                            self.affinity.push_to_siblings(siblings)
                        except Exception:
                            log.exception("handing pushes to sibling workers failed")
                    try:
                        self.on_committed(committed, audience)
                    except Exception:
                        log.exception("handing messages to the push hub failed")
            finally:
                self._in_flight -= rooms
                if self._queue:
                    self._wake.set()
            self._settle()

    @staticmethod
    def _settle() -> None:
        """Let the hub run what is ready before the next batch is taken: the acknowledgements
        just set go out, and sends already in the sockets are read and queued. Without this
        the next batch would start at once with only the sends that happened to be queued,
        and the batches stay small under load (measured in BENCHMARKS.md: bigger batches,
        less CPU per delivery). Bounded, because an idle watcher waits as long as other
        events are pending, which under a flood of input could be forever."""
        with gevent.Timeout(SETTLE_SECONDS, False):
            gevent.idle()

    def _take(self) -> list[_Pending]:
        """Up to MAX_BATCH queued sends of rooms not in flight, in arrival order."""
        if not self._in_flight:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            return batch
        batch, rest = [], []
        for item in self._queue:
            (batch if item.room not in self._in_flight and len(batch) < MAX_BATCH else rest).append(item)
        self._queue = rest
        return batch

    def _store(self, batch: list[_Pending]) -> tuple[list[StoredMessage], dict[RoomKey, RoomAudience]]:
        """Commit a batch; on failure answer every send in it with the error."""
        try:
            return self._commit(batch)
        except ProtocolError as exc:
            error = exc
        except Exception as exc:
            log.exception("commit of %d messages failed", len(batch))
            error = ProtocolError(ErrorCode.UNAVAILABLE if isinstance(exc, (OSError, psycopg2.Error))
                                  else ErrorCode.INTERNAL,
                                  "the message was not stored; retry with the same txn_id")
        for item in batch:
            if not item.result.ready():
                item.result.set_exception(error)
        return [], {}

    def _commit(self, batch: list[_Pending]) -> tuple[list[StoredMessage], dict[RoomKey, RoomAudience]]:
        """Store a batch; return the stored messages and, per room, its audience at commit
        time (who should receive them)."""
        # Two sends with one (user, txn) in a batch: the later is answered like a retry.
        firsts: dict[tuple[str, str], _Pending] = {}
        repeats: list[tuple[_Pending, _Pending]] = []
        for item in batch:
            first = firsts.setdefault((item.user_id, item.txn_id), item)
            if first is not item:
                repeats.append((item, first))
        for item, first in repeats:
            first.result.rawlink(lambda r, item=item: item.result.set(r.value) if r.successful()
                                 else item.result.set_exception(r.exception))
        for _ in range(TXN_RACE_ATTEMPTS):
            try:
                assigned, audience = self._commit_once([i for i in firsts.values() if not i.result.ready()])
                break
            except _TxnRace:
                continue
        else:
            raise ProtocolError(ErrorCode.UNAVAILABLE, "the message was not stored; retry with the same txn_id")
        for item, message in assigned:
            item.result.set({**message.room.to_wire(), "seq": message.seq, "chat_time": message.chat_time})
        return [message for _, message in assigned], audience

    def _commit_once(self, todo: list[_Pending]
                     ) -> tuple[list[tuple[_Pending, StoredMessage]], dict[RoomKey, RoomAudience]]:
        """One transaction in three round trips: lock and read, record the batch (while its
        archive files are written and synced), commit; a fourth only when a room's audience
        changed since this process last read it; two when _commit_known can take the batch.
        Raises _TxnRace (rolling back) when another process stored one of the txn ids after
        our read."""
        if not todo:
            return [], {}
        known = self._commit_known(todo)
        if known is not None:
            return known
        for item in todo:
            self._known.pop(item.room, None)
        recorded: list[tuple] = []
        with self.pool.transaction("send.batch") as cur:
            state = room_db.lock_batch(cur, {i.room for i in todo}, [(i.user_id, i.txn_id) for i in todo])
            audience = self.audiences.current(cur, {k: r.audience_version for k, r in state.rooms.items()})
            fresh = []
            for item in todo:
                earlier = state.txns.get((item.user_id, item.txn_id))
                if earlier is not None:
                    room, seq, chat_time = earlier
                    item.result.set({**room.to_wire(), "seq": seq, "chat_time": chat_time})
                elif item.room not in audience or item.user_id not in audience[item.room].members:
                    item.result.set_exception(ProtocolError(
                        ErrorCode.FORBIDDEN, f"you are not a member of room {item.room.folder}"))
                else:
                    fresh.append(item)
            if not fresh:
                return [], {}
            assigned = self._number(fresh, state.rooms)

            def record(appends: list[tuple]) -> set[tuple[str, str]]:
                recorded.extend(appends)
                return room_db.finish_batch(cur, appends, [(m.room, m.user_id, m.seq) for _, m in assigned],
                                            [(m.user_id, i.txn_id, m.room, m.seq, m.chat_time) for i, m in assigned])
            new = self._append(assigned, state.rooms, record)
            if len(new) != len(assigned):
                self._restore({m.room for _, m in assigned}, state.rooms)
                raise _TxnRace()
            audience = {m.room: audience[m.room] for _, m in assigned}
            self._hand_off(cur, assigned, audience)
        self._remember(state.rooms, recorded)
        return assigned, audience

    def _commit_known(self, todo: list[_Pending]
                      ) -> tuple[list[tuple[_Pending, StoredMessage]], dict[RoomKey, RoomAudience]] | None:
        """A one-room batch of a room this process committed to last, in two round trips
        instead of three: number the messages from the remembered row, record the batch with
        an UPDATE that applies only if the row is still as remembered (taking its lock), then
        write and sync the files, then COMMIT. None when the batch must take the locking
        way (another room, nothing remembered, a sender not in the remembered audience, or
        the row moved), with nothing written."""
        key = todo[0].room
        if any(item.room != key for item in todo):
            return None
        known = self._known.pop(key, None)
        if known is None or self._contended.get(key, 0.0) > time.monotonic():
            return None
        audience = self.audiences.cached(key, known.audience_version)
        if audience is None or any(item.user_id not in audience.members for item in todo):
            return None
        rooms = {key: known}
        assigned = self._number(todo, rooms)
        reads = [(key, m.user_id, m.seq) for _, m in assigned]
        txns = [(m.user_id, i.txn_id, key, m.seq, m.chat_time) for i, m in assigned]
        recorded: list[tuple] = []

        def record(appends: list[tuple]) -> None:
            outcome = room_db.finish_known_batch(cur, known, appends[0], reads, txns)
            if outcome != "ok":
                if outcome == "moved":
                    self._contended[key] = time.monotonic() + CONTENDED_SECONDS
                raise _NotAsKnown(outcome)
            recorded.extend(appends)

        try:
            with self.pool.transaction("send.known") as cur:
                self._append(assigned, rooms, None, before_write=record)
                self._hand_off(cur, assigned, {key: audience})
        except _NotAsKnown:
            return None
        self._remember(rooms, recorded)
        return assigned, {key: audience}

    def _hand_off(self, cur: Any, assigned: list[tuple[_Pending, StoredMessage]],
                  audience: dict[RoomKey, RoomAudience]) -> None:
        """Add the batch's pushes for sessions held by other processes to its COMMIT round
        trip: committed with the messages, in the rooms' commit order. Those for sibling
        workers wait in _to_siblings and go over the affinity links once committed."""
        self._to_siblings = []
        if self.handoffs is not None:
            rows = self.handoffs([m for _, m in assigned], audience)
            if rows and self.affinity is not None:
                rows, self._to_siblings = self.affinity.split_handoffs(rows)
            if rows:
                cur.with_commit(*handoff_sql(rows))

    def _remember(self, rooms: dict[RoomKey, room_db.Room], recorded: list[tuple]) -> None:
        """Keep each room's row as this batch committed it (``recorded``: the rooms' new
        state, as _append hands it to the database)."""
        for key, seq, chat_time, user, chat_type, last_preview, day, size in recorded:
            self._known[key] = replace(rooms[key], last_seq=seq, last_time=dt.datetime.fromisoformat(chat_time),
                                       last_user_id=user, last_type=chat_type, last_preview=last_preview,
                                       archive_day=day, archive_size=size)
            self._contended.pop(key, None)
        while len(self._known) > MAX_KNOWN_ROOMS:
            self._known.pop(next(iter(self._known)))
        if len(self._contended) > MAX_KNOWN_ROOMS:
            self._contended.clear()

    def _number(self, todo: list[_Pending], rooms: dict[RoomKey, room_db.Room]
                ) -> list[tuple[_Pending, StoredMessage]]:
        """Give every send its room's next seq and a chat_time that never goes backwards."""
        now = dt.datetime.now(self.config.zone)
        next_seq = {key: room.last_seq for key, room in rooms.items()}
        out = []
        for item in todo:
            room = rooms[item.room]
            when = now if room.last_time is None or now >= room.last_time else room.last_time.astimezone(now.tzinfo)
            next_seq[item.room] += 1
            out.append((item, StoredMessage(item.room, next_seq[item.room], item.user_id, item.chat_type,
                                            item.content, when.isoformat(timespec="milliseconds"))))
        return out

    def _append(self, assigned: list[tuple[_Pending, StoredMessage]], rooms: dict[RoomKey, room_db.Room],
                meanwhile: Callable[[list[tuple]], T] | None,
                before_write: Callable[[list[tuple]], None] | None = None) -> T | None:
        """Write every room's new records and fsync them (syncing.py says where); while they
        sync, run ``meanwhile`` with each room's new state (key, last seq, time, user, type,
        preview, committed day and size) — the database round trip that records it, which
        needs no durable file yet because nothing commits before this returns.
        ``before_write``, given the same, runs before any byte is written."""
        by_room: dict[RoomKey, list[StoredMessage]] = defaultdict(list)
        for _, message in assigned:
            by_room[message.room].append(message)
        writes = []
        updates = []
        for key, messages in by_room.items():
            folder = self.archive.room_dir(*key)
            room = rooms[key]
            day, size = room.archive_day, room.archive_size
            # Messages of one batch may straddle midnight: one append per day, in order.
            for msg_day, group in _by_day(messages):
                if day is not None and msg_day < day:
                    msg_day = day      # the clock went back; never write into a closed day
                records = [make_record(m.user_id, m.chat_time, m.chat_type, m.content, m.seq) for m in group]
                new_size = size_after(msg_day, records, day, size)
                writes.append((folder, msg_day, records, day, size, new_size))
                day, size = msg_day, new_size
            last = messages[-1]
            updates.append((key, last.seq, last.chat_time, last.user_id, last.chat_type,
                            preview(last.chat_type, last.content), day, size))
        if before_write is not None:
            before_write(updates)
        pending = []
        try:
            for folder, day, records, committed_day, committed_size, expected in writes:
                size, sync = self.archive.write_records(folder, day, records, committed_day, committed_size)
                pending.append(sync)
                if size != expected:
                    raise ArchiveError(f"{folder}: wrote up to {size}, expected {expected}")
            result = self.syncs.run(pending, None if meanwhile is None else functools.partial(meanwhile, updates))
        except (OSError, ArchiveError) as exc:
            log.error("archive write failed: %s", exc)
            self._restore(set(by_room), rooms)
            raise ProtocolError(ErrorCode.UNAVAILABLE,
                                "the history archive cannot be written; the message was not stored") from exc
        finally:
            for sync in pending:
                sync.close()   # no-op for the synced ones
        return result

    def _restore(self, keys: set[RoomKey], rooms: dict[RoomKey, room_db.Room]) -> None:
        """After a failed write (disk full, I/O error) put the files back to their committed
        content at once, so even a reader that ignores committed sizes sees valid JSON. The
        room rows are still locked, so no other writer is in between."""
        for key in keys:
            room = rooms[key]
            try:
                self.archive.repair(self.archive.room_dir(*key), room.archive_day, room.archive_size)
            except (OSError, ArchiveError) as exc:
                log.error("could not restore the archive of %s after a failed write: %s", key.folder, exc)


def _by_day(messages: list[StoredMessage]) -> list[tuple[dt.date, list[StoredMessage]]]:
    groups: list[tuple[dt.date, list[StoredMessage]]] = []
    for message in messages:
        day = dt.date.fromisoformat(message.chat_time[:10])
        if groups and groups[-1][0] >= day:
            groups[-1][1].append(message)
        else:
            groups.append((day, [message]))
    return groups
