"""``messenger-loadtest``: drive a messenger server with many headless peers and measure it.

Every simulated user is a real :class:`~messenger_peer.peer.Peer` with its own push listener,
logged in live exactly as the desktop client logs in; the server pushes every message to
every member's listener and the peer hands it to us through ``on_event``. Nothing is mocked.

What one run does:

1. start the server (``--start-server``: ``python -m messenger_server`` on port 0 with a
   temporary data dir and embedded PostgreSQL; ``--server-command``: any command that prints
   ``listening on HOST:PORT``, e.g. the baseline relay ``bench/relay.py``), or use ``--server``;
2. register (or, with ``--reuse``, reuse) ``--peers`` accounts named ``<prefix>00001`` ... and
   log every one of them in live, ``--login-concurrency`` at a time, in ``--processes``
   worker processes (each with its own gevent hub) or in this process;
3. create ``--rooms`` rooms of ``--members`` members; the first ``--senders`` members of each
   room send;
4. ``--repeat`` times: the senders send ``--messages`` text messages of ``--size`` bytes in
   total (or for ``--duration`` seconds), closed-loop (each waits for the server's
   acknowledgement before its next send) or open-loop at ``--rate`` messages/s in total; then
   wait (at most ``--drain-timeout``) until every member has received every acknowledged
   message;
5. check that every member received every acknowledged message of its rooms exactly once
   (by (room, seq) per peer), print a table and, as the last line of stdout, one JSON object.

Latency is measured per delivery, from the moment the sender starts the ``send`` to the moment
the receiving peer's ``on_event`` sees it. The send time travels inside the message text and
both ends read ``CLOCK_MONOTONIC``, which on Linux is one clock for the whole machine, so the
figure is exact across worker processes too. Throughput: accepted msgs/s = acknowledged
messages / (first send start .. last acknowledgement); deliveries/s = deliveries / (first send
start .. last delivery). A repetition's server CPU comes from ``psutil`` on the server's PID
(``--server-pid``, or known when this tool starts the server), alone and with its child
processes (the embedded PostgreSQL).

Everything is bounded: a count or a duration, ``--timeout`` for the whole run (after it the
tool stops sending, waits up to 2 s for what is in flight and reports what it has), and only
loopback addresses are accepted. Exit status: 0 when every acknowledged message reached every
member exactly once and no send failed (also when ``--timeout`` cut the run short: the JSON
says ``"timed_out": true``); 1 when anything was lost or duplicated or a send failed; 2 for a
usage or set-up error.

Example (W1 of issue 6)::

    messenger-loadtest --start-server --rooms 1 --members 50 --senders 10 --messages 5000 --size 100
"""
from __future__ import annotations

import argparse
import bisect
import ipaddress
import json
import multiprocessing
import os
import random
import resource
import shlex
import shutil
import signal
import socket as std_socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import gevent
import gevent.event
import gevent.lock
import gevent.pool
from gevent import socket as gsocket

from messenger_protocol import ErrorCode, ProtocolError
from messenger_protocol.messages import RoomKey

from .client import parse_address
from .peer import Peer

DEFAULT_PASSWORD = "loadtest-password"
MAGIC = b"LT"                       # first word of every message this tool sends
MAX_INVITE = 500                    # the protocol's cap per create_room / invite request
RELAXED_LIMITS = ["--sends-per-user", "0", "--sends-per-address", "0", "--logins-per-user", "0",
                  "--logins-per-address", "0", "--max-connections", "1000000",
                  "--max-connections-per-address", "1000000"]


def mono_ns() -> int:
    """CLOCK_MONOTONIC in ns: system-wide on Linux, so comparable between processes."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def raise_nofile_limit() -> int:
    """Raise this process's open-file soft limit to its hard limit; return the new soft limit.
    Every peer holds three sockets (server connection, listener, accepted push link)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def _preexec_raise_nofile() -> None:   # runs in a child before exec
    raise_nofile_limit()


