"""The push hub: delivers committed events straight to online members' peer listeners.

One persistent connection per online peer session (``PeerLink``), opened on the first push and
reused for all later ones; each link has its own bounded queue and greenlet, so a slow or dead
peer only ever delays itself. Every push is encoded once and the same bytes are queued for
every recipient. Pushes go out in the order the events committed, so one peer sees a room's
messages in seq order.

A process pushes only to the sessions it holds. Those held by other server processes get
their pushes from their own process, handed over through PostgreSQL (relay.py): a message
batch's hand-offs are written in its own transaction, so every peer has a single push link
however many processes there are, and one room's messages reach it in commit order.

When a listener cannot be reached but the peer's own session connection is open, the push
goes over that connection instead (the NAT fallback). When neither works, or a peer's queue
overflows, the link is dropped, the session is marked offline and its connection is closed;
the peer catches up with ``init`` when it logs in again.
"""
from __future__ import annotations

import collections
import hashlib
import hmac
import logging
import ssl
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable

import gevent
import gevent.event
import gevent.queue
from gevent import socket

from messenger_protocol import FrameDecoder, ProtocolError, encode
from messenger_protocol.messages import RoomKey
from messenger_protocol.push import answer, push_frame

from .storage import push as push_db
from .storage.push import Target
from .storage.pool import Pool

if TYPE_CHECKING:
    from .actions.messages import StoredMessage
    from .audience import RoomAudience
    from .relay import Handoff, PushRelay
    from .connection import ClientSession

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 3.0
HANDSHAKE_TIMEOUT = 5.0
MAX_QUEUED_FRAMES = 10_000
MAX_QUEUED_BYTES = 64 * 1024 * 1024
MAX_DROPPED_REMEMBERED = 100_000
# Pacing of big fan-outs (see PushHub._paced): after a fan-out that took at least
# PACE_MIN_COST seconds, the next one waits until ``pacing`` (--push-pacing) times that has
# passed, at most PACE_MAX_WAIT, and takes every batch committed meanwhile in one go.
PACE_MIN_COST = 0.001
PACE_MAX_WAIT = 0.025
# A session moved to a sibling worker (session affinity): its link here stays this long for
# pushes already routed here (it pushes straight to the listener), then closes.
MOVED_LINK_SECONDS = 30.0


