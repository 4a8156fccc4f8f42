"""Operator limits: rates, sizes, connections and timeouts, each with its error code."""
from __future__ import annotations

import socket
import time

import gevent
import pytest

from messenger_protocol import ErrorCode, FrameDecoder, ProtocolError, encode
from messenger_protocol.messages import RoomKey
from messenger_peer import Peer

from ..support import PASSWORD, logged_in_peer


def read_until_closed(sock) -> list:
    decoder, frames = FrameDecoder(), []
    sock.settimeout(15)
    while True:
        data = sock.recv(65536)
        if not data:
            return frames
        frames += decoder.feed(data)


def test_send_rate_per_user(server_factory):
    server = server_factory("--sends-per-user", "2")          # burst of 10
    kim = logged_in_peer(server, "kim")
    key = RoomKey(**{k: v for k, v in kim.create_room("r").items() if k in ("session_id", "creator_id")})
    codes = []
    for i in range(15):
        try:
            kim.send_text(key, f"m{i}")
            codes.append("ok")
        except ProtocolError as exc:
            codes.append(exc.code.value)
    assert codes[:10] == ["ok"] * 10 and "rate_limited" in codes[10:]
    kim.close()


def test_connections_per_address(server_factory):
    server = server_factory("--max-connections-per-address", "3")
    held = [Peer(server.address).connect() for _ in range(3)]
    extra = socket.create_connection(server.address, timeout=10)
    frames = read_until_closed(extra)
    assert frames and frames[0]["error"]["code"] == "rate_limited"
    extra.close()
    held[0].close()
    # a slot freed up: a new connection is served again
    deadline = time.monotonic() + 10
    while True:
        try:
            Peer(server.address).connect().close()
            break
        except ProtocolError:
            assert time.monotonic() < deadline
            gevent.sleep(0.05)
    for p in held[1:]:
        p.close()


def test_silent_connections_are_closed(server_factory):
    server = server_factory("--hello-timeout", "0.5", "--auth-timeout", "1")
    silent = socket.create_connection(server.address, timeout=10)
    assert read_until_closed(silent)[0]["error"]["code"] == "unauthorized"
    silent.close()
    greeted = socket.create_connection(server.address, timeout=10)
    greeted.sendall(encode({"id": 1, "op": "hello", "version": 1}))
    frames = read_until_closed(greeted)
    assert frames[0]["ok"] is True and frames[1]["error"]["code"] == "unauthorized"
    greeted.close()
    p = logged_in_peer(server, "stays")
    gevent.sleep(1.5)      # past both timeouts: a logged-in connection is never cut
    assert p.request("ping") == {}
    p.close()


def test_failed_logins_slow_down(server):
    p = Peer(server.address).connect()
    p.register("target", PASSWORD)
    timings = []
    for _ in range(7):
        started = time.monotonic()
        with pytest.raises(ProtocolError) as info:
            p.login("target", "wrong-password")
        assert info.value.code in (ErrorCode.UNAUTHORIZED, ErrorCode.RATE_LIMITED)
        timings.append(time.monotonic() - started)
    # after five free failures each attempt waits 0.25 s, 0.5 s, ...
    assert timings[6] >= 0.45 and timings[6] > timings[0] + 0.3
    p.close()


def test_room_and_membership_sizes(server_factory):
    server = server_factory("--max-room-members", "3", "--max-rooms-per-user", "2")
    a, b, c, d = (logged_in_peer(server, u) for u in "abcd")
    with pytest.raises(ProtocolError) as info:
        a.create_room("too big", invite=["b", "c", "d"])
    assert info.value.code is ErrorCode.TOO_LARGE
    reply = a.create_room("ok", invite=["b", "c"])
    key = RoomKey(reply["session_id"], reply["creator_id"])
    with pytest.raises(ProtocolError) as info:
        a.invite(key, ["d"])
    assert info.value.code is ErrorCode.TOO_LARGE and "3 members" in info.value.message
    a.create_room("second")
    with pytest.raises(ProtocolError) as info:
        a.create_room("third")
    assert info.value.code is ErrorCode.TOO_LARGE
    for p in (a, b, c, d):
        p.close()
