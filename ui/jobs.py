"""Work the bridge runs on the peer's hub thread: everything that touches the network or disk.

Each function takes the ``Peer`` (and plain values), blocks only its greenlet, and returns
plain data for the Qt thread; none of them touches a Qt model. Image decoding for message rows
happens here too (``prepare``), so the Qt thread only inserts ready rows.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from messenger_peer import Peer
from messenger_peer.cache import decode_records
from messenger_protocol import ErrorCode, ProtocolError
from messenger_protocol.messages import RoomKey

from .images import ImageStore, is_png_or_jpeg, to_png
from .models.messages import Message, prepare

MAX_SENT_IMAGE = 8 * 1024 * 1024      # under the server's default 10 MiB, with headroom
MAX_SENT_SIDE = 2560
ROOM_IMAGE_SIDE = 512                 # room and profile pictures are shown small
PROFILE_IMAGE_SIDE = 512


@dataclass
class Session:
    """What the Qt side needs right after login."""

    user_id: str
    name: str
    avatar: str
    rooms: list[dict[str, Any]]


@dataclass
class RoomContent:
    """An opened room: cached rows (oldest first) and the members."""

    rows: list[Message]
    members: list[dict[str, Any]]


@dataclass
class HistoryPage:
    """Up to 3 older days: rows oldest first, the earliest day returned, and whether it was the first."""

    rows: list[Message]
    earliest: str | None
    beginning: bool
    days: list[str] = field(default_factory=list)


def describe(exc: BaseException, action: str = "") -> str:
    """An error in words for people."""
    if isinstance(exc, ProtocolError):
        text = {
            ErrorCode.UNAVAILABLE: "The server cannot be reached right now. Is it running? ({msg})",
            ErrorCode.FORBIDDEN: "You are not a member of that room.",
            ErrorCode.RATE_LIMITED: "Too many requests; try again in a moment.",
            ErrorCode.TOO_LARGE: "That is too large to send ({msg}).",
            ErrorCode.INTERNAL: "The server had a problem ({msg}).",
        }.get(exc.code, "{msg}")
        msg = exc.message.rstrip(".")
        text = text.format(msg=msg)
    elif isinstance(exc, OSError):
        text = f"Cannot read the file: {exc.strerror or exc}"
    else:
        text = str(exc) or type(exc).__name__
    text = text[:1].upper() + text[1:]
    return f"{action}: {text}" if action else text


def login_error(exc: BaseException) -> str:
    """Login and registration failures, in the words a login screen uses."""
    if isinstance(exc, ProtocolError):
        if exc.code is ErrorCode.UNAUTHORIZED:
            return "Wrong user id or password."
        if exc.code is ErrorCode.CONFLICT:
            return "That user id is taken; choose another."
    return describe(exc)


def start_session(peer: Peer, images: ImageStore, user_id: str, password: str,
                  register_name: str | None = None) -> Session:
    """Register when asked, log in (catching up from the cache), and read profile and rooms."""
    peer.connect()
    if register_name is not None:
        peer.register(user_id, password, register_name or None)
    peer.login(user_id, password)
    profile = peer.get_profile()
    avatar = ImageStore.url(_put(images, f"user/{user_id}/{len(profile['image'])}", profile["image"]), True) \
        if profile.get("image") else ""
    return Session(user_id, profile.get("name") or user_id, avatar, peer.list_rooms())


def open_room(peer: Peer, images: ImageStore, room: RoomKey) -> RoomContent:
    """The room's cached history (disk) and its members (network)."""
    rows = [prepare(room.folder, m, images) for m in peer.cache.messages(room)]
    return RoomContent(rows, peer.room_members(room))


def older_history(peer: Peer, images: ImageStore, room: RoomKey, before: str | None) -> HistoryPage:
    """Up to 3 days with messages before ``before`` (server days, YYYY-MM-DD)."""
    reply = peer.history(room, before)
    days = [d["chat_date"] for d in reply["content"]]
    rows = [prepare(room.folder, m, images) for d in reply["content"] for m in decode_records(d["content"], room)]
    return HistoryPage(rows, min(days) if days else None, bool(reply.get("beginning")) or not days, days)


def room_images(peer: Peer, images: ImageStore, known: dict[RoomKey, tuple[int, str | None]]) -> dict[str, str]:
    """Pictures of rooms whose ``image_tag`` we do not hold; returns folder -> image URL.

    There is no op that returns just a room's picture: ``init`` sends it when the tag we say we
    have differs. We tell it every room's newest seq, so it sends no history along."""
    rooms = [{**room.to_wire(), "last_seq": seq, **({"image_tag": tag} if tag else {})}
             for room, (seq, tag) in known.items()]
    urls: dict[str, str] = {}
    for entry in peer.request("init", rooms=rooms)["chatroom_init_data"]:
        if entry.get("session_img") and entry.get("image_tag"):
            folder = f"{entry['session_id']}_{entry['creator_id']}"
            urls[folder] = ImageStore.url(_put(images, f"room/{folder}/{entry['image_tag']}", entry["session_img"]), True)
    return urls


def avatars(peer: Peer, images: ImageStore, user_ids: list[str]) -> dict[str, str]:
    """Profile pictures of ``user_ids`` (those that have one); returns user id -> image URL."""
    urls: dict[str, str] = {}
    for user_id in user_ids:
        try:
            profile = peer.get_profile(user_id)
        except ProtocolError:
            continue        # gone or not visible: the initial is shown instead
        if profile.get("image"):
            urls[user_id] = ImageStore.url(_put(images, f"user/{user_id}/{len(profile['image'])}", profile["image"]), True)
    return urls


def _put(images: ImageStore, key: str, data: bytes) -> str:
    images.put(key, data)
    return key


def read_image(path: str, max_side: int | None = None, png: bool = False) -> bytes:
    """An image file's bytes ready for the server: PNG/JPEG kept when small enough, anything
    else Qt reads (GIF, BMP, WebP ...) re-encoded as PNG and scaled down when needed."""
    data = Path(path).read_bytes()
    if png:
        return to_png(data, max_side)
    if is_png_or_jpeg(data) and len(data) <= MAX_SENT_IMAGE and max_side is None:
        return data
    return to_png(data, max_side or MAX_SENT_SIDE)


def next_day(day: dt.date) -> str:
    return (day + dt.timedelta(days=1)).isoformat()
