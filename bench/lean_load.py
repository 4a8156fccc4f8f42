"""A lean load generator: the W1/W2 shape with the least work per delivery a Python client
can do, to see the server the way a cheaper generator than ``messenger-loadtest`` sees it.

``messenger-loadtest`` drives real ``Peer`` objects (gevent greenlets, the Peer's event
dispatch, its history cache): ~6 µs of its own CPU per delivery, which on a 2-core machine
takes the core the server would need, so with it every server looks alike. Issue 6's
reference figures come from "a load generator that is not ours"; this is the nearest we can
build here: no gevent, no Peer, one ``epoll`` loop per process over raw non-blocking
sockets, each push frame decoded once with msgpack's C unpacker and nothing else done with
it but counting it, checking its seq and taking its latency.

It speaks the real protocol: registers (or logs in to) the accounts, logs every member in
with a listener of its own, answers the server's challenge with the push secret (HMAC, as
``messenger_protocol.push`` says), builds ``--rooms`` rooms of ``--members`` members each,
warms the push links with one message per room, then runs closed-loop senders (each waits for its acknowledgement before the next send) for
``--messages`` per repetition (all rooms together). Deliveries are checked: each member must
see every message of its room once, in seq order (lost and duplicated deliveries are counted, and must be 0).

    .venv/bin/python bench/lean_load.py --server 127.0.0.1:9100 [--server-pid PID] [--db-pid PID]
        [--rooms 1] [--members 50] [--senders 10] [--messages 5000] [--size 100] [--repeat 2] [--processes 1]

Prints one table row per repetition, a median row, and one JSON line. Loopback only.
"""
from __future__ import annotations

import argparse
import array
import hashlib
import hmac
import json
import os
import select
import socket
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # runnable from a checkout

from messenger_peer.loadtest import CpuMeter, check_loopback, mono_ns, percentile  # noqa: E402
from messenger_protocol import FrameDecoder, encode  # noqa: E402
from messenger_protocol.frames import decode_body  # noqa: E402
PASSWORD = "lean-load-password"
MAGIC = b"LEAN"


def send_all(sock: socket.socket, data: bytes) -> None:
    """Write ``data`` to a non-blocking socket (frames are small: this almost never waits)."""
    view = memoryview(data)
    while view:
        try:
            n = sock.send(view)
        except BlockingIOError:
            n = 0
        if n < len(view):
            select.select([], [sock], [], 5.0)
        view = view[n:]


