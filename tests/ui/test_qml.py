"""The QML files load without errors or warnings: each component compiles, and the whole
window runs through login, a busy chat and the dialogs while Qt's log stays clean."""
from __future__ import annotations

from pathlib import Path

import pytest
from PyQt5.QtCore import QMetaObject, QObject, QPointF, QRectF, Qt, QUrl
from PyQt5.QtTest import QTest
from PyQt5.QtQml import QQmlComponent, QQmlEngine

from messenger_protocol.messages import RoomKey
from ui.images import PROVIDER, ImageProvider
from ui.main import QML_DIR, create_engine, destroy_engine

from ..support import JPEG_TINY, PASSWORD, logged_in_peer

WAIT = 30_000
# Theme.qml is a singleton: it compiles as part of the others.
QML_FILES = sorted(p.name for p in QML_DIR.glob("*.qml") if p.name != "Theme.qml")


def qt_problems(qtlog) -> list[str]:
    return [r.message for r in qtlog.records if r.type_name in ("QtWarningMsg", "QtCriticalMsg", "QtFatalMsg")
            # Decoding the deliberately tiny test JPEG; not a QML problem.
            and "JPEG datastream" not in r.message]


@pytest.mark.parametrize("name", QML_FILES)
def test_each_component_compiles(qapp, name):
    engine = QQmlEngine()
    component = QQmlComponent(engine, QUrl.fromLocalFile(str(QML_DIR / name)))
    assert component.isReady(), [e.toString() for e in component.errors()]


def test_login_window_loads_cleanly(qtbot, qtlog, bridge_factory, server):
    bridge = bridge_factory(server)
    engine = create_engine(bridge)
    warnings: list[str] = []
    engine.warnings.connect(lambda errors: warnings.extend(e.toString() for e in errors))
    try:
        assert engine.rootObjects()
        window = engine.rootObjects()[0]
        qtbot.waitExposed(window, timeout=WAIT)
        assert window.findChild(QObject, "newChatButton") is None    # not logged in yet
    finally:
        destroy_engine(engine)
    assert warnings == [] and qt_problems(qtlog) == []


@pytest.mark.database
def test_busy_chat_and_dialogs_run_cleanly(qtbot, qtlog, bridge_factory, server):
    kim = logged_in_peer(server, "kim")
    kim.register("me", PASSWORD)
    reply = kim.create_room("가족 family", invite=["me"])
    key = RoomKey(reply["session_id"], reply["creator_id"])
    kim.send_text(key, "안녕하세요! Hello there, this is a long message that has to wrap over several lines "
                       "in the bubble because it is longer than the bubble may be wide.")
    kim.send(key, "image", JPEG_TINY)
    kim.send(key, "emoticon", b"love")
    kim.send(key, "emoticon", b"unknown_one")
    bridge = bridge_factory(server)
    engine = create_engine(bridge)
    warnings: list[str] = []
    engine.warnings.connect(lambda errors: warnings.extend(e.toString() for e in errors))
    try:
        window = engine.rootObjects()[0]
        qtbot.waitExposed(window, timeout=WAIT)
        with qtbot.waitSignal(bridge.roomsLoaded, timeout=WAIT):
            bridge.login("me", PASSWORD)
        qtbot.waitUntil(lambda: window.findChild(QObject, "roomList") is not None, timeout=WAIT)
        bridge.openRoom(reply["room"])
        qtbot.waitUntil(lambda: bridge.messages.count == 4 and not bridge.loadingHistory, timeout=WAIT)
        bridge.sendText("제 답장 my reply")
        qtbot.waitUntil(lambda: bridge.messages.count == 5, timeout=WAIT)
        message_list = window.findChild(QObject, "messageList")
        qtbot.waitUntil(lambda: message_list.property("count") == 5, timeout=WAIT)
        # Typing: Shift+Enter starts a new line, Enter sends.
        composer = window.findChild(QObject, "composerInput")
        QMetaObject.invokeMethod(composer, "forceActiveFocus")
        qtbot.waitUntil(lambda: composer.property("activeFocus"), timeout=WAIT)
        for char in "hi":
            QTest.keyClick(window, char)
        QTest.keyClick(window, Qt.Key_Return, Qt.ShiftModifier)
        QTest.keyClick(window, "x")
        assert composer.property("text") == "hi\nx"
        QTest.keyClick(window, Qt.Key_Return)
        qtbot.waitUntil(lambda: bridge.messages.count == 6, timeout=WAIT)
        assert bridge.messages.row(0).text == "hi\nx" and composer.property("text") == ""
        for name in ("createDialog", "profileDialog", "inviteDialog", "renameDialog", "membersPopup",
                     "emoticonPicker"):
            popup = window.findChild(QObject, name)
            assert popup is not None, name
            QMetaObject.invokeMethod(popup, "open")
            qtbot.waitUntil(lambda: popup.property("opened"), timeout=WAIT)
            QMetaObject.invokeMethod(popup, "close")
            qtbot.waitUntil(lambda: not popup.property("visible"), timeout=WAIT)
        bridge.closeRoom()
        qtbot.waitUntil(lambda: window.findChild(QObject, "messageList") is None, timeout=WAIT)
        bridge.logout()
        qtbot.waitUntil(lambda: window.findChild(QObject, "roomList") is None, timeout=WAIT)
    finally:
        destroy_engine(engine)
        kim.close()
    assert warnings == [] and qt_problems(qtlog) == []


