"""The ops of the protocol, their fields, and validation of incoming requests.

Every request is ``{"id": n, "op": name, ...fields}``. ``validate_request`` checks a decoded
map against the table below and returns the fields with defaults filled in, or raises
``bad_request`` / ``too_large`` naming the offending field, so handlers only ever see
well-typed values. docs/protocol.md documents the same table for people.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from .errors import ErrorCode, ProtocolError

# SPEC.md: 1-50 of A-Z a-z 0-9 . _ - and not starting with '.'; these ids name folders.
USER_ID_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,49}")
SESSION_ID_RE = re.compile(r"[0-9]{8}_[0-9]{6}")
MAX_ID = 2**53  # request ids and seqs stay exact in every language's numbers

NAME_MAX = 255          # SESSION_NM is varchar(255); display names share the cap of 50 (USER_NM)
USER_NM_MAX = 50
PASSWORD_MIN = 8
PASSWORD_MAX = 1024     # a slow hash of a megabyte-long password is a cheap DoS
TXN_ID_MAX = 64
CHAT_TYPES = ("text", "image", "emoticon")


def is_valid_user_id(value: Any) -> bool:
    """True when ``value`` is a USER_ID that SPEC.md allows (safe as a folder name)."""
    return isinstance(value, str) and USER_ID_RE.fullmatch(value) is not None


def is_valid_session_id(value: Any) -> bool:
    """True when ``value`` looks like ``YYYYMMDD_NNNNNN``."""
    return isinstance(value, str) and SESSION_ID_RE.fullmatch(value) is not None


class RoomKey(tuple):
    """A room's identity, (SESSION_ID, CREATOR_ID); its folder name is ``SESSION_ID_CREATOR_ID``."""

    __slots__ = ()

    def __new__(cls, session_id: str, creator_id: str) -> "RoomKey":
        return super().__new__(cls, (session_id, creator_id))

    @property
    def session_id(self) -> str:
        return self[0]

    @property
    def creator_id(self) -> str:
        return self[1]

    @property
    def folder(self) -> str:
        return f"{self[0]}_{self[1]}"

    def to_wire(self) -> dict[str, str]:
        return {"session_id": self[0], "creator_id": self[1]}

    @classmethod
    def parse(cls, text: str) -> "RoomKey":
        """``20230914_000001_tongstar`` -> RoomKey; ValueError when it is not a room name."""
        session_id, creator_id = text[:15], text[16:]
        if len(text) < 17 or text[15] != "_" or not is_valid_session_id(session_id) \
                or not is_valid_user_id(creator_id):
            raise ValueError(f"{text!r} is not a room; expected SESSION_ID_CREATOR_ID like 20230914_000001_kim")
        return cls(session_id, creator_id)


@dataclass(frozen=True)
class Field:
    """One field of a request: its wire type and the limits checked before any handler runs."""

    name: str
    kind: type | tuple[type, ...]
    required: bool = True
    default: Any = None
    min_len: int | None = None
    max_len: int | None = None          # for str: characters; bytes: bytes; list: items
    minimum: int | None = None
    maximum: int | None = None
    check: Callable[[Any], bool] | None = None
    check_text: str = ""
    items: "Field | None" = None          # for lists: the type of every item

    def validate(self, value: Any, where: str) -> Any:
        """``value`` if it fits this field (a list's items validated too), else ``bad_request``
        or ``too_large`` naming ``where``."""
        try:
            return self.check_value(value)
        except _Invalid as exc:
            raise ProtocolError(exc.code, f"{where}{exc.path} {exc.text}") from None

    def check_value(self, value: Any) -> Any:
        """``validate`` without the field's name: raises ``_Invalid``, whose message the
        caller completes. Every request runs this for each of its fields, so the words of an
        error are only put together when there is one."""
        kind = self.kind
        # bool is an int in Python; a True where a number belongs is a client bug, not a 1.
        if value.__class__ is bool and kind is not bool and bool not in _as_tuple(kind):
            raise _Invalid(f"must be {_kind_name(kind)}, not a boolean")
        if not isinstance(value, kind):
            raise _Invalid(f"must be {_kind_name(kind)}, not {_type_name(value)}")
        if isinstance(value, (str, bytes, list)):
            if self.max_len is not None and len(value) > self.max_len:
                raise _Invalid(f"is longer than {self.max_len}",
                               ErrorCode.TOO_LARGE if isinstance(value, bytes) else ErrorCode.BAD_REQUEST)
            if self.min_len is not None and len(value) < self.min_len:
                raise _Invalid(f"must have at least {self.min_len} "
                               f"{'characters' if isinstance(value, str) else 'items' if isinstance(value, list) else 'bytes'}")
            if isinstance(value, str) and "\x00" in value:
                raise _Invalid("must not contain NUL")
        elif isinstance(value, int):
            if self.minimum is not None and value < self.minimum:
                raise _Invalid(f"must be at least {self.minimum}")
            if self.maximum is not None and value > self.maximum:
                raise _Invalid(f"must be at most {self.maximum}")
        if self.check is not None and not self.check(value):
            raise _Invalid(self.check_text)
        if self.items is not None:
            items = []
            for i, item in enumerate(value):
                try:
                    items.append(self.items.check_value(item))
                except _Invalid as exc:
                    exc.path = f"[{i}]{exc.path}"
                    raise
            return items
        return value


