"""Command line and start-up choices of the client."""
from __future__ import annotations

import pytest

from ui.bridge import local_path, split_ids
from ui.main import default_data_dir, parse_args, pick_font_family


def test_arguments():
    args = parse_args([])
    assert args.server == ("127.0.0.1", 9100) and args.data_dir is None
    args = parse_args(["--server", "10.0.0.5:9200", "--data-dir", "/tmp/x"])
    assert args.server == ("10.0.0.5", 9200) and str(args.data_dir) == "/tmp/x"
    with pytest.raises(SystemExit):
        parse_args(["--server", "host:port"])


def test_data_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_data_dir() == tmp_path / "messenger-client"


def test_font_choice_prefers_hangul_fonts():
    assert pick_font_family(["DejaVu Sans", "Noto Sans CJK KR", "Noto Sans CJK JP"]) == "Noto Sans CJK KR"
    assert pick_font_family(["DejaVu Sans", "NanumGothic"]) == "NanumGothic"
    assert pick_font_family(["DejaVu Sans"]) is None


def test_helpers():
    assert split_ids(" kim, lee;park  choi ") == ["kim", "lee", "park", "choi"]
    assert local_path("file:///tmp/a%20b.png") == "/tmp/a b.png"
    assert local_path("/tmp/x.png") == "/tmp/x.png"
