"""``make screenshots``: a scripted scenario whose pictures go to docs/screenshots/.

It starts its own embedded PostgreSQL and server (port 0, a temporary folder), lets headless
peers register, make rooms and talk (Korean and English, a picture, emoticons), writes a few
earlier days of history straight into the archive and database (as tests/support.py's
``seed_history`` does, since the server only ever stamps messages with the current time), then
opens the real client window and saves the login screen, the room list and a busy chat.
Run it on a display (``xvfb-run`` in the make target) or with ``QT_QPA_PLATFORM=offscreen``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import psycopg2

SIZE = (1100, 860)
PASSWORD = "screenshot-password"
ME = "seoyeon"
PEOPLE = {ME: "박서연", "minsu": "김민수", "jiyoung": "이지영", "alex": "Alex Kim"}


# -- server --------------------------------------------------------------------------------
class Server:
    """An embedded PostgreSQL and a messenger server in ``folder``."""

    def __init__(self, folder: Path) -> None:
        from messenger_server.storage.embedded import EmbeddedPostgres
        self.folder = folder
        self.pg = EmbeddedPostgres(folder / "pg")
        self.url = self.pg.start()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "messenger_server", "--host", "127.0.0.1", "--port", "0",
             "--data-dir", str(folder / "server"), "--database-url", self.url],
            stdout=subprocess.PIPE, stderr=open(folder / "server.log", "wb"))
        line = self._line(60)
        if not line.startswith("listening on "):
            raise SystemExit(f"the server did not start: {line!r}; see {folder / 'server.log'}")
        host, port = line.split()[-1].rsplit(":", 1)
        self.address = (host, int(port))
        self.archive = folder / "server" / "archive"

    def _line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        out, deadline = b"", time.monotonic() + timeout
        while not out.endswith(b"\n") and time.monotonic() < deadline:
            if select.select([self.proc.stdout], [], [], 0.5)[0]:
                chunk = os.read(self.proc.stdout.fileno(), 1)
                if not chunk:
                    break
                out += chunk
        return out.decode(errors="replace").strip()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.pg.stop()


def seed(url: str, archive_root: Path, key: Any, records: list[tuple[dt.datetime, str, str]]) -> None:
    """Write ``records`` ((time, user id, text), oldest first) as the room's first messages."""
    from messenger_server.storage.archive import Archive, make_record
    archive = Archive(archive_root)
    folder = archive.room_dir(*key)
    committed_day, size, seq = None, 0, 0
    by_day: dict[dt.date, list[bytes]] = {}
    for when, user_id, text in records:
        seq += 1
        by_day.setdefault(when.date(), []).append(
            make_record(user_id, when.isoformat(timespec="milliseconds"), "text", text.encode(), seq))
    for day in sorted(by_day):
        size = archive.append(folder, day, by_day[day], committed_day, size)
        committed_day = day
    last_time, last_user, last_text = records[-1]
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("""UPDATE SESSION_TB SET LAST_SEQ = %s, LAST_TIME = %s, LAST_USER_ID = %s,
                           LAST_TYPE = 'text', LAST_PREVIEW = %s, ARCHIVE_DAY = %s, ARCHIVE_SIZE = %s
                           WHERE SESSION_ID = %s AND CREATOR_ID = %s""",
                        (seq, last_time.isoformat(), last_user, last_text[:100], committed_day, size, *key))
    finally:
        conn.close()


# -- pictures ------------------------------------------------------------------------------
def picture(draw: Callable[[Any, int, int], None], width: int, height: int) -> bytes:
    from PyQt5.QtCore import QBuffer, QIODevice, Qt
    from PyQt5.QtGui import QImage, QPainter
    image = QImage(width, height, QImage.Format_RGB32)
    image.fill(Qt.white)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.Antialiasing)
    draw(painter, width, height)
    painter.end()
    buf = QBuffer()
    buf.open(QIODevice.WriteOnly)
    image.save(buf, "PNG")
    return bytes(buf.data())