def percentile(sorted_values: list[float] | array, q: float) -> float | None:
    """Nearest-rank percentile of an already sorted sequence (None when empty)."""
    if not len(sorted_values):
        return None
    rank = max(1, int(-(-q * len(sorted_values) // 100)))   # ceil(q/100 * n)
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


# --------------------------------------------------------------------------------------------
# The peers' side: a Worker owns some users' Peer objects, their sender loops and receipts.
# It runs in this process or in a worker process; the coordinator talks to it by method name.
# --------------------------------------------------------------------------------------------

class SeqOnlyCache:
    """A stand-in for the Peer's in-memory HistoryCache that keeps only each room's first and
    last seq: all the Peer's ordering, dedup and gap-fill logic needs, without holding every
    message of a long run in memory (use ``--full-cache`` for the Peer's own cache)."""

    root = None

    def __init__(self) -> None:
        self._first: dict[RoomKey, int] = {}
        self._last: dict[RoomKey, int] = {}

    def rooms(self) -> dict[RoomKey, int]:
        return dict(self._last)

    def last_seq(self, room: RoomKey) -> int:
        return self._last.get(room, 0)

    def first_seq(self, room: RoomKey) -> int:
        return self._first.get(room, 0)

    def messages(self, room: RoomKey) -> list[dict[str, Any]]:
        return []

    def add(self, room: RoomKey, messages: list[dict[str, Any]]) -> None:
        if not messages:
            return
        last = self._last.get(room, 0)
        if last and messages[0]["seq"] != last + 1:
            raise ValueError(f"cache of {room.folder}: seq {messages[0]['seq']} does not follow {last}")
        self._first.setdefault(room, messages[0]["seq"])
        self._last[room] = messages[-1]["seq"]

    def reset(self, room: RoomKey) -> None:
        self._first.pop(room, None)
        self._last.pop(room, None)


class Track:
    """What one peer received of one room: every seq in (base, high] plus ``extra`` (seqs that
    arrived past a hole). Peers deliver in order, so ``extra`` stays empty and this is O(1)."""

    __slots__ = ("base", "high", "extra")

    def __init__(self, base: int) -> None:
        self.base = base
        self.high = base
        self.extra: set[int] | None = None

    def add(self, seq: int) -> bool:
        """Record a receipt; False when it is a duplicate (or older than the run)."""
        if seq <= self.high or (self.extra is not None and seq in self.extra):
            return False
        if seq == self.high + 1:
            self.high = seq
            extra = self.extra
            while extra and self.high + 1 in extra:
                self.high += 1
                extra.discard(self.high)
        else:
            if self.extra is None:
                self.extra = set()
            self.extra.add(seq)
        return True


@dataclass
class RepStats:
    """One repetition as one worker saw it."""

    acked: dict[int, list[int]] = field(default_factory=dict)     # room index -> acknowledged seqs
    ack_ms: array = field(default_factory=lambda: array("d"))       # send -> ack
    lat_ms: array = field(default_factory=lambda: array("d"))       # send -> delivery
    delivered: int = 0
    sent: int = 0
    failed: int = 0
    errors: Counter = field(default_factory=Counter)
    first_send: int | None = None
    last_ack: int | None = None
    last_delivery: int | None = None

    def summary(self, with_samples: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"acked": {str(k): len(v) for k, v in self.acked.items()},
                               "delivered": self.delivered, "sent": self.sent, "failed": self.failed,
                               "errors": dict(self.errors), "first_send": self.first_send,
                               "last_ack": self.last_ack, "last_delivery": self.last_delivery}
        if with_samples:
            out["acked_seqs"] = {str(k): v for k, v in self.acked.items()}
            out["ack_ms"] = self.ack_ms.tobytes()
            out["lat_ms"] = self.lat_ms.tobytes()
        return out


class Worker:
    """Some of the run's users: their live Peers, sender loops and receipt bookkeeping."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.server: tuple[str, int] = tuple(spec["server"])          # type: ignore[assignment]
        self.users: list[str] = spec["users"]
        self.password: str = spec["password"]
        self.register: str = spec["register"]            # "always", "missing" or "never"
        self.request_timeout: float = spec["request_timeout"]
        self.login_concurrency: int = spec["login_concurrency"]
        self.full_cache: bool = spec["full_cache"]
        self.listen_host: str = spec["listen_host"]
        self.run_id: bytes = spec["run_id"].encode()
        self.size: int = spec["size"]
        self.peers: dict[str, Peer] = {}
        self.index: dict[str, int] = {u: i for i, u in enumerate(self.users)}
        self.rooms: list[dict[str, Any]] = []
        self.room_index: dict[tuple[str, str], int] = {}
        self.tracks: dict[tuple[int, int], Track] = {}
        self.duplicates = 0
        self.unplanned = 0          # our messages received in a room the peer is not a member of
        self.reps: dict[int, RepStats] = {}
        self.senders: list[gevent.Greenlet] = []
        self._stop = False
        self.server_info: dict[str, Any] = {}

    # -- set-up --------------------------------------------------------------------------
    def setup(self) -> dict[str, Any]:
        """Register as asked and log every user in live; returns timings and failures."""
        pool = gevent.pool.Pool(self.login_concurrency)
        login_ms: list[float] = []
        failures: list[str] = []

        def one(user: str) -> None:
            peer = self._new_peer(user)
            try:
                start = time.perf_counter()       # connect + hello + login + listener + catch-up
                peer.connect()
                if self.register == "always":
                    peer.register(user, self.password)
                    start = time.perf_counter()
                try:
                    peer.login(user, self.password)
                except ProtocolError as exc:
                    if exc.code is not ErrorCode.UNAUTHORIZED or self.register != "missing":
                        raise
                    peer.register(user, self.password)
                    start = time.perf_counter()
                    peer.login(user, self.password)
                login_ms.append((time.perf_counter() - start) * 1000)
                if not self.server_info and peer.conn is not None:
                    self.server_info = dict(peer.conn.server_info)
                self.peers[user] = peer
            except ProtocolError as exc:
                peer.close()
                failures.append(f"{user}: {exc.code.value}: {exc.message}")
            except Exception as exc:       # noqa: BLE001 - reported to the coordinator
                peer.close()
                failures.append(f"{user}: {type(exc).__name__}: {exc}")

        for user in self.users:
            pool.spawn(one, user)
        pool.join()
        return {"online": len(self.peers), "failures": failures[:20], "failed": len(failures),
                "login_ms": login_ms, "server": self.server_info.get("server")}

    def _new_peer(self, user: str) -> Peer:
        peer = Peer(self.server, listen_host=self.listen_host, timeout=self.request_timeout)
        if not self.full_cache:
            peer.cache = SeqOnlyCache()      # type: ignore[assignment]
        peer.on_event(self._handler(self.index[user]))
        return peer

    def relogin(self) -> dict[str, Any]:
        """Log every peer out and in again on a new connection (as users whose rooms exist)."""
        pool = gevent.pool.Pool(self.login_concurrency)
        failures: list[str] = []

        def one(user: str) -> None:
            old = self.peers.pop(user)
            try:
                old.logout()               # offline at once: no pushes to the old listener
            except (ProtocolError, OSError):
                pass
            old.close()
            peer = self._new_peer(user)
            try:
                peer.connect()
                peer.login(user, self.password)
                self.peers[user] = peer
            except Exception as exc:       # noqa: BLE001 - reported to the coordinator
                peer.close()
                failures.append(f"{user}: {type(exc).__name__}: {exc}")

        for user in list(self.peers):
            pool.spawn(one, user)
        pool.join()
        return {"failures": failures[:20], "failed": len(failures)}

    def create_room(self, creator: str, name: str, members: list[str]) -> dict[str, Any]:
        """Create a room as ``creator`` (one of ours) with ``members``, inviting 500 at a time."""
        peer = self.peers[creator]
        others = [m for m in members if m != creator]
        reply = peer.create_room(name, invite=others[:MAX_INVITE])
        key = RoomKey(reply["session_id"], reply["creator_id"])
        for start in range(MAX_INVITE, len(others), MAX_INVITE):
            peer.invite(key, others[start:start + MAX_INVITE])
        return {"key": list(key)}

    def set_rooms(self, rooms: list[dict[str, Any]]) -> None:
        """The run's rooms (key, members, base seq); start tracking our members' receipts."""
        self.rooms = rooms
        for ri, room in enumerate(rooms):
            self.room_index[tuple(room["key"])] = ri
            for user in room["members"]:
                if user in self.index:
                    self.tracks[self.index[user], ri] = Track(room["base"])

    # -- receiving -----------------------------------------------------------------------
    def _handler(self, pi: int) -> Callable[[dict[str, Any]], None]:
        def on_event(event: dict[str, Any]) -> None:
            if event.get("event") != "message":
                return
            now = mono_ns()
            content = event.get("content")
            if not isinstance(content, bytes) or not content.startswith(MAGIC):
                return
            try:
                _, run, rep, sent, _ = content.split(b" ", 4)
                if run != self.run_id:
                    return
                rep_no, sent_ns = int(rep), int(sent)
            except ValueError:
                return
            ri = self.room_index.get((event["session_id"], event["creator_id"]))
            track = self.tracks.get((pi, ri)) if ri is not None else None
            if track is None:
                self.unplanned += 1
                return
            if not track.add(event["seq"]):
                self.duplicates += 1
                return
            stats = self._rep(rep_no)
            stats.delivered += 1
            stats.lat_ms.append((now - sent_ns) / 1e6)
            if stats.last_delivery is None or now > stats.last_delivery:
                stats.last_delivery = now
        return on_event

    def _rep(self, rep: int) -> RepStats:
        stats = self.reps.get(rep)
        if stats is None:
            stats = self.reps[rep] = RepStats()
        return stats

    # -- sending -------------------------------------------------------------------------
    def start_rep(self, rep: int, tasks: list[dict[str, Any]], duration: float | None,
                  max_inflight: int) -> int:
        """Start this worker's sender tasks ({user, room, count, rate}) for repetition ``rep``."""
        self._stop = False
        self._rep(rep)
        self.senders = []
        t_end = mono_ns() + int(duration * 1e9) if duration else None
        for task in tasks:
            self.senders.append(gevent.spawn(self._sender, rep, task, t_end, max_inflight))
        return len(self.senders)

    def _content(self, rep: int, sent: int) -> bytes:
        head = b"%s %s %d %d " % (MAGIC, self.run_id, rep, sent)
        return head + b"x" * max(1, self.size - len(head))

    def _send_one(self, rep: int, peer: Peer, key: RoomKey, ri: int) -> None:
        stats = self.reps[rep]
        sent = mono_ns()
        if stats.first_send is None or sent < stats.first_send:
            stats.first_send = sent
        content = self._content(rep, sent)
        txn = uuid.uuid4().hex
        delay = 0.02
        stats.sent += 1
        while True:
            try:
                reply = peer.send(key, "text", content, txn_id=txn)
                break
            except ProtocolError as exc:
                stats.errors[exc.code.value] += 1
                if exc.code in (ErrorCode.RATE_LIMITED, ErrorCode.UNAVAILABLE) and not self._stop:
                    gevent.sleep(delay)           # retried with the same txn_id: stored once
                    delay = min(1.0, delay * 2)
                    continue
                stats.failed += 1
                return
        acked = mono_ns()
        stats.acked.setdefault(ri, []).append(reply["seq"])
        stats.ack_ms.append((acked - sent) / 1e6)
        if stats.last_ack is None or acked > stats.last_ack:
            stats.last_ack = acked

    def _sender(self, rep: int, task: dict[str, Any], t_end: int | None, max_inflight: int) -> None:
        peer = self.peers[task["user"]]
        ri = task["room"]
        key = RoomKey(*self.rooms[ri]["key"])
        count, rate = task["count"], task["rate"]
        n = 0

        def more() -> bool:
            return (not self._stop and (count is None or n < count)
                    and (t_end is None or mono_ns() < t_end))

        if not rate:                                  # closed loop
            while more():
                self._send_one(rep, peer, key, ri)
                n += 1
            return
        inflight = gevent.pool.Pool(max_inflight)      # open loop: a send every 1/rate s
        interval = 1.0 / rate
        next_at = time.monotonic() + random.random() * interval
        while more():
            wait = next_at - time.monotonic()
            if wait > 0:
                gevent.sleep(wait)
                if not more():
                    break
            inflight.spawn(self._send_one, rep, peer, key, ri)   # blocks when max_inflight are out
            n += 1
            next_at += interval
        inflight.join()

    def status(self, rep: int) -> dict[str, Any]:
        stats = self._rep(rep)
        return {"acked": {str(k): len(v) for k, v in stats.acked.items()}, "delivered": stats.delivered,
                "running": sum(1 for g in self.senders if not g.dead), "failed": stats.failed}

    def stop_senders(self, wait: float = 5.0) -> None:
        self._stop = True
        gevent.joinall(self.senders, timeout=wait)
        gevent.killall([g for g in self.senders if not g.dead], block=False)

    def rep_result(self, rep: int) -> dict[str, Any]:
        return self._rep(rep).summary(with_samples=True)

    # -- the end -------------------------------------------------------------------------
    def final(self) -> dict[str, Any]:
        """Every (user, room) receipt record, duplicates, and the peers' own counters."""
        tracks = [[self.users[pi], ri, t.base, t.high, sorted(t.extra or ())] for (pi, ri), t in self.tracks.items()]
        return {"tracks": tracks, "duplicates": self.duplicates, "unplanned": self.unplanned,
                "dropped_duplicate_pushes": sum(p.duplicates for p in self.peers.values()),
                "online": len(self.peers), "offline": [u for u in self.users if u not in self.peers][:20]}

    def leave_rooms(self) -> int:
        """Every member leaves the run's rooms (so reused accounts do not carry them)."""
        pool = gevent.pool.Pool(self.login_concurrency)
        left = 0

        def one(user: str, key: RoomKey) -> None:
            nonlocal left
            try:
                self.peers[user].leave(key)
                left += 1
            except ProtocolError:
                pass

        for room in self.rooms:
            for user in room["members"]:
                if user in self.peers:
                    pool.spawn(one, user, RoomKey(*room["key"]))
        pool.join()
        return left

    def close(self) -> None:
        self._stop = True
        gevent.killall(self.senders, block=False)
        closers = [gevent.spawn(p.close) for p in self.peers.values()]
        gevent.joinall(closers, timeout=10)
        self.peers.clear()


class LocalWorker:
    """A Worker in this process, called like a remote one."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.worker = Worker(spec)
        self.pid = os.getpid()

    def call(self, cmd: str, timeout: float | None = None, **kwargs: Any) -> Any:
        with gevent.Timeout(timeout):
            return getattr(self.worker, cmd)(**kwargs)

    def stop(self) -> None:
        self.worker.close()


def _worker_process(conn: Any, spec: dict[str, Any], hard_deadline: float) -> None:
    """Main of a worker process: its own gevent hub, commands over a pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # the coordinator decides when to stop
    raise_nofile_limit()
    gevent.spawn_later(max(1.0, hard_deadline - time.time()), os._exit, 3)   # never outlive the run
    worker = Worker(spec)
    try:
        while True:
            gsocket.wait_read(conn.fileno())
            try:
                cmd, kwargs = conn.recv()
            except EOFError:
                break
            if cmd == "exit":
                break
            try:
                conn.send((True, getattr(worker, cmd)(**kwargs)))
            except Exception:    # noqa: BLE001 - sent to the coordinator
                conn.send((False, traceback.format_exc()))
    finally:
        worker.close()
        try:
            conn.send((True, None))
        except OSError:
            pass


class ProcessWorker:
    """A Worker in a child process (multiprocessing, spawn), called over a pipe."""

    def __init__(self, ctx: Any, spec: dict[str, Any], hard_deadline: float) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_process, args=(child, spec, hard_deadline), daemon=True)
        self.proc.start()
        child.close()
        self.pid = self.proc.pid
        self._lock = gevent.lock.Semaphore()

    def call(self, cmd: str, timeout: float | None = None, **kwargs: Any) -> Any:
        with self._lock:
            self.conn.send((cmd, kwargs))
            gsocket.wait_read(self.conn.fileno(), timeout=timeout,
                              timeout_exc=gevent.Timeout(None, f"worker did not answer {cmd} in time"))
            ok, value = self.conn.recv()
        if not ok:
            raise RuntimeError(f"worker {self.pid} failed in {cmd}:\n{value}")
        return value

    def stop(self) -> None:
        try:
            if self._lock.acquire(timeout=15):
                self.conn.send(("exit", {}))
                gsocket.wait_read(self.conn.fileno(), timeout=15)
                self.conn.recv()
        except (OSError, EOFError, gevent.Timeout, std_socket.timeout):
            pass
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=5)


# --------------------------------------------------------------------------------------------
# The server under test
# --------------------------------------------------------------------------------------------

class ServerUnderTest:
    """The server to load: started by us (and stopped at the end), or given by address."""

    def __init__(self, address: tuple[str, int], pid: int | None = None) -> None:
        self.address = address
        self.pid = pid
        self.proc: subprocess.Popen | None = None
        self.tmp: str | None = None
        self.stderr_path: Path | None = None

    @classmethod
    def start(cls, argv: list[str], tmp: str | None, keep: bool, timeout: float = 90.0) -> "ServerUnderTest":
        log_dir = tmp or tempfile.mkdtemp(prefix="messenger-loadtest-")
        stderr_path = Path(log_dir) / "server.stderr"
        with open(stderr_path, "ab") as err:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                    preexec_fn=_preexec_raise_nofile)
        line = read_line(proc, timeout)
        if not line.startswith("listening on "):
            proc.kill()
            proc.wait(10)
            tail = stderr_path.read_text(errors="replace")[-3000:]
            raise SystemExit(f"messenger-loadtest: the server did not start ({line!r}):\n{tail}")
        host, port = line.split()[-1].rsplit(":", 1)
        server = cls((host, int(port)), proc.pid)
        server.proc, server.stderr_path = proc, stderr_path
        server.tmp = None if keep else log_dir
        return server

    def stop(self) -> int | None:
        status = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    status = self.proc.wait(60)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    status = self.proc.wait(10)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return status


