"""Actions: what each op does. ``check_*`` functions authorise, ``do_*`` methods mutate through
storage and hand events to the push hub after the transaction commits. No socket code here."""
from __future__ import annotations

from typing import Any, Protocol

from messenger_protocol import ErrorCode, ProtocolError

from ..storage.push import Target


class Caller(Protocol):
    """What an action needs to know about the connection that asked."""

    user_id: str | None
    token_hash: bytes | None
    peer_ip: str

    def bind(self, target: Target) -> None: ...

    def unbind(self) -> None: ...

    def consider_move(self) -> None: ...


def check_logged_in(caller: Caller) -> str:
    """The caller's user id, or ``unauthorized``."""
    if caller.user_id is None:
        raise ProtocolError(ErrorCode.UNAUTHORIZED, "log in first")
    return caller.user_id


Reply = dict[str, Any]
