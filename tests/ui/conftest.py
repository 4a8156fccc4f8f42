"""Qt fixtures for the desktop client's tests: an offscreen platform, the software renderer,
and bridges against real servers."""
from __future__ import annotations

import os
import tempfile

# Before anything imports Qt: no display is needed, and Qt wants a private runtime folder.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
if not os.environ.get("XDG_RUNTIME_DIR"):
    os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="qt-runtime-")

from pathlib import Path  # noqa: E402
from typing import Callable, Iterator  # noqa: E402

import gevent  # noqa: E402
import pytest  # noqa: E402
from PyQt5.QtCore import QSettings  # noqa: E402

from ui.main import configure_graphics  # noqa: E402

configure_graphics(opengl=False)

from ui.bridge import Bridge  # noqa: E402


@pytest.fixture
def bridge_factory(tmp_path: Path, qapp) -> Iterator[Callable[..., Bridge]]:
    """``bridge_factory(server, data_dir=None)`` -> a Bridge with its own settings file; all are
    shut down after the test."""
    made: list[Bridge] = []

    def make(server, data_dir: Path | None = None, name: str = "client") -> Bridge:
        settings = QSettings(str(tmp_path / f"{name}.ini"), QSettings.IniFormat)
        bridge = Bridge(server.address, data_dir or tmp_path / f"{name}-data", settings)
        made.append(bridge)
        return bridge

    yield make
    for bridge in made:
        bridge.shutdown()


def gevent_wait(condition: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> object:
    """Let this thread's gevent hub run (headless peers live there) until ``condition()``."""
    with gevent.Timeout(timeout, AssertionError(f"timed out after {timeout} s waiting for {what}")):
        while True:
            value = condition()
            if value:
                return value
            gevent.sleep(0.02)
