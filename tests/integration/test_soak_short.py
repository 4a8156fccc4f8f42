"""A short soak inside `make test`: random sends, invites, leaves, logouts and vanishing peers,
then every peer's view checked against the archive (`make soak` runs the long one)."""
from __future__ import annotations

import pytest

from ..soak import run_soak


@pytest.mark.timeout(240)
def test_short_soak_is_consistent(tmp_path):
    figures = run_soak(duration=15, peers=24, rooms=5, seed=7, progress=False)
    assert figures["failures"] == []
    assert figures["send"] > 50 and figures["vanish"] > 0 and figures["logout"] > 0
    assert figures["views_checked"] > 20
    assert figures["ok"]
