"""Draws the built-in emoticons (ui/emoticons/*.png) with QPainter.

Run ``python -m ui.emoticons.make_emoticons`` after changing a drawing; the PNGs are
committed so the client needs no drawing at start-up.
"""
from __future__ import annotations

import sys
from typing import Callable

from PyQt5.QtCore import QPointF, QRectF, Qt
from PyQt5.QtGui import QColor, QGuiApplication, QImage, QPainter, QPainterPath, QPen

from . import EMOTICONS, FOLDER

SIZE = 160
FACE = QColor("#FFD43B")
EDGE = QColor("#E0A800")
INK = QColor("#4A3423")
BLUSH = QColor(255, 120, 120, 110)


def _face(p: QPainter, color: QColor = FACE) -> None:
    p.setPen(QPen(EDGE, 5))
    p.setBrush(color)
    p.drawEllipse(QRectF(10, 10, SIZE - 20, SIZE - 20))


def _ink(p: QPainter, width: float = 7) -> None:
    p.setPen(QPen(INK, width, Qt.SolidLine, Qt.RoundCap, Qt.RoundJoin))
    p.setBrush(Qt.NoBrush)


def _dot_eyes(p: QPainter) -> None:
    p.setPen(Qt.NoPen)
    p.setBrush(INK)
    p.drawEllipse(QPointF(58, 66), 9, 12)
    p.drawEllipse(QPointF(102, 66), 9, 12)


def _arc(p: QPainter, x: float, y: float, w: float, h: float, start: int, span: int) -> None:
    p.drawArc(QRectF(x, y, w, h), start * 16, span * 16)


def _blush(p: QPainter) -> None:
    p.setPen(Qt.NoPen)
    p.setBrush(BLUSH)
    p.drawEllipse(QPointF(42, 100), 14, 9)
    p.drawEllipse(QPointF(118, 100), 14, 9)


def _heart(p: QPainter, cx: float, cy: float, s: float, color: QColor) -> None:
    path = QPainterPath()
    path.moveTo(cx, cy + s * 0.9)
    path.cubicTo(cx - s * 1.6, cy - s * 0.2, cx - s * 0.7, cy - s * 1.3, cx, cy - s * 0.45)
    path.cubicTo(cx + s * 0.7, cy - s * 1.3, cx + s * 1.6, cy - s * 0.2, cx, cy + s * 0.9)
    p.setPen(Qt.NoPen)
    p.setBrush(color)
    p.drawPath(path)


def smile(p: QPainter) -> None:
    _face(p); _dot_eyes(p); _blush(p); _ink(p)
    _arc(p, 50, 70, 60, 46, 200, 140)


def laugh(p: QPainter) -> None:
    _face(p); _ink(p)
    _arc(p, 44, 56, 28, 22, 20, 140)
    _arc(p, 88, 56, 28, 22, 20, 140)
    path = QPainterPath()
    path.moveTo(46, 92)
    path.quadTo(80, 150, 114, 92)
    path.closeSubpath()
    p.setBrush(QColor("#B33A3A"))
    p.drawPath(path)


def love(p: QPainter) -> None:
    _face(p)
    _heart(p, 58, 66, 15, QColor("#F0506E"))
    _heart(p, 102, 66, 15, QColor("#F0506E"))
    _ink(p)
    _arc(p, 55, 80, 50, 36, 200, 140)


def wink(p: QPainter) -> None:
    _face(p); _blush(p)
    p.setPen(Qt.NoPen); p.setBrush(INK)
    p.drawEllipse(QPointF(58, 66), 9, 12)
    _ink(p)
    _arc(p, 88, 56, 28, 22, 200, 140)
    _arc(p, 50, 74, 60, 40, 200, 140)


def cool(p: QPainter) -> None:
    _face(p)
    p.setPen(Qt.NoPen); p.setBrush(QColor("#222"))
    p.drawRoundedRect(QRectF(30, 52, 44, 28), 10, 10)
    p.drawRoundedRect(QRectF(86, 52, 44, 28), 10, 10)
    _ink(p, 6)
    p.drawLine(QPointF(72, 60), QPointF(88, 60))
    _arc(p, 56, 86, 48, 30, 210, 120)


