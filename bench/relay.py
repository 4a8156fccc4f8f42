"""The baseline of ``make bench``: a minimal gevent relay with NO storage, speaking the
messenger's protocol well enough that the very same load test (real ``Peer`` objects with
real push listeners, ``messenger-loadtest``) runs against it unchanged.

THIS IS NOT A SERVER TO RUN FOR PEOPLE. It exists only to show what the wire, gevent and
the push fan-out cost on this machine, so that ``make bench`` can print how much our real
server's durable storage and checks add (the real/relay ratio). On purpose it has:

* no database and no disk: accounts, rooms and sequence numbers live in this process's memory
  and vanish when it stops; a message is acknowledged as soon as it is numbered;
* no password hashing: passwords are kept in plaintext in memory and compared directly;
* no limits, no TLS, no history (``init`` returns empty content, ``fetch`` nothing).

What it does the same way as the real server, because a fair baseline must:

* the framing (4-byte big-endian length + msgpack map, ``messenger_protocol.frames``), the
  request/reply shape and the ops the load test uses: ``hello``, ``ping``, ``register``,
  ``login`` (with ``listen_host``/``listen_port``), ``logout``, ``create_room``, ``invite``,
  ``leave``, ``send`` (acknowledged with ``seq`` and ``chat_time``), ``init``, ``fetch``,
  ``mark_read``, ``list_rooms``, ``room_members``;
* one request at a time per connection, replies in order, each reply its own ``sendall``;
* pushes go to each online session's own listener over ONE persistent connection per
  session, opened on the first push after the challenge/HMAC handshake of
  ``messenger_protocol.push``; each message is encoded ONCE and the same bytes are queued for
  every member; a writer greenlet per link sends whatever has queued up in one ``sendall``.

    python bench/relay.py [--host 127.0.0.1] [--port 0]

prints ``listening on HOST:PORT`` when ready and stops on SIGINT/SIGTERM.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import collections  # noqa: E402
import datetime as dt  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
from gevent import socket  # noqa: E402
from gevent.server import StreamServer  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # runnable from a checkout

from messenger_protocol import PROTOCOL_VERSION, FrameDecoder, encode  # noqa: E402
from messenger_protocol.push import answer, push_frame  # noqa: E402

MAX_FRAME = 16 * 1024 * 1024


class Error(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class Room:
    __slots__ = ("session_id", "creator_id", "name", "members", "seq")

    def __init__(self, session_id: str, creator_id: str, name: str, members: list[str]) -> None:
        self.session_id, self.creator_id, self.name = session_id, creator_id, name
        self.members = members           # ordered, unique
        self.seq = 0


class Link:
    """One persistent push connection to one session's listener, fed by a queue."""

    def __init__(self, session: "Session") -> None:
        self.session = session
        self.queue: collections.deque[bytes] = collections.deque()
        self.wake = gevent.event.Event()
        self.closed = False
        self.greenlet = gevent.spawn(self._run)

    def push(self, frame: bytes) -> None:
        if not self.closed:
            self.queue.append(frame)
            self.wake.set()

    def _run(self) -> None:
        s = self.session
        sock = None
        try:
            sock = socket.create_connection((s.listen_host, s.listen_port), timeout=5)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            decoder = FrameDecoder(64 * 1024)
            challenge = _read_frame(sock, decoder)
            sock.sendall(encode(answer(s.push_secret, challenge["nonce"])))
            ok = _read_frame(sock, decoder)
            if not ok or ok.get("ok") is not True:
                raise ConnectionError("listener refused the answer")
            sock.settimeout(None)
            while not self.closed:
                self.wake.wait()
                self.wake.clear()
                while self.queue:
                    data = b"".join(self.queue)
                    self.queue.clear()
                    sock.sendall(data)
        except (OSError, ConnectionError, KeyError, TypeError):
            self.closed = True
        finally:
            if sock is not None:
                sock.close()

    def close(self) -> None:
        self.closed = True
        self.queue.clear()
        self.greenlet.kill(block=False)


def _read_frame(sock: socket.socket, decoder: FrameDecoder) -> dict[str, Any] | None:
    while True:
        data = sock.recv(65536)
        if not data:
            return None
        for frame in decoder.feed(data):
            return frame if isinstance(frame, dict) else None


