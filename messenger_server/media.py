"""Checks of message and image content by its bytes (never by a name or a claimed type)."""
from __future__ import annotations

from messenger_protocol import ErrorCode, ProtocolError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"


def image_kind(data: bytes) -> str | None:
    """'png' or 'jpeg' when ``data`` starts like one, else None."""
    if data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR" and len(data) >= 33:
        return "png"
    if data.startswith(JPEG_SIGNATURE) and len(data) >= 4:
        return "jpeg"
    return None


def check_image(data: bytes, limit: int, what: str, allowed: tuple[str, ...] = ("png", "jpeg")) -> str:
    """Return the image kind, or raise ``too_large`` / ``bad_request`` with a useful message."""
    if len(data) > limit:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"{what} is {len(data)} bytes; the limit is {limit}")
    kind = image_kind(data)
    if kind not in allowed:
        names = " or ".join(k.upper() for k in allowed)
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"{what} must be a {names} image")
    return kind