def wow(p: QPainter) -> None:
    _face(p); _dot_eyes(p); _ink(p)
    p.setBrush(INK)
    p.drawEllipse(QPointF(80, 110), 12, 16)


def sad(p: QPainter) -> None:
    _face(p); _dot_eyes(p); _ink(p)
    _arc(p, 52, 100, 56, 40, 30, 120)


def cry(p: QPainter) -> None:
    _face(p); _ink(p)
    _arc(p, 44, 60, 28, 18, 200, 140)
    _arc(p, 88, 60, 28, 18, 200, 140)
    p.setPen(Qt.NoPen); p.setBrush(QColor("#4DABF7"))
    p.drawRoundedRect(QRectF(50, 76, 14, 50), 7, 7)
    p.drawRoundedRect(QRectF(96, 76, 14, 50), 7, 7)
    _ink(p)
    _arc(p, 62, 108, 36, 24, 30, 120)


def angry(p: QPainter) -> None:
    _face(p, QColor("#FF8A5B")); _dot_eyes(p); _ink(p)
    p.drawLine(QPointF(40, 44), QPointF(70, 56))
    p.drawLine(QPointF(120, 44), QPointF(90, 56))
    _arc(p, 56, 100, 48, 30, 30, 120)


def sleepy(p: QPainter) -> None:
    _face(p); _ink(p)
    p.drawLine(QPointF(46, 68), QPointF(72, 68))
    p.drawLine(QPointF(88, 68), QPointF(114, 68))
    p.drawEllipse(QPointF(80, 106), 8, 8)
    font = p.font(); font.setPixelSize(30); font.setBold(True); p.setFont(font)
    p.setPen(QColor("#5C7CFA"))
    p.drawText(QRectF(104, 4, 50, 40), Qt.AlignCenter, "z")
    font.setPixelSize(22); p.setFont(font)
    p.drawText(QRectF(124, 28, 30, 30), Qt.AlignCenter, "z")


def thumbsup(p: QPainter) -> None:
    # The thumb sits on the fist's left edge, tilted, with curled fingers drawn on the right,
    # so it cannot be read as any other gesture.
    p.setPen(QPen(EDGE, 5)); p.setBrush(FACE)
    p.save()
    p.translate(66, 86)
    p.rotate(-18)
    p.drawRoundedRect(QRectF(-4, -68, 30, 74), 14, 14)
    p.restore()
    p.drawRoundedRect(QRectF(56, 70, 80, 68), 18, 18)
    _ink(p, 5)
    p.setPen(QPen(EDGE, 5, Qt.SolidLine, Qt.RoundCap))
    for y in (88, 104, 120):
        p.drawLine(QPointF(108, y), QPointF(132, y))
    p.setPen(QPen(QColor("#3B5BDB"), 4)); p.setBrush(QColor("#5C7CFA"))
    p.drawRoundedRect(QRectF(22, 74, 32, 66), 8, 8)


def heart(p: QPainter) -> None:
    _heart(p, 80, 84, 50, QColor("#F03E3E"))
    p.setBrush(QColor(255, 255, 255, 120))
    p.drawEllipse(QPointF(56, 58), 12, 8)


DRAWINGS: dict[str, Callable[[QPainter], None]] = {name: globals()[name] for name in EMOTICONS}


def draw(name: str) -> QImage:
    image = QImage(SIZE, SIZE, QImage.Format_ARGB32_Premultiplied)
    image.fill(Qt.transparent)
    p = QPainter(image)
    p.setRenderHint(QPainter.Antialiasing)
    DRAWINGS[name](p)
    p.end()
    return image


def main() -> None:
    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1] + ["-platform", "offscreen"])
    for name in EMOTICONS:
        draw(name).save(str(FOLDER / f"{name}.png"))
    print(f"drew {len(EMOTICONS)} emoticons in {FOLDER}")
    del app


if __name__ == "__main__":
    main()
