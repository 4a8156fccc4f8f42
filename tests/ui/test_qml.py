"""The QML files load without errors or warnings: each component compiles, and the whole
window runs through login, a busy chat and the dialogs while Qt's log stays clean."""
from __future__ import annotations

from pathlib import Path

import pytest
from PyQt5.QtCore import QMetaObject, QObject, Qt, QUrl
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


def test_image_provider_is_registered(qapp, bridge_factory, server):
    bridge = bridge_factory(server)
    engine = create_engine(bridge)
    try:
        assert isinstance(engine.imageProvider(PROVIDER), ImageProvider)
    finally:
        destroy_engine(engine)
    assert Path(QML_DIR / "qmldir").exists()