class _Invalid(Exception):
    """A value that does not fit its field; ``path`` locates it inside a list."""

    def __init__(self, text: str, code: ErrorCode = ErrorCode.BAD_REQUEST) -> None:
        super().__init__(text)
        self.text, self.code, self.path = text, code, ""


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in _as_tuple(kind))


def _type_name(value: Any) -> str:
    return "nil" if value is None else _TYPE_NAMES.get(type(value), type(value).__name__)


_TYPE_NAMES = {str: "a string", bytes: "binary", int: "an integer", bool: "a boolean",
               list: "an array", dict: "a map", float: "a float", type(None): "nil"}


def _bad(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_REQUEST, message)


def user_id_field(name: str = "user_id", required: bool = True) -> Field:
    return Field(name, str, required=required, max_len=50, check=is_valid_user_id,
                 check_text="must be 1-50 of A-Z a-z 0-9 . _ - and not start with '.'")


def room_fields() -> tuple[Field, ...]:
    """A room is addressed by (session_id, creator_id), as in SESSION_TB's key."""
    return (Field("session_id", str, max_len=15, check=is_valid_session_id,
                  check_text="must look like YYYYMMDD_NNNNNN"),
            user_id_field("creator_id"))


DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
TXN = Field("txn_id", str, min_len=1, max_len=TXN_ID_MAX)
SEQ = Field("seq", int, minimum=0, maximum=MAX_ID)
ROOM_NAME = Field("name", str, min_len=1, max_len=NAME_MAX)
INVITEES = Field("invite", list, required=False, default=(), max_len=500, items=user_id_field("invite"))
CACHED_ROOM = Field("rooms", list, required=False, default=(), max_len=10_000,
                    items=Field("rooms", dict))
PASSWORD = Field("password", str, min_len=PASSWORD_MIN, max_len=PASSWORD_MAX)
LISTEN = (Field("listen_host", str, required=False, max_len=40),
          Field("listen_port", int, required=False, minimum=1, maximum=65535),
          Field("listen_tls_fingerprint", bytes, required=False, min_len=32, max_len=32))

# op -> fields. Requests may carry more fields than listed; those are ignored.
OPS: dict[str, tuple[Field, ...]] = {
    "hello": (Field("version", int, minimum=0, maximum=MAX_ID),
              Field("client", str, required=False, default="", max_len=100)),
    "ping": (),
    "register": (user_id_field(), PASSWORD,
                 Field("name", str, required=False, min_len=1, max_len=USER_NM_MAX)),
    "login": (user_id_field(), Field("password", str, max_len=PASSWORD_MAX), *LISTEN),
    "logout": (),
    "get_profile": (user_id_field(required=False),),
    "set_profile": (Field("name", str, required=False, min_len=1, max_len=USER_NM_MAX),
                    Field("image", bytes, required=False)),
    # rooms
    "create_room": (ROOM_NAME, Field("image", bytes, required=False), INVITEES),
    "rename_room": (*room_fields(), ROOM_NAME),
    "set_room_image": (*room_fields(), Field("image", bytes)),
    "invite": (*room_fields(), Field("user_ids", list, min_len=1, max_len=500, items=user_id_field("user_ids"))),
    "leave": room_fields(),
    "list_rooms": (),
    "room_members": room_fields(),
    # messages and history
    "send": (*room_fields(), Field("chat_type", str, check=lambda v: v in CHAT_TYPES,
                                   check_text=f"must be one of {', '.join(CHAT_TYPES)}"),
             Field("content", bytes, min_len=1), TXN),
    "init": (CACHED_ROOM,),
    "history": (*room_fields(), Field("before", str, required=False,
                                      check=lambda v: DATE_RE.fullmatch(v) is not None,
                                      check_text="must be a date YYYY-MM-DD"),
                Field("before_seq", int, required=False, minimum=1, maximum=MAX_ID)),
    "fetch": (*room_fields(), Field("after_seq", int, minimum=0, maximum=MAX_ID),
              Field("limit", int, required=False, default=1000, minimum=1, maximum=5000)),
    "mark_read": (*room_fields(), SEQ),
}


def room_of(fields: dict[str, Any]) -> RoomKey:
    """The RoomKey named by a validated request's session_id and creator_id."""
    return RoomKey(fields.pop("session_id"), fields.pop("creator_id"))


def validate_request(message: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Check a request map; return ``(op, fields)`` or raise ``ProtocolError``.

    ``fields`` holds exactly the op's declared fields, optional ones defaulted.
    """
    op = message.get("op")
    if not isinstance(op, str):
        raise _bad("request must have an 'op' string")
    spec = OPS.get(op)
    if spec is None:
        raise _bad(f"unknown op {op[:40]!r}")
    fields: dict[str, Any] = {}
    for field in spec:
        value = message.get(field.name)
        if value is None:
            if field.required:
                raise _bad(f"{op}: field {field.name!r} is required")
            fields[field.name] = field.default
            continue
        try:
            fields[field.name] = field.check_value(value)
        except _Invalid as exc:
            raise ProtocolError(exc.code, f"{op}: field {field.name!r}{exc.path} {exc.text}") from None
    return op, fields


def request_id(message: dict[str, Any]) -> int | None:
    """The request's id when it is a usable integer, else None (replies then carry id nil)."""
    rid = message.get("id")
    if isinstance(rid, int) and not isinstance(rid, bool) and 0 <= rid <= MAX_ID:
        return rid
    return None
