"""Authorisation (hardening issue, item 3): every op x every kind of caller, and hostile ids.

The matrix below is the rule of docs/protocol.md written out cell by cell: before ``hello``
only ``hello`` is served (bad_request); without a login only hello, ping, register and login
(unauthorized); room ops only for the room's members (forbidden for everyone else, a former
member included); no op is reserved to a room's creator. Every cell is run against a real
server with valid fields, so the answer is the caller's rights and nothing else, and a refused
cell must change nothing in the database or on disk.

Ids that are not ids (``/``, ``..``, NUL, very long, non-ASCII, ...) in every field that names a
user or a room are bad_request, create nothing under the data dir or beside it, and add no row.
Names that look like paths or SQL are stored verbatim: they never become file names or SQL.
"""
from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import gevent
import pytest
from gevent import socket as gsocket

from messenger_protocol import FrameDecoder, ProtocolError, encode
from messenger_protocol.messages import OPS, RoomKey
from messenger_peer import Peer
from messenger_server.connection import PRE_AUTH_MAX_FRAME

from ..support import PASSWORD, PNG_1PX

CALLERS = ("no hello", "not logged in", "non-member", "former member", "member", "creator")
OK, BAD, UNAUTH, FORBID = "ok", "bad_request", "unauthorized", "forbidden"

# op                no hello  not logged in  non-member  former member  member  creator
MATRIX: dict[str, tuple[str, ...]] = {
    "hello":          (OK,  OK,     OK,     OK,     OK, OK),
    "ping":           (BAD, OK,     OK,     OK,     OK, OK),
    "register":       (BAD, OK,     OK,     OK,     OK, OK),
    "login":          (BAD, OK,     OK,     OK,     OK, OK),
    "logout":         (BAD, UNAUTH, OK,     OK,     OK, OK),
    "get_profile":    (BAD, UNAUTH, OK,     OK,     OK, OK),
    "set_profile":    (BAD, UNAUTH, OK,     OK,     OK, OK),
    "create_room":    (BAD, UNAUTH, OK,     OK,     OK, OK),
    "list_rooms":     (BAD, UNAUTH, OK,     OK,     OK, OK),
    "init":           (BAD, UNAUTH, OK,     OK,     OK, OK),
    "rename_room":    (BAD, UNAUTH, FORBID, FORBID, OK, OK),
    "set_room_image": (BAD, UNAUTH, FORBID, FORBID, OK, OK),
    "invite":         (BAD, UNAUTH, FORBID, FORBID, OK, OK),
    "leave":          (BAD, UNAUTH, FORBID, FORBID, OK, OK),
    "room_members":   (BAD, UNAUTH, FORBID, FORBID, OK, OK),
    "mark_read":      (BAD, UNAUTH, FORBID, FORBID, OK, OK),
    "send":           (BAD, UNAUTH, FORBID, FORBID, OK, OK),
    "history":        (BAD, UNAUTH, FORBID, FORBID, OK, OK),
    "fetch":          (BAD, UNAUTH, FORBID, FORBID, OK, OK),
}
USERS = {"non-member": "outsider", "former member": "leaver", "member": "member", "creator": "creator"}
# tables whose rows a request may add or change (USER_SESSION_TB and SERVER_TB follow connections)
TABLES = ("USER_TB", "SESSION_TB", "SESSION_USER_RELATION_TB", "ROOM_COUNTER_TB", "SEND_TXN_TB")


def test_the_matrix_covers_every_op():
    assert set(MATRIX) == set(OPS), "a new op needs its row in the authorisation matrix"


OPEN: list[Any] = []      # peers and connections of the running test, closed when it ends


@pytest.fixture(autouse=True)
def close_everything():
    yield
    while OPEN:
        try:
            OPEN.pop().close()
        except Exception:
            pass


def connect(server) -> Peer:
    peer = Peer(server.address, timeout=60).connect()
    OPEN.append(peer)
    return peer