def descendants(item) -> list:
    found, todo = [], [item]
    while todo:
        item = todo.pop()
        found.append(item)
        todo.extend(item.childItems())
    return found


def shown_bubbles(message_list) -> list[dict]:
    """Geometry (in the list's coordinates) of each message delegate on screen: its content
    (bubble, picture or emoticon), unread counter and time, and whether it is one's own."""
    width, height = message_list.width(), message_list.height()
    shown = []
    for delegate in message_list.property("contentItem").childItems():
        if not delegate.isVisible() or delegate.property("seq") is None:
            continue
        parts = {item.objectName(): item for item in descendants(delegate)
                 if item.objectName() in ("messageContent", "unreadCounter", "messageTime")}
        content = parts["messageContent"].mapRectToItem(message_list, QRectF(
            0, 0, parts["messageContent"].width(), parts["messageContent"].height()))
        if content.bottom() < 0 or content.top() > height:
            continue    # in the cache buffer, not on screen
        row = {"own": delegate.property("isOwn"), "text": delegate.property("text"), "content": content,
               "width": width}
        for name in ("unreadCounter", "messageTime"):
            if parts[name].isVisible():
                row[name] = parts[name].mapRectToItem(message_list, QRectF(
                    0, 0, parts[name].width(), parts[name].height()))
        shown.append(row)
    return shown


