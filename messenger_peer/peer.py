"""``Peer``: the messenger client as a Python object, for scripts, load tests, the CLI and
the desktop UI's bridge. Methods block the calling greenlet, never the whole process."""
from __future__ import annotations

import logging
from typing import Any, Callable

from messenger_protocol import ErrorCode, ProtocolError

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
