"""Room affinity among the worker processes of one ``--workers N`` server.

With several workers, every room's sends arrive at every worker (the kernel spreads the
connections, not the rooms), so each room is locked, written and synced by all of them, in
batches of a fraction of the size. Here each room has an owner among the siblings (a fixed
hash of its key over the worker count) and a send for a room owned by a sibling is handed
to that sibling over a Unix socket in the data directory and committed there, so a room's
sends form one stream of batches again (BENCHMARKS.md measures what it gives).

The same links carry a batch's pushes for sessions held by a sibling: the owner hands them
over right after the commit instead of through ``PUSH_RELAY_TB`` (a row, a NOTIFY and a take
per batch), so the holder still pushes to its own sessions, with its NAT fallback, in commit
order. When a sibling cannot be reached they go through the relay table after all.

Correctness does not rest on it: every commit still takes the room's row lock, so a send
that cannot be handed over (the owner is restarting, its socket is gone) is committed by
the worker that received it, and a retried ``txn_id`` is still answered once. The sockets
live in a folder only the server's user can enter; that is their authentication, and why
affinity is limited to the workers of one machine.
"""
from __future__ import annotations

import itertools
import logging
import os
import socket
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import gevent
import gevent.event
import gevent.lock
from gevent.server import StreamServer

from messenger_protocol import ErrorCode, ProtocolError, encode
from messenger_protocol.frames import FrameDecoder
from messenger_protocol.messages import RoomKey

from .relay import Handoff

log = logging.getLogger(__name__)

# A handed-over send waits at most this long for its owner's answer; after that the caller
# gets ``unavailable`` (the owner may still store it: a retry with the same txn_id is safe).
ANSWER_SECONDS = 30.0
CONNECT_SECONDS = 1.0
MAX_SOCKET_PATH = 100      # sun_path holds 108 bytes on Linux, fewer elsewhere

Submit = Callable[[RoomKey, str, str, bytes, str], dict[str, Any]]
ID_REFRESH_SECONDS = 1.0


@dataclass(frozen=True)
class WorkerSlot:
    """Which of the ``count`` workers this process is, and the folder of their sockets."""

    index: int
    count: int
    run_dir: Path


def make_run_dir(data_dir: Path) -> tuple[Path, bool]:
    """The folder for the workers' sockets: ``<data-dir>/run``, or a private temporary folder
    when that path is too long for a Unix socket address. Returns (folder, temporary)."""
    run_dir = data_dir / "run"
    if len(str(socket_path(run_dir.resolve(), 999))) < MAX_SOCKET_PATH:
        run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(run_dir, 0o700)
        return run_dir.resolve(), False
    return Path(tempfile.mkdtemp(prefix="messenger-run-")), True


def owner_of(room: RoomKey, workers: int) -> int:
    """The index of the worker that commits ``room`` (stable across processes and runs)."""
    return zlib.crc32(f"{room[0]}\0{room[1]}".encode()) % workers


def unix_server(path: Path, handle: Callable[[socket.socket, Any], None]) -> StreamServer:
    """A started StreamServer on the Unix socket ``path`` (replacing one a predecessor left)."""
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(64)
    server = StreamServer(sock, handle)
    server.start()
    return server


def socket_path(run_dir: Path, index: int) -> Path:
    return run_dir / f"worker-{index}.sock"


def id_path(run_dir: Path, index: int) -> Path:
    """Where worker ``index`` writes its server id, so siblings know whose sessions it holds."""
    return run_dir / f"worker-{index}.id"


