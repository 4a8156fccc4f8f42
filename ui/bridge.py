"""The bridge between QML and the peer: the one place where Qt's loop meets gevent's.

The ``Peer`` lives on a ``HubThread`` (its own gevent hub in a native thread). QML calls the
slots below on the Qt thread; each slot submits a job (``ui.jobs``) to the hub and returns at
once. Results and peer events come back as Qt signals, which Qt queues to the Qt thread
because they are emitted from the hub thread; only there are the models changed. So the Qt
thread never waits on the network or the disk, and the hub never touches a Qt model.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Callable

import gevent
from PyQt5.QtCore import QObject, QSettings, QTimer, QUrl, pyqtProperty, pyqtSignal, pyqtSlot

from messenger_peer import Peer
from messenger_protocol import ProtocolError
from messenger_protocol.messages import RoomKey

from . import jobs
from .emoticons import EMOTICONS, emoticon_url
from .hub import HubThread
from .images import ImageStore
from .models import MembersModel, MessagesModel, RoomsModel
from .models.messages import prepare

log = logging.getLogger(__name__)

FEED_CHUNK = 300          # rows inserted per Qt event-loop turn while a big room loads
MARK_READ_DELAY_MS = 300  # coalesces read receipts while messages stream in
SETTINGS_LAST_USER = "login/last_user_id"


def local_path(url_or_path: str) -> str:
    """A QML file URL (``file:///…``) or a plain path, as a local path."""
    url = QUrl(url_or_path)
    return url.toLocalFile() if url.isLocalFile() else url_or_path


def split_ids(text: str) -> list[str]:
    """User ids typed as ``kim, lee park`` -> ["kim", "lee", "park"]."""
    return [part for part in re.split(r"[\s,;]+", text.strip()) if part]


class Bridge(QObject):
    """Exposes the peer to QML: state as properties, actions as slots, failures as signals."""

    # -- for QML -------------------------------------------------------------------------
    errorOccurred = pyqtSignal(str, arguments=["message"])
    loginFailed = pyqtSignal(str, arguments=["message"])
    sessionChanged = pyqtSignal()
    connectionChanged = pyqtSignal()
    roomChanged = pyqtSignal()
    historyChanged = pyqtSignal()
    roomsLoaded = pyqtSignal()
    messageSent = pyqtSignal(int, arguments=["seq"])
    # -- from the hub thread (queued to the Qt thread) ------------------------------------
    _events = pyqtSignal(object)
    _done = pyqtSignal(object, object)

    def __init__(self, server: tuple[str, int], data_dir: Path | None,
                 settings: QSettings | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.server, self.data_dir = server, data_dir
        self._settings = settings or QSettings()
        self._last_user = str(self._settings.value(SETTINGS_LAST_USER, "") or "")
        self.images = ImageStore()
        self._rooms = RoomsModel(self)
        self._messages = MessagesModel(self.images, self)
        self._members = MembersModel(self)
        self._user_id = self._user_name = self._avatar = ""
        self._logged_in = self._busy = False
        self._connection = "offline"
        self._room: RoomKey | None = None
        self._generation = 0                 # bumps when the open room changes; drops stale results
        self._loading_room = self._loading_history = self._history_complete = False
        self._history_before: str | None = None
        self._feed: list[Any] = []           # cached rows of the open room still to insert
        self._avatar_urls: dict[str, str] = {}
        self._active = True
        self._marked: dict[str, int] = {}
        self._outbox: list[dict[str, Any]] = []   # hub thread only
        self._flush_pending = False               # hub thread only
        self._peer: Peer | None = None            # hub thread only

        self._events.connect(self._on_events)
        self._done.connect(self._on_done)
        self._feeder = QTimer(self, interval=0, timeout=self._feed_some)
        self._mark_timer = QTimer(self, singleShot=True, interval=MARK_READ_DELAY_MS, timeout=self._mark_read)
        self._hub = HubThread().start()
        self._hub.submit(self._new_peer)

    # -- plumbing ------------------------------------------------------------------------
    def _new_peer(self) -> None:
        """(hub) A fresh Peer whose events reach ``_on_peer_event``."""
        if self._peer is not None:
            self._peer.close()
        self._peer = Peer(self.server, data_dir=self.data_dir)
        self._peer.on_event(self._on_peer_event)

    def _run(self, job: Callable[[Peer], Any], done: Callable[[Any], None] | None = None,
             failed: Callable[[BaseException], None] | None = None, action: str = "",
             lane: str | None = None) -> None:
        """Run ``job(peer)`` on the hub; then ``done(result)`` or ``failed(error)`` on the Qt thread
        (by default a failure becomes ``errorOccurred`` with ``action`` in front)."""
        def work() -> None:
            assert self._peer is not None
            try:
                value = job(self._peer)
            except gevent.GreenletExit:
                raise
            except Exception as exc:   # every failure must reach the user, not a log
                if not isinstance(exc, (OSError, ValueError, ProtocolError)):
                    log.exception("%s failed", action or "a job")
                self._done.emit(failed or (lambda e: self.errorOccurred.emit(jobs.describe(e, action))), exc)
            else:
                if done is not None:
                    self._done.emit(done, value)
        self._hub.submit(work, lane)

    def _on_done(self, callback: Callable[[Any], None], value: Any) -> None:
        callback(value)

    def _on_peer_event(self, event: dict[str, Any]) -> None:
        """(hub) Collect events and hand them over in one batch per hub loop turn: a catch-up
        after login can deliver thousands of messages, and one signal each would flood Qt."""
        if event.get("event") == "message":
            folder = f"{event['session_id']}_{event['creator_id']}"
            event = {**event, "row": prepare(folder, event, self.images)}
        self._outbox.append(event)
        if not self._flush_pending:
            self._flush_pending = True
            gevent.get_hub().loop.run_callback(self._flush)

    def _flush(self) -> None:
        batch, self._outbox, self._flush_pending = self._outbox, [], False
        if batch:
            self._events.emit(batch)

    @pyqtSlot()
    def shutdown(self) -> None:
        """Close the peer and stop the hub thread (at application exit)."""
        self._feeder.stop()
        self._mark_timer.stop()
        self._hub.stop(lambda: self._peer.close() if self._peer else None)

    # -- properties ----------------------------------------------------------------------
    @pyqtProperty(QObject, constant=True)
    def rooms(self) -> RoomsModel:
        return self._rooms

    @pyqtProperty(QObject, constant=True)
    def messages(self) -> MessagesModel:
        return self._messages

    @pyqtProperty(QObject, constant=True)
    def members(self) -> MembersModel:
        return self._members

    @pyqtProperty(str, constant=True)
    def serverAddress(self) -> str:  # noqa: N802 (QML names are camelCase)
        return f"{self.server[0]}:{self.server[1]}"

    @pyqtProperty("QStringList", constant=True)
    def emoticons(self) -> list[str]:
        return list(EMOTICONS)

    @pyqtSlot(str, result=str)
    def emoticonSource(self, emoticon_id: str) -> str:  # noqa: N802
        return emoticon_url(emoticon_id)

    @pyqtProperty(str, notify=sessionChanged)
    def lastUserId(self) -> str:  # noqa: N802
        return self._last_user

    @pyqtProperty(bool, notify=sessionChanged)
    def loggedIn(self) -> bool:  # noqa: N802
        return self._logged_in

    @pyqtProperty(bool, notify=sessionChanged)
    def busy(self) -> bool:
        return self._busy

    @pyqtProperty(str, notify=sessionChanged)
    def userId(self) -> str:  # noqa: N802
        return self._user_id

    @pyqtProperty(str, notify=sessionChanged)
    def userName(self) -> str:  # noqa: N802
        return self._user_name

    @pyqtProperty(str, notify=sessionChanged)
    def avatarSource(self) -> str:  # noqa: N802
        return self._avatar

    @pyqtProperty(str, notify=connectionChanged)
    def connectionState(self) -> str:  # noqa: N802
        """offline, connecting, online or reconnecting."""
        return self._connection

    @pyqtProperty(str, notify=roomChanged)
    def currentRoom(self) -> str:  # noqa: N802
        return self._room.folder if self._room else ""

    @pyqtProperty(str, notify=roomChanged)
    def currentRoomName(self) -> str:  # noqa: N802
        room = self._rooms.get(self.currentRoom) if self._room else None
        return room.name if room else ""

    @pyqtProperty(str, notify=roomChanged)
    def currentRoomImage(self) -> str:  # noqa: N802
        room = self._rooms.get(self.currentRoom) if self._room else None
        return room.image_url if room else ""

    @pyqtProperty(int, notify=roomChanged)
    def currentRoomMemberCount(self) -> int:  # noqa: N802
        return self._members.count

    @pyqtProperty(bool, notify=historyChanged)
    def loadingRoom(self) -> bool:  # noqa: N802
        return self._loading_room

    @pyqtProperty(bool, notify=historyChanged)
    def loadingHistory(self) -> bool:  # noqa: N802
        return self._loading_history

    @pyqtProperty(bool, notify=historyChanged)
    def historyComplete(self) -> bool:  # noqa: N802
        return self._history_complete

    # -- session -------------------------------------------------------------------------
    @pyqtSlot(str, str)
    def login(self, user_id: str, password: str) -> None:
        self._start_session(user_id.strip(), password, None)

    @pyqtSlot(str, str, str)
    def register(self, user_id: str, password: str, name: str) -> None:
        """Create the account, then log in."""
        self._start_session(user_id.strip(), password, name.strip())

    def _start_session(self, user_id: str, password: str, name: str | None) -> None:
        if self._busy or self._logged_in:
            return
        if not user_id or not password:
            self.loginFailed.emit("Enter a user id and a password.")
            return
        self._busy = True
        self._set_connection("connecting")
        self.sessionChanged.emit()
        self._run(lambda p: jobs.start_session(p, self.images, user_id, password, name),
                  self._on_session, self._on_login_failed)

    def _on_login_failed(self, exc: BaseException) -> None:
        self._busy = False
        self._set_connection("offline")
        self.sessionChanged.emit()
        self.loginFailed.emit(jobs.login_error(exc))

    def _on_session(self, session: jobs.Session) -> None:
        self._busy, self._logged_in = False, True
        self._user_id, self._user_name, self._avatar = session.user_id, session.name, session.avatar
        if session.avatar:
            self._avatar_urls[session.user_id] = session.avatar
        self._last_user = session.user_id
        self._save_setting(SETTINGS_LAST_USER, session.user_id)
        self._set_connection("online")
        self.sessionChanged.emit()
        self._rooms.reset(session.rooms)
        self.roomsLoaded.emit()
        self._load_room_images()

    def _save_setting(self, key: str, value: Any) -> None:
        # QSettings writes a file; keep that off the Qt thread too.
        path, fmt = self._settings.fileName(), self._settings.format()
        def save(_: Peer) -> None:
            settings = QSettings(path, fmt)
            settings.setValue(key, value)
            settings.sync()
        self._run(save)

    @pyqtSlot()
    def logout(self) -> None:
        self.closeRoom()
        def work(peer: Peer) -> None:
            try:
                peer.logout()
            finally:
                self._new_peer()
        self._run(work, failed=lambda e: None)
        self._logged_in = False
        self._user_id = self._user_name = self._avatar = ""
        self._marked, self._avatar_urls = {}, {}
        self._rooms.reset([])
        self._set_connection("offline")
        self.sessionChanged.emit()

    def _set_connection(self, state: str) -> None:
        if state != self._connection:
            self._connection = state
            self.connectionChanged.emit()

    @pyqtSlot(bool)
    def setActive(self, active: bool) -> None:  # noqa: N802
        """The window has focus (messages shown in an open room count as read only then)."""
        self._active = active
        if active:
            self._schedule_mark_read()

    # -- events from the peer ------------------------------------------------------------
    def _on_events(self, batch: list[dict[str, Any]]) -> None:
        refresh = False
        open_rows = []
        current = self.currentRoom
        for event in batch:
            kind = event.get("event")
            folder = f"{event.get('session_id')}_{event.get('creator_id')}"
            if kind == "message":
                reading = folder == current and self._active
                if not self._rooms.on_message(event, self._user_id, reading) and self._logged_in:
                    refresh = True
                if folder == current:
                    open_rows.append(event["row"])
            elif kind == "connection":
                self._on_connection(event.get("state", "offline"))
            elif kind == "read":
                if event["user_id"] == self._user_id:
                    self._rooms.set_read(folder, event["read_seq"])
                if folder == current:
                    self._messages.set_read(event["user_id"], event["read_seq"])
                    self._members.set_read(event["user_id"], event["read_seq"])
            elif kind == "room_renamed":
                self._rooms.update(folder, name=event.get("name", ""))
                if folder == current:
                    self.roomChanged.emit()
            elif kind == "member_left":
                self._on_member_left(folder, event["user_id"])
            elif kind in ("invited", "members_joined", "room_image"):
                refresh = True
                if folder == current and kind == "members_joined":
                    self._messages.members_joined(event.get("user_ids", []))
                    self._reload_members()
        if open_rows:
            self._messages.add_newer(open_rows)
            self._schedule_mark_read()
        if refresh:
            self.refreshRooms()

    def _on_connection(self, state: str) -> None:
        was = self._connection
        self._set_connection(state)
        if state == "online" and was in ("offline", "reconnecting") and self._logged_in:
            # Back after a drop: the peer caught up the messages; lists may have moved too.
            self.refreshRooms()
            self._reload_members()

    def _on_member_left(self, folder: str, user_id: str) -> None:
        if user_id == self._user_id:
            self._rooms.remove(folder)
            if folder == self.currentRoom:
                self.closeRoom()
            return
        room = self._rooms.get(folder)
        if room is not None:
            self._rooms.update(folder, members=max(1, room.members - 1))
        if folder == self.currentRoom:
            self._messages.member_left(user_id)
            self._members.remove(user_id)
            self.roomChanged.emit()

    @pyqtSlot()
    def refreshRooms(self) -> None:  # noqa: N802
        """Ask the server for the room list again (after membership or picture changes)."""
        def done(rooms: list[dict[str, Any]]) -> None:
            self._rooms.reset(rooms)
            self.roomsLoaded.emit()
            self.roomChanged.emit()
            self._load_room_images()
        self._run(lambda p: p.list_rooms(), done, action="Loading rooms")

    def _load_room_images(self) -> None:
        rooms = self._rooms.rooms()
        if not any(r.image_tag and not r.image_url.endswith(f"/{r.image_tag}") for r in rooms):
            return
        # The tag we hold is the last part of the image URL (see jobs.room_images).
        known = {RoomKey(r.session_id, r.creator_id): (r.last_seq, r.image_url.rsplit("/", 1)[-1] if r.image_url else None)
                 for r in rooms}
        def done(urls: dict[str, str]) -> None:
            for folder, url in urls.items():
                self._rooms.update(folder, image_url=url)
            if self.currentRoom in urls:
                self.roomChanged.emit()
        self._run(lambda p: jobs.room_images(p, self.images, known), done, lambda e: None)

    # -- the open room -------------------------------------------------------------------
    @pyqtSlot(str)
    def openRoom(self, folder: str) -> None:  # noqa: N802
        """Show a room: cached history at once (inserted in chunks), then members and receipts."""
        room = self._rooms.get(folder)
        if room is None or (self._room and self._room.folder == folder):
            return
        self._room = RoomKey(room.session_id, room.creator_id)
        # What the server knows we have read; the list may show more as read already
        # (messages that arrived while the room was open), which still has to be told.
        self._marked[folder] = max(self._marked.get(folder, 0), room.read_seq if not room.unread else 0)
        self._generation += 1
        generation, key = self._generation, self._room
        self._feed = []
        self._messages.reset(folder, self._user_id)
        self._members.reset([], self._user_id)
        self._loading_room, self._loading_history, self._history_complete = True, False, False
        self._history_before = None
        self.roomChanged.emit()
        self.historyChanged.emit()
        self._run(lambda p: jobs.open_room(p, self.images, key),
                  lambda content: self._on_room_opened(generation, content),
                  lambda e: self._on_room_failed(generation, e))

    @pyqtSlot()
    def closeRoom(self) -> None:  # noqa: N802
        self._generation += 1
        self._room = None
        self._feed = []
        self._feeder.stop()
        self._messages.reset("", self._user_id)
        self._members.reset([], self._user_id)
        self._loading_room = self._loading_history = False
        self.roomChanged.emit()
        self.historyChanged.emit()

    def _on_room_failed(self, generation: int, exc: BaseException) -> None:
        if generation == self._generation:
            self._loading_room = False
            self.historyChanged.emit()
            self.errorOccurred.emit(jobs.describe(exc, "Opening the room"))

    def _on_room_opened(self, generation: int, content: jobs.RoomContent) -> None:
        if generation != self._generation:
            return
        self._apply_members(content.members)
        # Rows newer than live ones already shown go in at once; the rest, newest first, a
        # chunk per event-loop turn so a room with thousands of messages never blocks the UI.
        newest = self._messages.newest_seq
        self._messages.add_newer([r for r in content.rows if newest and r.seq > newest])
        self._feed = [r for r in content.rows if not newest or r.seq < self._messages.oldest_seq]
        self._feed_some()
        if self._feed:
            self._feeder.start()

    def _feed_some(self) -> None:
        chunk, self._feed = self._feed[-FEED_CHUNK:], self._feed[:-FEED_CHUNK]
        self._messages.add_older(chunk)
        if self._feed:
            return
        self._feeder.stop()
        if self._loading_room:
            self._loading_room = False
            self.historyChanged.emit()
            self._schedule_mark_read()
            if self._messages.count < 30:
                self.loadOlder()     # a room new to this device: show some history at once

    def _apply_members(self, members: list[dict[str, Any]]) -> None:
        self._members.reset(members, self._user_id)
        self._messages.set_members(members)
        for user_id, url in self._avatar_urls.items():
            self._messages.set_avatar(user_id, url)
            self._members.set_avatar(user_id, url)
        self.roomChanged.emit()
        wanted = [m["user_id"] for m in members if m.get("has_image") and m["user_id"] not in self._avatar_urls]
        if wanted:
            def done(urls: dict[str, str]) -> None:
                self._avatar_urls.update(urls)
                for user_id, url in urls.items():
                    self._messages.set_avatar(user_id, url)
                    self._members.set_avatar(user_id, url)
            self._run(lambda p: jobs.avatars(p, self.images, wanted), done, lambda e: None)

    def _reload_members(self) -> None:
        if self._room is None:
            return
        key, generation = self._room, self._generation
        def done(members: list[dict[str, Any]]) -> None:
            if generation == self._generation:
                self._apply_members(members)
        self._run(lambda p: p.room_members(key), done, lambda e: None)

    @pyqtSlot()
    def loadOlder(self) -> None:  # noqa: N802
        """Page back: the 3 days with messages before what is shown, with ``loadingHistory`` on."""
        if self._room is None or self._loading_history or self._history_complete or self._loading_room:
            return
        if self._messages.count and self._messages.oldest_seq <= 1:
            self._history_complete = True
            self.historyChanged.emit()
            return
        before = self._history_before
        if before is None and self._messages.oldest_day is not None:
            # The oldest shown day may be only partly shown: ask for it again, rows deduplicated.
            before = jobs.next_day(self._messages.oldest_day)
        key, generation = self._room, self._generation
        self._loading_history = True
        self.historyChanged.emit()
        self._run(lambda p: jobs.older_history(p, self.images, key, before),
                  lambda page: self._on_history(generation, page),
                  lambda e: self._on_history_failed(generation, e))

    def _on_history(self, generation: int, page: jobs.HistoryPage) -> None:
        if generation != self._generation:
            return
        added = self._messages.add_older(page.rows)
        self._loading_history = False
        self._history_before = page.earliest or self._history_before
        self._history_complete = page.beginning or (bool(self._messages.count) and self._messages.oldest_seq <= 1)
        self.historyChanged.emit()
        if not added and not self._history_complete:
            self.loadOlder()     # that page held only rows already shown: go one further

    def _on_history_failed(self, generation: int, exc: BaseException) -> None:
        if generation == self._generation:
            self._loading_history = False
            self.historyChanged.emit()
            self.errorOccurred.emit(jobs.describe(exc, "Loading older messages"))

    def _schedule_mark_read(self) -> None:
        if self._room is not None and self._active and not self._mark_timer.isActive():
            self._mark_timer.start()

    def _mark_read(self) -> None:
        if self._room is None or not self._active:
            return
        seq, folder, key = self._messages.newest_seq, self._room.folder, self._room
        if not seq or self._marked.get(folder, 0) >= seq:
            return
        self._marked[folder] = seq
        self._rooms.set_read(folder, seq)
        self._messages.set_read(self._user_id, seq)
        self._run(lambda p: p.mark_read(key, seq), failed=lambda e: None)

    # -- sending -------------------------------------------------------------------------
    def _send(self, chat_type: str, make: Callable[[], bytes], action: str) -> None:
        if self._room is None:
            return
        key = self._room
        self._run(lambda p: p.send(key, chat_type, make()), lambda reply: self.messageSent.emit(reply["seq"]),
                  action=action, lane="send")

    @pyqtSlot(str)
    def sendText(self, text: str) -> None:  # noqa: N802
        if text.strip():
            data = text.encode("utf-8")
            self._send("text", lambda: data, "Sending")

    @pyqtSlot(str)
    def sendEmoticon(self, emoticon_id: str) -> None:  # noqa: N802
        self._send("emoticon", lambda: emoticon_id.encode("ascii"), "Sending the emoticon")

    @pyqtSlot(str)
    def sendImage(self, url: str) -> None:  # noqa: N802
        """Send a picture file (a file URL from a dialog or a drop, or a path)."""
        path = local_path(url)
        self._send("image", lambda: jobs.read_image(path), "Sending the picture")

    # -- rooms ---------------------------------------------------------------------------
    @pyqtSlot(str, str, str)
    def createRoom(self, name: str, image_url: str, invitees: str) -> None:  # noqa: N802
        """Create a room (picture and invitees optional) and open it."""
        name, ids, path = name.strip(), split_ids(invitees), local_path(image_url) if image_url else ""
        if not name:
            self.errorOccurred.emit("Give the room a name.")
            return
        def work(peer: Peer) -> tuple[str, list[dict[str, Any]]]:
            image = jobs.read_image(path, jobs.ROOM_IMAGE_SIDE, png=True) if path else None
            reply = peer.create_room(name, [i for i in ids if i != self._user_id], image)
            return reply["room"], peer.list_rooms()
        def done(result: tuple[str, list[dict[str, Any]]]) -> None:
            self._rooms.reset(result[1])
            self.roomsLoaded.emit()
            self._load_room_images()
            self.openRoom(result[0])
        self._run(work, done, action="Creating the room")

    def _room_action(self, work: Callable[[Peer, RoomKey], Any], done: Callable[[Any], None] | None,
                     action: str) -> None:
        if self._room is not None:
            key = self._room
            self._run(lambda p: work(p, key), done, action=action)

    @pyqtSlot(str)
    def inviteMembers(self, user_ids: str) -> None:  # noqa: N802
        ids = split_ids(user_ids)
        if ids:
            self._room_action(lambda p, k: p.invite(k, ids), lambda _: self._reload_members(), "Inviting")

    @pyqtSlot()
    def leaveRoom(self) -> None:  # noqa: N802
        folder = self.currentRoom
        def done(_: Any) -> None:
            self._rooms.remove(folder)
            if self.currentRoom == folder:
                self.closeRoom()
        self._room_action(lambda p, k: p.leave(k), done, "Leaving the room")

    @pyqtSlot(str)
    def renameRoom(self, name: str) -> None:  # noqa: N802
        name, folder = name.strip(), self.currentRoom
        if name:
            def done(_: Any) -> None:
                self._rooms.update(folder, name=name)
                self.roomChanged.emit()
            self._room_action(lambda p, k: p.rename_room(k, name), done, "Renaming the room")

    @pyqtSlot(str)
    def setRoomImage(self, image_url: str) -> None:  # noqa: N802
        path, folder = local_path(image_url), self.currentRoom
        def work(peer: Peer, key: RoomKey) -> tuple[str, str]:
            image = jobs.read_image(path, jobs.ROOM_IMAGE_SIDE, png=True)
            tag = peer.set_room_image(key, image)["image_tag"]
            self.images.put(f"room/{folder}/{tag}", image)
            return tag, ImageStore.url(f"room/{folder}/{tag}", True)
        def done(result: tuple[str, str]) -> None:
            self._rooms.update(folder, image_tag=result[0], image_url=result[1])
            self.roomChanged.emit()
        self._room_action(work, done, "Setting the room picture")

    # -- profile -------------------------------------------------------------------------
    @pyqtSlot(str, str)
    def setProfile(self, name: str, image_url: str) -> None:  # noqa: N802
        """Change the display name and/or picture (an empty argument keeps the current one)."""
        name, path = name.strip(), local_path(image_url) if image_url else ""
        def work(peer: Peer) -> tuple[str, str]:
            image = jobs.read_image(path, jobs.PROFILE_IMAGE_SIDE, png=True) if path else None
            reply = peer.set_profile(name or None, image)
            url = ""
            if image is not None:
                key = f"user/{self._user_id}/{len(image)}"
                self.images.put(key, image)
                url = ImageStore.url(key, True)
            return reply.get("name", name), url
        def done(result: tuple[str, str]) -> None:
            self._user_name = result[0] or self._user_name
            if result[1]:
                self._avatar = self._avatar_urls[self._user_id] = result[1]
                self._messages.set_avatar(self._user_id, result[1])
                self._members.set_avatar(self._user_id, result[1])
            self.sessionChanged.emit()
            self._reload_members()
        self._run(work, done, action="Saving the profile")