class Blocking:
    """A blocking request/reply connection for the set-up steps."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.decoder = FrameDecoder()
        self.next_id = 0
        self.replies: dict[int, dict[str, Any]] = {}

    def send(self, op: str, **fields: Any) -> int:
        self.next_id += 1
        self.sock.sendall(encode({"id": self.next_id, "op": op, **fields}))
        return self.next_id

    def wait(self, rid: int) -> dict[str, Any]:
        while rid not in self.replies:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            for msg in self.decoder.feed(data):
                if isinstance(msg, dict) and msg.get("op") != "push" and isinstance(msg.get("id"), int):
                    self.replies[msg["id"]] = msg
        return self.replies.pop(rid)

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        return self.wait(self.send(op, **fields))


class Member:
    """One logged-in user: its session connection, its listener, its push connection."""

    def __init__(self, user_id: str, conn: Blocking, listener: socket.socket) -> None:
        self.user_id = user_id
        self.conn = conn
        self.listener = listener
        self.secret = b""
        self.push: socket.socket | None = None
        self.push_decoder = FrameDecoder()
        self.nonce = b""
        self.authed = False
        self.last_seq = 0
        self.got = 0
        self.room: dict[str, Any] = {}      # the room it is in (each member is in one)


def set_up(args: argparse.Namespace, address: tuple[str, int]) -> list[Member]:
    """Accounts, logins with listeners, ``--rooms`` rooms of ``--members`` members each (the
    first member creates it); returns the members, each knowing its room."""
    users = [f"{args.prefix}{i:05d}" for i in range(1, args.rooms * args.members + 1)]
    conns = [Blocking(address) for _ in users]
    for c in conns:
        c.wait(c.send("hello", version=1, client="lean-load"))
    if not args.reuse:
        ids = [c.send("register", user_id=u, password=PASSWORD) for c, u in zip(conns, users)]
        for c, rid in zip(conns, ids):
            reply = c.wait(rid)
            if not reply["ok"] and reply["error"]["code"] != "conflict":
                raise SystemExit(f"lean-load: register failed: {reply['error']}")
    members = []
    ids = []
    for c, u in zip(conns, users):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        members.append(Member(u, c, listener))
        ids.append(c.send("login", user_id=u, password=PASSWORD, listen_host="127.0.0.1",
                          listen_port=listener.getsockname()[1]))
    for m, rid in zip(members, ids):
        reply = m.conn.wait(rid)
        if not reply["ok"]:
            raise SystemExit(f"lean-load: login of {m.user_id} failed: {reply['error']}")
        m.secret = reply["push_secret"]
    for r in range(args.rooms):
        group = members[r * args.members:(r + 1) * args.members]
        room = group[0].conn.call("create_room", name=f"lean load {r + 1}", invite=[m.user_id for m in group[1:]])
        if not room["ok"]:
            raise SystemExit(f"lean-load: create_room failed: {room['error']}")
        for m in group:
            m.room = {"session_id": room["session_id"], "creator_id": room["creator_id"]}
    for m in members:
        m.conn.sock.setblocking(False)
        m.listener.setblocking(False)
    return members


class Loop:
    """One process's share of the members and senders, on one epoll."""

    def __init__(self, members: list[Member], senders: list[Member], size: int, run_id: bytes) -> None:
        self.members = members
        self.senders = senders
        self.size = size
        self.run_id = run_id
        self.ep = select.epoll()
        self.by_fd: dict[int, tuple[str, Member]] = {}
        for m in members:
            self._watch(m.listener, "listen", m)
            self._watch(m.conn.sock, "session", m)
            if m.push is not None:                  # a link opened before this loop (warm-up)
                self._watch(m.push, "push", m)
        # per repetition
        self.rep = 0
        self.lat = array.array("d")
        self.ack = array.array("d")
        self.outstanding: dict[tuple[int, int], int] = {}      # (fd, request id) -> sent ns
        self.todo: dict[int, int] = {}                          # sender fd -> sends left
        self.acked = 0
        self.dups = 0
        self.disorder = 0
        self.last_delivery = 0

    def _watch(self, sock: socket.socket, kind: str, member: Member) -> None:
        self.ep.register(sock.fileno(), select.EPOLLIN)
        self.by_fd[sock.fileno()] = (kind, member)

    # -- the two directions --------------------------------------------------------------
    def _content(self, sent: int) -> bytes:
        head = b"%s %s %d %d " % (MAGIC, self.run_id, self.rep, sent)
        return head + b"x" * max(1, self.size - len(head))

    def send_next(self, m: Member) -> None:
        sent = mono_ns()
        m.conn.next_id += 1
        rid = m.conn.next_id
        self.outstanding[m.conn.sock.fileno(), rid] = sent
        send_all(m.conn.sock, encode({"id": rid, "op": "send", **m.room, "chat_type": "text",
                                     "content": self._content(sent), "txn_id": uuid.uuid4().hex}))

    def _on_session(self, fd: int, m: Member) -> None:
        data = m.conn.sock.recv(262144)
        if not data:
            raise SystemExit(f"lean-load: the server closed {m.user_id}'s session")
        now = mono_ns()
        for msg in m.conn.decoder.feed(data):
            if msg.get("op") == "push":                 # the NAT fallback: pushes come here
                self._on_push(m, msg, now)
                continue
            sent = self.outstanding.pop((fd, msg.get("id")), None)
            if sent is None:
                continue
            if not msg.get("ok"):
                raise SystemExit(f"lean-load: a send failed: {msg.get('error')}")
            self.ack.append((now - sent) / 1e6)
            self.acked += 1
            left = self.todo.get(fd, 0)
            if left > 0:
                self.todo[fd] = left - 1
                self.send_next(m)

    def _on_accept(self, m: Member) -> None:
        sock, _ = m.listener.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if m.push is not None:                            # a new link replaces the old one
            self.ep.unregister(m.push.fileno())
            self.by_fd.pop(m.push.fileno(), None)
            m.push.close()
        m.push, m.push_decoder, m.authed = sock, FrameDecoder(), False
        m.nonce = os.urandom(32)
        sock.sendall(encode({"op": "challenge", "nonce": m.nonce}))
        sock.setblocking(False)
        self._watch(sock, "push", m)

    def _on_push_data(self, m: Member) -> None:
        assert m.push is not None
        try:
            data = m.push.recv(262144)
        except ConnectionError:
            data = b""
        if not data:
            self.ep.unregister(m.push.fileno())
            self.by_fd.pop(m.push.fileno(), None)
            m.push.close()
            m.push = None
            return
        now = mono_ns()
        for msg in m.push_decoder.feed(data):
            if not m.authed:
                expected = hmac.new(m.secret, m.nonce, hashlib.sha256).digest()
                if msg.get("op") != "auth" or not hmac.compare_digest(expected, msg.get("mac", b"")):
                    raise SystemExit(f"lean-load: a push link to {m.user_id} failed the challenge")
                send_all(m.push, encode({"op": "auth", "ok": True}))
                m.authed = True
                continue
            self._on_push(m, msg, now)

    def _on_push(self, m: Member, msg: dict[str, Any], now: int) -> None:
        if msg.get("event") != "message":
            return
        seq = msg["seq"]
        if seq <= m.last_seq:
            self.dups += 1
            return
        if m.last_seq and seq != m.last_seq + 1:
            self.disorder += 1
        m.last_seq = seq
        m.got += 1
        content = msg["content"]
        if content.startswith(MAGIC):
            _, run, rep, sent, _ = content.split(b" ", 4)
            if run == self.run_id and int(rep) == self.rep:
                self.lat.append((now - int(sent)) / 1e6)
        self.last_delivery = now

    def poll(self, timeout: float) -> None:
        for fd, _ in self.ep.poll(timeout):
            entry = self.by_fd.get(fd)
            if entry is None:
                continue
            kind, m = entry
            if kind == "push":
                self._on_push_data(m)
            elif kind == "session":
                self._on_session(fd, m)
            else:
                self._on_accept(m)

    def run_until(self, done, deadline: float) -> bool:
        while not done():
            if time.monotonic() > deadline:
                return False
            self.poll(0.05)
        return True

    # -- a repetition ----------------------------------------------------------------------
    def repetition(self, rep: int, counts: dict[int, int], per_room: dict[str, int], timeout: float) -> dict[str, Any]:
        """Send ``counts`` (sender fd -> messages) closed loop, then wait for every member's
        deliveries (``per_room``: room session_id+creator -> messages sent to it in all)."""
        self.rep = rep
        self.lat, self.ack = array.array("d"), array.array("d")
        self.acked = self.dups = self.disorder = 0
        start_got = {id(m): m.got for m in self.members}
        senders = [m for m in self.senders if counts.get(m.conn.sock.fileno(), 0) > 0]
        self.todo = {m.conn.sock.fileno(): counts[m.conn.sock.fileno()] - 1 for m in senders}
        total_sends = sum(counts.values())
        cpu0 = time.process_time()
        t0 = mono_ns()
        for m in senders:
            self.send_next(m)
        deadline = time.monotonic() + timeout
        acked_all = self.run_until(lambda: self.acked >= total_sends, deadline)
        t_acked = mono_ns()
        delivered = lambda: sum(m.got - start_got[id(m)] for m in self.members)   # noqa: E731
        expected = sum(per_room[_room_name(m.room)] for m in self.members)
        self.run_until(lambda: delivered() >= expected, min(deadline, time.monotonic() + 15))
        cpu = time.process_time() - cpu0
        got = delivered()
        end = max(self.last_delivery, t_acked)
        return {"sends": total_sends, "acked": self.acked, "acked_all": acked_all, "deliveries": got,
                "expected": expected, "lost": max(0, expected - got), "duplicates": self.dups,
                "disorder": self.disorder, "t0": t0, "t_acked": t_acked, "t_end": end, "cpu_s": cpu,
                "lat": self.lat.tobytes(), "ack": self.ack.tobytes()}