class Affinity:
    """This worker's side: accept sends handed over by siblings, hand over sends for theirs."""

    def __init__(self, slot: WorkerSlot, server_id: str, submit: Submit,
                 deliver: Callable[[list[bytes], bytes, int], None],
                 relay_send: Callable[[Sequence[Handoff]], None]) -> None:
        """``submit`` commits one send here (what ``send`` does after its checks);
        ``deliver`` pushes frames a sibling handed over to sessions held here;
        ``relay_send`` hands pushes over through PostgreSQL (when a sibling is unreachable)."""
        self.run_dir = slot.run_dir
        self.index = slot.index
        self.workers = slot.count
        self.server_id = server_id
        self.submit = submit
        self.deliver = deliver
        self.relay_send = relay_send
        self._siblings: dict[str, int] = {}       # server id -> worker index
        self._ids_read = 0.0
        self.pushes_handed = 0  # hand-offs of pushes sent to siblings over the links
        self.handed = 0        # sends this worker handed to a sibling
        self.taken = 0         # sends siblings handed to this worker
        self.fallbacks = 0     # sends for a sibling's room committed here instead
        self._links: dict[int, _Link] = {}
        self._server: StreamServer | None = None
        self._accepted: set[socket.socket] = set()

    def start(self) -> None:
        id_file = id_path(self.run_dir, self.index)
        id_file.with_suffix(".tmp").write_text(self.server_id)
        id_file.with_suffix(".tmp").replace(id_file)
        self._server = unix_server(socket_path(self.run_dir, self.index), self._serve)

    def stop(self) -> None:
        """Stop taking sends; siblings waiting for an answer from here then commit their
        sends themselves (their links see the connection close)."""
        if self._server is not None:
            self._server.close()
        for sock in list(self._accepted):
            sock.close()
        for link in self._links.values():
            link.close()
        socket_path(self.run_dir, self.index).unlink(missing_ok=True)
        id_path(self.run_dir, self.index).unlink(missing_ok=True)

    def owner(self, room: RoomKey) -> int | None:
        """The sibling that should commit ``room``; None when it is this worker."""
        index = owner_of(room, self.workers)
        return None if index == self.index else index

    def _link(self, index: int) -> "_Link":
        link = self._links.get(index)
        if link is None or link.broken:
            link = self._links[index] = _Link(socket_path(self.run_dir, index))
        return link

    def _sibling(self, server_id: str) -> int | None:
        """The worker index of a sibling's server id; None for processes elsewhere."""
        index = self._siblings.get(server_id)
        if index is None and time.monotonic() - self._ids_read > ID_REFRESH_SECONDS:
            self._ids_read = time.monotonic()
            found = {}
            for i in range(self.workers):
                try:
                    found[id_path(self.run_dir, i).read_text()] = i
                except OSError:
                    continue
            found.pop(self.server_id, None)
            self._siblings = found
            index = found.get(server_id)
        return index

    def split_handoffs(self, rows: Sequence[Handoff]) -> tuple[list[Handoff], list[tuple[int, Handoff]]]:
        """(hand-offs for processes elsewhere, (index, hand-off) for siblings)."""
        elsewhere, siblings = [], []
        for row in rows:
            index = self._sibling(row[0])
            if index is None:
                elsewhere.append(row)
            else:
                siblings.append((index, row))
        return elsewhere, siblings

    def push_to_siblings(self, rows: list[tuple[int, Handoff]]) -> None:
        """Send committed pushes to the siblings holding the sessions (after the commit);
        through PostgreSQL for a sibling that cannot be reached."""
        failed = []
        for index, row in rows:
            server_id, tokens, frames, count = row
            try:
                self._link(index).send({"push": list(tokens), "frames": frames, "count": count})
                self.pushes_handed += 1
            except _Unreachable:
                failed.append(row)
        if failed:
            self.relay_send(failed)

    def push_to_sibling(self, index: int, token_hashes: list[bytes], frames: bytes) -> None:
        """Pushes for sessions that moved to sibling ``index`` (session affinity) but were
        still routed here; through PostgreSQL when the sibling cannot be reached."""
        try:
            server_id = id_path(self.run_dir, index).read_text()   # for the relay, if it comes to that
        except OSError:
            log.warning("pushes for sessions moved to worker %d are lost: it is gone", index)
            return
        self.push_to_siblings([(index, (server_id, token_hashes, frames, 0))])

    def hand_over(self, owner: int, room: RoomKey, user_id: str, chat_type: str, content: bytes,
                  txn_id: str) -> dict[str, Any] | None:
        """The owner's reply to the send; None when the owner cannot be reached (commit
        here). Errors the owner answered are raised as they are."""
        try:
            reply = self._link(owner).call({"sid": room[0], "cid": room[1], "user": user_id, "type": chat_type,
                               "content": content, "txn": txn_id})
        except _Unreachable as exc:
            self.fallbacks += 1
            log.debug("worker %d unreachable (%s); committing here", owner, exc)
            return None
        self.handed += 1
        return reply

    def _serve(self, sock: socket.socket, _address: Any) -> None:
        """One sibling's link: each request is committed like a local send and answered."""
        write = gevent.lock.Semaphore()

        def answer(request: dict[str, Any]) -> None:
            try:
                reply = {"id": request["id"], "ok": True,
                         "reply": self.submit(RoomKey(request["sid"], request["cid"]), request["user"],
                                              request["type"], request["content"], request["txn"])}
            except ProtocolError as exc:
                reply = {"id": request["id"], "ok": False, "error": exc.to_wire()}
            except Exception:
                log.exception("a handed-over send failed")
                reply = {"id": request["id"], "ok": False,
                         "error": {"code": ErrorCode.INTERNAL.value, "message": "the message was not stored"}}
            with write:
                try:
                    sock.sendall(encode(reply))
                except OSError:
                    pass           # the sibling is gone; its client retries

        self._accepted.add(sock)
        try:
            for request in _frames(sock):
                if "push" in request:
                    try:
                        self.deliver(request["push"], request["frames"], request["count"])
                    except Exception:
                        log.exception("pushes handed over by a sibling could not be delivered")
                    continue
                self.taken += 1
                gevent.spawn(answer, request)
        finally:
            self._accepted.discard(sock)
            sock.close()


