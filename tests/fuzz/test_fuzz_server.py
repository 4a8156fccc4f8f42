"""Fuzzing the central server: every op of the protocol with random and hostile fields,
hand-crafted and random bytes, truncated and oversized frames, sent to a live server process.

For every frame the test knows what the server must answer (``expect`` below, built on the
protocol package's own decoder and validator): the exact error code when the frame is
undecodable, malformed, or comes before hello / before login; otherwise ``ok`` or a refusal of
its meaning (forbidden, not_found, conflict, ...), never ``internal`` (a bug) and never
``unavailable`` (the database is up throughout). Only a length prefix over the cap (or, before
login, over PRE_LOGIN_FRAME) may close the connection, and only after a ``too_large`` reply;
replies come in request order. After every example the server
process must be alive, and all the while a well-behaved client on another connection (the
``Watchdog`` greenlet) pings, sends and receives its own pushes without a single failure.

The fuzzing clients use gevent sockets: the watchdog is a live ``Peer`` on this thread's hub and
runs whenever a fuzzing client waits for the server.
"""
from __future__ import annotations

import struct
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import gevent
import msgpack
import psutil
import pytest
from gevent import socket as gsocket
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from messenger_protocol import DEFAULT_MAX_FRAME_SIZE, PROTOCOL_VERSION, ErrorCode, FrameDecoder, ProtocolError
from messenger_protocol.frames import decode_body
from messenger_protocol.messages import OPS, RoomKey, request_id, validate_request
from messenger_peer import Peer

from ..support import JPEG_TINY, PASSWORD, PNG_1PX, logged_in_peer, wait_for

MiB = 1024 * 1024
HEADER = struct.Struct(">I")
CAP = DEFAULT_MAX_FRAME_SIZE            # the server runs with the default --max-frame-size
CODES = frozenset(code.value for code in ErrorCode)
# What a well-formed request may get for its meaning; a bug (internal) or a claimed outage
# (unavailable: the database is up throughout) is never an acceptable answer to bad input.
REFUSALS = CODES - {ErrorCode.INTERNAL.value, ErrorCode.UNAVAILABLE.value}
NO_LOGIN_OPS = frozenset({"hello", "ping", "register", "login"})
REPLY_TIMEOUT = 30.0                    # the failed-login slow-down is at most 8 s
# The biggest frame a client needs before login is a register with a 1,024-character password
# (about 4.5 KiB). The server may refuse bigger frames before login (too_large and close: see
# test_unauthenticated_connections_cannot_pile_up_big_frames); the tests accept either.
PRE_LOGIN_FRAME = 8 * 1024
FUZZ_SETTINGS = dict(deadline=None, derandomize=False, print_blob=True,
                     # no shrinking: it could outlast the test's timeout; notes show the input
                     phases=[Phase.explicit, Phase.reuse, Phase.generate],
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                            HealthCheck.data_too_large, HealthCheck.large_base_example])


# Connections, peers and greenlets of the running test, closed when it ends, passed or failed
# (an unclosed socket's ResourceWarning would fail some later test under filterwarnings=error).
OPEN: list[Any] = []


def close_open() -> None:
    while OPEN:
        try:
            OPEN.pop().close()
        except Exception:
            pass


@pytest.fixture(autouse=True)
def close_everything():
    yield
    close_open()


# -- bytes on the wire ---------------------------------------------------------------------
def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def frame(body: bytes) -> bytes:
    return HEADER.pack(len(body)) + body


def raw_str(data: bytes) -> bytes:
    """A msgpack str holding ``data`` as is (so it can be invalid UTF-8)."""
    if len(data) < 32:
        return bytes([0xA0 | len(data)]) + data
    return b"\xda" + struct.pack(">H", len(data)) + data


def raw_map(*pairs: bytes) -> bytes:
    """A msgpack map of already-encoded key+value pairs."""
    return bytes([0x80 | len(pairs)]) + b"".join(pairs)


def split_frames(data: bytes, cap: int = CAP) -> tuple[list[bytes], str, int]:
    """How the framing cuts ``data``: the complete bodies; how the stream ends: ``clean`` (on
    a frame boundary), ``partial`` (inside a frame) or ``fatal`` (a length over the cap, after
    which the reader replies too_large and closes); and the length the last, unfinished frame
    announces (0 when none)."""
    bodies, pos = [], 0
    while len(data) - pos >= HEADER.size:
        (length,) = HEADER.unpack_from(data, pos)
        if length > cap:
            return bodies, "fatal", length
        if len(data) - pos - HEADER.size < length:
            return bodies, "partial", length
        bodies.append(data[pos + HEADER.size:pos + HEADER.size + length])
        pos += HEADER.size + length
    return bodies, "clean" if pos == len(data) else "partial", 0