class RawConnection:
    """A connection that never says hello (gevent sockets: the test's hub must keep running)."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = gsocket.create_connection(address, timeout=30)
        OPEN.append(self)
        self.decoder = FrameDecoder()
        self.frames: list[Any] = []

    def request(self, op: str, **fields: Any) -> str:
        self.sock.sendall(encode({"id": 1, "op": op, **fields}))
        while not self.frames:
            data = self.sock.recv(65536)
            assert data, f"the server closed the connection on {op}"
            self.frames += self.decoder.feed(data)
        reply = self.frames.pop(0)
        assert reply["id"] == 1, reply
        return OK if reply["ok"] else reply["error"]["code"]

    def close(self) -> None:
        self.sock.close()


def outcome(call) -> str:
    try:
        call()
        return OK
    except ProtocolError as exc:
        return exc.code.value


def login(server, user: str) -> Peer:
    peer = connect(server)
    for _ in range(100):          # a few dozen logins per user: wait out the per-user rate limit
        try:
            peer.login(user, PASSWORD, live=False)
            return peer
        except ProtocolError as exc:
            if exc.code.value != "rate_limited":
                raise
            gevent.sleep(0.25)
    raise AssertionError(f"could not log in as {user}")


def counts(db) -> dict[str, int]:
    out = {}
    for table in TABLES:
        db.execute(f"SELECT count(*) FROM {table}")
        out[table] = db.fetchone()[0]
    return out


def room_state(db, server, key: RoomKey) -> tuple:
    """Everything a room op could change: the room's row, its members and read positions, its
    folder's files, and every row count."""
    db.execute("SELECT SESSION_NM, HAS_IMAGE, LAST_SEQ, ARCHIVE_SIZE FROM SESSION_TB "
               "WHERE SESSION_ID = %s AND CREATOR_ID = %s", tuple(key))
    row = db.fetchone()
    db.execute("SELECT USER_ID, READ_SEQ FROM SESSION_USER_RELATION_TB WHERE SESSION_ID = %s AND CREATOR_ID = %s "
               "ORDER BY USER_ID", tuple(key))
    members = db.fetchall()
    folder = server.data_dir / "archive" / key.folder
    files = sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*") if p.is_file())
    return row, members, files, counts(db)


def cell_fields(op: str, key: RoomKey, caller: str, n: int) -> dict[str, Any]:
    """Valid fields for ``op``: only the caller's rights can make it fail."""
    room = key.to_wire()
    return {
        "hello": {"version": 1},
        "ping": {},
        "register": {"user_id": f"newbie{n}", "password": PASSWORD},
        "login": {"user_id": USERS.get(caller, "loner"), "password": PASSWORD},
        "logout": {},
        "get_profile": {"user_id": "creator"},
        "set_profile": {"name": f"renamed {n}"},
        "create_room": {"name": f"room of cell {n}", "invite": ["member"]},
        "list_rooms": {},
        "init": {"rooms": [{**room, "last_seq": 0}]},
        "rename_room": {**room, "name": f"renamed by cell {n}"},
        "set_room_image": {**room, "image": PNG_1PX},
        "invite": {**room, "user_ids": ["extra"]},
        "leave": room,
        "room_members": room,
        "mark_read": {**room, "seq": 1},
        "send": {**room, "chat_type": "text", "content": f"cell {n}".encode(), "txn_id": f"cell-{n}"},
        "history": room,
        "fetch": {**room, "after_seq": 0},
    }[op]


