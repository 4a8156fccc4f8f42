"""One client connection: a greenlet that reads frames, dispatches requests, writes replies.

The loop never knows SQL or files; it turns every failure of a request into an error reply
and keeps going, closing the connection only when the byte stream itself cannot continue
(an oversized frame) or the client goes away.
"""
from __future__ import annotations

import dataclasses
import logging
import socket
import time
from typing import TYPE_CHECKING, Any

import gevent
import gevent.lock
import gevent.socket

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
# A logged-in session whose traffic crosses to a sibling worker looks up its home worker at
# most this often (one indexed query); it moves when that is another worker.
HOME_CHECK_SECONDS = 10.0
MOVE_LOCK_SECONDS = 1.0


class _MoveNow(BaseException):
    """Thrown into a reader idle in recv: its session should move to another worker now.
    Not an Exception, so no handler on the way takes it for a failure."""


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
        # Over plain TCP a reply goes out with one non-blocking send (gevent's send with
        # timeout 0): sendall would first ask the kernel for the socket's buffer size, a
        # syscall per reply (4 % of the server's thread under W1). TLS sockets use sendall.
        self._send_now = sock.send if type(sock) is gevent.socket.socket else None
        # Moving a logged-in session (session affinity, handover.py): the worker it should
        # move to, when to look again, and the reader, interruptible while idle in recv.
        self.move_to: int | None = None
        self.moved_away = False
        self.next_home_check = 0.0
        self._checking_home = False
        self._reader: gevent.Greenlet | None = None
        self._idle = False

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

    def consider_move(self) -> None:
        """This session's traffic just crossed to a sibling worker (a send handed to its room's
        worker, or pushes handed here): find its home worker, at most every
        HOME_CHECK_SECONDS and never in the caller's greenlet, and move it there if that is
        another worker."""
        handover = self.server.handover
        if (handover is None or self.user_id is None or self._checking_home or self.move_to is not None
                or time.monotonic() < self.next_home_check):
            return
        self._checking_home = True
        self.next_home_check = time.monotonic() + HOME_CHECK_SECONDS
        gevent.spawn(self._check_home, self.user_id)

    def _check_home(self, user_id: str) -> None:
        handover = self.server.handover
        assert handover is not None
        try:
            home = handover.home(user_id)
        except Exception as exc:          # the database may be down: stay
            log.debug("no home worker for %s: %s", user_id, exc)
            return
        finally:
            self._checking_home = False
        if home == handover.index or self.user_id != user_id or self.closing:
            return
        self.move_to = home
        if self._idle:                    # wake the reader; it moves between two requests
            gevent.get_hub().loop.run_callback(self._interrupt_idle_reader)

    def _interrupt_idle_reader(self) -> None:
        # Runs in the hub: if the reader is (still) parked in recv, nothing of a request is
        # in flight and no byte has been consumed, so it can leave the recv and move.
        reader = self._reader
        if self._idle and reader is not None and not reader.dead:
            reader.throw(_MoveNow())

    # -- I/O -----------------------------------------------------------------------------
    def send_bytes(self, data: bytes) -> None:
        """Write one or more encoded frames atomically with respect to other writers."""
        with self._write_lock:
            if self.moved_away:
                raise ConnectionAbortedError("the connection moved to another worker")
            if self._send_now is not None:
                try:
                    sent = self._send_now(data, 0, 0.0)
                except BlockingIOError:
                    sent = 0
                if sent == len(data):
                    return
                data = memoryview(data)[sent:]
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
        decoder = FrameDecoder(config.max_frame_size if self.user_id else PRE_AUTH_MAX_FRAME)
        self._reader = gevent.getcurrent()
        ready: list[Any] = list(frames or ())
        while not self.closing:
            if not ready:
                if buffer:
                    data, buffer = buffer, b""
                else:
                    if self.move_to is not None and self._move(decoder):
                        return                  # the session is the sibling's now
                    deadline, why = self._deadline()
                    try:
                        self._idle = True
                        if deadline is None:        # logged in: no timer to arm per read
                            data = self.sock.recv(RECV_SIZE)
                        else:
                            with gevent.Timeout(max(0.0, deadline - time.monotonic())):
                                data = self.sock.recv(RECV_SIZE)
                    except gevent.Timeout:
                        self.send_error(None, ProtocolError(ErrorCode.UNAUTHORIZED, why))
                        return
                    except _MoveNow:
                        continue                # move at the top of the loop
                    finally:
                        self._idle = False
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
        return handover.pass_over(home, self.sock, self._handover_state([frame, *rest], decoder))

    def _handover_state(self, frames: list[Any], decoder: FrameDecoder) -> dict[str, Any]:
        """What the sibling needs to go on serving this connection (handover.py)."""
        state = {"address": [self.peer_ip], "greeted": self.greeted, "connected_at": self.connected_at,
                 "frames": frames, "buffer": decoder.pending()}
        if self.push_target is not None:       # a logged-in session moves with it
            state["session"] = dataclasses.asdict(self.push_target)
        return state

    def _move(self, decoder: FrameDecoder) -> bool:
        """Pass this logged-in session to worker ``move_to`` between two requests; True when
        it went. Its session row stays online: the sibling takes it over (handover.py)."""
        handover, home, self.move_to = self.server.handover, self.move_to, None
        if handover is None or home is None or self.push_target is None:
            return False
        # No push may go over this connection from here on: a push writing now finishes first.
        if not self._write_lock.acquire(timeout=MOVE_LOCK_SECONDS):
            return False
        if not handover.pass_over(home, self.sock, self._handover_state([], decoder)):
            self._write_lock.release()
            return False
        self.server.session_moved(self, home)
        self.user_id = self.token_hash = self.push_target = None   # nothing to close here
        self.moved_away = True
        self._write_lock.release()      # a push waiting to write now finds it gone and forwards
        return True

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