def landscape(p: Any, w: int, h: int) -> None:
    """Mountains at sunset: the 'photo' someone shares."""
    from PyQt5.QtCore import QPointF
    from PyQt5.QtGui import QColor, QLinearGradient, QPolygonF
    sky = QLinearGradient(0, 0, 0, h)
    sky.setColorAt(0, QColor("#FF9A5A"))
    sky.setColorAt(0.6, QColor("#FFD29B"))
    p.fillRect(0, 0, w, h, sky)
    p.setBrush(QColor("#FFF3C4"))
    p.setPen(QColor(0, 0, 0, 0))
    p.drawEllipse(QPointF(w * 0.7, h * 0.42), h * 0.12, h * 0.12)
    for colour, base, peaks in (("#7A6A8F", 0.62, 5), ("#4F4A6B", 0.74, 4), ("#2F3350", 0.86, 6)):
        points = [QPointF(0, h)]
        for i in range(peaks + 1):
            x = w * i / peaks
            points.append(QPointF(x, h * (base - 0.18 * abs(math.sin(i * 1.7 + base * 9)))))
        points.append(QPointF(w, h))
        p.setBrush(QColor(colour))
        p.drawPolygon(QPolygonF(points))


def portrait(colour: str, accent: str) -> Callable[[Any, int, int], None]:
    """A simple profile picture: a figure on a coloured ground."""
    def draw(p: Any, w: int, h: int) -> None:
        from PyQt5.QtCore import QPointF, QRectF
        from PyQt5.QtGui import QColor
        p.fillRect(0, 0, w, h, QColor(colour))
        p.setPen(QColor(0, 0, 0, 0))
        p.setBrush(QColor(accent))
        p.drawEllipse(QPointF(w / 2, h * 0.4), w * 0.18, w * 0.18)
        p.drawEllipse(QRectF(w * 0.2, h * 0.62, w * 0.6, h * 0.6))
    return draw


def room_badge(colour: str, symbol: str) -> Callable[[Any, int, int], None]:
    def draw(p: Any, w: int, h: int) -> None:
        from PyQt5.QtCore import QRectF, Qt
        from PyQt5.QtGui import QColor, QFont
        p.fillRect(0, 0, w, h, QColor(colour))
        font = QFont()
        font.setPixelSize(int(h * 0.5))
        font.setBold(True)
        p.setFont(font)
        p.setPen(QColor("white"))
        p.drawText(QRectF(0, 0, w, h), Qt.AlignCenter, symbol)
    return draw