class PeerLink:
    """The queue and connection for one peer session."""

    def __init__(self, hub: "PushHub", target: Target) -> None:
        self.hub = hub
        self.target = target
        self.queue: collections.deque[bytes] = collections.deque()
        self.queued_bytes = 0
        self.wake = gevent.event.Event()
        self.sock: socket.socket | None = None
        self.via_session = False
        self.closed = False
        self.writing = False     # the greenlet is in the middle of a write: no direct sends
        # The socket's send while connected to the listener over plain TCP, else None.
        self.direct: Callable[..., int] | None = None
        self.greenlet = gevent.spawn(self._run)

    def push(self, data: bytes) -> None:
        """Queue one or more encoded frames. When the link is idle and its socket takes
        them at once they go out right here, without waking the link's greenlet: most
        pushes on a healthy link cost one send() and no switch."""
        if self.closed:
            return
        if self.direct is not None and not self.queue and not self.writing:
            try:
                sent = self.direct(data, 0, 0.0)     # gevent's send with timeout 0: never waits
            except BlockingIOError:
                sent = 0
            except OSError:
                sent = 0          # the greenlet meets the error again and falls back
            if sent == len(data):
                return
            data = data[sent:]
        if len(self.queue) >= MAX_QUEUED_FRAMES or self.queued_bytes + len(data) > MAX_QUEUED_BYTES:
            self.hub.drop(self, "its push queue overflowed (the peer is not reading)", logging.WARNING)
            return
        self.queue.append(data)
        self.queued_bytes += len(data)
        self.wake.set()

    def _connect(self) -> bool:
        """Open and authenticate the listener connection; False when it cannot be reached."""
        t = self.target
        if not t.listen_port or not t.listen_ip:
            return False
        try:
            sock = socket.create_connection((t.listen_ip, t.listen_port), timeout=CONNECT_TIMEOUT)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(HANDSHAKE_TIMEOUT)
            if t.tls_fingerprint is not None:
                sock = _pinned_tls(sock, t.tls_fingerprint)
            decoder = FrameDecoder(64 * 1024)
            challenge = _read_frame(sock, decoder)
            nonce = challenge.get("nonce") if challenge else None
            if not isinstance(nonce, bytes):
                raise ConnectionError("no challenge from the listener")
            sock.sendall(encode(answer(t.push_secret, nonce)))
            ok = _read_frame(sock, decoder)
            if not ok or ok.get("ok") is not True:
                raise ConnectionError("the listener refused our answer")
            sock.settimeout(None)
        except (OSError, ProtocolError, ConnectionError, ssl.SSLError) as exc:
            log.info("listener of %s at %s:%s unreachable: %s", t.user_id, t.listen_ip, t.listen_port, exc)
            return False
        self.sock = sock
        if t.tls_fingerprint is None:
            self.direct = sock.send
        return True

    def _run(self) -> None:
        try:
            if not self._connect() and not self._fall_back():
                self._give_up("its listener cannot be reached")
                return
            while not self.closed:
                self.wake.wait()
                self.wake.clear()
                while self.queue and not self.closed:
                    frames = list(self.queue)
                    self.queue.clear()
                    self.queued_bytes = 0
                    self.writing = True
                    try:
                        self._write(b"".join(frames))
                    finally:
                        self.writing = False
        except gevent.GreenletExit:
            pass

    def _fall_back(self) -> bool:
        """Switch to the session connection; False when it is gone."""
        if self.hub.session_of(self.target.token_hash) is None:
            return False
        self.via_session = True
        log.info("pushing to %s over its session connection (listener unreachable)", self.target.user_id)
        return True

    def _write(self, data: bytes) -> None:
        if not self.via_session:
            assert self.sock is not None
            try:
                self.sock.sendall(data)
                return
            except OSError as exc:
                log.info("push to %s's listener failed: %s", self.target.user_id, exc)
                self._close_socket()
                if not self._fall_back():
                    self._give_up("its listener went away", data)
                    return
        session = self.hub.session_of(self.target.token_hash)
        if session is None:
            self._give_up("its session ended", data)
            return
        try:
            session.send_bytes(data)
        except OSError:
            self._give_up("its session connection failed", data)

    def _give_up(self, why: str, data: bytes = b"") -> None:
        """Nothing more can go through this link. If its session moved to a sibling worker,
        what is left goes there (the peer's own connection is now that worker's); otherwise
        the peer is dropped."""
        unsent = data + b"".join(self.queue)
        if self.hub.forward_moved(self.target.token_hash, unsent):
            self.hub.retire(self)
        else:
            self.hub.drop(self, why)

    def _close_socket(self) -> None:
        self.direct = None
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def close(self) -> None:
        self.closed = True
        self.queue.clear()
        self._close_socket()
        if self.greenlet is not gevent.getcurrent():
            self.greenlet.kill(block=False)