class Session:
    """A logged-in connection."""

    def __init__(self, user_id: str, listen_host: str | None, listen_port: int | None, push_secret: bytes) -> None:
        self.user_id = user_id
        self.listen_host, self.listen_port = listen_host, listen_port
        self.push_secret = push_secret
        self.link: Link | None = None

    def push(self, frame: bytes) -> None:
        if not self.listen_port:
            return
        if self.link is None or self.link.closed:
            self.link = Link(self)
        self.link.push(frame)

    def close(self) -> None:
        if self.link is not None:
            self.link.close()


class Relay:
    def __init__(self) -> None:
        self.passwords: dict[str, str] = {}           # plaintext, in memory: a baseline only
        self.names: dict[str, str] = {}
        self.rooms: dict[tuple[str, str], Room] = {}
        self.room_numbers: collections.Counter[tuple[str, str]] = collections.Counter()
        self.online: dict[str, set[Session]] = collections.defaultdict(set)
        self.pushes = 0

    # -- connection loop ---------------------------------------------------------------
    def handle(self, sock: socket.socket, address: Any) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        decoder = FrameDecoder(MAX_FRAME)
        conn = {"session": None, "ip": address[0] if isinstance(address, tuple) else "127.0.0.1"}
        try:
            while True:
                data = sock.recv(256 * 1024)
                if not data:
                    return
                for frame in decoder.feed(data):
                    if not isinstance(frame, dict):
                        sock.sendall(encode({"id": None, "ok": False,
                                             "error": {"code": "bad_request", "message": "not a map"}}))
                        continue
                    sock.sendall(encode(self.request(conn, frame)))
        except Exception:      # noqa: BLE001 - a broken connection just ends
            return
        finally:
            self._end_session(conn)
            sock.close()

    def request(self, conn: dict[str, Any], frame: dict[str, Any]) -> dict[str, Any]:
        rid = frame.get("id")
        op = frame.get("op")
        try:
            handler = getattr(self, f"op_{op}", None) if isinstance(op, str) else None
            if handler is None:
                raise Error("bad_request", f"unknown op {op!r}")
            if op not in ("hello", "ping", "register", "login") and conn["session"] is None:
                raise Error("unauthorized", "log in first")
            return {"id": rid, "ok": True, **handler(conn, frame)}
        except Error as exc:
            return {"id": rid, "ok": False, "error": {"code": exc.code, "message": exc.message}}
        except (KeyError, TypeError, ValueError) as exc:
            return {"id": rid, "ok": False, "error": {"code": "bad_request", "message": f"bad request: {exc}"}}

    def _end_session(self, conn: dict[str, Any]) -> None:
        session = conn.get("session")
        if session is not None:
            self.online[session.user_id].discard(session)
            session.close()
            conn["session"] = None

    def _room(self, conn: dict[str, Any], frame: dict[str, Any]) -> Room:
        room = self.rooms.get((frame["session_id"], frame["creator_id"]))
        if room is None or conn["session"].user_id not in room.members:
            raise Error("forbidden", "not a member of that room")
        return room

    # -- ops -----------------------------------------------------------------------------
    def op_hello(self, conn, frame):
        if frame.get("version") != PROTOCOL_VERSION:
            raise Error("bad_request", f"this relay speaks protocol {PROTOCOL_VERSION}")
        return {"version": PROTOCOL_VERSION, "server": "messenger-relay/baseline"}

    def op_ping(self, conn, frame):
        return {}

    def op_register(self, conn, frame):
        user_id, password = frame["user_id"], frame["password"]
        if user_id in self.passwords:
            raise Error("conflict", f"the user id {user_id!r} is taken")
        self.passwords[user_id] = password
        self.names[user_id] = frame.get("name") or user_id
        return {"user_id": user_id, "name": self.names[user_id]}

    def op_login(self, conn, frame):
        user_id = frame["user_id"]
        if self.passwords.get(user_id) != frame["password"]:
            raise Error("unauthorized", "wrong user id or password")
        self._end_session(conn)
        session = Session(user_id, frame.get("listen_host") or conn["ip"], frame.get("listen_port"), os.urandom(32))
        conn["session"] = session
        self.online[user_id].add(session)
        return {"user_id": user_id, "name": self.names[user_id], "token": os.urandom(16).hex(),
                "push_secret": session.push_secret, "login_ip": session.listen_host,
                "login_port": session.listen_port}

    def op_logout(self, conn, frame):
        self._end_session(conn)
        return {}

    def op_create_room(self, conn, frame):
        me = conn["session"].user_id
        invite = [u for u in dict.fromkeys(frame.get("invite") or ()) if u != me]
        missing = [u for u in invite if u not in self.passwords]
        if missing:
            raise Error("not_found", f"no such user: {', '.join(missing)}")
        today = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d")
        self.room_numbers[me, today] += 1
        session_id = f"{today}_{self.room_numbers[me, today]:06d}"
        room = self.rooms[session_id, me] = Room(session_id, me, frame["name"], [me, *invite])
        self._invited(room, invite, me)
        return {"session_id": session_id, "creator_id": me, "room": f"{session_id}_{me}",
                "name": room.name, "members": list(room.members)}

    def op_invite(self, conn, frame):
        room = self._room(conn, frame)
        missing = [u for u in frame["user_ids"] if u not in self.passwords]
        if missing:
            raise Error("not_found", f"no such user: {', '.join(missing)}")
        added = [u for u in dict.fromkeys(frame["user_ids"]) if u not in room.members]
        room.members.extend(added)
        self._invited(room, added, conn["session"].user_id)
        return {"added": added}

    def _invited(self, room: Room, user_ids: list[str], by: str) -> None:
        """Tell each invitee, as the real server does, so that its peer knows where the room's
        seqs start (``last_seq``) before the first message arrives."""
        info = {"session_id": room.session_id, "creator_id": room.creator_id, "name": room.name,
                "members": list(room.members), "last_seq": room.seq, "by": by}
        for user_id in user_ids:
            sessions = self.online.get(user_id)
            if sessions:
                data = encode(push_frame("invited", {**info, "user_id": user_id}))
                for session in sessions:
                    session.push(data)

    def op_leave(self, conn, frame):
        room = self._room(conn, frame)
        room.members.remove(conn["session"].user_id)
        return {"session_id": room.session_id, "creator_id": room.creator_id}

    def op_send(self, conn, frame):
        room = self._room(conn, frame)
        if not isinstance(frame["content"], bytes) or not frame["content"]:
            raise Error("bad_request", "content must be bytes")
        room.seq += 1
        chat_time = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
        message = {"session_id": room.session_id, "creator_id": room.creator_id, "seq": room.seq,
                   "user_id": conn["session"].user_id, "chat_type": frame["chat_type"],
                   "content": frame["content"], "chat_time": chat_time}
        data = encode(push_frame("message", message))       # once, for every member
        online = self.online
        for member in room.members:
            for session in online.get(member, ()):
                session.push(data)
                self.pushes += 1
        return {"session_id": room.session_id, "creator_id": room.creator_id, "seq": room.seq,
                "chat_time": chat_time}

    def op_init(self, conn, frame):
        me = conn["session"].user_id
        data = [{"session_id": r.session_id, "creator_id": r.creator_id, "session_name": r.name,
                 "session_img": None, "image_tag": None, "content": [], "gap": False, "last_seq": r.seq,
                 "read_seq": 0, "unread": 0, "members": len(r.members)}
                for r in self.rooms.values() if me in r.members]
        return {"chatroom_init_data": data}

    def op_fetch(self, conn, frame):
        room = self._room(conn, frame)
        return {"session_id": room.session_id, "creator_id": room.creator_id, "messages": [], "more": False,
                "last_seq": room.seq}

    def op_mark_read(self, conn, frame):
        room = self._room(conn, frame)
        return {"session_id": room.session_id, "creator_id": room.creator_id, "read_seq": frame["seq"]}

    def op_list_rooms(self, conn, frame):
        me = conn["session"].user_id
        return {"rooms": [{"session_id": r.session_id, "creator_id": r.creator_id, "name": r.name,
                           "members": len(r.members), "last_seq": r.seq} for r in self.rooms.values()
                          if me in r.members]}

    def op_room_members(self, conn, frame):
        room = self._room(conn, frame)
        return {"members": [{"user_id": u, "name": self.names[u], "online": bool(self.online.get(u))}
                            for u in room.members]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="No-storage baseline relay for make bench (NOT for real use: "
                                                 "plaintext passwords in memory, nothing stored).")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port; 0 picks a free one (default)")
    args = parser.parse_args(argv)
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    relay = Relay()
    server = StreamServer((args.host, args.port), relay.handle, backlog=4096)
    server.start()
    host, port = server.address[:2]
    print(f"listening on {host}:{port}", flush=True)
    stop = gevent.event.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(signum, stop.set)
    stop.wait()
    server.stop(timeout=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
