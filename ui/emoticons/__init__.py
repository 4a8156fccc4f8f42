"""The built-in emoticon set: ids (what an ``emoticon`` message carries) and their pictures.

The PNGs beside this file are drawn by ``make_emoticons.py`` (run it to redraw them). An id
this client does not know, from a newer client, is shown as text rather than dropped.
"""
from __future__ import annotations

from pathlib import Path

from PyQt5.QtCore import QUrl

FOLDER = Path(__file__).resolve().parent

# Order is the picker's order.
EMOTICONS: tuple[str, ...] = ("smile", "laugh", "love", "wink", "cool", "wow",
                              "sad", "cry", "angry", "sleepy", "thumbsup", "heart")


def emoticon_url(emoticon_id: str) -> str:
    """A file URL of the emoticon's picture, or "" for an unknown id."""
    if emoticon_id not in EMOTICONS:
        return ""
    return QUrl.fromLocalFile(str(FOLDER / f"{emoticon_id}.png")).toString()
