"""The Server: builds the database, pool, actions and listener from a Config, and stops them
in the right order. No module globals, so tests can run several servers side by side."""
from __future__ import annotations

import collections
import logging
import os
import signal
import socket
import ssl
import sys
import time
import uuid
from typing import Any

import gevent
import gevent.event
from gevent.server import StreamServer

from messenger_protocol.messages import RoomKey

from . import __version__
from .actions.accounts import Accounts
from .actions.history import History
from .actions.messages import Messages
from .actions.rooms import Rooms
from .affinity import Affinity, WorkerSlot
from .config import Config
from .connection import HOME_CHECK_SECONDS, ClientSession
from .dispatch import Dispatcher
from .handover import SessionHandover
from .limits import Limits
from .push import PushHub
from .recovery import repair_archive
from .relay import PushRelay
from .storage import migrate, users
from .storage import rooms as room_db
from .storage.push import Target
from .storage.archive import Archive
from .storage.embedded import EmbeddedPostgres
from .storage.pool import Pool

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10.0
STALE_SERVER_SECONDS = 35.0   # three missed heartbeats and a margin


class Server:
    """One server process: ``start()``, then ``serve_forever()`` until ``stop()``."""

    version = __version__

    def __init__(self, config: Config, worker: WorkerSlot | None = None) -> None:
        """``worker``: which one this is, when it is one of the processes of ``--workers``."""
        self.config = config
        self.worker = worker
        self.affinity: Affinity | None = None
        self.handover: SessionHandover | None = None
        self.server_id = f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.embedded: EmbeddedPostgres | None = None
        self.pool: Pool | None = None
        self.listener: StreamServer | None = None
        self.sessions: set[ClientSession] = set()
        self.by_token: dict[bytes, ClientSession] = {}
        self.per_address: collections.Counter[str] = collections.Counter()
        self._stopped = gevent.event.Event()
        self._heartbeat: gevent.Greenlet | None = None

    # -- start ---------------------------------------------------------------------------
    def start(self, listen_socket: socket.socket | None = None, announce: bool = True) -> None:
        """Set everything up and start accepting. A worker process gets the listening
        ``listen_socket`` from its parent (which announces the address itself)."""
        config = self.config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        config.archive_root.mkdir(parents=True, exist_ok=True)
        dsn = config.database_url
        if not dsn:
            self.embedded = EmbeddedPostgres(config.data_dir / "pg")
            dsn = self.embedded.start()
        applied = migrate.migrate(dsn)
        if applied:
            log.info("database schema migrated: %s", applied)
        self.pool = Pool(dsn, size=config.pool_size, on_connect=room_db.prepare_statements)
        with self.pool.transaction("server.register") as cur:
            users.register_server(cur, self.server_id, STALE_SERVER_SECONDS)
        self.archive = Archive(config.archive_root)
        repaired = repair_archive(self.pool, self.archive)
        if repaired:
            log.warning("repaired %d room archives after an unclean stop", repaired)
        self.limits = Limits(config)
        self.accounts = Accounts(config, self.pool, self.server_id, self.limits)
        self.relay = PushRelay(dsn, self.pool, self.server_id, lambda *handed: self.push.relayed(*handed))
        self.push = PushHub(self.pool, self.by_token.get, self.accounts.close_session, self.server_id, self.relay,
                            pacing=config.push_pacing)
        self.rooms = Rooms(config, self.pool, self.archive, self.push.room_event)
        self.messages = Messages(config, self.pool, self.archive, self.limits, self.push.messages_committed,
                                 handoffs=self.push.handoffs)
        self.history = History(self.pool, self.archive)
        if config.room_affinity and self.worker is not None and self.worker.count > 1:
            self.affinity = Affinity(self.worker, self.server_id, self.messages.submit,
                                     self._pushes_from_sibling, self.relay.send)
            self.affinity.start()
            self.messages.affinity = self.affinity
            if config.session_affinity and not config.tls_cert:   # a TLS session cannot move
                self.handover = SessionHandover(self.worker, self._rooms_of, self._adopt_connection)
                self.handover.start()
                self.push.forward = self.affinity.push_to_sibling
        self.messages.start()
        self.relay.start()
        self.dispatcher = Dispatcher(self._handlers())
        tls = {}
        if config.tls_cert:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(config.tls_cert, config.tls_key)
            tls = {"ssl_context": context}
        self.listener = StreamServer(listen_socket or (config.host, config.port), self._handle_connection, **tls)
        self.listener.start()
        self._heartbeat = gevent.spawn(self._heartbeat_loop)
        host, port = self.listener.address[:2]
        if announce:
            print(f"listening on {host}:{port}", flush=True)
        log.info("server %s ready", self.server_id)

    @property
    def address(self) -> tuple[str, int]:
        assert self.listener is not None
        return self.listener.address[:2]

    def _handlers(self) -> dict[str, Any]:
        a = self.accounts
        return {
            "ping": lambda caller: {},
            "register": a.do_register,
            "login": a.do_login,
            "logout": a.do_logout,
            "get_profile": a.do_get_profile,
            "set_profile": a.do_set_profile,
            "create_room": self.rooms.do_create_room,
            "rename_room": self.rooms.do_rename_room,
            "set_room_image": self.rooms.do_set_room_image,
            "invite": self.rooms.do_invite,
            "leave": self.rooms.do_leave,
            "list_rooms": self.rooms.do_list_rooms,
            "room_members": self.rooms.do_room_members,
            "mark_read": self.rooms.do_mark_read,
            "send": self.messages.do_send,
            "init": self.history.do_init,
            "history": self.history.do_history,
            "fetch": self.history.do_fetch,
        }

    # -- connections ---------------------------------------------------------------------
    def _handle_connection(self, sock: socket.socket, address: Any) -> None:
        self._serve_session(ClientSession(self, sock, address))

    def _adopt_connection(self, sock: socket.socket, state: dict[str, Any]) -> None:
        """Serve a connection a sibling worker passed here (handover.py): at its login, or
        later with its session (``state["session"]``), which this worker then holds."""
        session = ClientSession(self, sock, tuple(state["address"]))
        session.greeted, session.connected_at = bool(state["greeted"]), float(state["connected_at"])
        session.adopted = True
        moved = state.get("session")
        if moved is not None:
            # Bound before the row says so: a push handed here for it from then on finds it.
            session.bind(Target(**{**moved, "server_id": self.server_id}))
            session.next_home_check = time.monotonic() + HOME_CHECK_SECONDS   # no ping-pong
            try:
                taken = self.accounts.take_session(moved["token_hash"])
            except Exception as exc:
                log.warning("could not take over %s's session: %s", moved["user_id"], exc)
                taken = False
            if not taken:     # it went offline meanwhile: the client logs in again
                session.unbind()
                sock.close()
                return
        self._serve_session(session, state["frames"], state["buffer"])

    def _pushes_from_sibling(self, token_hashes: list[bytes], frames: bytes, count: int) -> None:
        """Pushes a sibling handed over for sessions held here; each such session may have
        a better home (session affinity)."""
        self.push.relayed(token_hashes, frames, count)
        if self.handover is not None:
            for token_hash in token_hashes:
                session = self.by_token.get(token_hash)
                if session is not None:
                    session.consider_move()

    def _rooms_of(self, user_id: str) -> list[RoomKey]:
        assert self.pool is not None
        with self.pool.transaction("login.home") as cur:
            return room_db.room_keys_of_user(cur, user_id)

    def _serve_session(self, session: ClientSession, frames: list[Any] | None = None, buffer: bytes = b"") -> None:
        refusal = self._over_connection_limits(session.peer_ip)
        if refusal:
            session.refuse(refusal)
            return
        self.sessions.add(session)
        self.per_address[session.peer_ip] += 1
        try:
            session.run(frames, buffer)
        finally:
            self.per_address[session.peer_ip] -= 1
            if not self.per_address[session.peer_ip]:
                del self.per_address[session.peer_ip]

    def _over_connection_limits(self, ip: str) -> str | None:
        if len(self.sessions) >= self.config.max_connections:
            return "the server is full; try again later"
        if self.per_address[ip] >= self.config.max_connections_per_address:
            return f"too many connections from {ip}; close some and retry"
        return None

    def session_bound(self, session: ClientSession) -> None:
        """A connection logged in: pushes for its session may use it (NAT fallback)."""
        assert session.token_hash is not None
        self.by_token[session.token_hash] = session
        self.push.session_here(session.token_hash)

    def session_unbound(self, session: ClientSession) -> None:
        """A connection logged out or closed: forget it and its push link."""
        assert session.token_hash is not None
        if self.by_token.get(session.token_hash) is session:
            del self.by_token[session.token_hash]
        self.push.session_closed(session.token_hash)

    def session_moved(self, session: ClientSession, index: int) -> None:
        """A logged-in connection went to worker ``index`` with its session, which stays
        online: forget it here; pushes still routed here follow it (PushHub.session_moved)."""
        assert session.token_hash is not None and session.push_target is not None
        if self.by_token.get(session.token_hash) is session:
            del self.by_token[session.token_hash]
        self.push.session_moved(session.push_target, index)

    def session_closed(self, session: ClientSession) -> None:
        """Called once by every connection as it ends."""
        self.sessions.discard(session)
        if session.token_hash is not None and self.pool is not None:
            token_hash, user_id = session.token_hash, session.user_id
            session.unbind()
            try:
                self.accounts.close_session(token_hash)
            except Exception as exc:  # the database may be down; the heartbeat cleans up later
                log.warning("could not mark %s offline: %s", user_id, exc)

    def _heartbeat_loop(self) -> None:
        while True:
            gevent.sleep(HEARTBEAT_SECONDS)
            try:
                assert self.pool is not None
                with self.pool.transaction("server.heartbeat") as cur:
                    # also closes the sessions of processes that stopped heartbeating
                    users.register_server(cur, self.server_id, STALE_SERVER_SECONDS)
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)
                continue
            try:
                # Its own transaction: a failure here must not make this process look dead.
                with self.pool.transaction("server.prune") as cur:
                    txns, sessions = users.prune(cur, self.config.txn_retention_days,
                                                 self.config.session_retention_days)
                if txns or sessions:
                    log.info("pruned %d send txn ids older than %g days and %d sessions closed more than "
                             "%g days ago", txns, self.config.txn_retention_days, sessions,
                             self.config.session_retention_days)
            except Exception as exc:
                log.warning("pruning old send txn ids and sessions failed: %s", exc)

    # -- stop ----------------------------------------------------------------------------
    def serve_forever(self) -> None:
        """Block until ``request_stop`` is called (e.g. by SIGINT/SIGTERM), then stop."""
        self._stopped.wait()
        self.stop()

    def request_stop(self) -> None:
        self._stopped.set()

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            gevent.signal_handler(signum, self.request_stop)

    def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let requests in flight finish, close the pool, stop PostgreSQL."""
        log.info("stopping")
        if self.listener is not None:
            self.listener.close()
        for session in list(self.sessions):
            session.shutdown_reading()
        deadline = gevent.Timeout(grace)
        try:
            with deadline:
                while self.sessions:
                    gevent.sleep(0.05)
        except gevent.Timeout:
            log.warning("%d connections still busy after %.0f s; closing them", len(self.sessions), grace)
        if self.listener is not None:
            self.listener.stop(timeout=1)
        if self._heartbeat is not None:
            self._heartbeat.kill()
        if getattr(self, "messages", None) is not None:
            self.messages.stop()
            self.push.stop()
            if self.handover is not None:
                self.handover.stop()
                log.info("session affinity: %d connections moved to their home worker at login, %d taken from "
                         "siblings, %d kept here because the move failed; %d logged-in sessions moved later, "
                         "%d taken from siblings", self.handover.passed, self.handover.adopted, self.handover.kept,
                         self.handover.sessions_passed, self.handover.sessions_adopted)
            if self.affinity is not None:
                self.affinity.stop()
                log.info("room affinity: %d sends handed to their room's worker, %d taken from siblings, "
                         "%d committed here because the owner was unreachable; %d push hand-offs to siblings",
                         self.affinity.handed, self.affinity.taken, self.affinity.fallbacks,
                         self.affinity.pushes_handed)
            log.info("committed %d sends in %d batches; pushed %d deliveries; %d message batches joined an "
                     "earlier fan-out; archive fsyncs: %d in the server's thread, %d in threads",
                     self.messages.batched, self.messages.batches, self.push.delivered, self.push.merged,
                     self.messages.syncs.inline, self.messages.syncs.threaded)
            self.relay.stop()
            self.accounts.passwords.close()
        if self.pool is not None:
            try:
                with self.pool.transaction("server.unregister") as cur:
                    users.unregister_server(cur, self.server_id)
            except Exception as exc:
                log.warning("could not unregister: %s", exc)
            self.pool.close()
        if self.embedded is not None:
            self.embedded.stop()
        log.info("stopped")


def configure_logging(level: str) -> None:
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, level.upper(), logging.WARNING),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
