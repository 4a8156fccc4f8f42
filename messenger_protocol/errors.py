"""Error codes of the wire protocol: the one place they are defined.

The codes are stable strings that clients may branch on; messages are for people.
"""
from __future__ import annotations

import enum
from typing import Any


class ErrorCode(str, enum.Enum):
    """Every error code that may appear in an error reply."""

    BAD_REQUEST = "bad_request"      # malformed frame, unknown op, wrong field type or value
    UNAUTHORIZED = "unauthorized"    # not logged in, or wrong credentials
    FORBIDDEN = "forbidden"          # logged in but not allowed (e.g. not a member of the room)
    NOT_FOUND = "not_found"          # the user or room does not exist
    CONFLICT = "conflict"            # e.g. the user id is taken
    TOO_LARGE = "too_large"          # a frame or a field is over its size limit
    RATE_LIMITED = "rate_limited"    # too many requests; try again later
    UNAVAILABLE = "unavailable"      # a dependency (database, disk) is down; safe to retry
    INTERNAL = "internal"            # a bug on our side; the request may be retried

    def __str__(self) -> str:  # so f-strings and logs show the wire value
        return self.value


class ProtocolError(Exception):
    """An error that is reported to the other side as an error reply.

    Raised by the codec for bad frames and by handlers for refused requests; the connection
    loop turns it into ``{"id": n, "ok": false, "error": {"code": ..., "message": ...}}``.
    ``fatal`` marks errors after which the connection cannot continue (e.g. an oversized frame
    whose bytes were not read).
    """

    def __init__(self, code: ErrorCode, message: str, *, fatal: bool = False) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = ErrorCode(code)
        self.message = message
        self.fatal = fatal

    def to_wire(self) -> dict[str, Any]:
        """The ``error`` member of an error reply."""
        return {"code": self.code.value, "message": self.message}

    @classmethod
    def from_wire(cls, error: Any) -> "ProtocolError":
        """Rebuild an error from a reply's ``error`` member, tolerating junk from the peer."""
        if not isinstance(error, dict):
            return cls(ErrorCode.INTERNAL, f"malformed error reply: {error!r}")
        try:
            code = ErrorCode(error.get("code"))
        except ValueError:
            code = ErrorCode.INTERNAL
        return cls(code, str(error.get("message", "")))
