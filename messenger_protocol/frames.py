"""Length-prefixed msgpack frames: a 4-byte big-endian length, then one msgpack map.

``encode`` turns a map into bytes; ``FrameDecoder`` is fed bytes as they arrive and returns
the complete frames. Neither does any I/O (the h11 style), so the same code serves the server,
the peer, the listener and the tests, which feed byte streams split at random.
"""
from __future__ import annotations

import struct
from typing import Any

import msgpack

from .errors import ErrorCode, ProtocolError

DEFAULT_MAX_FRAME_SIZE = 16 * 1024 * 1024
_HEADER = struct.Struct(">I")
HEADER_SIZE = _HEADER.size


def encode(message: dict[str, Any]) -> bytes:
    """Encode one map as a complete frame (header + msgpack body)."""
    body = msgpack.packb(message, use_bin_type=True)
    return _HEADER.pack(len(body)) + body


def decode_body(body: bytes | memoryview) -> dict[str, Any]:
    """Decode one frame body (bytes or a view of them); anything but a well-formed msgpack
    map is ``bad_request``."""
    try:
        message = msgpack.unpackb(body, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises many types: ExtraData, ValueError, UnicodeDecodeError...
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"frame is not valid msgpack: {type(exc).__name__}") from None
    if not isinstance(message, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "frame must hold a msgpack map")
    return message


class FrameDecoder:
    """Incremental decoder: ``feed(data)`` returns the frames completed by ``data``.

    Each item returned is a decoded map, or a ``ProtocolError`` (``bad_request``) standing in
    for a body that is not a msgpack map: the length prefix still tells where the next frame
    starts, so the stream stays in sync and the caller can answer with an error and go on.
    A declared length over ``max_frame_size`` is fatal (``too_large``) and detected before any
    of that body is buffered, so a hostile length never costs memory. The frames complete
    before it are still returned, with the error kept in ``fatal``; ``feed`` raises it when
    nothing precedes it and on every later call. ``max_frame_size`` may change between feeds
    (servers allow bigger frames once a connection has logged in).
    """

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self.max_frame_size = max_frame_size
        self.fatal: ProtocolError | None = None
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """How many bytes are held waiting for the rest of a frame."""
        return len(self._buffer)

    def pending(self) -> bytes:
        """The bytes held of a frame not yet complete (to hand the stream to another decoder)."""
        return bytes(self._buffer)

    def feed(self, data: bytes) -> list[dict[str, Any] | ProtocolError]:
        """Add received bytes; return every frame now complete, oldest first."""
        if self.fatal is not None:
            raise self.fatal
        buf = self._buffer
        if buf:
            buf += data
            if len(buf) >= HEADER_SIZE:
                (length,) = _HEADER.unpack_from(buf)
                if length <= self.max_frame_size and len(buf) < HEADER_SIZE + length:
                    return []      # a big frame arriving in pieces: no copy until it is whole
            data = bytes(buf)
            buf.clear()
        # Bodies are decoded straight out of the received bytes (a memoryview slice, no
        # copy); only the tail of a frame not yet complete is kept in the buffer.
        frames: list[dict[str, Any] | ProtocolError] = []
        view = memoryview(data)
        size = len(data)
        start = 0
        while size - start >= HEADER_SIZE:
            (length,) = _HEADER.unpack_from(data, start)
            if length > self.max_frame_size:
                self.fatal = ProtocolError(ErrorCode.TOO_LARGE,
                                           f"frame of {length} bytes exceeds the limit of {self.max_frame_size}",
                                           fatal=True)
                if not frames:
                    raise self.fatal
                return frames
            end = start + HEADER_SIZE + length
            if size < end:
                break
            try:
                frames.append(decode_body(view[start + HEADER_SIZE:end]))
            except ProtocolError as exc:
                frames.append(exc)
            start = end
        if start < size:
            buf += view[start:]
        return frames