def read_line(proc: subprocess.Popen, timeout: float) -> str:
    """The first line the process writes on stdout, waiting at most ``timeout`` seconds."""
    import select
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    buf = b""
    fd = proc.stdout.fileno()
    while not buf.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 1)
            if not chunk:
                break
            buf += chunk
    return buf.decode(errors="replace").strip()


class CpuMeter:
    """CPU seconds (user + system) of the server process, alone and together with its
    descendants and the database's processes (``db_pid``: a PostgreSQL postmaster, whose
    backends are its children; the embedded PostgreSQL daemonizes, so it is not the server's
    child and is found by its data directory)."""

    def __init__(self, pid: int | None, db_pid: int | None = None) -> None:
        import psutil
        self.psutil = psutil
        self.proc = psutil.Process(pid) if pid else None
        self.db = psutil.Process(db_pid) if db_pid else None

    @staticmethod
    def find_postmaster(pgdata: str) -> int | None:
        """The PID of the postmaster running with ``-D pgdata``, if any."""
        import psutil
        want = os.path.realpath(pgdata)
        for proc in psutil.process_iter(["cmdline"]):
            cmd = proc.info.get("cmdline") or []
            if cmd and os.path.basename(cmd[0]) == "postgres" and "-D" in cmd:
                i = cmd.index("-D")
                if i + 1 < len(cmd) and os.path.realpath(cmd[i + 1]) == want:
                    return proc.pid
        return None

    def snapshot(self) -> tuple[float, dict[int, float], dict[int, float]] | None:
        """The server's own CPU seconds, and its descendants' and the database's by PID."""
        if self.proc is None:
            return None
        try:
            t = self.proc.cpu_times()
            own = t.user + t.system
        except self.psutil.Error:
            return None
        groups: tuple[dict[int, float], dict[int, float]] = ({}, {})
        for root, cpu in ((self.proc, groups[0]), (self.db, groups[1])):
            if root is None:
                continue
            try:
                related = root.children(recursive=True) + ([root] if root is self.db else [])
            except self.psutil.Error:
                continue
            for proc in related:
                try:
                    ct = proc.cpu_times()
                    cpu[proc.pid] = ct.user + ct.system
                except self.psutil.Error:
                    pass
        return own, groups[0], groups[1]

    @staticmethod
    def delta(a: tuple[float, dict[int, float], dict[int, float]] | None,
              b: tuple[float, dict[int, float], dict[int, float]] | None
              ) -> tuple[float | None, float | None, float | None]:
        """(server alone, server with descendants and database, database alone) between two
        snapshots (a database process that is also the server's descendant counts once, as the
        server's)."""
        if a is None or b is None:
            return None, None, None
        own = b[0] - a[0]
        descendants = sum(v - a[1].get(pid, 0.0) for pid, v in b[1].items())
        database = sum(v - a[2].get(pid, 0.0) for pid, v in b[2].items() if pid not in b[1])
        return own, own + descendants + database, database