def test_authorization_matrix(server, db):
    """Every op x every caller, each cell on a fresh room with one message in it; the answers
    are compared with MATRIX as a whole, and a refused cell must leave the room and every table
    as they were."""
    setup = connect(server)
    for user in ("creator", "member", "outsider", "leaver", "extra", "loner"):
        setup.register(user, PASSWORD)
    setup.close()
    creator = login(server, "creator")
    sessions = {caller: login(server, user) for caller, user in USERS.items() if caller != "creator"}
    sessions["creator"] = creator
    got: dict[tuple[str, str], str] = {}
    changed: list[str] = []
    n = itertools.count()
    for op in MATRIX:
        for i, caller in enumerate(CALLERS):
            cell = next(n)
            key = RoomKey(**{k: v for k, v in creator.create_room(f"cell {cell}", invite=["member", "leaver"]).items()
                             if k in ("session_id", "creator_id")})
            creator.send_text(key, "the first message")
            sessions["former member"].leave(key)
            before = room_state(db, server, key)
            fields = cell_fields(op, key, caller, cell)
            if caller == "no hello":
                raw = RawConnection(server.address)
                got[op, caller] = raw.request(op, **fields)
                raw.close()
            elif caller == "not logged in":
                anonymous = connect(server)
                got[op, caller] = outcome(lambda: anonymous.request(op, **fields))
                anonymous.close()
            else:
                got[op, caller] = outcome(lambda: sessions[caller].request(op, **fields))
                if op in ("logout", "login"):           # back to a plain logged-in session
                    sessions[caller].close()
                    sessions[caller] = login(server, USERS[caller])
                    if caller == "creator":
                        creator = sessions["creator"]
            if got[op, caller] != OK and room_state(db, server, key) != before:
                changed.append(f"{op} by {caller} was refused ({got[op, caller]}) but changed "
                               f"{before} -> {room_state(db, server, key)}")
    for peer in sessions.values():
        peer.close()
    wrong = [f"{op:15} {caller:14} expected {MATRIX[op][i]:13} got {got[op, caller]}"
             for op in MATRIX for i, caller in enumerate(CALLERS) if got[op, caller] != MATRIX[op][i]]
    assert not wrong, "cells that differ from the matrix:\n" + "\n".join(wrong)
    assert not changed, "\n".join(changed)


# -- hostile ids ---------------------------------------------------------------------------
HOSTILE_USER_IDS = ["/", "..", "../..", "../../../../tmp/x", "a/b", "a\\b", "\x00", "a\x00b", "kim\x00",
                    "x" * 51, "x" * 10_000, "김철수", "kim\n", "kim ", " kim", ".hidden", ".", "", "é", "k%2fm",
                    "%2e%2e", "kim;rm", "'--", "kim'; DROP TABLE USER_TB; --", "\u202ekim", "ｋｉｍ", "kim\u200b"]
HOSTILE_SESSION_IDS = ["/", "..", "../../x", "20230914_000001/..", "20230914_000001/../../x", "\x00",
                       "20230914_00000\x00", "x" * 16, "2" * 10_000, "20230914_00000１", "2023０914_000001",
                       "20230914-000001", "20230914_000001\n", "20230914_0000011", "", "세션", "%2e%2e"]


def id_cases(room: dict[str, str]) -> list[tuple[str, str, dict[str, Any]]]:
    """(who sends it, op, fields) for every field that names a user or a room, once per hostile
    value; the other fields are valid."""
    cases = []
    for bad in HOSTILE_USER_IDS:
        cases += [
            ("anonymous", "register", {"user_id": bad, "password": PASSWORD}),
            ("anonymous", "login", {"user_id": bad, "password": PASSWORD}),
            ("creator", "login", {"user_id": bad, "password": PASSWORD}),
            ("creator", "get_profile", {"user_id": bad}),
            ("creator", "create_room", {"name": "r", "invite": [bad]}),
            ("creator", "create_room", {"name": "r", "invite": ["member", bad]}),
            ("creator", "invite", {**room, "user_ids": [bad]}),
            ("creator", "invite", {**room, "user_ids": ["member", bad]}),
            ("creator", "init", {"rooms": [{**room, "creator_id": bad, "last_seq": 0}]}),
        ]
        for op in ("rename_room", "set_room_image", "invite", "leave", "room_members", "mark_read", "send",
                   "history", "fetch"):
            cases.append(("creator", op, {**cell_fields(op, RoomKey(**room), "creator", 0), "creator_id": bad}))
    for bad in HOSTILE_SESSION_IDS:
        for op in ("rename_room", "set_room_image", "invite", "leave", "room_members", "mark_read", "send",
                   "history", "fetch"):
            cases.append(("creator", op, {**cell_fields(op, RoomKey(**room), "creator", 0), "session_id": bad}))
        cases.append(("creator", "init", {"rooms": [{**room, "session_id": bad, "last_seq": 0}]}))
    return cases


