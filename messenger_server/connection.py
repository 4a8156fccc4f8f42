"""One client connection: a greenlet that reads frames, dispatches requests, writes replies.

The loop never knows SQL or files; it turns every failure of a request into an error reply
and keeps going, closing the connection only when the byte stream itself cannot continue
(an oversized frame) or the client goes away.
"""
from __future__ import annotations

import logging
import socket
import time
from typing import TYPE_CHECKING, Any

import gevent
import gevent.lock

from messenger_protocol import PROTOCOL_VERSION, ErrorCode, FrameDecoder, ProtocolError, encode
from messenger_protocol.messages import request_id, validate_request

from .storage.push import Target

if TYPE_CHECKING:
    from .app import Server

log = logging.getLogger(__name__)

RECV_SIZE = 256 * 1024
PRE_AUTH_MAX_FRAME = 8 * 1024
DRAIN_SECONDS = 2.0
DRAIN_BYTES = 32 * 1024 * 1024


class ClientSession:
    """State of one connection: who is logged in, and a lock so replies and pushes that
    share the socket never interleave their bytes."""

    def __init__(self, server: "Server", sock: socket.socket, address: Any) -> None:
        self.server = server
        self.sock = sock
        self.peer_ip: str = address[0] if isinstance(address, tuple) else "local"
        self.user_id: str | None = None
        self.token_hash: bytes | None = None
        self.push_target: Target | None = None   # where and how to push to this session
        self.greeted = False
        self.adopted = False      # passed here by a sibling worker at login: never passed on
        self.closing = False
        self.connected_at = time.monotonic()
        self._write_lock = gevent.lock.Semaphore()

    # -- called by actions -------------------------------------------------------------
    def bind(self, target: Target) -> None:
        """The connection is now logged in as ``target.user_id``, pushed to at ``target``."""
        if self.token_hash is not None:
            self.server.session_unbound(self)
        self.user_id, self.token_hash, self.push_target = target.user_id, target.token_hash, target
        self.server.session_bound(self)

    def unbind(self) -> None:
        if self.token_hash is not None:
            self.server.session_unbound(self)
        self.user_id = self.token_hash = self.push_target = None

    # -- I/O -----------------------------------------------------------------------------
    def send_bytes(self, data: bytes) -> None:
        """Write one or more encoded frames atomically with respect to other writers."""
        with self._write_lock:
            self.sock.sendall(data)

    def send(self, message: dict[str, Any]) -> None:
        self.send_bytes(encode(message))

    def send_error(self, rid: int | None, error: ProtocolError) -> None:
        self.send({"id": rid, "ok": False, "error": error.to_wire()})

    def run(self, frames: list[Any] | None = None, buffer: bytes = b"") -> None:
        """Serve the connection until the peer closes it or the server stops (``frames`` and
        ``buffer``: what a sibling worker read before passing it here)."""
        try:
            self._serve(frames, buffer)
        except (ConnectionError, OSError) as exc:
            log.debug("connection from %s ended: %s", self.peer_ip, exc)
        finally:
            self.server.session_closed(self)
            try:
                self.sock.close()
            except OSError:
                pass

    def refuse(self, why: str) -> None:
        """Turn the connection away with ``rate_limited`` before serving it."""
        try:
            self.send_error(None, ProtocolError(ErrorCode.RATE_LIMITED, why))
            self.sock.close()
        except OSError:
            pass

    def _deadline(self) -> tuple[float | None, str]:
        """Until when an unauthenticated connection may wait, and what to say when it's over."""
        config = self.server.config
        if self.user_id is not None:
            return None, ""
        if not self.greeted:
            return self.connected_at + config.hello_timeout, "no hello in time; closing the connection"
        return self.connected_at + config.auth_timeout, "not logged in in time; closing the connection"

    def _serve(self, frames: list[Any] | None = None, buffer: bytes = b"") -> None:
        """The read loop. A connection a sibling worker passed here (handover.py) starts with
        the frames it read but did not handle, and the bytes of a frame not yet complete."""
        config = self.server.config
        decoder = FrameDecoder(PRE_AUTH_MAX_FRAME)
        ready: list[Any] = list(frames or ())
        while not self.closing:
            if not ready:
                if buffer:
                    data, buffer = buffer, b""
                else:
                    deadline, why = self._deadline()
                    try:
                        with gevent.Timeout(None if deadline is None else max(0.0, deadline - time.monotonic())):
                            data = self.sock.recv(RECV_SIZE)
                    except gevent.Timeout:
                        self.send_error(None, ProtocolError(ErrorCode.UNAUTHORIZED, why))
                        return
                    if not data:
                        return
                try:
                    ready = decoder.feed(data)
                except ProtocolError as exc:  # fatal: the stream cannot be resynchronised
                    self._close_with(exc)
                    return
            for i, frame in enumerate(ready):
                if isinstance(frame, ProtocolError):
                    self.send_error(None, frame)
                elif self._hand_over(frame, ready[i + 1:], decoder):
                    return                  # the connection is the sibling's now
                else:
                    self._handle(frame)
            ready = []
            if decoder.fatal is not None:   # an oversized frame followed the ones just served
                self._close_with(decoder.fatal)
                return
            # Before login only small frames make sense (hello, register, login): a stranger
            # must not make us buffer megabytes.
            decoder.max_frame_size = config.max_frame_size if self.user_id else PRE_AUTH_MAX_FRAME

    def _hand_over(self, frame: dict[str, Any], rest: list[Any], decoder: FrameDecoder) -> bool:
        """Pass the connection to the worker owning most of the user's rooms before serving
        its login (handover.py); True when it went. Anything unusual keeps it here."""
        handover = self.server.handover
        if (handover is None or self.adopted or self.user_id is not None or not self.greeted
                or frame.get("op") != "login" or decoder.fatal is not None
                or any(isinstance(f, ProtocolError) for f in rest)):
            return False
        try:
            _, fields = validate_request(frame)
            home = handover.home(fields["user_id"])
        except ProtocolError:
            return False                  # _handle answers it
        except Exception as exc:          # the database may be down: serve it here
            log.debug("no home worker for a login: %s", exc)
            return False
        if home == handover.index:
            return False
        return handover.pass_over(home, self.sock, {
            "address": [self.peer_ip], "greeted": self.greeted, "connected_at": self.connected_at,
            "frames": [frame, *rest], "buffer": decoder.pending()})

    def _close_with(self, error: ProtocolError) -> None:
        """Answer a fatal error, then close gracefully: stop writing and drain what the peer is
        still sending (bounded), because closing with unread bytes sends a reset that can
        destroy our error frame before the peer reads it."""
        log.info("closing connection from %s: %s", self.peer_ip, error.message)
        try:
            self.send_error(None, error)
            self.sock.shutdown(socket.SHUT_WR)
            drained = 0
            with gevent.Timeout(DRAIN_SECONDS, False):
                while drained < DRAIN_BYTES:
                    chunk = self.sock.recv(RECV_SIZE)
                    if not chunk:
                        break
                    drained += len(chunk)
        except OSError:
            pass

    def _handle(self, message: dict[str, Any]) -> None:
        rid = request_id(message)
        try:
            if rid is None:
                raise ProtocolError(ErrorCode.BAD_REQUEST, "a request needs an integer 'id' from 0 to 2**53")
            op, fields = validate_request(message)
            if op == "hello":
                reply = self._hello(fields["version"])
            elif not self.greeted:
                raise ProtocolError(ErrorCode.BAD_REQUEST, "send hello before any other op")
            else:
                reply = self.server.dispatcher.dispatch(self, op, fields)
        except ProtocolError as exc:
            self.send_error(rid, exc)
            return
        except Exception:
            log.exception("internal error handling %r", message.get("op"))
            self.send_error(rid, ProtocolError(ErrorCode.INTERNAL, "internal server error; the request may be retried"))
            return
        self.send({"id": rid, "ok": True, **reply})

    def _hello(self, version: int) -> dict[str, Any]:
        if version != PROTOCOL_VERSION:
            raise ProtocolError(ErrorCode.BAD_REQUEST,
                                f"protocol version {version} is not supported; this server speaks {PROTOCOL_VERSION}")
        self.greeted = True
        return {"version": PROTOCOL_VERSION, "server": f"messenger-server/{self.server.version}"}

    def shutdown_reading(self) -> None:
        """Make the loop end after the request in flight (used by a clean server stop)."""
        self.closing = True
        try:
            self.sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass
