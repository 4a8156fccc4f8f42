"""In-memory images for QML: message images, room images and profile pictures.

The bridge puts image bytes here (they arrive from the peer in the hub thread); QML asks for
``image://store/<key>`` and this provider decodes them, possibly on Qt's image loader thread,
so no image file is ever read on the Qt thread. ``image://store/round/<key>`` gives a
rounded-square crop, for avatars, without shader effects (the software renderer has none).
"""
from __future__ import annotations

import threading

from PyQt5.QtCore import QBuffer, QByteArray, QIODevice, QSize, Qt
from PyQt5.QtGui import QImage, QImageReader, QPainter, QPainterPath
from PyQt5.QtQuick import QQuickImageProvider

PROVIDER = "store"


def image_size(data: bytes) -> tuple[int, int]:
    """Width and height from an image's header (no full decode); (0, 0) when unreadable."""
    buf = QBuffer()
    buf.setData(QByteArray(data))
    buf.open(QIODevice.ReadOnly)
    size = QImageReader(buf).size()
    return (size.width(), size.height()) if size.isValid() else (0, 0)


def to_png(data: bytes, max_side: int | None = None) -> bytes:
    """Re-encode any image Qt can read as PNG, scaled down to ``max_side`` when given.
    Raises ValueError when the bytes are not an image."""
    image = QImage.fromData(data)
    if image.isNull():
        raise ValueError("not an image Qt can read")
    if max_side and max(image.width(), image.height()) > max_side:
        image = image.scaled(max_side, max_side, Qt.KeepAspectRatio, Qt.SmoothTransformation)
    out = QBuffer()
    out.open(QIODevice.WriteOnly)
    image.save(out, "PNG")
    return bytes(out.data())


def is_png_or_jpeg(data: bytes) -> bool:
    return data.startswith(b"\x89PNG\r\n\x1a\n") or data.startswith(b"\xff\xd8\xff")


class ImageStore:
    """Image bytes by key, shared between the hub thread (writer) and Qt's loaders (readers)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[str, bytes] = {}

    def put(self, key: str, data: bytes) -> str:
        """Store ``data`` under ``key``; returns the URL QML should use."""
        with self._lock:
            self._data[key] = data
        return self.url(key)

    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._data.get(key)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._data

    @staticmethod
    def url(key: str, round_: bool = False) -> str:
        return f"image://{PROVIDER}/{'round/' if round_ else ''}{key}"


class ImageProvider(QQuickImageProvider):
    """Serves an ``ImageStore`` to QML."""

    def __init__(self, store: ImageStore) -> None:
        super().__init__(QQuickImageProvider.Image, QQuickImageProvider.ForceAsynchronousImageLoading)
        self.store = store

    def requestImage(self, key: str, requested: QSize) -> tuple[QImage, QSize]:  # noqa: N802 (Qt's name)
        rounded = key.startswith("round/")
        data = self.store.get(key[6:] if rounded else key)
        image = QImage.fromData(data) if data else QImage()
        if image.isNull():
            image = QImage(1, 1, QImage.Format_ARGB32)
            image.fill(Qt.transparent)
            return image, image.size()
        original = image.size()
        if requested.isValid() and (requested.width() > 0 or requested.height() > 0):
            target = QSize(requested.width() or 1 << 20, requested.height() or 1 << 20)
            mode = Qt.KeepAspectRatioByExpanding if rounded else Qt.KeepAspectRatio
            if rounded or image.width() > target.width() or image.height() > target.height():
                image = image.scaled(target, mode, Qt.SmoothTransformation)
        if rounded:
            image = _circle(image)
        return image, original


def _circle(image: QImage) -> QImage:
    side = min(image.width(), image.height())
    out = QImage(side, side, QImage.Format_ARGB32_Premultiplied)
    out.fill(Qt.transparent)
    painter = QPainter(out)
    painter.setRenderHint(QPainter.Antialiasing)
    path = QPainterPath()
    # KakaoTalk's avatars are rounded squares rather than circles.
    path.addRoundedRect(0, 0, side, side, side * 0.38, side * 0.38)
    painter.setClipPath(path)
    painter.drawImage(0, 0, image.copy((image.width() - side) // 2, (image.height() - side) // 2, side, side))
    painter.end()
    return out