def _pinned_tls(sock: socket.socket, fingerprint: bytes) -> socket.socket:
    """TLS to a listener whose certificate the peer pinned at login (over its own session):
    no CA is involved, the SHA-256 of the certificate must match."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE   # verified below, by the pinned fingerprint
    tls = context.wrap_socket(sock)
    der = tls.getpeercert(binary_form=True) or b""
    if not hmac.compare_digest(hashlib.sha256(der).digest(), fingerprint):
        tls.close()
        raise ConnectionError("the listener's TLS certificate does not match the one pinned at login")
    return tls


def _read_frame(sock: socket.socket, decoder: FrameDecoder) -> dict[str, Any] | None:
    while True:
        data = sock.recv(65536)
        if not data:
            return None
        for frame in decoder.feed(data):
            return frame if isinstance(frame, dict) else None


class PushHub:
    """Fan-out of committed events, in commit order, through one worker greenlet."""

    def __init__(self, pool: Pool, sessions: Callable[[bytes], "ClientSession | None"],
                 mark_offline: Callable[[bytes], None], server_id: str = "",
                 relay: "PushRelay | None" = None, pacing: float = 2.0) -> None:
        self.pool = pool
        self.pacing = pacing
        self.server_id = server_id
        self.relay = relay
        self.session_of = sessions
        self.mark_offline = mark_offline
        self.links: dict[bytes, PeerLink] = {}
        # Sessions given up on. The audience cache may list one until the database's
        # offline mark reaches it; pushing to it again would only fail again.
        self.dropped: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        # Sessions that moved to a sibling worker with their connection: token hash -> (its
        # target, the worker's index). Pushes still routed here (an audience read before the
        # move) go straight to the listener, or to that worker when they need the connection.
        self.moved: collections.OrderedDict[bytes, tuple[Target, int]] = collections.OrderedDict()
        self.forward: Callable[[int, list[bytes], bytes], None] | None = None
        self._work: gevent.queue.Queue = gevent.queue.Queue()
        self._worker = gevent.spawn(self._work_loop)
        self.delivered = 0
        self.merged = 0           # message batches fanned out together with an earlier one
        self._next_fan_out = 0.0  # perf_counter time before which a fan-out is paced

    # -- inputs (called after commit) ----------------------------------------------------
    def messages_committed(self, messages: list["StoredMessage"], audience: dict[RoomKey, "RoomAudience"]) -> None:
        """Messages just committed, and each room's audience at commit time."""
        self._work.put(("messages", (messages, audience)))

    def room_event(self, event: str, room: RoomKey, data: dict[str, Any], audience: list[str]) -> None:
        """A committed room change and the users who should hear of it."""
        self._work.put(("event", (event, room, data, audience)))

    def relayed(self, token_hashes: list[bytes], frames: bytes, count: int) -> None:
        """Frames another process handed over for sessions held here (relay.py)."""
        self._work.put(("relayed", (token_hashes, frames, count)))

    def handoffs(self, messages: list["StoredMessage"], audience: dict[RoomKey, "RoomAudience"]) -> list["Handoff"]:
        """What other processes must push of these messages (before they commit): for each
        room and each process holding sessions of its audience, the frames and the sessions."""
        if self.relay is None:
            return []
        foreign = {room: [(server, targets) for server, targets in room_audience.by_server.items()
                          if not self._held_here(server)] for room, room_audience in audience.items()}
        if not any(foreign.values()):
            return []
        return [(server, [t.token_hash for t in targets], frames, count)
                for room, frames, count in _room_frames(messages) for server, targets in foreign[room]]

    def _held_here(self, server_id: str) -> bool:
        return self.relay is None or not server_id or server_id == self.server_id

    def session_closed(self, token_hash: bytes) -> None:
        """A session held here logged out or disconnected: no more pushes to it, even from
        an audience read before its offline mark committed (tokens are never reused)."""
        self._remember_dropped(token_hash)
        link = self.links.pop(token_hash, None)
        if link is not None:
            link.close()

    def session_moved(self, target: Target, index: int) -> None:
        """A session held here moved to sibling worker ``index`` and stays online there."""
        _remember(self.moved, target.token_hash, (target, index))
        gevent.spawn_later(MOVED_LINK_SECONDS, self._retire_moved_link, target.token_hash)

    def session_here(self, token_hash: bytes) -> None:
        """A session is (again) held here: its pushes no longer follow it elsewhere."""
        self.moved.pop(token_hash, None)

    def forward_moved(self, token_hash: bytes, data: bytes) -> bool:
        """Send ``data`` for a session that moved to its new worker; False if it did not move."""
        moved = self.moved.get(token_hash)
        if moved is None or self.forward is None:
            return False
        if data:
            try:
                self.forward(moved[1], [token_hash], data)
            except Exception:
                log.exception("pushes for a moved session could not be forwarded")
        return True

    def retire(self, link: PeerLink) -> None:
        """Close a link without dropping its peer (its session lives on elsewhere)."""
        if self.links.get(link.target.token_hash) is link:
            del self.links[link.target.token_hash]
        link.close()

    def _retire_moved_link(self, token_hash: bytes) -> None:
        link = self.links.get(token_hash)
        if link is None or token_hash not in self.moved:
            return
        if link.queue or link.writing:
            gevent.spawn_later(MOVED_LINK_SECONDS, self._retire_moved_link, token_hash)
        else:
            self.retire(link)

    def _remember_dropped(self, token_hash: bytes) -> None:
        _remember(self.dropped, token_hash, None)

    # -- worker --------------------------------------------------------------------------
    def _work_loop(self) -> None:
        while True:
            kind, payload = self._work.get()
            try:
                if kind == "event":
                    self._fan_out_event(*payload)
                else:
                    self._paced((kind, payload))
            except ProtocolError as exc:   # the database is down: pushes are lost, init catches up
                log.warning("push fan-out skipped: %s", exc.message)
            except Exception:
                log.exception("push fan-out failed")

    def _paced(self, first: tuple[str, Any]) -> None:
        """Fan out a message batch (or frames handed over by another process), or, right
        after a big fan-out, wait a little and fan out everything queued meanwhile together.

        A fan-out runs in this process's one thread and holds up everything else, the
        commits of the next batches included; in a big busy room it would take most of the
        process's time, a few frames per write. Waiting ``pacing`` (2) times its cost keeps
        fan-out to about a third of the time and joins the next batches' frames into the
        same writes, so each peer gets fewer, bigger writes (less CPU here and in the peer)
        and the senders' acknowledgements come sooner. A room that is not busy never waits:
        the wait applies only within a moment of a fan-out that took over PACE_MIN_COST."""
        items = [first]
        wait = min(self._next_fan_out - time.perf_counter(), PACE_MAX_WAIT)
        if wait > 0:
            gevent.sleep(wait)
            self._merge_queued(items)
        started = time.perf_counter()
        if all(kind == "messages" for kind, _ in items):
            messages: list["StoredMessage"] = []
            audience: dict[RoomKey, "RoomAudience"] = {}
            for _, (more, more_audience) in items:
                messages.extend(more)
                audience.update(more_audience)
            self._fan_out_messages(messages, audience)
        else:
            self._fan_out_mixed(items)
        cost = time.perf_counter() - started
        paced = self.pacing > 0 and cost >= PACE_MIN_COST
        self._next_fan_out = started + cost * (1 + self.pacing) if paced else 0.0

    def _merge_queued(self, items: list[tuple[str, Any]]) -> None:
        """Add the message batches and handed-over frames queued right behind (queue order
        kept; a room event, or a room whose audience changed in between, ends the run)."""
        audience: dict[RoomKey, "RoomAudience"] = {}
        for kind, payload in items:
            if kind == "messages":
                audience.update(payload[1])
        while True:
            try:
                kind, payload = self._work.peek_nowait()
            except gevent.queue.Empty:
                break
            if kind == "event":
                break
            if kind == "messages":
                more_audience = payload[1]
                if any(room in audience and audience[room] is not a for room, a in more_audience.items()):
                    break
                audience.update(more_audience)
            self._work.get_nowait()
            items.append((kind, payload))
            self.merged += 1

    def _fan_out_mixed(self, items: list[tuple[str, Any]]) -> None:
        """Local batches and handed-over frames together: each session gets its share of
        all of them, in queue order, in one write."""
        parts: dict[bytes, list[bytes]] = {}
        counts: dict[bytes, int] = {}
        targets: dict[bytes, Target] = {}

        def add(to: Iterable[Target], data: bytes, count: int) -> None:
            for target in to:
                token = target.token_hash
                if token in parts:
                    parts[token].append(data)
                    counts[token] += count
                else:
                    parts[token], counts[token], targets[token] = [data], count, target
        for kind, payload in items:
            if kind == "messages":
                messages, audience = payload
                for room, frames, count in _room_frames(messages):
                    add(self._local_targets(audience[room]), frames, count)
            else:
                token_hashes, frames, count = payload
                add(self._relayed_targets(token_hashes), frames, count)
        for token, data in parts.items():
            self._deliver((targets[token],), b"".join(data), counts[token])

    # Who hears of a room event is fixed at commit time (the audience); which of their
    # sessions are online is looked up now, so a session that logged in after the commit
    # (and whose init may have missed the event) still gets it. Messages need no lookup: the
    # batch read their rooms' audiences, sessions included, under the rooms' locks.
    def _sessions(self, user_ids: Iterable[str]) -> dict[str, list[Target]]:
        with self.pool.transaction("push.targets") as cur:
            targets = push_db.user_targets(cur, set(user_ids))
        by_user: dict[str, list[Target]] = {}
        for target in targets:
            by_user.setdefault(target.user_id, []).append(target)
        return by_user

    def _fan_out_messages(self, messages: list["StoredMessage"], audience: dict[RoomKey, "RoomAudience"]) -> None:
        # Each message is encoded once, and a room's frames of the batch are joined once:
        # every session of the room gets the same bytes in one write. Sessions held by
        # other processes were handed to them in the batch's transaction (handoffs).
        for room, frames, count in _room_frames(messages):
            self._deliver(self._local_targets(audience[room]), frames, count)

    def _local_targets(self, audience: "RoomAudience") -> Iterable[Target]:
        if self.relay is None:
            return audience.targets
        groups = audience.by_server
        return groups.get(self.server_id, ()) + groups.get("", ())

    def _relayed_targets(self, token_hashes: list[bytes]) -> list[Target]:
        targets = []
        for token_hash in token_hashes:
            session = self.session_of(token_hash)
            if session is not None and session.push_target is not None:
                targets.append(session.push_target)
            elif token_hash in self.moved:     # routed here before it moved on
                targets.append(self.moved[token_hash][0])
        return targets                         # the others have ended

    def _fan_out_event(self, event: str, room: RoomKey, data: dict[str, Any], audience: list[str]) -> None:
        sessions = self._sessions(audience)
        frame = encode(push_frame(event, {**room.to_wire(), **data}))
        elsewhere: dict[str, list[bytes]] = {}
        for user_id in audience:
            for target in sessions.get(user_id, ()):
                if self._held_here(target.server_id):
                    self._deliver((target,), frame)
                else:
                    elsewhere.setdefault(target.server_id, []).append(target.token_hash)
        if elsewhere:
            assert self.relay is not None
            self.relay.send([(server, tokens, frame, 1) for server, tokens in elsewhere.items()])

    def _deliver(self, targets: Iterable[Target], data: bytes, frames: int = 1) -> None:
        links, dropped = self.links, self.dropped
        for target in targets:
            link = links.get(target.token_hash)
            if link is None:
                if target.token_hash in dropped:
                    continue
                if self.forward_moved(target.token_hash, data):
                    self.delivered += frames
                    continue
                link = links[target.token_hash] = PeerLink(self, target)
            link.push(data)
            self.delivered += frames

    def drop(self, link: PeerLink, why: str, level: int = logging.INFO) -> None:
        """Give up on a peer: forget the link, mark the session offline, close its connection.
        Peers that vanish are ordinary (INFO); one that stops reading is worth a WARNING."""
        if self.links.get(link.target.token_hash) is link:
            del self.links[link.target.token_hash]
        self._remember_dropped(link.target.token_hash)
        link.close()
        log.log(level, "dropping peer %s: %s; it catches up at its next login", link.target.user_id, why)
        session = self.session_of(link.target.token_hash)
        if session is not None:
            session.shutdown_reading()      # the client sees the close and reconnects
        gevent.spawn(self._mark_offline, link.target.token_hash)

    def _mark_offline(self, token_hash: bytes) -> None:
        try:
            self.mark_offline(token_hash)
        except Exception as exc:
            log.warning("could not mark a dropped peer offline: %s", exc)

    def stop(self) -> None:
        self._worker.kill()
        for link in list(self.links.values()):
            link.close()
        self.links.clear()


def _remember(ordered: collections.OrderedDict, key: bytes, value: Any) -> None:
    """Add to a bounded memory of sessions: the oldest beyond MAX_DROPPED_REMEMBERED go."""
    ordered[key] = value
    while len(ordered) > MAX_DROPPED_REMEMBERED:
        ordered.popitem(last=False)


def _room_frames(messages: list["StoredMessage"]) -> list[tuple[RoomKey, bytes, int]]:
    """Each room's push frames of these messages joined once, in order: (room, bytes, count)."""
    rooms: dict[RoomKey, list[bytes]] = {}
    for message in messages:
        rooms.setdefault(message.room, []).append(message.push_bytes)
    return [(room, b"".join(frames), len(frames)) for room, frames in rooms.items()]