def _room_name(room: dict[str, Any]) -> str:
    return f"{room['session_id']}_{room['creator_id']}"


def pct(values: list[float], q: float) -> float | None:
    return percentile(sorted(values), q)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="A lean load generator: closed-loop senders in rooms of online members, over the real "
                    "protocol on raw sockets (one epoll loop per process, ~3 µs per delivery), every delivery "
                    "checked. Prints a row per repetition, the medians and one JSON line. Loopback only.")
    p.add_argument("--server", required=True, metavar="HOST:PORT", help="a running server on a loopback address")
    p.add_argument("--server-pid", type=int, help="its PID, for its CPU time")
    p.add_argument("--db-pid", type=int, help="the PostgreSQL postmaster's PID, to add the database's CPU")
    p.add_argument("--rooms", type=int, default=1, help="rooms, each with its own members")
    p.add_argument("--members", type=int, default=50, help="members of each room, all online")
    p.add_argument("--senders", type=int, default=10, help="closed-loop senders per room (its first members)")
    p.add_argument("--messages", type=int, default=5000, help="messages per repetition, all senders together")
    p.add_argument("--size", type=int, default=100, help="bytes of text per message")
    p.add_argument("--repeat", type=int, default=2, help="repetitions on the same room")
    p.add_argument("--processes", type=int, default=1, help="generator processes sharing the members")
    p.add_argument("--prefix", default=None, help="user id prefix (default lean-<random>-)")
    p.add_argument("--reuse", action="store_true", help="log in to existing accounts instead of registering")
    p.add_argument("--timeout", type=float, default=300, help="deadline of each repetition, s")
    p.add_argument("--label", default="", help="copied to the JSON line")
    args = p.parse_args(argv)
    host, port = args.server.rsplit(":", 1)
    check_loopback(host)
    args.prefix = args.prefix or f"lean-{uuid.uuid4().hex[:6]}-"
    address = (host, int(port))

    t = time.monotonic()
    try:
        members = set_up(args, address)
    except OSError as exc:
        raise SystemExit(f"lean-load: cannot reach the server at {args.server}: {exc}; start it first "
                         "(e.g. make run-server) and give its address") from None
    print(f"set-up: {len(members)} members logged in, {args.rooms} room(s), {time.monotonic() - t:.1f} s",
          file=sys.stderr)
    run_id = uuid.uuid4().hex[:8].encode()
    groups = [members[r * args.members:(r + 1) * args.members] for r in range(args.rooms)]
    senders = [m for group in groups for m in group[:args.senders]]

    # Warm-up: one message per room, received by everyone, opens every push link.
    warm = Loop(members, [g[0] for g in groups], args.size, run_id)
    warm.repetition(0, {g[0].conn.sock.fileno(): 1 for g in groups}, {_room_name(g[0].room): 1 for g in groups}, 60)

    nproc = max(1, args.processes)
    shares = [members[i::nproc] for i in range(nproc)]
    base, extra = divmod(args.messages, len(senders))
    counts = {m.conn.sock.fileno(): base + (1 if i < extra else 0) for i, m in enumerate(senders)}
    per_room: dict[str, int] = {}
    for m in senders:
        per_room[_room_name(m.room)] = per_room.get(_room_name(m.room), 0) + counts[m.conn.sock.fileno()]
    pipes = []
    for i, share in enumerate(shares):
        r_go, w_go = os.pipe()
        r_res, w_res = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(w_go)
            os.close(r_res)
            code = 0
            try:
                loop = Loop(share, [m for m in share if m in senders], args.size, run_id)
                with os.fdopen(w_res, "wb") as out, os.fdopen(r_go, "rb") as go:
                    for rep in range(1, args.repeat + 1):
                        if not go.read(1):
                            break
                        res = loop.repetition(rep, {fd: c for fd, c in counts.items()
                                                    if any(m.conn.sock.fileno() == fd for m in loop.senders)},
                                              per_room, args.timeout)
                        out.write(encode(res))
                        out.flush()
            except BaseException as exc:   # report and leave without running the parent's code
                print(f"lean-load worker {i}: {exc!r}", file=sys.stderr)
                code = 1
            finally:
                os._exit(code)
        os.close(r_go)
        os.close(w_res)
        pipes.append((os.fdopen(w_go, "wb", buffering=0), os.fdopen(r_res, "rb"), pid))

    meter = CpuMeter(args.server_pid, args.db_pid)
    rows = []
    print(f"{'rep':>4} {'acked':>7} {'msgs/s':>8} {'deliveries':>10} {'deliv/s':>9} {'p50 ms':>7} {'p95 ms':>7} "
          f"{'p99 ms':>7} {'max ms':>7} {'ack p50':>7} {'srv µs/d':>8} {'+db µs/d':>8} {'gen µs/d':>8} {'lost':>5} {'dup':>4}")
    for rep in range(1, args.repeat + 1):
        time.sleep(0.3)
        before = meter.snapshot()
        for go, _, _ in pipes:
            go.write(b"x")
        parts = []
        for _, res, _ in pipes:
            header = res.read(4)
            if len(header) < 4:
                raise SystemExit("lean-load: a worker process failed (see above)")
            parts.append(decode_body(res.read(int.from_bytes(header, "big"))))
        # The server's descendants are its workers (--workers N); the embedded PostgreSQL runs apart.
        _, with_db, database = CpuMeter.delta(before, meter.snapshot())
        t0 = min(x["t0"] for x in parts)
        t_acked = max(x["t_acked"] for x in parts)
        t_end = max(x["t_end"] for x in parts)
        deliveries = sum(x["deliveries"] for x in parts)
        lat = [v for x in parts for v in array.array("d", x["lat"])]
        ack = [v for x in parts for v in array.array("d", x["ack"])]
        sends = sum(x["acked"] for x in parts)
        row = {
            "rep": rep, "acked": sends, "accepted_msgs_per_s": sends / ((t_acked - t0) / 1e9),
            "deliveries": deliveries, "deliveries_per_s": deliveries / ((t_end - t0) / 1e9),
            "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95), "p99_ms": pct(lat, 99), "max_ms": max(lat, default=0),
            "ack_p50_ms": pct(ack, 50), "lost": sum(x["lost"] for x in parts),
            "duplicates": sum(x["duplicates"] for x in parts), "disorder": sum(x["disorder"] for x in parts),
            "server_cpu_us_per_delivery": None if with_db is None else (with_db - database) / deliveries * 1e6,
            "server_db_cpu_us_per_delivery": None if with_db is None else with_db / deliveries * 1e6,
            "generator_cpu_us_per_delivery": sum(x["cpu_s"] for x in parts) / deliveries * 1e6,
        }
        rows.append(row)
        f = lambda v, spec: "-" if v is None else format(v, spec)   # noqa: E731
        print(f"{rep:>4} {sends:>7,} {row['accepted_msgs_per_s']:>8,.0f} {deliveries:>10,} {row['deliveries_per_s']:>9,.0f} "
              f"{row['p50_ms']:>7.2f} {row['p95_ms']:>7.2f} {row['p99_ms']:>7.2f} {row['max_ms']:>7.1f} "
              f"{row['ack_p50_ms']:>7.2f} {f(row['server_cpu_us_per_delivery'], '>8.2f')} {f(row['server_db_cpu_us_per_delivery'], '>8.2f')} "
              f"{row['generator_cpu_us_per_delivery']:>8.2f} {row['lost']:>5} {row['duplicates']:>4}", flush=True)
    for go, res, pid in pipes:
        go.close()
        res.close()
        os.waitpid(pid, 0)
    summary = {k: statistics.median(r[k] for r in rows) for k in
               ("accepted_msgs_per_s", "deliveries_per_s", "p50_ms", "p95_ms", "p99_ms", "max_ms", "ack_p50_ms")}
    for k in ("server_cpu_us_per_delivery", "server_db_cpu_us_per_delivery", "generator_cpu_us_per_delivery"):
        values = [r[k] for r in rows if r[k] is not None]
        summary[k] = statistics.median(values) if values else None
    summary.update(lost=sum(r["lost"] for r in rows), duplicates=sum(r["duplicates"] for r in rows),
                   disorder=sum(r["disorder"] for r in rows))
    ok = summary["lost"] == 0 and summary["duplicates"] == 0 and summary["disorder"] == 0
    print(f"median: {summary['deliveries_per_s']:,.0f} deliveries/s, p50 {summary['p50_ms']:.2f} ms, "
          f"p99 {summary['p99_ms']:.2f} ms; lost {summary['lost']}, duplicates {summary['duplicates']}, "
          f"out of order {summary['disorder']} -> {'OK' if ok else 'FAILED'}")
    print(json.dumps({"tool": "lean-load", "label": args.label, "rooms": args.rooms, "members": args.members,
                      "senders": args.senders,
                      "messages": args.messages, "size": args.size, "processes": nproc, "ok": ok,
                      **summary, "reps": rows}, separators=(",", ":")))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
