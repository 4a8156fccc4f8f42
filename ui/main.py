"""Starts the desktop client: ``messenger-client [--server HOST:PORT] [--data-dir DIR]``.

Builds the Qt application, the bridge (which starts the peer's hub thread), registers the
image provider and loads ``qml/Main.qml``. It is a QApplication rather than a bare
QGuiApplication only because QtQuick.Dialogs' FileDialog needs Qt Widgets to show a real file
dialog; everything on screen is QML.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from messenger_peer import parse_address

QML_DIR = Path(__file__).resolve().parent / "qml"
APP_NAME = "messenger-client"
CJK_FAMILIES = ("Noto Sans CJK KR", "Noto Sans KR", "Noto Sans CJK", "NanumGothic", "Source Han Sans KR",
                "UnDotum", "Baekmuk Gulim")


def default_data_dir() -> Path:
    """The per-user folder for the local history cache (XDG data home)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / APP_NAME


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=APP_NAME, description="The messenger's desktop client.")
    parser.add_argument("--server", default="127.0.0.1:9100", metavar="HOST:PORT",
                        help="the messenger server (default 127.0.0.1:9100)")
    parser.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                        help=f"where the local history cache lives (default {default_data_dir()})")
    parser.add_argument("--opengl", action="store_true",
                        help="draw with OpenGL instead of Qt Quick's software renderer")
    parser.add_argument("--log-level", default="WARNING", help="Python logging level (default WARNING)")
    args, _qt_args = parser.parse_known_args(argv)
    try:
        args.server = parse_address(args.server)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def pick_font_family(families: list[str]) -> str | None:
    """A font that has Hangul (and Latin), preferring Noto CJK; None leaves Qt's default."""
    for wanted in CJK_FAMILIES:
        for family in families:
            if family.lower().startswith(wanted.lower()):
                return family
    return None


def configure_graphics(opengl: bool) -> None:
    """Before the application exists: the software renderer unless asked for OpenGL, because it
    works on every virtual display and VM, and a chat window needs no GPU."""
    from PyQt5.QtCore import QCoreApplication, Qt
    from PyQt5.QtQuick import QQuickWindow, QSGRendererInterface
    if not opengl and not os.environ.get("QT_QUICK_BACKEND"):
        QQuickWindow.setSceneGraphBackend(QSGRendererInterface.Software)
    QCoreApplication.setAttribute(Qt.AA_EnableHighDpiScaling)
    QCoreApplication.setAttribute(Qt.AA_UseHighDpiPixmaps)
    QCoreApplication.setOrganizationName("messenger")
    QCoreApplication.setApplicationName(APP_NAME)


def setup_fonts(app) -> None:
    from PyQt5.QtGui import QFontDatabase
    family = pick_font_family(QFontDatabase().families())
    if family:
        font = app.font()
        font.setFamily(family)
        app.setFont(font)
    else:
        logging.getLogger(__name__).warning("no CJK font found: Korean text may not show "
                                            "(install fonts-noto-cjk, or run make run-client)")


def create_engine(bridge):
    """A QML engine with the bridge and the image provider, Main.qml loaded."""
    from PyQt5.QtCore import QUrl
    from PyQt5.QtQml import QQmlApplicationEngine
    from .images import PROVIDER, ImageProvider
    engine = QQmlApplicationEngine()
    engine.addImageProvider(PROVIDER, ImageProvider(bridge.images))
    engine.rootContext().setContextProperty("bridge", bridge)
    engine.load(QUrl.fromLocalFile(str(QML_DIR / "Main.qml")))
    return engine


def destroy_engine(engine) -> None:
    """Delete the QML engine now, before the bridge it binds to goes away (otherwise its
    bindings are re-evaluated against a deleted bridge and log errors at exit)."""
    from PyQt5 import sip
    for root in engine.rootObjects():
        root.setProperty("visible", False)
    sip.delete(engine)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    configure_graphics(args.opengl)
    from PyQt5.QtWidgets import QApplication
    from .bridge import Bridge
    app = QApplication(sys.argv[:1])
    setup_fonts(app)
    data_dir = args.data_dir or default_data_dir()
    bridge = Bridge(args.server, data_dir)
    engine = create_engine(bridge)
    if not engine.rootObjects():
        bridge.shutdown()
        print("the window could not be created (see the QML errors above)", file=sys.stderr)
        return 1
    app.aboutToQuit.connect(bridge.shutdown)
    # Ctrl-C in the terminal closes the window like the close button does.
    signal.signal(signal.SIGINT, lambda *_: app.quit())
    from PyQt5.QtCore import QTimer
    tick = QTimer(interval=200, timeout=lambda: None)   # lets Python see the signal
    tick.start()
    status = app.exec_()
    destroy_engine(engine)
    return status


if __name__ == "__main__":
    sys.exit(main())
