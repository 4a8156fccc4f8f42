"""``Peer``: the messenger client as a Python object, for scripts, load tests, the CLI and
the desktop UI's bridge. Methods block the calling greenlet, never the whole process."""
from __future__ import annotations

import logging
import uuid
from typing import Any, Callable, Iterable

from messenger_protocol import ErrorCode, ProtocolError
from messenger_protocol.messages import RoomKey

from .client import ServerConnection

log = logging.getLogger(__name__)

EventHandler = Callable[[dict[str, Any]], None]


class Peer:
    """A user's connection to the messenger: accounts, profile, and (later) rooms and pushes."""

    def __init__(self, server: tuple[str, int], *, timeout: float = 30.0) -> None:
        self.server = server
        self.timeout = timeout
        self.conn: ServerConnection | None = None
        self.user_id: str | None = None
        self.token: str | None = None
        self.push_secret: bytes | None = None
        self._event_handlers: list[EventHandler] = []

    # -- connection ----------------------------------------------------------------------
    def connect(self) -> "Peer":
        """Open the server connection (hello included)."""
        if self.conn is None or self.conn.closed:
            self.conn = ServerConnection(*self.server, timeout=self.timeout,
                                         on_push=self._on_session_push).connect()
        return self

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send any op; returns the reply's fields or raises ``ProtocolError``."""
        if self.conn is None or self.conn.closed:
            self.connect()
        assert self.conn is not None
        return self.conn.request(op, **fields)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def __enter__(self) -> "Peer":
        return self.connect()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- events --------------------------------------------------------------------------
    def on_event(self, handler: EventHandler) -> None:
        """Call ``handler(event)`` for every event pushed to this peer."""
        self._event_handlers.append(handler)

    def _on_session_push(self, frame: dict[str, Any]) -> None:
        self._emit(frame)

    def _emit(self, event: dict[str, Any]) -> None:
        for handler in list(self._event_handlers):
            try:
                handler(event)
            except Exception:
                log.exception("event handler failed")

    # -- accounts ------------------------------------------------------------------------
    def register(self, user_id: str, password: str, name: str | None = None) -> dict[str, Any]:
        fields: dict[str, Any] = {"user_id": user_id, "password": password}
        if name:
            fields["name"] = name
        return self.request("register", **fields)

    def login(self, user_id: str, password: str) -> dict[str, Any]:
        reply = self.request("login", user_id=user_id, password=password)
        self.user_id, self.token, self.push_secret = user_id, reply["token"], reply["push_secret"]
        return reply

    def logout(self) -> dict[str, Any]:
        if self.user_id is None:
            raise ProtocolError(ErrorCode.UNAUTHORIZED, "not logged in")
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
        return self.request("create_room", **fields)

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

    def history(self, room: RoomKey, before: str | None = None) -> dict[str, Any]:
        """Up to 3 days of messages before ``before`` (YYYY-MM-DD; default: the newest)."""
        return self.request("history", **room.to_wire(), **({"before": before} if before else {}))

    def fetch(self, room: RoomKey, after_seq: int, limit: int = 1000) -> dict[str, Any]:
        """Messages with seq > ``after_seq`` (oldest first), for filling a gap."""
        return self.request("fetch", **room.to_wire(), after_seq=after_seq, limit=limit)