def tree(root: Path) -> set[str]:
    """Every path under ``root`` (names only: contents of existing files may change)."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_hostile_ids_are_bad_requests_and_touch_nothing(server, db, tmp_path):
    setup = connect(server)
    for user in ("creator", "member"):
        setup.register(user, PASSWORD)
    setup.close()
    creator = login(server, "creator")
    key = RoomKey(**{k: v for k, v in creator.create_room("target", invite=["member"]).items()
                     if k in ("session_id", "creator_id")})
    creator.send_text(key, "hello")
    anonymous = connect(server)
    files_before, rows_before = tree(tmp_path), counts(db)
    db.execute("SELECT USER_ID FROM USER_TB ORDER BY 1")
    users_before = db.fetchall()
    room_before = room_state(db, server, key)
    wrong = []
    cases = id_cases(key.to_wire())
    for who, op, fields in cases:
        peer = anonymous if who == "anonymous" else creator
        result = outcome(lambda: peer.request(op, **fields))
        # Before login frames are capped at 8 KiB: a huge id there is too_large (and the
        # connection closed), which touches nothing either.
        expected = ("too_large" if who == "anonymous" and len(encode({"op": op, **fields})) > PRE_AUTH_MAX_FRAME
                    else BAD)
        if result != expected:
            wrong.append(f"{op} {fields!r:.200}: {result}")
    creator.close()
    anonymous.close()
    assert not wrong, f"{len(wrong)} of {len(cases)} hostile ids were not bad_request:\n" + "\n".join(wrong)
    gevent.sleep(0.2)
    created = sorted(tree(tmp_path) - files_before)
    assert created == [], f"files appeared: {created}"
    assert counts(db) == rows_before
    db.execute("SELECT USER_ID FROM USER_TB ORDER BY 1")
    assert db.fetchall() == users_before
    assert room_state(db, server, key) == room_before
    archive = server.data_dir / "archive"
    for bad in HOSTILE_USER_IDS + HOSTILE_SESSION_IDS:          # where a path made of it would lead
        if "\x00" in bad or len(bad) > 200:
            continue
        for candidate in (archive / bad, archive / f"{key.session_id}_{bad}", archive / f"{bad}_{key.creator_id}",
                          server.data_dir / "profiles" / f"{bad}.png"):
            path = Path(os.path.normpath(candidate))
            assert not path.exists() or str(path) in ("/", "/tmp") or path in (archive, archive.parent,
                                                                             archive.parent.parent), path
    print(f"\nhostile ids: {len(cases)} requests, all bad_request; nothing created")


def test_odd_but_valid_ids_and_names_stay_data(server, db):
    """Ids that are valid but look odd (``a..b``, ``-rf``, ``_``) name folders inside the archive
    root exactly as derived; room and display names that look like paths or SQL are stored
    verbatim and never become files."""
    archive = server.data_dir / "archive"
    names = ["../../evil", "/etc/passwd", "'; DROP TABLE SESSION_TB; --", "a\\b", "%s %(x)s {0}", "\u202e역방향"]
    for user in ("a..b", "-rf", "_", "A-Z_0.9"):
        peer = connect(server)
        peer.register(user, PASSWORD, name=names[0])
        peer.login(user, PASSWORD, live=False)
        for name in names:
            reply = peer.create_room(name)
            folder = archive / reply["room"]
            assert reply["room"] == f"{reply['session_id']}_{user}" and folder.parent == archive and folder.is_dir()
            info = json.loads((folder / "session_info.json").read_text(encoding="utf-8"))
            assert info["session_name"] == name and info["creator_id"] == user
            key = RoomKey(reply["session_id"], user)
            peer.rename_room(key, name + " again")
            listed = {(r["session_id"], r["creator_id"]): r["name"] for r in peer.list_rooms()}
            assert listed[tuple(key)] == name + " again"
            db.execute("SELECT SESSION_NM FROM SESSION_TB WHERE SESSION_ID = %s AND CREATOR_ID = %s", tuple(key))
            assert db.fetchone()[0] == name + " again"
        assert peer.get_profile()["name"] == names[0]
        peer.close()
    db.execute("SELECT count(*) FROM SESSION_TB")
    assert db.fetchone()[0] == 4 * len(names)
    for entry in os.listdir(archive):                  # nothing in the root but room folders
        RoomKey.parse(entry)
    for name in ("evil", "passwd"):
        assert not list(server.data_dir.parent.rglob(name))