# -- the scenario --------------------------------------------------------------------------
def populate(server: Server) -> str:
    """Accounts, rooms and messages; returns the folder of the busy room."""
    from messenger_peer import Peer
    from messenger_protocol.messages import RoomKey
    peers = {}
    for user_id, name in PEOPLE.items():
        peer = Peer(server.address, timeout=60).connect()
        peer.register(user_id, PASSWORD, name)
        peer.login(user_id, PASSWORD, live=False)
        peers[user_id] = peer
    peers["minsu"].set_profile(image=picture(portrait("#8EC5FC", "#3D5A80"), 128, 128))
    peers["jiyoung"].set_profile(image=picture(portrait("#FBC2EB", "#9D4EDD"), 128, 128))
    peers[ME].set_profile(image=picture(portrait("#FFE29F", "#E76F51"), 128, 128))

    def room(owner: str, name: str, members: list[str], image: bytes | None = None) -> RoomKey:
        reply = peers[owner].create_room(name, invite=members, image=image)
        return RoomKey(reply["session_id"], reply["creator_id"])

    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    today = now.replace(hour=0, minute=0, second=0)

    family = room("jiyoung", "가족 Family", [ME], picture(room_badge("#E76F51", "♥"), 256, 256))
    peers["jiyoung"].send_text(family, "엄마가 주말에 김치 보내신대")
    peers["jiyoung"].send_text(family, "받으면 연락 줘!")
    project = room(ME, "Project Apollo", ["alex", "minsu"], picture(room_badge("#3D5A80", "A"), 256, 256))
    peers["alex"].send_text(project, "The release notes are ready for review.")
    peers[ME].send_text(project, "확인했어요. LGTM!")
    peers["minsu"].send_text(project, "배포는 내일 오전 10시에 진행합니다")
    alex = room("alex", "Alex Kim", [ME])
    peers["alex"].send_text(alex, "Lunch tomorrow? 내일 점심 어때요?")

    # The busy room last, so that it tops the list.
    hike = room("minsu", "주말 등산 Weekend hike", ["jiyoung", "alex", ME], picture(landscape, 256, 256))
    at = lambda days, hh, mm: today - dt.timedelta(days=days) + dt.timedelta(hours=hh, minutes=mm)  # noqa: E731
    seed(server.url, server.archive, hike, [
        (at(4, 9, 12), "minsu", "이번 주말에 북한산 갈 사람? 🙋"),
        (at(4, 9, 13), "jiyoung", "저요! 토요일 아침 괜찮아요"),
        (at(4, 9, 20), "alex", "Count me in. What time do we meet?"),
        (at(4, 9, 21), "minsu", "8시에 구파발역 1번 출구에서 만나요"),
        (at(2, 18, 40), ME, "도시락은 제가 준비할게요 🍙"),
        (at(2, 18, 41), "alex", "Amazing, thank you! I'll bring coffee ☕"),
        (at(1, 21, 5), "jiyoung", "내일 비 온다는데 괜찮을까요?"),
        (at(1, 21, 7), "minsu", "오전엔 맑대요. 우비만 챙기세요!"),
        (at(1, 21, 8), "alex", "Weather app says 10% rain. We're good 👍"),
    ])
    peers["minsu"].send_text(hike, "다들 잘 도착했어요? 정상 사진 공유합니다!")
    peers["minsu"].send(hike, "image", picture(landscape, 640, 400))
    peers["jiyoung"].send(hike, "emoticon", b"love")
    peers["alex"].send_text(hike, "What a view! That was the best hike this year.\n다음엔 설악산 가요!")
    peers[ME].send_text(hike, "오늘 정말 즐거웠어요. Thanks everyone! 다음 주에 사진 정리해서 올릴게요")
    peers[ME].send(hike, "emoticon", b"laugh")
    last = peers["jiyoung"].send_text(hike, "수고하셨어요~ 푹 쉬세요 😊")["seq"]
    for user_id in ("minsu", "jiyoung"):
        peers[user_id].mark_read(hike, last)
    peers["alex"].mark_read(hike, last - 3)
    for peer in peers.values():
        peer.close()
    return hike.folder