class RawClient:
    """A connection that speaks raw bytes to the server (gevent sockets)."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = gsocket.create_connection(address, timeout=REPLY_TIMEOUT)
        OPEN.append(self)
        self.decoder = FrameDecoder(CAP)        # what every client of the server accepts
        self.frames: deque = deque()
        self.eof = False
        self.reset = False

    def __enter__(self) -> "RawClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()
        if self in OPEN:
            OPEN.remove(self)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self, timeout: float = REPLY_TIMEOUT) -> dict[str, Any] | None:
        """The next frame that is not a push; None once the server has closed the connection."""
        deadline = time.monotonic() + timeout
        while True:
            while self.frames:
                got = self.frames.popleft()
                assert isinstance(got, dict), f"the server sent an undecodable frame: {got}"
                if got.get("op") == "push" and "id" not in got:
                    continue            # a push over the session connection (NAT fallback)
                return got
            if self.eof:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no reply from the server within {timeout} s: is it hung?")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                continue
            except ConnectionResetError:
                self.reset, data = True, b""
            if not data:
                self.eof = True
                continue
            try:
                self.frames.extend(self.decoder.feed(data))
            except ProtocolError as exc:
                raise AssertionError(f"the server sent a frame its clients refuse: {exc.message}") from None

    def request(self, **message: Any) -> dict[str, Any]:
        self.send(frame(pack(message)))
        reply = self.reply()
        assert reply is not None, f"the server closed the connection after {message.get('op')!r}"
        return reply


# -- the oracle ----------------------------------------------------------------------------
@dataclass
class State:
    """What the server knows about one connection."""

    greeted: bool = False
    user: str | None = None


@dataclass
class Expected:
    rid: int | None
    outcomes: frozenset[str]          # "ok" and/or error codes
    op: str | None = None
    fields: dict[str, Any] | None = None


def expect(body: bytes, state: State) -> Expected:
    """What the server may answer to one frame body from a connection in ``state``."""
    try:
        message = decode_body(body)
    except ProtocolError:
        return Expected(None, frozenset({"bad_request"}))
    rid = request_id(message)
    if rid is None:
        return Expected(None, frozenset({"bad_request"}))
    try:
        op, fields = validate_request(message)
    except ProtocolError as exc:
        return Expected(rid, frozenset({exc.code.value}))
    if op == "hello":
        return Expected(rid, frozenset({"ok" if fields["version"] == PROTOCOL_VERSION else "bad_request"}), op, fields)
    if not state.greeted:
        return Expected(rid, frozenset({"bad_request"}), op, fields)
    if state.user is None and op not in NO_LOGIN_OPS:
        return Expected(rid, frozenset({"unauthorized"}), op, fields)
    if op == "ping":
        return Expected(rid, frozenset({"ok"}), op, fields)
    refusals = REFUSALS if op in ("register", "login") else REFUSALS - {"unauthorized"}
    return Expected(rid, frozenset({"ok"} | refusals), op, fields)


def check_reply(reply: dict[str, Any] | None, expected: Expected, state: State) -> str:
    """Assert that ``reply`` is one the oracle allows; update ``state``; return the outcome."""
    assert reply is not None, "the server closed the connection instead of answering"
    assert "id" in reply and reply.get("ok") in (True, False), f"not a reply frame: {reply!r}"
    assert reply["id"] == expected.rid, f"reply id {reply['id']!r}, expected {expected.rid!r}: {reply!r}"
    if reply["ok"]:
        outcome = "ok"
    else:
        error = reply.get("error")
        assert isinstance(error, dict) and isinstance(error.get("message"), str), f"malformed error reply {reply!r}"
        outcome = error.get("code")
        assert outcome in CODES, f"error code {outcome!r} is not one of ErrorCode: {reply!r}"
    assert outcome in expected.outcomes, (
        f"{expected.op or 'frame'}: got {outcome!r}, expected one of {sorted(expected.outcomes)}: {reply!r}")
    if outcome == "ok":
        if expected.op == "hello":
            state.greeted = True
        elif expected.op == "login":
            state.user = expected.fields["user_id"]
        elif expected.op == "logout":
            state.user = None
    return outcome


def is_fatal_reply(reply: dict[str, Any] | None) -> bool:
    return (reply is not None and reply.get("id") is None and reply.get("ok") is False
            and reply.get("error", {}).get("code") == "too_large")


# -- the world every test runs in ----------------------------------------------------------
@dataclass
class World:
    server: Any
    owner: Peer                 # the well-behaved client; creator of `room`
    room: RoomKey               # owner's room; "fuzzer" and "member2" are members
    solo: RoomKey               # the watchdog's own room
    foreign: RoomKey            # a room of "other" that no fuzzing user is in
    users: tuple[str, ...] = ("owner", "fuzzer", "member2", "other")
    logins: tuple[str, ...] = ("fuzzer", "member2")   # whom fuzzing connections may log in as

    def close(self) -> None:
        self.owner.close()


def room_key(reply: dict[str, Any]) -> RoomKey:
    return RoomKey(reply["session_id"], reply["creator_id"])


def make_world(server) -> World:
    owner = logged_in_peer(server, "owner")
    for user in ("fuzzer", "member2", "other"):
        owner.register(user, PASSWORD)
    room = room_key(owner.create_room("fuzz room", invite=["fuzzer", "member2"]))
    solo = room_key(owner.create_room("watchdog room"))
    other = Peer(server.address, timeout=60).connect()
    other.login("other", PASSWORD, live=False)
    foreign = room_key(other.create_room("not yours"))
    other.close()
    world = World(server, owner, room, solo, foreign)
    OPEN.append(world)
    return world


def assert_healthy(server) -> None:
    """The process is alive and has logged no traceback (an exception nobody caught)."""
    assert server.proc.poll() is None, f"the server died (exit {server.proc.returncode}):\n{server.stderr()[-4000:]}"
    err = server.stderr()
    assert "Traceback" not in err and "internal error" not in err, f"the server logged a failure:\n{err[-6000:]}"


class Watchdog:
    """A well-behaved client on its own connection: ping, send a message, wait for its push
    to arrive at its listener; again and again, recording failures and the slowest round."""

    def __init__(self, world: World) -> None:
        self.peer, self.room = world.owner, world.solo
        self.rounds = 0
        self.slowest = 0.0
        self.failures: list[str] = []
        self.seen: set[int] = set()
        self.peer.on_event(self._on_event)
        self._greenlet = gevent.spawn(self._loop)
        OPEN.append(self)

    def close(self) -> None:
        self._greenlet.kill()

    def _on_event(self, event: dict[str, Any]) -> None:
        if event.get("event") == "message" and (event.get("session_id"), event.get("creator_id")) == tuple(self.room):
            self.seen.add(event["seq"])

    def round(self) -> None:
        start = time.monotonic()
        assert self.peer.request("ping") == {}
        seq = self.peer.send_text(self.room, f"watchdog round {self.rounds}")["seq"]
        while seq not in self.seen:
            assert time.monotonic() - start < 10, f"the push of the watchdog's message {seq} did not arrive"
            gevent.sleep(0.002)
        self.slowest = max(self.slowest, time.monotonic() - start)
        self.rounds += 1

    def _loop(self) -> None:
        while True:
            try:
                self.round()
            except Exception as exc:   # recorded, and the test fails at stop()
                self.failures.append(f"{type(exc).__name__}: {exc}")
            gevent.sleep(0.02)

    def stop(self) -> str:
        """Stop, do one more round after the fuzzing, and assert that nothing ever failed."""
        self._greenlet.kill()
        self.round()
        assert not self.failures, f"the well-behaved client noticed: {self.failures[:5]}"
        assert self.rounds >= 2
        return f"watchdog: {self.rounds} ping+send+push rounds, slowest {self.slowest * 1000:.0f} ms"


# -- strategies ----------------------------------------------------------------------------
MISSING = object()
HOSTILE_TEXT = ["", " ", "/", "..", "../..", "../../../../etc/passwd", "a/b", "\\", "\x00", "a\x00b", "kim\n",
                ".hidden", "-", "\u202e", "김철수", "é", "💥", "%00", "%2e%2e%2f", "CON", "nul",
                "' OR '1'='1", "'; DROP TABLE USER_TB; --", "20230914_000001", "20230914_000001/../..",
                "99999999_999999", "2023-02-30", "\ufeff", "x" * 51, "x" * 65, "x" * 256, "x" * 1025]
BAD_IMAGES = [b"", b"\x89PNG", b"\x89PNG\r\n\x1a\n", PNG_1PX[:32], b"\x89PNG\r\n\x1a\n" + b"\x00" * 100,
              b"\xff\xd8\xff", JPEG_TINY[:3], b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", b"<svg/>", b"\x00" * 64,
              PNG_1PX[::-1], b"BM" + b"\x00" * 60]
OVERSIZED_IMAGES = [PNG_1PX + b"\x00" * (10 * MiB), JPEG_TINY + b"\x00" * (2 * MiB)]
EDGE_INTS = [-2**63, -2**53 - 1, -1, 0, 1, 65535, 65536, 2**31 - 1, 2**31, 2**32, 2**53, 2**53 + 1,
             2**63 - 1, 2**63, 2**64 - 1]
SIZES = [0, 1, 50, 51, 64, 65, 100, 101, 255, 256, 1024, 1025, 65536, 65537, MiB]


def nested_list(depth: int) -> Any:
    value: Any = None
    for _ in range(depth):
        value = [value]
    return value


def nested_map(depth: int) -> Any:
    value: Any = None
    for _ in range(depth):
        value = {"a": value}
    return value


ints = st.integers(-2**63, 2**64 - 1) | st.sampled_from(EDGE_INTS)      # all that msgpack can carry
big_text = st.tuples(st.sampled_from(["x", "가", "\x00", "/", ".", " "]), st.sampled_from(SIZES)).map(lambda t: t[0] * t[1])
big_bytes = st.sampled_from(SIZES).map(lambda n: b"\xff" * n)
texts = st.text(max_size=40) | big_text | st.sampled_from(HOSTILE_TEXT)
binaries = st.binary(max_size=40) | big_bytes | st.sampled_from(BAD_IMAGES)
exts = (st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=16))
        | st.builds(msgpack.Timestamp, st.integers(0, 2**34 - 1), st.integers(0, 999_999_999)))
scalars = st.none() | st.booleans() | ints | st.floats() | texts | binaries | exts
map_keys = st.text(max_size=10) | st.sampled_from(sorted({f.name for spec in OPS.values() for f in spec})) | st.binary(max_size=4)
values = (st.recursive(scalars, lambda children: st.lists(children, max_size=4)
                       | st.dictionaries(map_keys, children, max_size=4), max_leaves=10)
          | st.integers(2, 400).map(nested_list) | st.integers(2, 400).map(nested_map))
hostile_ops = (st.sampled_from([MISSING, None, 1, True, b"ping", ["ping"], {"op": "ping"}, "", "PING", " ping",
                                "ping\x00", "push", "challenge", "auth", "__init__", "do_ping", "hello" * 1000,
                                "x" * 100_000])
               | st.text(max_size=20))
request_ids = st.integers(0, 2**53)
hostile_ids = st.sampled_from([MISSING, None, -1, 2**53 + 1, 2**64 - 1, -2**63, True, False, "1", 1.5,
                               float("nan"), [1], b"1", {"id": 1}]) | values
MODES = ["valid"] * 5 + ["hostile", "missing", "nil"]
# How a request is built: every field valid (reaches the handlers and the database), one field
# bad and the rest valid (each check on its own), or every part chosen at random.
PLANS = ["valid", "valid", "one-bad", "one-bad", "random"]


def fresh_id(prefix: str) -> st.SearchStrategy[str]:
    """A valid user id nobody has (random enough that failed-login slow-downs never pile up)."""
    return st.uuids().map(lambda u: f"{prefix}{u.hex[:20]}")


def message_contents() -> dict[str, st.SearchStrategy[bytes]]:
    """``content`` of a send, per chat_type: mostly fitting the type, all kinds of edge cases."""
    any_text = st.text(min_size=1, max_size=200) | st.text(st.characters(max_codepoint=0x20), min_size=1, max_size=5)
    return {
        "text": (any_text.map(lambda s: s.encode("utf-8"))
                 | st.sampled_from([b"a\x00b", b"\x00", b"\x00\x00 nul", b" \t\n", "\u3000".encode(), b"\xff\xfe", b"\xed\xa0\x80",
                                    b"\xc0\xaf", b"x" * (64 * 1024), b"x" * (64 * 1024 + 1), "가".encode() * 21846])),
        "image": st.sampled_from([PNG_1PX, JPEG_TINY, *BAD_IMAGES, *OVERSIZED_IMAGES[:1]]),
        "emoticon": (st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True).map(str.encode)
                     | st.sampled_from([b"_", b"-", b"x" * 65, b"smile!", "웃음".encode(), b"a b", b"a\x00"])),
        "other": st.binary(min_size=1, max_size=100) | big_bytes,
    }


def valid_values(world: World) -> dict[str, st.SearchStrategy]:
    """Per field name: values of the right type, mostly valid, sometimes just wrong in meaning."""
    known = st.sampled_from(world.users)
    contents = message_contents()
    cached_room = (st.fixed_dictionaries({"session_id": st.sampled_from([world.room.session_id, world.foreign.session_id]),
                                          "creator_id": known, "last_seq": st.integers(0, 2**53)},
                                         optional={"image_tag": st.text(max_size=20) | st.none()})
                   | st.dictionaries(map_keys, values, max_size=3))
    return {
        "version": st.just(PROTOCOL_VERSION) | st.integers(0, 3),
        "client": st.text(max_size=100),
        "user_id": known | fresh_id("u"),
        "password": st.just(PASSWORD) | st.text(min_size=8, max_size=64),
        "name": st.text(min_size=1, max_size=50) | st.sampled_from(["x" * 50, "💥" * 50, "가" * 255, "x" * 255]),
        "listen_host": st.just("127.0.0.1"),
        "listen_port": st.just(1),
        "listen_tls_fingerprint": st.binary(min_size=32, max_size=32),
        "image": st.sampled_from([PNG_1PX, JPEG_TINY]) | st.sampled_from(BAD_IMAGES) | st.sampled_from(OVERSIZED_IMAGES),
        "invite": st.lists(known | fresh_id("nobody"), max_size=3),
        "user_ids": st.lists(known | fresh_id("nobody"), min_size=1, max_size=3),
        "chat_type": st.sampled_from(["text", "image", "emoticon"]),
        "content": contents["text"] | contents["image"] | contents["emoticon"] | contents["other"],
        "txn_id": fresh_id("t") | st.text(min_size=1, max_size=64),
        "rooms": st.lists(cached_room, max_size=4),
        "before": st.dates().map(str) | st.sampled_from(["9999-99-99", "0000-00-00", "2023-02-30"]),
        "before_seq": st.integers(min_value=-2, max_value=2**53 + 2),
        "after_seq": st.integers(0, 2**53) | st.integers(0, 5),
        "limit": st.integers(1, 5000),
        "seq": st.integers(0, 2**53) | st.integers(0, 5),
        "content_by_type": contents,
    }


def valid_room(world: World) -> st.SearchStrategy[dict[str, Any]]:
    """session_id + creator_id: mostly the room the fuzzing user is in; else one they are not
    in, or one that does not exist."""
    real = st.sampled_from([world.room] * 6 + [world.foreign, world.solo]).map(lambda k: k.to_wire())
    made_up = st.fixed_dictionaries({"session_id": st.from_regex(r"[0-9]{8}_[0-9]{6}", fullmatch=True),
                                     "creator_id": st.sampled_from(world.users) | fresh_id("c")})
    return real | made_up


_valid_cache: dict[int, dict[str, st.SearchStrategy]] = {}


@st.composite
def requests(draw, world: World) -> dict[str, Any]:
    """One request map: a known op (mostly) whose fields are all valid, or all valid but one
    (hostile, nil or missing), or each chosen at random; plus unknown fields (ignored by the
    server) and an id that may be anything."""
    valid = _valid_cache.get(id(world))
    if valid is None:
        valid = _valid_cache[id(world)] = valid_values(world)
    plan = draw(st.sampled_from(PLANS))
    op = draw(st.sampled_from(sorted(OPS))) if plan != "random" or draw(st.integers(0, 4)) else draw(hostile_ops)
    spec = OPS.get(op, ()) if isinstance(op, str) else ()
    names = [f.name for f in spec]
    parts = ["id", "op", *names]
    bad = draw(st.sampled_from(parts)) if plan == "one-bad" else None

    def mode(name: str) -> str:
        if plan == "valid":
            return "valid"
        if plan == "one-bad":
            return draw(st.sampled_from(["hostile", "hostile", "missing", "nil"])) if name == bad else "valid"
        return draw(st.sampled_from(MODES))

    message: dict[str, Any] = draw(st.dictionaries(st.text(max_size=8), values, max_size=2))
    if "session_id" in names:
        message.update(draw(valid_room(world)))
    if op == "login":
        # Real credentials or an unknown id: never a wrong password for a real user, whose
        # failed-login slow-down would make the run slow (tests/integration/test_limits.py has it).
        message["user_id"], message["password"] = draw(
            st.sampled_from(world.logins).map(lambda u: (u, PASSWORD))
            | st.tuples(fresh_id("u"), st.text(min_size=1, max_size=64)))
    chat_type = draw(valid["chat_type"])
    for name in names:
        how = mode(name)
        if how == "valid":
            if name in ("session_id", "creator_id", "user_id", "password") and name in message \
                    and (op == "login" or name not in ("user_id", "password")):
                continue                              # drawn above
            if name == "chat_type":
                message[name] = chat_type
            elif name == "content" and op == "send" and draw(st.integers(0, 3)):
                message[name] = draw(valid["content_by_type"][chat_type])
            else:
                message[name] = draw(valid[name])
        elif how == "hostile":
            message[name] = draw(values | texts)
        elif how == "nil":
            message[name] = None
        else:
            message.pop(name, None)
    how = mode("op")
    if how == "valid":
        message["op"] = op
    elif how == "hostile":
        message["op"] = draw(hostile_ops)
    elif how == "nil":
        message["op"] = None
    else:
        message.pop("op", None)
    how = mode("id")
    rid = draw(request_ids) if how == "valid" else draw(hostile_ids) if how == "hostile" else None if how == "nil" else MISSING
    if rid is MISSING:
        message.pop("id", None)
    else:
        message["id"] = rid
    if message.get("op") is MISSING:
        message.pop("op")
    if message.get("op") == "login" and message.get("user_id") in world.users and message.get("password") != PASSWORD:
        message["user_id"] = draw(fresh_id("u"))     # no failed logins for real users (see above)
    return message


def crafted_bodies(world: World) -> list[bytes]:
    """Frame bodies that no msgpack encoder would produce, or that stress the decoder."""
    id1, op = pack("id") + pack(1), pack("op")
    ping = op + pack("ping")
    room = world.room.to_wire()
    return [
        b"",                                                                   # an empty body
        pack(None), pack(True), pack(1), pack("ping"), pack([1, 2]), pack(b"bin"), pack(1.5),
        raw_map(id1, op + raw_str(b"\xff\xfe")),                               # op: invalid UTF-8
        raw_map(id1, op + raw_str(b"\xc0\xaf")),                               # overlong "/"
        raw_map(id1, op + raw_str(b"\xed\xa0\x80")),                           # a surrogate in UTF-8
        raw_map(id1, op + pack("register"), pack("user_id") + raw_str(b"k\xffm"), pack("password") + pack(PASSWORD)),
        raw_map(id1, op + pack("send"), pack("session_id") + pack(room["session_id"]),
                pack("creator_id") + raw_str(room["creator_id"].encode() + b"\x80"), pack("chat_type") + pack("text"),
                pack("content") + pack(b"x"), pack("txn_id") + pack("t1")),
        raw_map(id1, ping, raw_str(b"\xff") + pack(1)),                        # a key of invalid UTF-8
        raw_map(id1, ping, pack(1) + pack(2)),                                 # an integer key
        raw_map(id1, ping, pack(None) + pack(2)),                              # a nil key
        raw_map(id1, ping, pack([1]) + pack(2)),                               # an array key
        b"\x83" + id1 + ping,                                                  # 3 entries announced, 2 present
        raw_map(id1, op),                                                      # a key without its value
        pack({"id": 1, "op": "ping"}) + pack({"id": 2, "op": "ping"}),         # two maps in one frame
        pack({"id": 1, "op": "ping"}) + b"\xc1",                               # trailing reserved byte
        b"\xc1",                                                               # the reserved byte alone
        b"\xdb\xff\xff\xff\xff" + b"x" * 16,                                   # str32 claiming 4 GiB
        b"\xc6\xff\xff\xff\xff",                                               # bin32 claiming 4 GiB
        b"\xdd\xff\xff\xff\xff",                                               # array32 of 4 G items
        b"\xdf\xff\xff\xff\xff",                                               # map32 of 4 G entries
        raw_map(id1, op + b"\xdb\xff\xff\xff\xff"),
        b"\x91" * 100_000 + b"\xc0",                                           # arrays 100,000 deep
        b"\x81\xa1a" * 50_000 + b"\xc0",                                       # maps 50,000 deep
        raw_map(id1, ping, pack("x") + b"\x91" * 100_000 + b"\xc0"),
        b"\xd5\xff\x00\x00",                                                   # a timestamp of 2 bytes
        raw_map(pack("id") + b"\xd6\xff\x00\x00\x00\x01", ping),               # id: a timestamp
        raw_map(pack("id") + b"\xc7\x00\x05", ping),                           # id: an empty ext
        raw_map(pack("id") + b"\xcf" + b"\xff" * 8, ping),                     # id 2**64-1
        raw_map(pack("id") + b"\xd3\x80" + b"\x00" * 7, ping),                 # id -2**63
        raw_map(pack("id") + b"\xcb" + struct.pack(">d", float("nan")), ping), # id NaN
        raw_map(pack("id") + b"\xca" + struct.pack(">f", 1.0), ping),          # id 1.0 as float32
        pack({"id": 1, "op": "ping", **{f"k{i}": i for i in range(100_000)}}), # 100,000 unknown fields
        pack({"id": 1, "op": "invite", **room, "user_ids": ["fuzzer"] * 1_000_000}),
        pack({"id": 1, "op": "init", "rooms": [{}] * 10_001}),
        pack({"id": 1, "op": "init", "rooms": [{"session_id": "x"}] * 10_000}),
        pack({"id": 1, "op": "history", **room, "before": "9" * 10}),
        pack({"id": 1, "op": "send", **room, "chat_type": "text", "content": b"\x00" * (CAP - 200), "txn_id": "big"}),
    ]


def read_replies(conn: RawClient, bodies: list[bytes], state: State, end: str = "clean",
                 tail_length: int = 0) -> list[str]:
    """Check the replies to ``bodies`` (sent as one stream, ending as ``end``), in order, and
    return their outcomes. The server may cut the connection (too_large, then close) only at a
    length over the cap (``end == "fatal"``; replies to frames read together with it may be
    skipped, never reordered), or at a frame bigger than PRE_LOGIN_FRAME when the stream was sent
    before a login: the server may read that frame's length together with a login earlier in the
    stream, before it has handled the login (docs/protocol.md: wait for the login reply before
    sending big frames); the last outcome is then ``closed``."""
    logged_in_when_sent = state.user is not None
    outcomes = []
    for i, body in enumerate(bodies):
        expected = expect(body, state)
        reply = conn.reply()
        if reply is None or is_fatal_reply(reply):
            big = [len(b) for b in bodies[i:] if len(b) > PRE_LOGIN_FRAME] + [tail_length] * (tail_length > PRE_LOGIN_FRAME)
            assert end == "fatal" or (not logged_in_when_sent and big), (
                f"the server cut the connection at frame {i} ({describe(body)}), expecting "
                f"{sorted(expected.outcomes)}; got {reply!r}")
            assert reply is not None or conn.reset, "the server closed the connection without a too_large reply"
            assert reply is None or conn.reply() is None, "the connection stayed open after too_large"
            return outcomes + ["closed"]
        outcomes.append(check_reply(reply, expected, state))
    if end == "fatal":
        reply = conn.reply()
        assert reply is None and conn.reset or is_fatal_reply(reply), f"expected too_large, got {reply!r}"
        assert reply is None or conn.reply() is None, "the connection stayed open after an oversized frame"
        outcomes.append("closed")
    return outcomes


def run_batch(conn: RawClient, bodies: list[bytes], state: State) -> list[str]:
    """Send ``bodies`` pipelined as frames and check every reply, in order."""
    try:
        conn.send(b"".join(frame(b) for b in bodies))
    except OSError:
        pass          # cut while sending: read_replies decides whether it was allowed
    return read_replies(conn, bodies, state)


def hello(conn: RawClient, state: State) -> None:
    run_batch(conn, [pack({"id": 0, "op": "hello", "version": PROTOCOL_VERSION})], state)


def login(conn: RawClient, state: State, user: str) -> None:
    """Log the connection in, waiting out the per-user login rate limit if need be."""
    for _ in range(100):
        reply = conn.request(id=0, op="login", user_id=user, password=PASSWORD)
        if reply["ok"]:
            state.user = user
            return
        assert reply["error"]["code"] == "rate_limited", reply
        gevent.sleep(0.25)
    raise AssertionError(f"could not log in as {user}")


def describe(message: Any) -> str:
    text = repr(message)
    return text if len(text) < 2000 else text[:2000] + f"... ({len(text)} characters)"


# -- the tests -----------------------------------------------------------------------------
def test_every_op_before_login(server):
    """Fresh connections (greeted or not) send 1-3 fuzzed requests: before hello every op but
    hello is bad_request, before login every op but hello/ping/register/login is unauthorized."""
    world = make_world(server)
    dog = Watchdog(world)
    count = {"examples": 0, "frames": 0}

    @settings(max_examples=150, **FUZZ_SETTINGS)
    @given(greet=st.booleans(), batch=st.lists(requests(world), min_size=1, max_size=3))
    def run(greet: bool, batch: list[dict[str, Any]]) -> None:
        note(f"greeted first: {greet}; requests: {describe(batch)}")
        state = State()
        with RawClient(server.address) as conn:
            if greet:
                hello(conn, state)
            run_batch(conn, [pack(m) for m in batch], state)
        count["examples"] += 1
        count["frames"] += len(batch)
        assert server.proc.poll() is None

    run()
    print(f"\nbefore login: {count['examples']} examples, {count['frames']} requests; {dog.stop()}")
    assert_healthy(server)
    world.close()


def test_every_op_after_login(server):
    """A connection logged in as a member of a room sends fuzzed requests, pipelined 1-3 at a
    time; when one of them logs it out, logs it in as someone else or makes it leave the room,
    the state is restored before the next example."""
    world = make_world(server)
    dog = Watchdog(world)
    box: dict[str, Any] = {"conn": None, "state": None}
    count = {"examples": 0, "frames": 0, "ok": 0}

    def connect() -> None:
        if box["conn"] is not None:
            box["conn"].close()
        box["conn"], box["state"] = RawClient(server.address), State()
        hello(box["conn"], box["state"])
        login(box["conn"], box["state"], "fuzzer")

    connect()

    @settings(max_examples=200, **FUZZ_SETTINGS)
    @given(batch=st.lists(requests(world), min_size=1, max_size=3))
    def run(batch: list[dict[str, Any]]) -> None:
        note(f"requests: {describe(batch)}")
        if box["state"].user != "fuzzer":
            connect()
        outcomes = run_batch(box["conn"], [pack(m) for m in batch], box["state"])
        if any(m.get("op") == "leave" and o == "ok" for m, o in zip(batch, outcomes)):
            world.owner.invite(world.room, list(world.logins))
        count["examples"] += 1
        count["frames"] += len(batch)
        count["ok"] += outcomes.count("ok")
        assert server.proc.poll() is None

    run()
    box["conn"].close()
    print(f"\nafter login: {count['examples']} examples, {count['frames']} requests ({count['ok']} ok); {dog.stop()}")
    assert_healthy(server)
    world.close()


def test_hostile_bytes(server):
    """Random bytes, hand-crafted bodies (invalid UTF-8, impossible lengths, deep nesting, ext
    types, extreme ints), truncated frames and oversized length prefixes, in any mix. Frames are
    answered in order; an oversized prefix gets too_large and a close (replies to frames before
    it in the same read may be skipped, never reordered); otherwise the connection lives on."""
    world = make_world(server)
    dog = Watchdog(world)
    crafted = crafted_bodies(world)
    count = {"examples": 0, "frames": 0, "fatal": 0, "partial": 0, "clean": 0}
    segment = requests(world).map(pack) | st.binary(max_size=64) | st.sampled_from(crafted)
    tail = (st.just(b"")
            | st.integers(1, 3).map(lambda n: b"\x00\x00\x00"[:n])                  # a cut length prefix
            | st.tuples(st.integers(1, CAP), st.binary(max_size=64)).map(            # a truncated frame
                lambda t: HEADER.pack(t[0]) + t[1][:t[0] - 1])
            | st.tuples(st.integers(CAP + 1, 2**32 - 1), st.binary(max_size=64)).map(  # an oversized one
                lambda t: HEADER.pack(t[0]) + t[1]))
    streams = (st.tuples(st.lists(segment, max_size=4), tail).map(lambda t: b"".join(frame(b) for b in t[0]) + t[1])
               | st.binary(max_size=512))

    @settings(max_examples=250, **FUZZ_SETTINGS)
    @given(greet=st.booleans(), stream=streams)
    def run(greet: bool, stream: bytes) -> None:
        note(f"greeted first: {greet}; stream ({len(stream)} bytes): {describe(stream)}")
        bodies, end, tail_length = split_frames(stream)
        state = State()
        with RawClient(server.address) as conn:
            if greet:
                hello(conn, state)
            try:
                conn.send(stream)
            except OSError:
                pass          # cut while sending: read_replies decides whether it was allowed
            outcomes = read_replies(conn, bodies, state, end, tail_length)
            if end == "clean" and outcomes[-1:] != ["closed"]:   # still in step: one more is answered
                check_reply(conn.request(id=7, op="ping"), expect(pack({"id": 7, "op": "ping"}), state), state)
        count["examples"] += 1
        count["frames"] += len(bodies)
        count[end] += 1
        assert server.proc.poll() is None

    run()
    print(f"\nhostile bytes: {count}; {dog.stop()}")
    assert_healthy(server)
    world.close()


def hostile_requests(world: World) -> list[bytes]:
    """Deterministic hostile frames for the memory test: every op with one field replaced by
    each of a set of hostile values (the others valid), and the crafted bodies."""
    room = world.room.to_wire()
    good = {"version": 1, "client": "c", "user_id": "fuzzer", "password": PASSWORD, "name": "n",
            "listen_host": "127.0.0.1", "listen_port": 1, "listen_tls_fingerprint": b"f" * 32, "image": PNG_1PX,
            "invite": [], "user_ids": ["fuzzer"], "chat_type": "text", "content": b"hi", "txn_id": "t",
            "rooms": [], "before": "2023-09-14", "before_seq": 1, "after_seq": 0, "limit": 1, "seq": 0, **room}
    bad = [None, True, -1, 2**64 - 1, -2**63, 1.5, "", "../..", "a\x00b", "x" * 100_000, b"\xff" * 100_000,
           [None] * 1000, {"a": {"b": {"c": []}}}, nested_list(300), "김철수", msgpack.ExtType(1, b"x"),
           b"\x89PNG\r\n\x1a\n" + b"\x00" * 50]
    frames = []
    for op, spec in sorted(OPS.items()):
        for field in spec:
            for value in bad:
                message = {"id": len(frames), "op": op, **{f.name: good[f.name] for f in spec}}
                if op in ("register", "login"):
                    message["password"] = b"x"      # never valid: no password hash on every frame
                    if field.name == "password" and isinstance(value, str):
                        continue                    # nor a failed login that slows the next ones
                frames.append(pack({**message, field.name: value}))
    return frames + crafted_bodies(world)[:-1]     # not the 16 MiB one on every round


def test_memory_stays_bounded(server):
    """Thousands of hostile frames, oversized prefixes, abandoned half-sent frames of a MiB
    (of 8 MiB announced) and over-limit images: the server's RSS afterwards is within 50 MiB of
    its RSS before, and its open file descriptors come back to where they were."""
    world = make_world(server)
    dog = Watchdog(world)
    proc = psutil.Process(server.proc.pid)
    hostile = hostile_requests(world)
    conn, state = RawClient(server.address), State()
    hello(conn, state)
    login(conn, state, "fuzzer")
    sent = {"frames": 0, "bytes": 0}

    def hostile_round(frames: int) -> None:
        done = 0
        while done < frames:
            batch = [hostile[(sent["frames"] + i) % len(hostile)] for i in range(50)]
            run_batch(conn, batch, state)
            done += len(batch)
            sent["frames"] += len(batch)
            sent["bytes"] += sum(len(b) for b in batch)
            if done % 500 == 0:
                for _ in range(8):
                    with RawClient(server.address) as half:      # 8 MiB announced, 1 MiB sent, gone
                        try:
                            half.send(HEADER.pack(8 * MiB) + b"\x00" * MiB)
                        except OSError:
                            pass                                 # refused before login: fine
                    with RawClient(server.address) as over:      # over the cap: too_large and closed
                        over.send(HEADER.pack(CAP + 1))
                        assert is_fatal_reply(over.reply()) and over.reply() is None
                reply = conn.request(id=1, op="send", **world.room.to_wire(), chat_type="image",
                                     content=PNG_1PX + b"\x00" * (10 * MiB), txn_id="too-big")
                assert reply["error"]["code"] == "too_large", reply
                sent["frames"] += 17
                sent["bytes"] += 18 * MiB

    hostile_round(500)                       # warm-up: caches, pools and allocator arenas fill
    gevent.sleep(0.5)
    rss_before, fds_before = proc.memory_info().rss, proc.num_fds()
    frames_before, start = sent["frames"], time.monotonic()
    hostile_round(3000)
    elapsed = time.monotonic() - start
    conn.close()
    # 96 abandoned connections: a leak would show; the database pool may open a few more
    wait_for(lambda: proc.num_fds() <= fds_before + 5, 10, f"the server's fds back to {fds_before} (now {proc.num_fds()})")
    rss_after = proc.memory_info().rss
    growth = rss_after - rss_before
    print(f"\nmemory: {sent['frames'] - frames_before} hostile frames in {elapsed:.1f} s after a warm-up of "
          f"{frames_before}; RSS {rss_before / MiB:.1f} MiB -> {rss_after / MiB:.1f} MiB "
          f"({growth / MiB:+.1f} MiB); fds {fds_before} -> {proc.num_fds()}; {dog.stop()}")
    assert growth < 50 * MiB, f"the server grew by {growth / MiB:.1f} MiB over {sent['frames']} hostile frames"
    assert_healthy(server)
    world.close()


def test_huge_length_prefix_then_trickle(server_factory):
    """A length prefix over the cap is refused at once: too_large and closed before a byte of
    the body is read, however slowly the body trickles. A prefix at the cap from a connection
    that never says hello holds only the bytes that actually came, and is closed at the hello
    timeout; twenty such connections cost what they sent, not the 320 MiB they announced."""
    server = server_factory("--hello-timeout", "2")
    world = make_world(server)
    dog = Watchdog(world)
    proc = psutil.Process(server.proc.pid)

    # 1. over the cap: refused on the prefix alone
    with RawClient(server.address) as conn:
        start = time.monotonic()
        conn.send(HEADER.pack(0xFFFFFFFF))
        assert is_fatal_reply(conn.reply(timeout=5))
        for _ in range(100):                       # the trickle meets a closed connection
            try:
                conn.send(b"x")
            except OSError:
                break
            gevent.sleep(0.01)
        assert conn.reply(timeout=5) is None
        refused_after = time.monotonic() - start
        assert refused_after < 2, f"an oversized prefix took {refused_after:.1f} s to be refused"

    # 2. at the cap, trickled, never greeted: closed at the hello timeout (or refused at once,
    #    should unauthenticated connections get a smaller cap)
    with RawClient(server.address) as conn:
        start = time.monotonic()
        conn.send(HEADER.pack(CAP))
        first = None
        while time.monotonic() - start < 8 and first is None and not conn.eof:
            try:
                conn.send(b"\x00" * 100)
            except OSError:
                break
            try:
                first = conn.reply(timeout=0.05)
            except AssertionError:              # nothing yet: trickle on
                pass
        first = first or conn.reply(timeout=5)
        closed = time.monotonic() - start
        assert first is None and conn.reset or first["error"]["code"] in ("unauthorized", "too_large"), first
        assert conn.reply(timeout=5) is None
        assert closed < 4, f"a trickling connection that never said hello was held {closed:.1f} s"

    # 3. twenty connections announcing 16 MiB each and sending 1 MiB each
    gevent.sleep(0.2)
    rss_before = proc.memory_info().rss
    held = [RawClient(server.address) for _ in range(20)]
    for conn in held:
        try:
            conn.send(HEADER.pack(CAP) + b"\x00" * MiB)
        except OSError:
            pass                                # refused on the prefix: fine
    gevent.sleep(0.5)
    rss_held = proc.memory_info().rss
    for conn in held:
        reply = conn.reply(timeout=10)         # the hello timeout
        assert reply is None and conn.reset or reply["error"]["code"] in ("unauthorized", "too_large"), reply
        assert conn.reply(timeout=5) is None
        conn.close()
    gevent.sleep(0.5)
    rss_after = proc.memory_info().rss
    print(f"\ntrickle: oversized prefix refused in {refused_after * 1000:.0f} ms; 20 x (16 MiB announced, "
          f"1 MiB sent): RSS {rss_before / MiB:.1f} -> {rss_held / MiB:.1f} MiB held -> {rss_after / MiB:.1f} MiB "
          f"after the hello timeout; {dog.stop()}")
    assert rss_held - rss_before < 20 * MiB + 40 * MiB, "the server buffered more than it was sent"
    assert rss_after - rss_before < 50 * MiB
    assert_healthy(server)
    world.close()


def test_unauthenticated_connections_cannot_pile_up_big_frames(server):
    """Before hello and login the only frames that make sense are a few hundred bytes (hello,
    register, login), yet a connection that has not even said hello may make the server buffer
    a frame up to the full 16 MiB cap until the 10 s hello timeout, and one address may hold
    1,000 such connections (16 GiB). Eight connections that never say hello, each sending
    12 MiB of an announced 16 MiB frame, must cost the server well under 32 MiB."""
    world = make_world(server)
    proc = psutil.Process(server.proc.pid)
    gevent.sleep(0.2)
    rss_before = proc.memory_info().rss
    chunk = b"\x00" * 65536
    conns, accepted = [], []
    for _ in range(8):
        conn = RawClient(server.address)
        sent = 0
        try:
            conn.send(HEADER.pack(CAP))
            conn.sock.settimeout(2)
            while sent < 12 * MiB:
                conn.sock.sendall(chunk)
                sent += len(chunk)
        except OSError:                         # refused, or no longer read: not buffered
            pass
        accepted.append(sent)
        conns.append(conn)
    gevent.sleep(0.3)
    growth = proc.memory_info().rss - rss_before
    for conn in conns:
        conn.close()
    print(f"\nunauthenticated big frames: {[a // MiB for a in accepted]} MiB accepted; server RSS "
          f"{growth / MiB:+.1f} MiB")
    assert growth < 32 * MiB, (f"8 connections that never said hello made the server grow by {growth / MiB:.0f} MiB "
                               f"(it accepted {[a // MiB for a in accepted]} MiB of each)")
    assert_healthy(server)
    world.close()


# -- regressions found by the fuzzing above ------------------------------------------------
def test_text_with_nul_is_answered_and_spoils_no_one_elses_send(server):
    """Found by fuzzing: ``send`` of a ``text`` whose UTF-8 holds U+0000 (e.g. ``b"a\\x00b"``)
    made the commit fail with ``internal`` (PostgreSQL text cannot hold NUL: the room's
    LAST_PREVIEW), and with it every other send in the same group commit. Such a message is
    either stored or refused with bad_request; the sends committed alongside it all succeed."""
    world = make_world(server)
    goods = [f"good{i}" for i in range(6)]
    for user in goods:
        world.owner.register(user, PASSWORD)
    world.owner.invite(world.room, goods)
    clients = []
    for user in ["fuzzer", *goods]:
        conn, state = RawClient(server.address), State()
        hello(conn, state)
        login(conn, state, user)
        clients.append(conn)
    room = world.room.to_wire()
    for round_ in range(3):
        for i, conn in enumerate(clients):          # all in flight at once: one commit batch
            content = b"a\x00b" if i == 0 else f"{goods[i - 1]} says hi {round_}".encode()
            conn.send(frame(pack({"id": i, "op": "send", **room, "chat_type": "text", "content": content,
                                  "txn_id": f"r{round_}-{i}"})))
        replies = [conn.reply() for conn in clients]
        hostile, others = replies[0], replies[1:]
        assert hostile["ok"] or hostile["error"]["code"] == "bad_request", f"text with NUL: {hostile!r}"
        assert all(r["ok"] for r in others), f"sends committed next to the NUL text failed: {others!r}"
    for conn in clients:
        conn.close()
    assert_healthy(server)
    world.close()


def test_replies_stay_within_the_frame_cap(server):
    """Found by fuzzing: two image messages of 9 MiB each (under --max-image-bytes, 10 MiB) on
    one day make every ``init`` of that room's members a 25 MiB frame, over the 16 MiB cap that
    every client enforces: no member can log in any more (the stock Peer's connection is closed
    with too_large on each attempt). ``fetch`` of both is over the cap as well. Whatever the room
    holds, replies must stay within the cap (cut into pages, or refused with an error)."""
    world = make_world(server)
    conn, state = RawClient(server.address), State()
    hello(conn, state)
    login(conn, state, "fuzzer")
    room = world.room.to_wire()
    for i in range(2):
        reply = conn.request(id=i, op="send", **room, chat_type="image", content=PNG_1PX + bytes(9 * MiB),
                             txn_id=f"big-{i}")
        assert reply["ok"], reply
    for message in ({"op": "init"}, {"op": "history", **room}, {"op": "fetch", **room, "after_seq": 0}):
        reply = conn.request(id=9, **message)        # RawClient refuses a frame over the cap
        assert reply["ok"] or reply["error"]["code"] in REFUSALS, reply
    conn.close()
    member = Peer(server.address, timeout=60).connect()
    try:
        member.login("member2", PASSWORD)           # live: runs init
    finally:
        member.close()
    assert_healthy(server)
    world.close()
