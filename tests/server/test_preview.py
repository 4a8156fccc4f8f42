"""The room list's one-line preview of the last message."""
from __future__ import annotations

from messenger_server.actions.messages import PREVIEW_CHARS, preview


def test_text_preview_is_cut_and_has_no_control_characters():
    text = "line one\nline\ttwo\x00\x1f end " + "é" * 200
    shown = preview("text", text.encode())
    assert len(shown) == PREVIEW_CHARS
    assert shown.startswith("line one line two   end éé")
    assert all(ord(c) >= 32 for c in shown)


def test_other_types_show_their_type():
    assert preview("image", b"\x89PNG") == "[image]"
    assert preview("emoticon", b"smile") == "[emoticon]"