@pytest.mark.database
def test_chat_follows_the_newest_message_and_bubbles_fit(qtbot, qtlog, bridge_factory, server):
    kim = logged_in_peer(server, "kim")
    kim.register("me", PASSWORD)
    kim.register("lee", PASSWORD)     # never reads: every message keeps a counter
    reply = kim.create_room("산책 walk", invite=["me", "lee"])
    key = RoomKey(reply["session_id"], reply["creator_id"])
    for i in range(30):
        kim.send_text(key, f"메시지 {i} message number {i}")
    long_text = ("오늘 정말 즐거웠어요. Thanks everyone! 다음 주에 사진 정리해서 올릴게요, and this goes on "
                 "long enough that it has to wrap inside the bubble even in a wide window. 끝!")
    bridge = bridge_factory(server)
    engine = create_engine(bridge)
    warnings: list[str] = []
    engine.warnings.connect(lambda errors: warnings.extend(e.toString() for e in errors))
    try:
        window = engine.rootObjects()[0]
        window.resize(720, 700)     # the narrowest the window goes
        qtbot.waitExposed(window, timeout=WAIT)
        with qtbot.waitSignal(bridge.roomsLoaded, timeout=WAIT):
            bridge.login("me", PASSWORD)
        bridge.openRoom(reply["room"])
        qtbot.waitUntil(lambda: window.findChild(QObject, "messageList") is not None, timeout=WAIT)
        message_list = window.findChild(QObject, "messageList")
        jump = window.findChild(QObject, "jumpToLatest")
        qtbot.waitUntil(lambda: message_list.property("count") == 30 and not bridge.loadingRoom, timeout=WAIT)

        # Opening the room shows the newest message, without the jump button.
        qtbot.waitUntil(lambda: message_list.property("atNewest"), timeout=WAIT)
        assert not jump.property("visible")
        assert any(b["text"] == "메시지 29 message number 29" for b in shown_bubbles(message_list))

        # Your own long message wraps inside the view, with the same outer margin on the right
        # (the tail's tip, 6 px beyond the bubble) as the pictures on the left; the unread
        # counter sits left of it, apart from it.
        bridge.sendText(long_text)
        qtbot.waitUntil(lambda: message_list.property("count") == 31, timeout=WAIT)
        qtbot.waitUntil(lambda: message_list.property("atNewest")
                        and any(b["text"] == long_text for b in shown_bubbles(message_list)), timeout=WAIT)
        bubbles = shown_bubbles(message_list)
        own = next(b for b in bubbles if b["text"] == long_text)
        assert own["own"] and own["content"].height() > 50        # wrapped onto several lines
        assert own["content"].right() == pytest.approx(own["width"] - 14 - 6, abs=0.5)
        assert own["content"].left() >= 14
        counter = own["unreadCounter"]
        assert counter.right() <= own["content"].left() - 3
        assert own["content"].top() < counter.top() and counter.bottom() <= own["content"].bottom()
        others = [b for b in bubbles if not b["own"]]
        assert others and all("unreadCounter" in b for b in others) and any("messageTime" in b for b in others)
        for other in others:
            assert other["content"].left() >= 14 and other["content"].right() <= other["width"] - 14
            counter = other["unreadCounter"]
            assert counter.left() >= other["content"].right() + 3
            assert counter.right() <= other["width"] - 14
            if "messageTime" in other:    # the counter right above the time, lined up on the left
                assert counter.bottom() <= other["messageTime"].top() + 0.5
                assert counter.left() == pytest.approx(other["messageTime"].left(), abs=0.5)

        # Scrolled up: the jump button shows, and a new message does not move the view.
        message_list.setProperty("contentY", message_list.property("originY"))
        qtbot.waitUntil(lambda: jump.property("visible"), timeout=WAIT)
        top = message_list.property("contentY")
        kim.send_text(key, "새 메시지 while you read")
        qtbot.waitUntil(lambda: message_list.property("count") == 32, timeout=WAIT)
        assert not message_list.property("atNewest") and jump.property("visible")
        assert message_list.property("contentY") == pytest.approx(top, abs=1)

        # Sending goes back to the newest message.
        composer = window.findChild(QObject, "composerInput")
        QMetaObject.invokeMethod(composer, "forceActiveFocus")
        qtbot.waitUntil(lambda: composer.property("activeFocus"), timeout=WAIT)
        for char in "ok":
            QTest.keyClick(window, char)
        QTest.keyClick(window, Qt.Key_Return)
        qtbot.waitUntil(lambda: message_list.property("count") == 33, timeout=WAIT)
        qtbot.waitUntil(lambda: message_list.property("atNewest") and not jump.property("visible")
                        and any(b["text"] == "ok" and b["own"] for b in shown_bubbles(message_list)),
                        timeout=WAIT)

        # At the newest message, arrivals keep it in view.
        kim.send_text(key, "마지막 last one")
        qtbot.waitUntil(lambda: message_list.property("count") == 34, timeout=WAIT)
        qtbot.waitUntil(lambda: any(b["text"] == "마지막 last one" for b in shown_bubbles(message_list)),
                        timeout=WAIT)
        assert message_list.property("atNewest") and not jump.property("visible")
        # ... and the message before it is still on screen right above it.
        assert any(b["text"] == "ok" for b in shown_bubbles(message_list))

        # The jump button goes back too.
        message_list.setProperty("contentY", message_list.property("originY"))
        qtbot.waitUntil(lambda: jump.property("visible"), timeout=WAIT)
        qtbot.mouseClick(window, Qt.LeftButton, pos=jump.mapToScene(QPointF(jump.width() / 2, jump.height() / 2)).toPoint())
        qtbot.waitUntil(lambda: message_list.property("atNewest") and not jump.property("visible"), timeout=WAIT)
    finally:
        destroy_engine(engine)
        kim.close()
    assert warnings == [] and qt_problems(qtlog) == []


def test_image_provider_is_registered(qapp, bridge_factory, server):
    bridge = bridge_factory(server)
    engine = create_engine(bridge)
    try:
        assert isinstance(engine.imageProvider(PROVIDER), ImageProvider)
    finally:
        destroy_engine(engine)
    assert Path(QML_DIR / "qmldir").exists()