def _frames(sock: socket.socket) -> Iterator[dict[str, Any]]:
    """The frames read from ``sock`` until it closes or breaks (siblings send only maps)."""
    decoder = FrameDecoder()
    try:
        while True:
            data = sock.recv(256 * 1024)
            if not data:
                return
            yield from (frame for frame in decoder.feed(data) if isinstance(frame, dict))
    except (OSError, ProtocolError):
        return


class _Unreachable(Exception):
    """The owner could not be asked (no socket, refused, closed before answering)."""


class _Link:
    """One persistent link to a sibling; calls are pipelined and matched by id."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.broken = False
        self._sock: socket.socket | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, gevent.event.AsyncResult] = {}
        self._write = gevent.lock.Semaphore()
        self._reader: gevent.Greenlet | None = None

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(CONNECT_SECONDS)
        try:
            sock.connect(str(self.path))
        except OSError as exc:
            sock.close()
            self.broken = True
            raise _Unreachable(str(exc)) from None
        sock.settimeout(None)
        self._sock = sock
        self._reader = gevent.spawn(self._read, sock)
        return sock

    def send(self, message: dict[str, Any]) -> None:
        """Send ``message`` with no answer expected; _Unreachable when it cannot go."""
        if self.broken:
            raise _Unreachable("link closed")
        try:
            with self._write:
                (self._sock or self._connect()).sendall(encode(message))
        except OSError as exc:
            self._fail(str(exc))
            raise _Unreachable(str(exc)) from None

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.broken:
            raise _Unreachable("link closed")
        request_id = next(self._ids)
        result = self._waiting[request_id] = gevent.event.AsyncResult()
        try:
            self.send({**request, "id": request_id})
        except _Unreachable:
            self._waiting.pop(request_id, None)
            raise
        try:
            answer = result.get(timeout=ANSWER_SECONDS)
        except gevent.Timeout:
            raise ProtocolError(ErrorCode.UNAVAILABLE,
                                "the message may not be stored; retry with the same txn_id") from None
        finally:
            self._waiting.pop(request_id, None)
        if isinstance(answer, _Unreachable):
            # Sent, but the owner went away before answering: it may have stored the send.
            # Committing here with the same txn_id is safe (answered as a retry if it did).
            raise answer
        if answer.get("ok"):
            return answer["reply"]
        error = answer.get("error") or {}
        raise ProtocolError(ErrorCode(error.get("code", ErrorCode.INTERNAL.value)), error.get("message", ""))

    def _read(self, sock: socket.socket) -> None:
        for answer in _frames(sock):
            waiter = self._waiting.get(answer.get("id"))
            if waiter is not None:
                waiter.set(answer)
        self._fail("closed by the owner")

    def _fail(self, why: str) -> None:
        self.broken = True
        for waiter in list(self._waiting.values()):
            waiter.set(_Unreachable(why))
        self._waiting.clear()
        if self._sock is not None:
            self._sock.close()

    def close(self) -> None:
        self._fail("closing")
        if self._reader is not None:
            self._reader.kill(block=False)
