"""A connection to the central server: hello, requests matched to replies by id, pushes
that arrive on the same connection handed to a callback.

Built on gevent's own socket module, so it works in processes that are not monkey-patched
(the test runner, the Qt bridge's thread with its own hub).
"""
from __future__ import annotations

import itertools
import logging
from typing import Any, Callable

import gevent
import gevent.event
import gevent.lock
from gevent import socket, ssl

from messenger_protocol import (DEFAULT_MAX_FRAME_SIZE, PROTOCOL_VERSION, ErrorCode, FrameDecoder,
                                ProtocolError, encode)

log = logging.getLogger(__name__)

PushHandler = Callable[[dict[str, Any]], None]


def client_tls_context(ca_file: str | None = None) -> "ssl.SSLContext":
    """TLS that verifies the server's certificate (against ``ca_file`` for a self-signed set-up,
    else the system's CAs) and its host name."""
    # gevent's SSLContext, built by hand: gevent.ssl.create_default_context returns the standard
    # library's class, whose sockets would block the whole hub.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)      # verifies certificate and host name
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    else:
        context.load_default_certs()
    return context


def parse_address(text: str, default_port: int = 9100) -> tuple[str, int]:
    """``HOST:PORT``, ``[v6]:PORT`` or ``HOST`` -> (host, port)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":") or str(default_port)
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, str(default_port)
    try:
        port_number = int(port)
    except ValueError:
        raise ValueError(f"bad port in {text!r}; expected HOST:PORT") from None
    if not host or not 0 < port_number < 65536:
        raise ValueError(f"bad address {text!r}; expected HOST:PORT")
    return host, port_number


class ServerConnection:
    """One open connection to the server. ``request`` may be called from many greenlets."""

    def __init__(self, host: str, port: int, *, timeout: float = 30.0,
                 on_push: PushHandler | None = None, on_close: Callable[[], None] | None = None,
                 max_frame_size: int = DEFAULT_MAX_FRAME_SIZE, tls: "ssl.SSLContext | None" = None) -> None:
        self.host, self.port = host, port
        self.tls = tls
        self.timeout = timeout
        self.on_push = on_push
        self.on_close = on_close
        self._ids = itertools.count(1)
        self._waiting: dict[int, gevent.event.AsyncResult] = {}
        self._write_lock = gevent.lock.Semaphore()
        self._decoder = FrameDecoder(max_frame_size)
        self._sock: socket.socket | None = None
        self._reader: gevent.Greenlet | None = None
        self.closed = False
        self._last_error: ProtocolError | None = None
        self.server_info: dict[str, Any] = {}

    def connect(self) -> "ServerConnection":
        """Open the socket and say hello; raises ``unavailable`` when the server can't be reached."""
        try:
            self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise ProtocolError(ErrorCode.UNAVAILABLE,
                                f"cannot connect to {self.host}:{self.port} ({exc.strerror or exc}); "
                                "is the server running?") from None
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            try:
                self._sock = self.tls.wrap_socket(self._sock, server_hostname=self.host)
            except (ssl.SSLError, OSError) as exc:
                self._sock.close()
                raise ProtocolError(ErrorCode.UNAVAILABLE,
                                    f"TLS with {self.host}:{self.port} failed ({exc}); check the server "
                                    "certificate or --ca-file") from None
        self._sock.settimeout(None)
        self._reader = gevent.spawn(self._read_loop)
        self.server_info = self.request("hello", version=PROTOCOL_VERSION, client="messenger-peer")
        return self

    @property
    def local_address(self) -> tuple[str, int]:
        assert self._sock is not None
        return self._sock.getsockname()[:2]

    def request(self, op: str, *, timeout: float | None = None, **fields: Any) -> dict[str, Any]:
        """Send a request and wait for its reply; an error reply raises ``ProtocolError``."""
        if self.closed or self._sock is None:
            raise ProtocolError(ErrorCode.UNAVAILABLE, "not connected to the server")
        rid = next(self._ids)
        result = gevent.event.AsyncResult()
        self._waiting[rid] = result
        try:
            frame = encode({"id": rid, "op": op, **fields})
            with self._write_lock:
                self._sock.sendall(frame)
            reply = result.get(timeout=self.timeout if timeout is None else timeout)
        except gevent.Timeout:
            raise ProtocolError(ErrorCode.UNAVAILABLE, f"no reply to {op} in time") from None
        except OSError as exc:
            self._fail_all(exc)
            raise ProtocolError(ErrorCode.UNAVAILABLE, f"connection to the server lost ({exc})") from None
        finally:
            self._waiting.pop(rid, None)
        if not reply.get("ok"):
            raise ProtocolError.from_wire(reply.get("error"))
        reply.pop("id", None)
        reply.pop("ok", None)
        return reply

    def _read_loop(self) -> None:
        assert self._sock is not None
        error: BaseException | None = None
        try:
            while True:
                data = self._sock.recv(256 * 1024)
                if not data:
                    break
                for frame in self._decoder.feed(data):
                    if isinstance(frame, ProtocolError):
                        log.warning("undecodable frame from the server: %s", frame.message)
                        continue
                    self._on_frame(frame)
        except (OSError, ProtocolError) as exc:
            error = exc
        finally:
            self._fail_all(error)

    def _on_frame(self, frame: dict[str, Any]) -> None:
        if frame.get("op") == "push":
            if self.on_push is not None:
                try:
                    self.on_push(frame)
                except Exception:
                    log.exception("push handler failed")
            return
        rid = frame.get("id")
        waiter = self._waiting.get(rid) if isinstance(rid, int) else None
        if waiter is not None:
            waiter.set(frame)
        elif rid is None and not frame.get("ok", True):
            # An error the server could not tie to a request (our frame was garbled or too
            # big, or a timeout): if the connection now closes, it is why.
            self._last_error = ProtocolError.from_wire(frame.get("error"))
            log.warning("server error: %s", frame.get("error"))

    def _fail_all(self, error: BaseException | None) -> None:
        if self.closed:
            return
        self.closed = True
        lost = self._last_error or ProtocolError(
            ErrorCode.UNAVAILABLE, f"connection to the server closed{f' ({error})' if error else ''}")
        for waiter in list(self._waiting.values()):
            waiter.set({"ok": False, "error": lost.to_wire()})
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        if self.on_close is not None:
            try:
                self.on_close()
            except Exception:
                log.exception("close handler failed")

    def close(self) -> None:
        """Close the connection; pending requests fail with ``unavailable``."""
        self._fail_all(None)
        if self._reader is not None and self._reader is not gevent.getcurrent():
            self._reader.join(timeout=1)