class Shooter:
    """Drives the real window and saves pictures of it."""

    def __init__(self, server: Server, out: Path, data_dir: Path) -> None:
        from PyQt5.QtCore import QSettings
        from PyQt5.QtWidgets import QApplication
        from .bridge import Bridge
        from .main import configure_graphics, create_engine, setup_fonts
        configure_graphics(opengl=False)
        self.app = QApplication(sys.argv[:1])
        setup_fonts(self.app)
        settings = QSettings(str(data_dir / "settings.ini"), QSettings.IniFormat)
        settings.setValue("login/last_user_id", ME)
        settings.sync()
        self.bridge = Bridge(server.address, data_dir / "cache", settings)
        self.engine = create_engine(self.bridge)
        self.window = self.engine.rootObjects()[0]
        self.window.resize(*SIZE)
        self.out = out

    def wait(self, condition: Callable[[], bool], timeout: float = 60, what: str = "") -> None:
        from PyQt5.QtCore import QEventLoop
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for {what}")
            self.app.processEvents(QEventLoop.AllEvents, 50)

    def items(self) -> list[Any]:
        """Every Qt Quick item in the window (popups included: they live in the overlay)."""
        found, todo = [], [self.window.contentItem()]
        while todo:
            item = todo.pop()
            found.append(item)
            todo.extend(item.childItems())
        return found

    def images_ready(self) -> bool:
        """No Image (asynchronous loads: pictures, avatars, emoticons) is still loading."""
        loading = 2   # Image.Loading
        return not any(item.property("status") == loading for item in self.items()
                       if item.metaObject().className().startswith("QQuick")
                       and "Image" in item.metaObject().className())

    def grab(self) -> Any:
        return self.app.primaryScreen().grabWindow(self.window.winId()).toImage()

    def stable_frame(self, timeout: float = 30) -> Any:
        """Wait until two grabs in a row are the same (scroll bar fades and other animations
        are over, images are drawn) and return that picture."""
        previous, deadline = None, time.monotonic() + timeout
        while True:
            image = self.grab()
            if previous is not None and image == previous:
                return image
            if time.monotonic() > deadline:
                raise SystemExit("timed out waiting for the window to stop changing")
            previous = image
            next_poll = time.monotonic() + 0.15   # poll interval: let a frame or two be drawn
            self.wait(lambda: time.monotonic() > next_poll, 5, "the next frame")

    def shoot(self, name: str, ready: Callable[[], bool] = lambda: True, what: str = "the window") -> None:
        """Save the window once ``ready()`` holds, every picture has loaded and nothing moves;
        ``ready()`` must still hold for the picture taken."""
        deadline = time.monotonic() + 60
        while True:
            left = lambda: max(0.0, deadline - time.monotonic())  # noqa: E731
            self.wait(lambda: ready() and self.images_ready(), left(), what)
            image = self.stable_frame(left())
            if ready() and self.images_ready():
                break
            if not left():
                raise SystemExit(f"timed out waiting for {what} to hold still")
        path = self.out / name
        if image.isNull() or not image.save(str(path)):
            raise SystemExit(f"could not save {path}")
        print(f"wrote {path}")

    def run(self, busy_room: str) -> None:
        from PyQt5.QtCore import QObject
        self.wait(lambda: self.window.isExposed(), what="the window")
        password = self.window.findChild(QObject, "passwordField")
        if password is not None:   # typed in, as a person about to log in would have
            password.setProperty("text", PASSWORD)
        self.shoot("login.png")
        self.bridge.login(ME, PASSWORD)
        self.wait(lambda: self.bridge.loggedIn and self.bridge.rooms.count >= 4, what="the room list")
        self.wait(lambda: all(r.image_url for r in self.bridge.rooms.rooms() if r.image_tag), what="room pictures")
        self.shoot("rooms.png")
        self.bridge.openRoom(busy_room)
        self.wait(lambda: not self.bridge.loadingRoom and not self.bridge.loadingHistory
                  and self.bridge.messages.count >= 16, what="the chat")
        # Reading marks read (after a short debounce): the badge goes and the counters drop.
        self.wait(lambda: all(r.unread == 0 for r in self.bridge.rooms.rooms() if r.folder == busy_room),
                  what="the open room to be marked read")
        self.wait(lambda: self.window.findChild(QObject, "messageList") is not None, what="the message list")
        chat = self.window.findChild(QObject, "messageList")
        jump = self.window.findChild(QObject, "jumpToLatest")
        # As a person opening the room sees it: at the newest message, no jump button.
        self.shoot("chat.png", lambda: chat.property("count") >= 16 and chat.property("atNewest")
                   and not jump.property("visible"), "the chat at its newest message")
        from .main import destroy_engine
        destroy_engine(self.engine)
        self.bridge.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="qt-runtime-"))
    with tempfile.TemporaryDirectory(prefix="messenger-screenshots-") as tmp:
        folder = Path(tmp)
        os.chmod(folder, 0o755)   # as root the embedded PostgreSQL runs as another user
        server = Server(folder)
        try:
            from PyQt5.QtGui import QGuiApplication  # noqa: F401  (pictures need Qt's image codecs)
            shooter = Shooter(server, args.out, folder / "client")
            busy = populate(server)
            shooter.run(busy)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
