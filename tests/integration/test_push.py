"""Live push end to end: real server, real PostgreSQL, real peers with listeners on loopback."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import gevent
from gevent import socket as gsocket

from messenger_protocol import FrameDecoder, encode
from messenger_protocol.messages import RoomKey
from messenger_protocol.push import answer
from messenger_peer import Peer

from ..support import PASSWORD, logged_in_peer, wait_for


class Inbox:
    """Collects a peer's events."""

    def __init__(self, peer: Peer) -> None:
        self.events: list[dict] = []
        peer.on_event(self.events.append)

    def messages(self, room: RoomKey | None = None) -> list[dict]:
        return [e for e in self.events if e["event"] == "message"
                and (room is None or (e["session_id"], e["creator_id"]) == tuple(room))]

    def seqs(self, room: RoomKey | None = None) -> list[int]:
        return [m["seq"] for m in self.messages(room)]

    def wait_seqs(self, expected: list[int], room: RoomKey | None = None, timeout: float = 15) -> None:
        def ok():
            gevent.sleep(0.005)
            return self.seqs(room)[:len(expected)] == expected and len(self.seqs(room)) >= len(expected)
        wait_for(ok, timeout, f"seqs {expected[:3]}..{expected[-3:]} (have {self.seqs(room)[-5:]})")


def make_room(owner, members, name="room") -> RoomKey:
    reply = owner.create_room(name, invite=members)
    return RoomKey(reply["session_id"], reply["creator_id"])


def test_three_members_receive_each_message_once_in_order(server, db):
    a, b, c = (logged_in_peer(server, u) for u in ("a", "b", "c"))
    a2 = logged_in_peer(server, "a", register=False)          # the sender's other device
    inboxes = {name: Inbox(p) for name, p in (("a", a), ("a2", a2), ("b", b), ("c", c))}
    key = make_room(a, ["b", "c"])
    for i in range(30):
        a.send_text(key, f"message {i}")
    for name in ("a2", "b", "c", "a"):
        inboxes[name].wait_seqs(list(range(1, 31)), key)
    gevent.sleep(0.2)   # a late duplicate would show up here; none may
    for name in ("a2", "b", "c", "a"):
        assert inboxes[name].seqs(key) == list(range(1, 31)), name
    assert inboxes["b"].messages(key)[4]["content"] == b"message 4"
    assert any(e["event"] == "invited" for e in inboxes["b"].events)
    db.execute("SELECT LOGIN_IP, LOGIN_PORT FROM USER_TB WHERE USER_ID = 'b'")
    assert db.fetchone() == tuple(b.listener.address)
    for p in (a, a2, b, c):
        p.close()


def test_room_events_are_pushed(server):
    a, b, c = (logged_in_peer(server, u) for u in ("a", "b", "c"))
    ib, ic = Inbox(b), Inbox(c)
    key = make_room(a, ["b"])
    a.invite(key, ["c"])
    a.rename_room(key, "renamed")
    b.mark_read(key, 0)
    c.leave(key)

    def kinds(inbox):
        return [e["event"] for e in inbox.events if e["event"] != "connection"]
    wait_for(lambda: gevent.sleep(0.01) or "member_left" in kinds(ib), what="events at b")
    assert kinds(ib) == ["invited", "members_joined", "room_renamed", "read", "member_left"]
    assert kinds(ic)[0] == "invited" and "room_renamed" in kinds(ic)
    for p in (a, b, c):
        p.close()


def test_away_member_gets_exactly_what_it_missed_at_login(server, tmp_path):
    a = logged_in_peer(server, "a")
    b = logged_in_peer(server, "b", data_dir=tmp_path / "b")
    first = Inbox(b)
    key = make_room(a, ["b"])
    for i in range(5):
        a.send_text(key, f"before {i}")
    first.wait_seqs([1, 2, 3, 4, 5], key)
    b.logout()
    b.close()
    for i in range(10):
        a.send_text(key, f"away {i}")
    b = Peer(server.address, data_dir=tmp_path / "b").connect()
    inbox = Inbox(b)
    b.login("b", PASSWORD)
    assert inbox.seqs(key) == list(range(6, 16)), "exactly the 10 missed, delivered during login"
    assert [m["content"] for m in inbox.messages(key)][0] == b"away 0"
    assert [m["seq"] for m in b.cache.messages(key)] == list(range(1, 16))
    a.send_text(key, "live again")
    inbox.wait_seqs(list(range(6, 17)), key)
    a.close()
    b.close()


