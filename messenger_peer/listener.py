"""The peer listener: a small gevent StreamServer that the central server pushes to.

Every connection must first answer our challenge with the HMAC of the push secret that the
server issued at login (messenger_protocol.push). Anything else — a wrong answer, a frame
before the answer, junk — is logged, answered with an error and closed, and never reaches the
application. Authenticated push frames are handed to ``on_push`` in arrival order.
"""
from __future__ import annotations

import hashlib
import logging
from typing import Any, Callable

import gevent
from gevent import socket, ssl
from gevent.server import StreamServer

from messenger_protocol import ErrorCode, FrameDecoder, ProtocolError, encode
from messenger_protocol.push import new_challenge, verify

log = logging.getLogger(__name__)

AUTH_TIMEOUT = 10.0
MAX_PUSH_FRAME = 64 * 1024 * 1024
PRE_AUTH_MAX_FRAME = 4 * 1024
LOGIN_WAIT = 10.0


class PushListener:
    """Accepts authenticated pushes; ``secret()`` gives the current push secret (None before login)."""

    def __init__(self, on_push: Callable[[dict[str, Any]], None], secret: Callable[[], bytes | None],
                 host: str = "127.0.0.1", port: int = 0, tls_cert: str | None = None,
                 tls_key: str | None = None, login_settled: Callable[[float], Any] | None = None) -> None:
        self.on_push = on_push
        self.secret = secret
        self.login_settled = login_settled
        self.refused = 0
        self.accepted = 0      # push connections that authenticated
        self.tls_fingerprint: bytes | None = None
        tls = {}
        if tls_cert:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)   # gevent's class: see client.py
            context.load_cert_chain(tls_cert, tls_key)
            tls = {"ssl_context": context}
            with open(tls_cert, encoding="ascii") as f:
                # The server pins this (sent at login over our own verified connection).
                self.tls_fingerprint = hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read())).digest()
        self._server = StreamServer((host, port), self._handle, **tls)

    def start(self) -> tuple[str, int]:
        self._server.start()
        return self.address

    @property
    def address(self) -> tuple[str, int]:
        return self._server.address[:2]

    def stop(self) -> None:
        self._server.stop(timeout=1)

    def _refuse(self, sock: socket.socket, peer: Any, why: str) -> None:
        self.refused += 1
        log.warning("refused a push connection from %s: %s", peer[0] if isinstance(peer, tuple) else peer, why)
        try:
            sock.sendall(encode({"op": "auth", "ok": False,
                                 "error": ProtocolError(ErrorCode.UNAUTHORIZED, why).to_wire()}))
        except OSError:
            pass

    def _handle(self, sock: socket.socket, peer: Any) -> None:
        # Until the challenge is answered only that answer (~50 bytes) is expected.
        decoder = FrameDecoder(PRE_AUTH_MAX_FRAME)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            challenge = new_challenge()
            sock.sendall(encode(challenge))
            frames: list[Any] = []
            try:
                with gevent.Timeout(AUTH_TIMEOUT):
                    while not frames:
                        data = sock.recv(65536)
                        if not data:
                            return
                        frames = decoder.feed(data)
            except gevent.Timeout:
                self._refuse(sock, peer, "no answer to the challenge in time")
                return
            except ProtocolError as exc:
                self._refuse(sock, peer, f"before authentication: {exc.message}")
                return
            secret = self.secret()
            if secret is None or not verify(secret, challenge["nonce"], frames[0]):
                # The server may push under a new login before its reply reached us: wait
                # for a login in flight to finish, then check against the new secret.
                if self.login_settled is not None:
                    self.login_settled(LOGIN_WAIT)
                    secret = self.secret()
            if secret is None or not verify(secret, challenge["nonce"], frames[0]):
                self._refuse(sock, peer, "wrong or missing push authentication")
                return
            sock.sendall(encode({"op": "auth", "ok": True}))
            self.accepted += 1
            decoder.max_frame_size = MAX_PUSH_FRAME
            self._deliver(frames[1:])
            while True:
                data = sock.recv(256 * 1024)
                if not data:
                    return
                self._deliver(decoder.feed(data))
        except ProtocolError as exc:
            log.warning("closing push connection: %s", exc.message)
        except (OSError, ssl.SSLError) as exc:
            log.debug("push connection ended: %s", exc)
        finally:
            sock.close()

    def _deliver(self, frames: list[Any]) -> None:
        for frame in frames:
            if isinstance(frame, dict) and frame.get("op") == "push":
                try:
                    self.on_push(frame)
                except Exception:
                    log.exception("push handler failed")
            else:
                log.warning("ignoring a non-push frame on the push connection")
