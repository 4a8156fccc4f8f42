from __future__ import annotations

import pytest

from ..support import logged_in_peer


@pytest.fixture
def peers(server):
    """``peers("kim", "lee")`` -> logged-in Peers (registered on first use); all closed after."""
    made = []

    def make(*user_ids, register=True):
        out = [logged_in_peer(server, u, register=register) for u in user_ids]
        made.extend(out)
        return out if len(out) > 1 else out[0]
    yield make
    for p in made:
        p.close()