def test_forged_pushes_never_reach_the_application(server):
    b = logged_in_peer(server, "b")
    inbox = Inbox(b)
    host, port = b.listener.address
    decoder = FrameDecoder()
    for attempt in ("no auth", "wrong mac"):
        # gevent's socket: the listener runs on this thread's hub, which a blocking call would stall.
        sock = gsocket.create_connection((host, port), timeout=10)
        challenge = None
        while challenge is None:
            frames = decoder.feed(sock.recv(65536))
            challenge = frames[0] if frames else None
        if attempt == "wrong mac":
            sock.sendall(encode(answer(b"not the secret" * 2, challenge["nonce"])))
        sock.sendall(encode({"op": "push", "event": "message", "session_id": "20200101_000001",
                             "creator_id": "mallory", "seq": 1, "user_id": "mallory", "chat_type": "text",
                             "content": b"forged", "chat_time": "2020-01-01T00:00:00.000+00:00"}))
        data = b""
        sock.settimeout(10)
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        replies = FrameDecoder().feed(data)
        assert replies and replies[-1]["ok"] is False and replies[-1]["error"]["code"] == "unauthorized"
        sock.close()
    gevent.sleep(0.1)
    assert inbox.messages() == []
    assert b.listener.refused == 2
    b.close()


def test_unreachable_listener_falls_back_to_the_session_connection(server, db):
    a = logged_in_peer(server, "a")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead_port = s.getsockname()[1]
    s.close()
    b = Peer(server.address).connect()
    b.register("b", PASSWORD)
    b._start_listener()
    # Advertise an address where nothing listens: like a client behind NAT.
    b.listener.stop()
    reply = b.request("login", user_id="b", password=PASSWORD, listen_host="127.0.0.1", listen_port=dead_port)
    b.user_id, b.push_secret, b.live = "b", reply["push_secret"], True
    inbox = Inbox(b)
    key = make_room(a, ["b"])
    for i in range(5):
        a.send_text(key, f"via session {i}")
    inbox.wait_seqs([1, 2, 3, 4, 5], key)
    db.execute("SELECT LOGIN_IP IS NOT NULL FROM USER_TB WHERE USER_ID = 'b'")
    assert db.fetchone()[0] is True, "still online"
    a.close()
    b.close()


def run_listen(server, user, data_dir, *extra):
    env = {**os.environ, "MESSENGER_PASSWORD": PASSWORD}
    return subprocess.Popen([sys.executable, "-m", "messenger_peer", "--server", "%s:%d" % server.address,
                             "--user", user, "--data-dir", str(data_dir), "listen", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)


def wait_listening(proc) -> None:
    line = proc.stderr.readline()
    assert "listening" in line, line


def test_killed_peer_is_marked_offline_and_catches_up_later(server, db, tmp_path):
    a = logged_in_peer(server, "a")
    b = logged_in_peer(server, "b")
    b.close()
    key = make_room(a, ["b"])
    proc = run_listen(server, "b", tmp_path / "b")
    try:
        wait_listening(proc)
        a.send_text(key, "one")
        assert json.loads(proc.stdout.readline())["seq"] == 1
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()
    a.send_text(key, "two")        # this push fails: the listener is gone

    def offline():
        db.execute("SELECT LOGIN_IP FROM USER_TB WHERE USER_ID = 'b'")
        return db.fetchone()[0] is None
    wait_for(offline, 15, "b marked offline after the failed push")
    a.send_text(key, "three")
    proc = run_listen(server, "b", tmp_path / "b", "--count", "2", "--timeout", "30")
    out, err = proc.communicate(timeout=60)
    lines = [json.loads(x) for x in out.splitlines()]
    assert [(x["seq"], x["content"]) for x in lines] == [(2, "two"), (3, "three")]
    assert all(x["room"] == key.folder and x["user_id"] == "a" and "received_at" in x for x in lines)
    a.close()


def test_stalled_listener_does_not_slow_the_others(server):
    a, c = logged_in_peer(server, "a"), logged_in_peer(server, "c")
    inbox = Inbox(c)
    # A listener that authenticates correctly and then never reads another byte.
    stalled = socket.socket()
    stalled.bind(("127.0.0.1", 0))
    stalled.listen(1)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s = Peer(server.address).connect()
    s.register("s", PASSWORD)
    s.request("login", user_id="s", password=PASSWORD, listen_host="127.0.0.1",
                      listen_port=stalled.getsockname()[1])
    accepted = []

    def handshake():
        conn, _ = stalled.accept()
        accepted.append(conn)
        decoder = FrameDecoder()
        conn.sendall(encode({"op": "challenge", "nonce": b"n" * 32}))
        while not decoder.feed(conn.recv(65536)):
            pass
        conn.sendall(encode({"op": "auth", "ok": True}))
    stalled.setblocking(True)
    import threading
    t = threading.Thread(target=handshake, daemon=True)
    t.start()
    key = make_room(a, ["c", "s"])
    big = "가" * 20000           # 60 KB per message: the stalled socket fills at once
    started = time.monotonic()
    for i in range(60):
        a.send_text(key, big + str(i))
    inbox.wait_seqs(list(range(1, 61)), key, timeout=30)
    elapsed = time.monotonic() - started
    assert accepted, "the server did connect to the stalled listener"
    assert elapsed < 20
    for conn in accepted:
        conn.close()
    stalled.close()
    for p in (a, c, s):
        p.close()
