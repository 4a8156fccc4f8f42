"""Session affinity among the workers of one ``--workers N`` server: a connection moves to the
worker that owns most of the user's rooms, at login, or later when its traffic crosses workers.

Room affinity (affinity.py) makes one worker commit each room, but the kernel spreads the
connections over the workers at random, so about half of every send is handed over to the
room's worker and half of every fan-out is handed back to the worker holding the member's
session. Both cost each side a frame to encode and decode, and the machine's CPU is shared.
A user's sends and pushes mostly concern their own rooms, so the connection itself is moved
once, at login, to the worker that owns most of them: the socket's descriptor is passed over
a Unix socket (SCM_RIGHTS) together with the frames read but not yet handled, and that worker
serves the login and everything after it. The client sees nothing but its replies.

A session already logged in (a user who joined their rooms after logging in) moves when its
traffic crosses workers: a send handed to the room's worker, or pushes a sibling handed over
for it, make its worker look up its home (connection.py ``ClientSession.consider_move``, at
most every HOME_CHECK_SECONDS). It moves between two requests, with its session's state; the
new worker binds the session and records itself as its holder (``Accounts.take_session``),
and pushes still routed to the old one follow it (``PushHub.session_moved``).

What this relies on, and keeps safe:

* Only plain TCP moves (a TLS session's state cannot follow its descriptor), and only between
  two requests: the reader stops reading, and no push writes to the socket, before it is
  passed; the old worker never touches it again once it is passed. Until then, any failure
  leaves the connection where it is, served as usual. A session stays online throughout.
* A user with no rooms yet, or whose rooms' owners tie with this worker, stays. Where a whole
  community shares one room, every member's session goes to that room's worker: the one that
  has the room's work to do anyway (BENCHMARKS.md measures what it gives).
* The sockets live in the same private folder as the room affinity's (mode 0700), which is
  their authentication.
"""
from __future__ import annotations

import array
import logging
import os
import socket
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable

import gevent
import msgpack
from gevent.server import StreamServer

from messenger_protocol.messages import RoomKey

from .affinity import WorkerSlot, owner_of, unix_server

log = logging.getLogger(__name__)

PASS_SECONDS = 2.0           # connecting to the sibling and passing the descriptor
MAX_STATE_BYTES = 1 << 20    # a login frame, the frames pipelined after it, a partial frame
_FD_SIZE = array.array("i").itemsize

Adopt = Callable[[socket.socket, dict[str, Any]], None]


def handover_path(run_dir: Path, index: int) -> Path:
    return run_dir / f"conn-{index}.sock"


def home_of(rooms: Iterable[RoomKey], workers: int, me: int) -> int:
    """The worker that owns most of ``rooms`` (``me`` when it is among the most, or no rooms)."""
    owners = Counter(owner_of(room, workers) for room in rooms)
    if not owners:
        return me
    best = max(owners.values())
    return me if owners.get(me) == best else min(i for i, n in owners.items() if n == best)


class SessionHandover:
    """Pass connections to their home worker, and adopt the ones siblings pass here."""

    def __init__(self, slot: WorkerSlot, rooms_of: Callable[[str], list[RoomKey]], adopt: Adopt) -> None:
        """``rooms_of`` lists a user's rooms; ``adopt`` serves a connection passed here, with
        the state the sibling sent (``address``, ``greeted``, ``connected_at``, ``frames``
        still to handle, ``buffer``: bytes of a frame not yet complete)."""
        self.run_dir = slot.run_dir
        self.index = slot.index
        self.workers = slot.count
        self.rooms_of = rooms_of
        self.adopt = adopt
        self.passed = 0        # connections moved to a sibling at login
        self.adopted = 0       # connections siblings moved here
        self.kept = 0          # connections that should have moved but could not (served here)
        self.sessions_passed = 0    # logged-in sessions moved to a sibling later
        self.sessions_adopted = 0   # logged-in sessions siblings moved here
        self._server: StreamServer | None = None

    def start(self) -> None:
        self._server = unix_server(handover_path(self.run_dir, self.index), self._serve)

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        handover_path(self.run_dir, self.index).unlink(missing_ok=True)

    def home(self, user_id: str) -> int:
        """The worker that should serve ``user_id``'s session."""
        return home_of(self.rooms_of(user_id), self.workers, self.index)

    def pass_over(self, index: int, sock: socket.socket, state: dict[str, Any]) -> bool:
        """Hand ``sock`` and ``state`` to worker ``index``. True once the descriptor is on its
        way: from then on the connection is the sibling's and the caller only closes its copy.
        False when nothing was passed (the caller goes on serving it)."""
        payload = msgpack.packb(state, use_bin_type=True)
        if len(payload) > MAX_STATE_BYTES:
            self.kept += 1
            return False
        passed = False
        link = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with gevent.Timeout(PASS_SECONDS, False):
                try:
                    link.connect(str(handover_path(self.run_dir, index)))
                    sent = link.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                     array.array("i", [sock.fileno()]))])
                    # The descriptor went with the first bytes: the connection is the sibling's.
                    passed = True
                    link.sendall(payload[sent:])
                    link.shutdown(socket.SHUT_WR)   # the state ends here
                    link.recv(1)            # the sibling has it
                except OSError as exc:
                    log.log(logging.WARNING if passed else logging.DEBUG,
                            "passing a connection to worker %d failed: %s", index, exc)
        finally:
            link.close()
        if passed and "session" in state:
            self.sessions_passed += 1
        elif passed:
            self.passed += 1
        else:
            self.kept += 1
        return passed

    def _serve(self, link: socket.socket, _address: Any) -> None:
        """A sibling passes one connection: its descriptor, then the state."""
        fds: list[int] = []
        try:
            with gevent.Timeout(PASS_SECONDS):
                data, ancillary, _flags, _addr = link.recvmsg(64 * 1024, socket.CMSG_SPACE(_FD_SIZE))
                for level, kind, raw in ancillary:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        got = array.array("i")
                        got.frombytes(raw[:len(raw) - len(raw) % got.itemsize])
                        fds.extend(got)
                buf = bytearray(data)
                while data:                 # the sibling ends the state by shutting down its side
                    if len(buf) > MAX_STATE_BYTES:
                        raise ValueError("state too large")
                    data = link.recv(64 * 1024)
                    buf += data
                state = msgpack.unpackb(bytes(buf), raw=False)
                if len(fds) != 1:
                    raise ValueError(f"{len(fds)} descriptors passed instead of one")
                sock = socket.socket(fileno=fds.pop())
            try:
                link.sendall(b"k")          # the sibling lets go of it either way
            except OSError:
                pass
        except (gevent.Timeout, Exception) as exc:   # a broken pass: anything msgpack or the OS raises
            log.warning("a connection passed by a sibling could not be taken: %s", exc)
            for fd in fds:
                os.close(fd)         # the client sees its connection close and logs in again
            return
        finally:
            link.close()
        if "session" in state:
            self.sessions_adopted += 1
        else:
            self.adopted += 1
        self.adopt(sock, state)
