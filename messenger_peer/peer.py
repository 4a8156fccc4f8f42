"""``Peer``: the messenger client as a Python object, for scripts, load tests, the CLI and
the desktop UI's bridge. Methods block the calling greenlet, never the whole process.

A live peer (``login(..., live=True)``, the default) runs its own push listener, catches up with
``init`` against its local cache, and hands the application every event through ``on_event``
handlers: each message exactly once and in seq order per room (duplicates dropped, gaps
filled with ``fetch`` before anything later is delivered). If the server connection drops it
reconnects by itself and catches up again.
"""
from __future__ import annotations

import logging
import re
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable

import gevent
import gevent.event

from messenger_protocol import ErrorCode, ProtocolError
from messenger_protocol.messages import RoomKey

from .cache import HistoryCache, decode_records
from .client import ServerConnection, client_tls_context
from .listener import PushListener

log = logging.getLogger(__name__)

EventHandler = Callable[[dict[str, Any]], None]
RECONNECT_DELAYS = (0.2, 0.5, 1, 2, 5)
UNKNOWN_ROOM_WAIT = 2.0
REORDER_WAIT = 0.2
GAP_RETRIES = 20


class Peer:
    """A user's connection to the messenger: accounts, rooms, messages and live events."""

    def __init__(self, server: tuple[str, int], *, data_dir: Path | str | None = None,
                 listen_host: str = "127.0.0.1", listen_port: int = 0, advertise_host: str | None = None,
                 timeout: float = 30.0, tls: bool = False, ca_file: str | None = None,
                 listen_tls_cert: str | None = None, listen_tls_key: str | None = None) -> None:
        """``tls`` talks TLS to the server, verifying its certificate (``ca_file`` for a
        self-signed one); ``listen_tls_cert``/``key`` make the listener speak TLS too."""
        self.server = server
        self.timeout = timeout
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.listen_host, self.listen_port, self.advertise_host = listen_host, listen_port, advertise_host
        self.tls = client_tls_context(ca_file) if tls or ca_file else None
        self.listen_tls = (listen_tls_cert, listen_tls_key)
        self.conn: ServerConnection | None = None
        self.listener: PushListener | None = None
        self.cache = HistoryCache(None)
        self.user_id: str | None = None
        self.token: str | None = None
        self.push_secret: bytes | None = None
        self.live = False
        self.duplicates = 0
        self._credentials: tuple[str, str] | None = None
        self._event_handlers: list[EventHandler] = []
        self._held: list[dict[str, Any]] | None = None      # pushes held while init runs
        self._pending: dict[RoomKey, dict[int, dict[str, Any]]] = defaultdict(dict)
        self._baseline: dict[RoomKey, int] = {}     # last seq of rooms with nothing cached
        self._login_settled = gevent.event.Event()  # cleared while a login is in flight
        self._arrived = gevent.event.Event()        # a held message came in (see _fill_gap)
        self._login_settled.set()
        self._filling: dict[RoomKey, gevent.Greenlet] = {}
        self._reconnector: gevent.Greenlet | None = None
        self._closing = False

    # -- connection ----------------------------------------------------------------------
    def connect(self) -> "Peer":
        """Open the server connection (hello included)."""
        if self.conn is None or self.conn.closed:
            conn = ServerConnection(*self.server, timeout=self.timeout, tls=self.tls, on_push=self._on_push)
            # Only the current connection's end matters; a replaced one may close any time.
            conn.on_close = lambda: self._on_connection_lost(conn)
            self.conn = conn.connect()
        return self

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send any op; returns the reply's fields or raises ``ProtocolError``."""
        if self._closing and self.user_id is not None:
            # Work left over from before close() (a gap filler, say) must not open a new,
            # never-logged-in connection.
            raise ProtocolError(ErrorCode.UNAVAILABLE, "the peer is closed")
        if self.conn is None or self.conn.closed:
            self.connect()
        assert self.conn is not None
        return self.conn.request(op, **fields)

    def close(self) -> None:
        """Close everything (no logout: the server marks the session offline by itself)."""
        self._closing = True
        if self._reconnector is not None:
            self._reconnector.kill(block=False)
        for filler in list(self._filling.values()):
            filler.kill(block=False)
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.listener is not None:
            self.listener.stop()
            self.listener = None

    def __enter__(self) -> "Peer":
        return self.connect()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- events --------------------------------------------------------------------------
    def on_event(self, handler: EventHandler) -> None:
        """Call ``handler(event)`` for every event (see docs/push.md), in the peer's hub.
        Every handler gets the same dict, which the peer's cache may hold too: read it, copy
        it to change it."""
        self._event_handlers.append(handler)

    def _emit(self, event: dict[str, Any]) -> None:
        for handler in self._event_handlers:
            try:
                handler(event)
            except Exception:
                log.exception("event handler failed")

    def _on_push(self, frame: dict[str, Any]) -> None:
        """Every authenticated push, from the listener or over the session (NAT fallback)."""
        if self._held is not None:
            self._held.append(frame)
            return
        # The frame was decoded for this call alone: it becomes the event, with no copy.
        event = frame
        event.pop("op", None)
        if event.get("event") == "message":
            self._on_message(event)
            return
        if event.get("event") == "invited" and isinstance(event.get("last_seq"), int):
            room = RoomKey(event["session_id"], event["creator_id"])
            self._baseline.setdefault(room, event["last_seq"])
        self._emit(event)

    def _expected(self, room: RoomKey) -> int | None:
        """The seq this peer has delivered up to in ``room``: its cache, else what init or
        the invitation said the room held; None for a room it knows nothing about yet."""
        return self.cache.last_seq(room) or self._baseline.get(room)

    def _on_message(self, message: dict[str, Any]) -> None:
        try:
            room = RoomKey(message["session_id"], message["creator_id"])
            seq = message["seq"]
        except (KeyError, TypeError):
            log.warning("ignoring a malformed message push")
            return
        last = self._expected(room)
        if last is not None and seq <= last:
            self.duplicates += 1
            return
        if last is not None and seq == last + 1 and room not in self._pending:
            self._deliver(room, [message])
            return
        self._pending[room][seq] = message
        self._arrived.set()
        if room not in self._filling:
            self._filling[room] = gevent.spawn(self._fill_gap, room)

    def _deliver(self, room: RoomKey, messages: list[dict[str, Any]]) -> None:
        self.cache.add(room, messages)
        for message in messages:
            # A push already is a message event; records from init or fetch are not.
            self._emit(message if message.get("event") == "message" else {"event": "message", **message})

    def _drain(self, room: RoomKey) -> None:
        """Deliver held messages that now follow on; drop held ones already delivered."""
        pending = self._pending.get(room)
        while pending:
            nxt = (self._expected(room) or 0) + 1
            for seq in [s for s in pending if s < nxt]:
                del pending[seq]
                self.duplicates += 1
            if nxt not in pending:
                break
            self._deliver(room, [pending.pop(nxt)])
        if not pending:
            self._pending.pop(room, None)

    def _fill_gap(self, room: RoomKey) -> None:
        """Fetch what is missing before the held messages, then deliver them all in order."""
        try:
            # A message of a room we know nothing of may overtake its invitation (another
            # server process pushed it): give the invitation a moment to say where to start.
            deadline = time.monotonic() + UNKNOWN_ROOM_WAIT
            while self._expected(room) is None and time.monotonic() < deadline:
                gevent.sleep(0.02)
            if self._expected(room) is None and self._pending.get(room):
                self._baseline[room] = min(self._pending[room]) - 1
            idle_rounds = 0
            patience = time.monotonic() + REORDER_WAIT
            while self._pending.get(room):
                last = self._expected(room) or 0
                if min(self._pending[room]) == last + 1:
                    self._drain(room)
                    continue
                # With several server processes pushing, the missing message is usually a
                # moment behind on another connection: wait a little before asking for it.
                if time.monotonic() < patience:
                    self._arrived.clear()
                    self._arrived.wait(max(0.0, patience - time.monotonic()))
                    continue
                reply = self.request("fetch", **room.to_wire(), after_seq=last)
                # Init at a reconnect may have delivered some of these while we waited.
                last = self._expected(room) or 0
                fetched = [{**room.to_wire(), **m} for m in reply["messages"] if m["seq"] > last]
                if fetched and fetched[0]["seq"] == last + 1:
                    self._deliver(room, fetched)
                    idle_rounds = 0
                else:
                    # Nothing new committed yet (should not happen: a push follows its commit).
                    idle_rounds += 1
                    if idle_rounds > GAP_RETRIES:
                        log.warning("gap in %s after seq %d could not be filled", room.folder, last)
                        break
                    gevent.sleep(0.05 * idle_rounds)
                self._drain(room)
        except ProtocolError as exc:
            log.warning("could not fill a gap in %s: %s", room.folder, exc.message)
        finally:
            self._filling.pop(room, None)

    # -- live session: listener, init, reconnect ---------------------------------------
    def _start_listener(self) -> None:
        if self.listener is None:
            self.listener = PushListener(self._on_push, lambda: self.push_secret,
                                         self.listen_host, self.listen_port, *self.listen_tls,
                                         login_settled=self._login_settled.wait)
            self.listener.start()

    def _open_cache(self, user_id: str) -> None:
        if self.data_dir is None:
            return
        server = re.sub(r"[^A-Za-z0-9._-]", "_", f"{self.server[0]}_{self.server[1]}")
        root = self.data_dir / server / user_id
        if self.cache.root != root:
            self.cache = HistoryCache(root)

    def catch_up(self) -> list[dict[str, Any]]:
        """Run ``init`` with what the cache holds and deliver what was missed, in order;
        pushes that arrive meanwhile are held and then handled. Returns the init data."""
        self._held = []
        try:
            data = self.request("init", rooms=[{**room.to_wire(), "last_seq": seq}
                                               for room, seq in self.cache.rooms().items()])["chatroom_init_data"]
            for entry in data:
                room = RoomKey(entry["session_id"], entry["creator_id"])
                known = self.cache.last_seq(room)
                records = [m for day in entry["content"] for m in decode_records(day["content"], room)
                           if m["seq"] > known]
                if records and (entry["gap"] or records[0]["seq"] != known + 1):
                    self.cache.reset(room)     # the copy cannot be continued: start afresh
                self._deliver(room, records)
                self._baseline[room] = max(entry["last_seq"], self.cache.last_seq(room))
                self._drain(room)          # held pushes that init has now caught up with
        finally:
            held, self._held = self._held, None
        for frame in held:
            self._on_push(frame)
        return data

    def _on_connection_lost(self, conn: ServerConnection) -> None:
        if conn is not self.conn or self._closing or not self.live or self._credentials is None:
            return
        self._emit({"event": "connection", "state": "offline"})
        if self._reconnector is None or self._reconnector.dead:
            self._reconnector = gevent.spawn(self._reconnect)

    def _reconnect(self) -> None:
        attempt = 0
        while not self._closing and self._credentials is not None:
            gevent.sleep(RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)])
            attempt += 1
            self._emit({"event": "connection", "state": "reconnecting"})
            try:
                if self.conn is not None:
                    self.conn.close()     # a connection whose login failed must not linger
                self.conn = None
                self.login(*self._credentials)
                return
            except ProtocolError as exc:
                if exc.code is ErrorCode.UNAUTHORIZED:
                    self._emit({"event": "connection", "state": "offline", "error": exc.to_wire()})
                    return
                log.info("reconnect failed: %s", exc.message)

    # -- accounts ------------------------------------------------------------------------
    def register(self, user_id: str, password: str, name: str | None = None) -> dict[str, Any]:
        fields: dict[str, Any] = {"user_id": user_id, "password": password}
        if name:
            fields["name"] = name
        return self.request("register", **fields)

    def login(self, user_id: str, password: str, *, live: bool = True) -> dict[str, Any]:
        """Log in. ``live`` (the default) starts the push listener first, reports its address,
        catches up with ``init`` and keeps the session alive (reconnecting when it drops);
        ``live=False`` is a plain login for one-shot commands."""
        fields: dict[str, Any] = {"user_id": user_id, "password": password}
        if live:
            self._start_listener()
            assert self.listener is not None
            host, port = self.listener.address
            fields.update(listen_host=self.advertise_host or host, listen_port=port)
            if self.listener.tls_fingerprint is not None:
                fields["listen_tls_fingerprint"] = self.listener.tls_fingerprint
        self._closing = False
        self._login_settled.clear()
        try:
            reply = self.request("login", **fields)
            self.user_id, self.token, self.push_secret = user_id, reply["token"], reply["push_secret"]
        finally:
            self._login_settled.set()
        self.live = live
        if live:
            self._credentials = (user_id, password)
            self._open_cache(user_id)
            self.catch_up()
            self._emit({"event": "connection", "state": "online"})
        return reply

    def logout(self) -> dict[str, Any]:
        if self.user_id is None:
            raise ProtocolError(ErrorCode.UNAUTHORIZED, "not logged in")
        self._credentials = None
        self.live = False
        reply = self.request("logout")
        self.user_id = self.token = self.push_secret = None
        return reply

    def get_profile(self, user_id: str | None = None) -> dict[str, Any]:
        return self.request("get_profile", **({"user_id": user_id} if user_id else {}))

    def set_profile(self, name: str | None = None, image: bytes | None = None) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if name is not None:
            fields["name"] = name
        if image is not None:
            fields["image"] = image
        return self.request("set_profile", **fields)

    # -- rooms ---------------------------------------------------------------------------
    def create_room(self, name: str, invite: Iterable[str] = (), image: bytes | None = None) -> dict[str, Any]:
        """Create a room (you are its first member); returns its key fields and ``room``."""
        fields: dict[str, Any] = {"name": name, "invite": list(invite)}
        if image is not None:
            fields["image"] = image
        reply = self.request("create_room", **fields)
        self._baseline.setdefault(RoomKey(reply["session_id"], reply["creator_id"]), 0)
        return reply

    def rename_room(self, room: RoomKey, name: str) -> dict[str, Any]:
        return self.request("rename_room", **room.to_wire(), name=name)

    def set_room_image(self, room: RoomKey, image: bytes) -> dict[str, Any]:
        return self.request("set_room_image", **room.to_wire(), image=image)

    def invite(self, room: RoomKey, user_ids: Iterable[str]) -> dict[str, Any]:
        return self.request("invite", **room.to_wire(), user_ids=list(user_ids))

    def leave(self, room: RoomKey) -> dict[str, Any]:
        return self.request("leave", **room.to_wire())

    def list_rooms(self) -> list[dict[str, Any]]:
        return self.request("list_rooms")["rooms"]

    def room_members(self, room: RoomKey) -> list[dict[str, Any]]:
        return self.request("room_members", **room.to_wire())["members"]

    def mark_read(self, room: RoomKey, seq: int) -> dict[str, Any]:
        return self.request("mark_read", **room.to_wire(), seq=seq)

    # -- messages ------------------------------------------------------------------------
    def send(self, room: RoomKey, chat_type: str, content: bytes, txn_id: str | None = None) -> dict[str, Any]:
        """Send a message; returns ``seq`` and ``chat_time``. Retrying with the same
        ``txn_id`` never stores the message twice."""
        return self.request("send", **room.to_wire(), chat_type=chat_type, content=content,
                            txn_id=txn_id or uuid.uuid4().hex)

    def send_text(self, room: RoomKey, text: str, txn_id: str | None = None) -> dict[str, Any]:
        return self.send(room, "text", text.encode("utf-8"), txn_id)

    def init(self, known: dict[RoomKey, int] | None = None) -> list[dict[str, Any]]:
        """SPEC.md's chatroom_init_data: per room, what this client (having ``known[room]``
        as its last seq) lacks."""
        rooms = [{**room.to_wire(), "last_seq": seq} for room, seq in (known or {}).items()]
        return self.request("init", rooms=rooms)["chatroom_init_data"]

    def history(self, room: RoomKey, before: str | None = None, before_seq: int | None = None) -> dict[str, Any]:
        """Up to 3 days of messages before ``before`` (YYYY-MM-DD; default: the newest). Pass a
        reply's ``next_before`` and ``next_before_seq`` to get the page before it."""
        fields: dict[str, Any] = {}
        if before:
            fields["before"] = before
        if before_seq:
            fields["before_seq"] = before_seq
        return self.request("history", **room.to_wire(), **fields)

    def fetch(self, room: RoomKey, after_seq: int, limit: int = 1000) -> dict[str, Any]:
        """Messages with seq > ``after_seq`` (oldest first), for filling a gap."""
        return self.request("fetch", **room.to_wire(), after_seq=after_seq, limit=limit)
