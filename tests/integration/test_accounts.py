"""Accounts end to end: a real server process, real PostgreSQL, the real Peer over TCP."""
from __future__ import annotations

import socket
import struct

import msgpack
import pytest

from messenger_protocol import ErrorCode, FrameDecoder, ProtocolError, encode
from messenger_peer import Peer

from ..support import PNG_1PX as PNG


def peer(server) -> Peer:
    return Peer(server.address, timeout=30).connect()


def test_register_login_logout(server, db):
    with peer(server) as p:
        assert p.register("kim", "correct horse", name="김철수") == {"user_id": "kim", "name": "김철수"}
        reply = p.login("kim", "correct horse")
        assert reply["name"] == "김철수" and isinstance(reply["token"], str) and len(reply["push_secret"]) == 32
        db.execute("SELECT LOGIN_IP FROM USER_TB WHERE USER_ID = 'kim'")
        assert db.fetchone()[0] == "127.0.0.1"
        p.logout()
        db.execute("SELECT LOGIN_IP, LOGIN_PORT FROM USER_TB WHERE USER_ID = 'kim'")
        assert db.fetchone() == (None, None)


def test_password_is_stored_as_salted_slow_hash(server, db):
    with peer(server) as p:
        p.register("a1", "same password")
        p.register("a2", "same password")
    db.execute("SELECT PASSWORD FROM USER_TB ORDER BY USER_ID")
    h1, h2 = [row[0] for row in db.fetchall()]
    assert h1.startswith("scrypt$") and "same password" not in h1
    assert h1 != h2, "salts must differ"


def test_wrong_password_and_unknown_user_look_the_same(server):
    with peer(server) as p:
        p.register("lee", "password-1")
        errors = []
        for user, password in [("lee", "password-2"), ("nobody", "password-1")]:
            with pytest.raises(ProtocolError) as info:
                p.login(user, password)
            errors.append((info.value.code, info.value.message))
    assert errors[0] == errors[1]
    assert errors[0][0] is ErrorCode.UNAUTHORIZED


def test_duplicate_register_is_a_conflict(server):
    with peer(server) as p:
        p.register("park", "password-1")
        with pytest.raises(ProtocolError) as info:
            p.register("park", "password-2")
    assert info.value.code is ErrorCode.CONFLICT


@pytest.mark.parametrize("user_id", ["../x", ".dot", "a/b", "x" * 51, "한"])
def test_bad_user_ids_are_refused(server, user_id, db):
    with peer(server) as p, pytest.raises(ProtocolError) as info:
        p.register(user_id, "password-1")
    assert info.value.code is ErrorCode.BAD_REQUEST
    db.execute("SELECT count(*) FROM USER_TB")
    assert db.fetchone()[0] == 0


def test_short_password_is_refused(server):
    with peer(server) as p, pytest.raises(ProtocolError) as info:
        p.register("choi", "short")
    assert info.value.code is ErrorCode.BAD_REQUEST and "at least 8" in info.value.message


def test_ops_need_login(server):
    with peer(server) as p:
        for op in ("logout", "get_profile", "set_profile"):
            with pytest.raises(ProtocolError) as info:
                p.request(op)
            assert info.value.code is ErrorCode.UNAUTHORIZED, op


def test_profile_name_and_image(server, db):
    with peer(server) as p:
        p.register("jung", "password-1")
        p.login("jung", "password-1")
        p.set_profile(name="정", image=PNG)
        profile = p.get_profile()
        assert profile["name"] == "정" and profile["image"] == PNG and profile["online"] is True
        with pytest.raises(ProtocolError) as info:
            p.set_profile(image=b"GIF89a not allowed")
        assert info.value.code is ErrorCode.BAD_REQUEST
        with pytest.raises(ProtocolError) as info:
            p.get_profile("ghost")
        assert info.value.code is ErrorCode.NOT_FOUND
    db.execute("SELECT IMAGE_PATH FROM USER_TB WHERE USER_ID = 'jung'")
    path = db.fetchone()[0]
    assert path == "profiles/jung.png"
    assert (server.data_dir / path).read_bytes() == PNG


def test_closing_the_connection_marks_offline(server, db):
    from .. support import wait_for
    p = peer(server)
    p.register("han", "password-1")
    p.login("han", "password-1")
    p.close()

    def offline():
        db.execute("SELECT LOGIN_IP FROM USER_TB WHERE USER_ID = 'han'")
        return db.fetchone()[0] is None
    wait_for(offline, what="LOGIN_IP back to NULL")


# -- raw wire behaviour ---------------------------------------------------------------------
class RawClient:
    def __init__(self, address):
        self.sock = socket.create_connection(address, timeout=10)
        self.decoder = FrameDecoder()
        self.frames = []

    def send(self, data: bytes):
        self.sock.sendall(data)

    def recv_frame(self):
        while not self.frames:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.frames += self.decoder.feed(data)
        return self.frames.pop(0)

    def close(self):
        self.sock.close()


@pytest.fixture
def raw(server):
    clients = []

    def connect():
        clients.append(RawClient(server.address))
        return clients[-1]
    yield connect
    for client in clients:
        client.close()


def test_requests_before_hello_are_refused(raw):
    raw = raw()
    raw.send(encode({"id": 1, "op": "ping"}))
    reply = raw.recv_frame()
    assert reply["id"] == 1 and reply["ok"] is False and reply["error"]["code"] == "bad_request"


def test_wrong_protocol_version(raw):
    raw = raw()
    raw.send(encode({"id": 1, "op": "hello", "version": 999}))
    assert raw.recv_frame()["error"]["code"] == "bad_request"


def test_malformed_frames_get_errors_and_the_connection_goes_on(raw):
    raw = raw()
    raw.send(encode({"id": 1, "op": "hello", "version": 1}))
    assert raw.recv_frame()["ok"] is True
    bad = b"\xc1\xc1"
    raw.send(struct.pack(">I", len(bad)) + bad)                     # not msgpack
    raw.send(encode({"id": 2, "op": "teleport"}))                    # unknown op
    raw.send(encode({"id": 3, "op": "register", "user_id": 7, "password": "x" * 9}))  # wrong type
    raw.send(encode({"op": "ping"}))                                 # no id
    body = msgpack.packb([1, 2])
    raw.send(struct.pack(">I", len(body)) + body)                    # not a map
    raw.send(encode({"id": 4, "op": "ping"}))
    replies = [raw.recv_frame() for _ in range(6)]
    assert [r["ok"] for r in replies] == [False] * 5 + [True]
    assert [r["error"]["code"] for r in replies[:5]] == ["bad_request"] * 5
    assert [r["id"] for r in replies] == [None, 2, 3, None, None, 4]


def test_oversized_frame_gets_too_large_and_close(raw):
    raw = raw()
    raw.send(encode({"id": 1, "op": "hello", "version": 1}))
    raw.recv_frame()
    raw.send(struct.pack(">I", 2**31) + b"x" * 100)
    reply = raw.recv_frame()
    assert reply["ok"] is False and reply["error"]["code"] == "too_large"
    assert raw.recv_frame() is None  # closed


def test_random_bytes_do_not_disturb_a_logged_in_client(server):
    import os
    with peer(server) as p:
        p.register("calm", "password-1")
        p.login("calm", "password-1")
        for i in range(20):
            junk = socket.create_connection(server.address, timeout=10)
            junk.sendall(os.urandom(1000 + i * 97))
            junk.close()
        assert p.get_profile()["user_id"] == "calm"
        assert p.request("ping") == {}
