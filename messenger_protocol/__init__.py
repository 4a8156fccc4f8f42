"""The wire protocol shared by the server and the peer: frames, ops, error codes.

Pure (sans-I/O): nothing here touches sockets, gevent, files or the database, so both sides
and the tests use exactly the same code.
"""
from .errors import ErrorCode, ProtocolError
from .frames import FrameDecoder, encode, DEFAULT_MAX_FRAME_SIZE

PROTOCOL_VERSION = 1

__all__ = ["ErrorCode", "ProtocolError", "FrameDecoder", "encode", "DEFAULT_MAX_FRAME_SIZE",
           "PROTOCOL_VERSION"]
