"""Op -> handler table. The connection loop validates a request, then calls ``dispatch``;
handlers receive the caller and the op's validated fields as keyword arguments."""
from __future__ import annotations

from typing import Any, Callable

from messenger_protocol import ErrorCode, ProtocolError
from messenger_protocol.messages import OPS

from .actions import Caller, Reply

Handler = Callable[..., Reply]


class Dispatcher:
    """Routes every op of the protocol table to its handler."""

    def __init__(self, handlers: dict[str, Handler]) -> None:
        unknown = set(handlers) - set(OPS)
        if unknown:
            raise ValueError(f"handlers for ops the protocol does not define: {sorted(unknown)}")
        self.handlers = handlers

    def dispatch(self, caller: Caller, op: str, fields: dict[str, Any]) -> Reply:
        handler = self.handlers.get(op)
        if handler is None:
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"op {op!r} is not served here")
        return handler(caller, **fields)