def machine_busy_cpu() -> float:
    """CPU seconds every core of the machine spent busy so far (not idle, not waiting on I/O)."""
    import psutil
    t = psutil.cpu_times()
    return sum(getattr(t, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal"))


def client_cpu(pids: Iterable[int]) -> float:
    import psutil
    total = 0.0
    for pid in set(pids):
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


# --------------------------------------------------------------------------------------------
# The coordinator
# --------------------------------------------------------------------------------------------

class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows a default only where there is one worth showing and the help does not say it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, [], "", argparse.SUPPRESS) or "default" in text:
            return text
        return f"{text} (default: %(default)s)"


EPILOG = """examples:
  # W1 of issue 6 against a server this tool starts (and stops):
  messenger-loadtest --start-server --members 50 --senders 10 --messages 5000 --repeat 5
  # W2, peers spread over 2 worker processes:
  messenger-loadtest --start-server --members 500 --senders 5 --messages 1000 --processes 2
  # a running server (its PID for CPU figures), 500 msg/s open loop for 30 s, accounts kept:
  messenger-loadtest --server 127.0.0.1:9100 --server-pid 1234 --reuse --prefix lt- \\
      --rooms 10 --members 20 --rate 500 --duration 30
  # the no-storage baseline of make bench:
  messenger-loadtest --server-command "python bench/relay.py --port 0" --members 50 --senders 10

The last line of stdout is one JSON object with every figure; exit status 0 means nothing was
lost or duplicated and no send failed, 1 the opposite, 2 a usage or set-up error."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="messenger-loadtest",
        description="Load-test a messenger server with real headless peers (push listeners included) "
                    "on this machine; prints a table and one JSON line. Loopback addresses only.",
        formatter_class=_HelpFormatter, epilog=EPILOG)
    where = p.add_argument_group("server")
    target = where.add_mutually_exclusive_group(required=True)
    target.add_argument("--server", metavar="HOST:PORT", help="a running server on a loopback address")
    target.add_argument("--start-server", action="store_true",
                        help="start `python -m messenger_server --port 0` with a temporary data dir and "
                             "embedded PostgreSQL, and stop it at the end")
    target.add_argument("--server-command", metavar="CMD",
                        help="start this command instead (it must print 'listening on HOST:PORT' on stdout "
                             "and stop on SIGTERM), e.g. 'python bench/relay.py --port 0'")
    where.add_argument("--server-pid", type=int, help="PID of the server under --server, to read its CPU time")
    where.add_argument("--db-pid", type=int, help="PID of the PostgreSQL postmaster the server uses, to add the "
                       "database's CPU time (found by itself with --start-server)")
    where.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                       help="extra argument for --start-server (repeat it), e.g. --server-arg=--pool-size=20")
    where.add_argument("--keep-server-limits", action="store_true",
                       help="with --start-server keep the server's abuse limits (by default the per-user and "
                            "per-address send/login rate limits and connection caps are lifted: every "
                            "peer of a load test comes from 127.0.0.1)")
    where.add_argument("--data-dir", help="with --start-server: use (and keep) this data dir")

    load = p.add_argument_group("workload")
    load.add_argument("--peers", type=int, help="users online (default rooms x members)")
    load.add_argument("--rooms", type=int, default=1, help="rooms")
    load.add_argument("--members", type=int, default=10, help="members per room (room r takes the next "
                      "members users, wrapping around when --peers is smaller than rooms x members)")
    load.add_argument("--senders", type=int, default=2, help="senders per room (its first members)")
    load.add_argument("--messages", type=int, help="messages per repetition, all senders together "
                      "(default 1000 unless --duration is given)")
    load.add_argument("--duration", type=float, help="send for this many seconds per repetition")
    load.add_argument("--rate", type=float, help="open loop: this many messages/s in total, spread over the "
                      "senders (default: closed loop, each sender waits for its ack before the next send)")
    load.add_argument("--max-inflight", type=int, default=1000, help="open loop: unacknowledged sends per sender")
    load.add_argument("--size", type=int, default=100, help="bytes of text per message (at least ~40: the "
                      "send time travels in the text)")
    load.add_argument("--repeat", type=int, default=1, help="repetitions with the same peers and rooms; "
                      "the summary takes medians")
    load.add_argument("--pause", type=float, default=0.5, help="seconds between repetitions")

    acct = p.add_argument_group("accounts and peers")
    acct.add_argument("--prefix", help="user ids are PREFIX00001, PREFIX00002, ... (default lt-<random>- , "
                      "or lt- with --reuse)")
    acct.add_argument("--password", default=DEFAULT_PASSWORD, help="password of every account")
    acct.add_argument("--reuse", action="store_true",
                      help="log in to existing accounts of this prefix (registering only the missing ones) "
                           "instead of registering all; a registration costs the server a slow password hash")
    acct.add_argument("--processes", type=int, default=0,
                      help="worker processes for the peers (0: all peers in this process)")
    acct.add_argument("--relogin", action="store_true",
                      help="after building the rooms, log every peer out and in again, like users whose "
                           "rooms already exist (a --workers server places each at login: session affinity)")
    acct.add_argument("--login-concurrency", type=int, default=32, help="logins in flight per process")
    acct.add_argument("--request-timeout", type=float, default=30.0, help="seconds a peer waits for a reply")
    acct.add_argument("--full-cache", action="store_true",
                      help="let every peer keep all received messages in memory (its default cache) "
                           "instead of only the last seq per room")
    acct.add_argument("--cleanup", choices=("auto", "leave", "none"), default="auto",
                      help="leave the run's rooms at the end (auto: leave only on a server we did not start)")

    run = p.add_argument_group("bounds and output")
    run.add_argument("--timeout", type=float, default=300.0, help="overall deadline in seconds; after it "
                     "the tool reports what it has and exits 1 if anything was lost")
    run.add_argument("--drain-timeout", type=float, default=15.0,
                     help="seconds to wait after the last ack for outstanding deliveries")
    run.add_argument("--progress", choices=("auto", "bar", "lines", "off"), default="auto",
                     help="progress on stderr: a bar on a terminal, a line every 5 s otherwise")
    run.add_argument("--label", default="", help="a name for this run, copied to the JSON line")
    return p


@dataclass
class Plan:
    users: list[str]
    rooms: list[dict[str, Any]]        # {"members": [...], "senders": [...]}
    tasks: list[dict[str, Any]]        # {"user", "room", "count", "rate"}
    owner: dict[str, int]              # user -> worker index


def make_plan(args: argparse.Namespace, prefix: str, workers: int) -> Plan:
    users = [f"{prefix}{i:05d}" for i in range(1, args.peers + 1)]
    rooms = []
    for r in range(args.rooms):
        members = [users[(r * args.members + j) % len(users)] for j in range(args.members)]
        rooms.append({"members": members, "senders": members[:args.senders]})
    tasks = [{"user": u, "room": ri} for ri, room in enumerate(rooms) for u in room["senders"]]
    if args.messages is not None:
        base, extra = divmod(args.messages, len(tasks))
        for i, task in enumerate(tasks):
            task["count"] = base + (1 if i < extra else 0)
    else:
        for task in tasks:
            task["count"] = None
    for task in tasks:
        task["rate"] = args.rate / len(tasks) if args.rate else None
    tasks = [t for t in tasks if t["count"] is None or t["count"] > 0]
    owner = {u: i % max(1, workers) for i, u in enumerate(users)}
    return Plan(users, rooms, tasks, owner)


def check_loopback(host: str) -> None:
    try:
        infos = std_socket.getaddrinfo(host, None)
    except OSError as exc:
        raise SystemExit(f"messenger-loadtest: cannot resolve {host!r}: {exc}") from None
    for info in infos:
        if not ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback:
            raise SystemExit(f"messenger-loadtest: {host!r} is not a loopback address; this tool only "
                             "loads servers on this machine (127.0.0.1)")


class Progress:
    def __init__(self, mode: str) -> None:
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "lines"
        self.mode = mode
        self.last = 0.0
        self.width = 0

    def show(self, text: str, fraction: float | None, force: bool = False) -> None:
        if self.mode == "off":
            return
        now = time.monotonic()
        if self.mode == "bar":
            if not force and now - self.last < 0.2:
                return
            frac = 0.0 if fraction is None else max(0.0, min(1.0, fraction))
            filled = int(frac * 30)
            line = f"\r[{'#' * filled}{'.' * (30 - filled)}] {frac * 100:5.1f}%  {text}"
            self.width = max(self.width, len(line))
            sys.stderr.write(line.ljust(self.width))
            sys.stderr.flush()
        elif force or now - self.last >= 5.0:
            pct = "" if fraction is None else f"{fraction * 100:5.1f}%  "
            sys.stderr.write(f"loadtest: {pct}{text}\n")
            sys.stderr.flush()
        self.last = now

    def done(self) -> None:
        if self.mode == "bar" and self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
            sys.stderr.flush()
            self.width = 0


def note(text: str) -> None:
    sys.stderr.write(f"loadtest: {text}\n")
    sys.stderr.flush()


def run(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    """Everything between parsing and printing; returns the result and the exit status."""
    started = time.monotonic()
    deadline = started + args.timeout
    nofile = raise_nofile_limit()
    prefix = args.prefix or ("lt-" if args.reuse else f"lt-{uuid.uuid4().hex[:6]}-")
    run_id = uuid.uuid4().hex[:8]
    server: ServerUnderTest
    if args.server:
        host, port = parse_address(args.server)
        check_loopback(host)
        server = ServerUnderTest((host, port), args.server_pid)
    else:
        if args.start_server:
            data_dir = args.data_dir or tempfile.mkdtemp(prefix="messenger-loadtest-")
            os.makedirs(data_dir, exist_ok=True)
            os.chmod(data_dir, 0o755)     # the embedded PostgreSQL may run as another user
            argv = [sys.executable, "-m", "messenger_server", "--host", "127.0.0.1", "--port", "0",
                    "--data-dir", data_dir]
            if not args.keep_server_limits:
                argv += RELAXED_LIMITS
            argv += args.server_arg
            server = ServerUnderTest.start(argv, data_dir, keep=bool(args.data_dir))
            if args.db_pid is None and not any(a.startswith("--database-url") for a in args.server_arg):
                args.db_pid = CpuMeter.find_postmaster(os.path.join(data_dir, "pg"))
        else:
            server = ServerUnderTest.start(shlex.split(args.server_command), None, keep=False)
        check_loopback(server.address[0])
    result: dict[str, Any] = {
        "tool": "messenger-loadtest", "label": args.label, "server": "%s:%d" % server.address,
        "peers": args.peers, "rooms": args.rooms, "members": args.members, "senders_per_room": args.senders,
        "mode": "open" if args.rate else "closed", "rate": args.rate, "messages": args.messages,
        "duration": args.duration, "size": args.size, "repeat": args.repeat, "processes": args.processes,
        "nofile_limit": nofile}
    workers: list[LocalWorker | ProcessWorker] = []
    status = 2
    try:
        plan = make_plan(args, prefix, args.processes)
        spec_base = {"server": list(server.address), "password": args.password,
                     "register": "missing" if args.reuse else "always",
                     "request_timeout": args.request_timeout, "login_concurrency": args.login_concurrency,
                     "full_cache": args.full_cache, "listen_host": "127.0.0.1", "run_id": run_id,
                     "size": args.size}
        specs = [{**spec_base, "users": [u for u in plan.users if plan.owner[u] == w]}
                 for w in range(max(1, args.processes))]
        if args.processes:
            ctx = multiprocessing.get_context("spawn")
            hard = time.time() + (deadline - time.monotonic()) + 60
            workers = [ProcessWorker(ctx, spec, hard) for spec in specs]
        else:
            workers = [LocalWorker(specs[0])]
        status, body = _drive(args, plan, workers, server, deadline)
        result.update(body)
    finally:
        gevent.joinall([gevent.spawn(w.stop) for w in workers], timeout=30)
        server_status = server.stop()
        if server_status not in (None, 0):
            note(f"the server exited with status {server_status}")
    result["elapsed_s"] = round(time.monotonic() - started, 2)
    return result, status


def _call_all(workers: list, cmd: str, timeout: float | None = None, **kwargs: Any) -> list[Any]:
    jobs = [gevent.spawn(w.call, cmd, timeout, **kwargs) for w in workers]
    gevent.joinall(jobs, raise_error=True)
    return [j.value for j in jobs]


def _drive(args: argparse.Namespace, plan: Plan, workers: list, server: ServerUnderTest,
           deadline: float) -> tuple[int, dict[str, Any]]:
    progress = Progress(args.progress)
    body: dict[str, Any] = {}
    timed_out = False
    left = lambda: max(10.0, deadline - time.monotonic())   # noqa: E731  (control calls get at least 10 s)

    # -- accounts and logins ---------------------------------------------------------------
    t0 = time.monotonic()
    progress.show(f"logging in {len(plan.users)} peers ...", None, force=True)
    setups = _call_all(workers, "setup", left())
    failed = sum(s["failed"] for s in setups)
    login_ms = sorted(x for s in setups for x in s["login_ms"])
    body["server_software"] = next((s["server"] for s in setups if s["server"]), None)
    body["setup"] = {"login_s": round(time.monotonic() - t0, 2), "login_ms_p50": _round(percentile(login_ms, 50), 1),
                     "login_ms_p99": _round(percentile(login_ms, 99), 1)}
    if failed:
        progress.done()
        reasons = [r for s in setups for r in s["failures"]][:5]
        raise SetupError(f"{failed} of {len(plan.users)} peers could not log in, e.g.:\n  " + "\n  ".join(reasons))

    # -- rooms -----------------------------------------------------------------------------
    t0 = time.monotonic()
    rooms = []
    for ri, room in enumerate(plan.rooms):
        creator = room["members"][0]
        made = workers[plan.owner[creator]].call("create_room", left(), creator=creator,
                                                  name=f"loadtest {ri + 1}", members=room["members"])
        rooms.append({"key": made["key"], "members": room["members"], "base": 0})
    _call_all(workers, "set_rooms", left(), rooms=rooms)
    gevent.sleep(min(2.0, 0.2 + 0.0005 * sum(len(r["members"]) for r in rooms)))   # let invitations settle
    body["setup"]["rooms_s"] = round(time.monotonic() - t0, 2)
    if args.relogin:
        t0 = time.monotonic()
        progress.show(f"logging {len(plan.users)} peers in again ...", None, force=True)
        failed = sum(r["failed"] for r in _call_all(workers, "relogin", left()))
        if failed:
            progress.done()
            raise SetupError(f"{failed} of {len(plan.users)} peers could not log in again")
        body["setup"]["relogin_s"] = round(time.monotonic() - t0, 2)

    tasks_by_worker: list[list[dict[str, Any]]] = [[] for _ in workers]
    for task in plan.tasks:
        tasks_by_worker[plan.owner[task["user"]]].append(task)
    members_of = [len(set(r["members"])) for r in rooms]
    target_msgs = args.messages
    meter = CpuMeter(server.pid, args.db_pid)
    client_pids = [os.getpid()] + [w.pid for w in workers]
    reps: list[dict[str, Any]] = []
    acked_all: list[list[int]] = [[] for _ in rooms]

    # -- repetitions -----------------------------------------------------------------------
    for rep in range(1, args.repeat + 1):
        if time.monotonic() >= deadline:
            timed_out = True
            break
        cpu0, ccpu0, busy0 = meter.snapshot(), client_cpu(client_pids), machine_busy_cpu()
        wall0 = time.monotonic()
        jobs = [gevent.spawn(w.call, "start_rep", left(), rep=rep, tasks=tasks_by_worker[i],
                             duration=args.duration, max_inflight=args.max_inflight) for i, w in enumerate(workers)]
        gevent.joinall(jobs, raise_error=True)
        drain_until = None
        while True:
            gevent.sleep(0.05)
            statuses = _call_all(workers, "status", 60, rep=rep)
            acked_rooms = Counter()
            for s in statuses:
                for k, v in s["acked"].items():
                    acked_rooms[int(k)] += v
            acked = sum(acked_rooms.values())
            expected = sum(acked_rooms[ri] * members_of[ri] for ri in range(len(rooms)))
            delivered = sum(s["delivered"] for s in statuses)
            running = sum(s["running"] for s in statuses)
            elapsed = time.monotonic() - wall0
            if target_msgs:
                frac = acked / target_msgs
            elif args.duration:
                frac = elapsed / args.duration
            else:
                frac = None
            progress.show(f"rep {rep}/{args.repeat}  {acked:,} msgs acked  {delivered:,}/{expected:,} "
                          f"deliveries  {elapsed:.1f} s", frac)
            if time.monotonic() >= deadline:
                if not timed_out:          # stop sending; give what is in flight a moment to arrive
                    timed_out = True
                    _call_all(workers, "stop_senders", 30, wait=2.0)
                    drain_until = time.monotonic() + min(2.0, args.drain_timeout)
                if delivered >= expected or time.monotonic() >= drain_until:
                    break
                continue
            if running:
                continue
            if delivered >= expected:
                break
            if drain_until is None:
                drain_until = time.monotonic() + args.drain_timeout
            elif time.monotonic() >= drain_until:
                break
        _call_all(workers, "stop_senders", 30)
        cpu1, ccpu1, busy1 = meter.snapshot(), client_cpu(client_pids), machine_busy_cpu()
        wall = time.monotonic() - wall0
        results = _call_all(workers, "rep_result", 60, rep=rep)
        metrics = _rep_metrics(rep, results, rooms, members_of, acked_all,
                               CpuMeter.delta(cpu0, cpu1), ccpu1 - ccpu0, wall)
        ours = (metrics["server_cpu_with_children_s"] or 0.0) + metrics["client_cpu_s"]
        metrics["machine_busy_cpu_s"] = round(busy1 - busy0, 3)
        metrics["other_cpu_s"] = round(max(0.0, busy1 - busy0 - ours), 3) if server.pid else None
        metrics["cores"] = os.cpu_count()
        reps.append(metrics)
        progress.done()
        if timed_out:
            break
        if rep < args.repeat and args.pause:
            gevent.sleep(args.pause)

    # -- receipts: lost and duplicated ---------------------------------------------------------
    finals = _call_all(workers, "final", 120)
    lost = unacked = 0
    sorted_acked = [sorted(set(a)) for a in acked_all]
    seen_pairs = set()
    for f in finals:
        for user, ri, base, high, extra in f["tracks"]:
            seen_pairs.add((user, ri))
            acked_r = sorted_acked[ri]
            got = bisect.bisect_right(acked_r, high) - bisect.bisect_right(acked_r, base)
            extra_set = set(extra)
            got += sum(1 for s in acked_r if s in extra_set) if extra_set else 0
            lost += len(acked_r) - got
            unacked += (high - base) + len(extra_set) - got
    for ri, room in enumerate(rooms):             # members whose peer never came online
        for user in set(room["members"]):
            if (user, ri) not in seen_pairs:
                lost += len(sorted_acked[ri])
    duplicates = sum(f["duplicates"] for f in finals)
    failed_sends = sum(r["failed_sends"] for r in reps)
    body.update(_summary(reps))
    body.update({"lost": lost, "duplicates": duplicates, "unacked_deliveries": unacked,
                 "failed_sends": failed_sends,
                 "dropped_duplicate_pushes": sum(f["dropped_duplicate_pushes"] for f in finals),
                 "timed_out": timed_out, "reps": reps})
    cleanup = args.cleanup
    if cleanup == "auto":
        cleanup = "leave" if args.server else "none"
    if cleanup == "leave" and time.monotonic() < deadline:
        _call_all(workers, "leave_rooms", left())
    status = 0 if lost == 0 and duplicates == 0 and failed_sends == 0 else 1
    return status, body


class SetupError(Exception):
    pass


def _rep_metrics(rep: int, results: list[dict[str, Any]], rooms: list[dict[str, Any]], members_of: list[int],
                 acked_all: list[list[int]], cpu: tuple[float | None, float | None, float | None], client_cpu_s: float,
                 wall: float) -> dict[str, Any]:
    lat = array("d")
    ack = array("d")
    acked = delivered = failed = 0
    errors: Counter = Counter()
    firsts, last_acks, last_dels = [], [], []
    expected = 0
    for r in results:
        chunk = array("d")
        chunk.frombytes(r["lat_ms"])
        lat.extend(chunk)
        chunk = array("d")
        chunk.frombytes(r["ack_ms"])
        ack.extend(chunk)
        for k, seqs in r["acked_seqs"].items():
            acked_all[int(k)].extend(seqs)
            acked += len(seqs)
            expected += len(seqs) * members_of[int(k)]
        delivered += r["delivered"]
        failed += r["failed"]
        errors.update(r["errors"])
        if r["first_send"] is not None:
            firsts.append(r["first_send"])
        if r["last_ack"] is not None:
            last_acks.append(r["last_ack"])
        if r["last_delivery"] is not None:
            last_dels.append(r["last_delivery"])
    lat_sorted = sorted(lat)
    ack_sorted = sorted(ack)
    first = min(firsts) if firsts else None
    send_window = (max(last_acks) - first) / 1e9 if first is not None and last_acks else None
    deliver_window = (max(last_dels) - first) / 1e9 if first is not None and last_dels else None
    own_cpu, total_cpu, db_cpu = cpu
    per_k = lambda v: None if v is None or not delivered else round(v / delivered * 1000, 4)   # noqa: E731
    return {
        "rep": rep, "acked": acked, "deliveries": delivered, "expected_deliveries": expected,
        "failed_sends": failed, "send_errors": dict(errors),
        "accepted_msgs_per_s": _round(acked / send_window if send_window else None, 1),
        "deliveries_per_s": _round(delivered / deliver_window if deliver_window else None, 1),
        "send_window_s": _round(send_window), "delivery_window_s": _round(deliver_window),
        "latency_ms": {"p50": _round(percentile(lat_sorted, 50)), "p95": _round(percentile(lat_sorted, 95)),
                       "p99": _round(percentile(lat_sorted, 99)),
                       "max": _round(lat_sorted[-1] if lat_sorted else None)},
        "ack_latency_ms": {"p50": _round(percentile(ack_sorted, 50)), "p99": _round(percentile(ack_sorted, 99))},
        "server_cpu_s": _round(own_cpu), "server_cpu_with_children_s": _round(total_cpu),
        "server_cpu_s_per_1k_deliveries": per_k(own_cpu),
        "server_cpu_with_children_s_per_1k_deliveries": per_k(total_cpu),
        "database_cpu_s_per_1k_deliveries": per_k(db_cpu),
        "client_cpu_s": round(client_cpu_s, 3), "wall_s": round(wall, 3),
    }


def _median(values: list[Any]) -> Any:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 4) if values else None


def _summary(reps: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over repetitions (max latency: the max)."""
    if not reps:
        return {"deliveries": 0, "expected_deliveries": 0}
    return {
        "accepted_msgs_per_s": _median([r["accepted_msgs_per_s"] for r in reps]),
        "deliveries_per_s": _median([r["deliveries_per_s"] for r in reps]),
        "latency_ms": {q: _median([r["latency_ms"][q] for r in reps]) for q in ("p50", "p95", "p99")}
        | {"max": max((r["latency_ms"]["max"] for r in reps if r["latency_ms"]["max"] is not None), default=None)},
        "ack_latency_ms": {q: _median([r["ack_latency_ms"][q] for r in reps]) for q in ("p50", "p99")},
        "server_cpu_s_per_1k_deliveries": _median([r["server_cpu_s_per_1k_deliveries"] for r in reps]),
        "server_cpu_with_children_s_per_1k_deliveries":
            _median([r["server_cpu_with_children_s_per_1k_deliveries"] for r in reps]),
        "database_cpu_s_per_1k_deliveries": _median([r["database_cpu_s_per_1k_deliveries"] for r in reps]),
        "client_cpu_s_per_1k_deliveries": _median([round(r["client_cpu_s"] / r["deliveries"] * 1000, 4)
                                                   for r in reps if r["deliveries"]]),
        "acked": sum(r["acked"] for r in reps),
        "deliveries": sum(r["deliveries"] for r in reps),
        "expected_deliveries": sum(r["expected_deliveries"] for r in reps),
    }


def _fmt(value: Any, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def print_table(result: dict[str, Any], out: Any = None) -> None:
    out = out or sys.stdout
    mode = f"open loop {result['rate']:g} msg/s" if result["rate"] else "closed loop"
    amount = f"{result['messages']:,} msgs" if result["messages"] else f"{result['duration']:g} s"
    print(f"messenger-loadtest {result['label']}".rstrip(), file=out)
    print(f"  server {result['server']} ({result.get('server_software') or '?'}); {result['peers']:,} peers, "
          f"{result['rooms']} room(s) x {result['members']} members, {result['senders_per_room']} sender(s)/room, "
          f"{mode}, {amount} x {result['size']} B per repetition, {result['processes'] or 'no'} worker processes",
          file=out)
    setup = result.get("setup", {})
    if setup:
        print(f"  set-up: logins {setup.get('login_s')} s (p50 {setup.get('login_ms_p50')} ms, "
              f"p99 {setup.get('login_ms_p99')} ms), rooms {setup.get('rooms_s')} s", file=out)
    head = (f"{'rep':>6} {'acked':>8} {'msgs/s':>9} {'deliveries':>11} {'deliv/s':>10} {'p50 ms':>8} "
            f"{'p95 ms':>8} {'p99 ms':>8} {'max ms':>8} {'ack p50':>8} {'srv cpu/1k':>10} {'+db/1k':>8} "
            f"{'gen cpu s':>9} {'other cpu s':>11}")
    print(head, file=out)
    for r in result.get("reps", []):
        lat = r["latency_ms"]
        print(f"{r['rep']:>6} {r['acked']:>8,} {_fmt(r['accepted_msgs_per_s']):>9} {r['deliveries']:>11,} "
              f"{_fmt(r['deliveries_per_s']):>10} {_fmt(lat['p50'], '.2f'):>8} {_fmt(lat['p95'], '.2f'):>8} "
              f"{_fmt(lat['p99'], '.2f'):>8} {_fmt(lat['max'], '.1f'):>8} "
              f"{_fmt(r['ack_latency_ms']['p50'], '.2f'):>8} "
              f"{_fmt(r['server_cpu_s_per_1k_deliveries'], '.4f'):>10} "
              f"{_fmt(r['server_cpu_with_children_s_per_1k_deliveries'], '.4f'):>8} "
              f"{r['client_cpu_s']:>9.2f} {_fmt(r.get('other_cpu_s'), '.2f'):>11}", file=out)
    if result.get("reps"):
        lat = result["latency_ms"]
        print(f"{'median':>6} {result['acked']:>8,} {_fmt(result['accepted_msgs_per_s']):>9} "
              f"{result['deliveries']:>11,} {_fmt(result['deliveries_per_s']):>10} {_fmt(lat['p50'], '.2f'):>8} "
              f"{_fmt(lat['p95'], '.2f'):>8} {_fmt(lat['p99'], '.2f'):>8} {_fmt(lat['max'], '.1f'):>8} "
              f"{_fmt(result['ack_latency_ms']['p50'], '.2f'):>8} "
              f"{_fmt(result['server_cpu_s_per_1k_deliveries'], '.4f'):>10} "
              f"{_fmt(result['server_cpu_with_children_s_per_1k_deliveries'], '.4f'):>8}", file=out)
    verdict = "OK" if result.get("ok") else "FAILED"
    if result.get("ok") and result.get("timed_out"):
        verdict = "OK so far (cut short by --timeout)"
    print(f"  deliveries {result.get('deliveries', 0):,} of {result.get('expected_deliveries', 0):,} expected; "
          f"lost {result.get('lost', '?')}, duplicates {result.get('duplicates', '?')}, "
          f"failed sends {result.get('failed_sends', '?')}, unacknowledged deliveries "
          f"{result.get('unacked_deliveries', '?')}{', TIMED OUT' if result.get('timed_out') else ''} -> {verdict}",
          file=out)
    print("  (latency: send start -> member's on_event; srv cpu/1k: server process CPU s per 1,000 deliveries, "
          "+db: with its database processes; gen: this load generator; other: the rest of the machine)", file=out)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.peers is None:
        args.peers = args.rooms * args.members
    if args.messages is None and args.duration is None:
        args.messages = 1000
    for name in ("rooms", "members", "senders", "peers", "repeat", "size", "login_concurrency", "max_inflight"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.processes < 0:
        parser.error("--processes must be 0 or more")
    if args.senders > args.members:
        parser.error("--senders cannot exceed --members")
    if args.members > args.peers:
        parser.error("--members cannot exceed --peers")
    if args.messages is not None and args.messages < 0:
        parser.error("--messages must be 0 or more")
    if args.duration is not None and args.duration <= 0:
        parser.error("--duration must be positive")
    if args.rate is not None and args.rate <= 0:
        parser.error("--rate must be positive")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    if args.size < 40:
        parser.error("--size must be at least 40 bytes (the send time travels in the text)")
    if (args.server_arg or args.keep_server_limits or args.data_dir) and not args.start_server:
        parser.error("--server-arg, --keep-server-limits and --data-dir go with --start-server")
    if args.processes > args.peers:
        args.processes = args.peers
    try:
        result, status = run(args)
    except SetupError as exc:
        note(f"set-up failed: {exc}")
        return 2
    except (gevent.Timeout, std_socket.timeout) as exc:
        note(f"gave up: a step did not finish before the --timeout deadline ({exc or 'timeout'})")
        return 2
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        note("interrupted")
        return 2
    result["ok"] = status == 0
    print_table(result)
    compact = {k: v for k, v in result.items() if k != "reps"}
    compact["reps"] = [{k: v for k, v in r.items()} for r in result.get("reps", [])]
    print(json.dumps(compact, separators=(",", ":")), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
