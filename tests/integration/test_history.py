"""History across several days: paging back 3 days at a time, init diffs and gap flags, and
the property that what a client had plus the init diff equals the full history."""
from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from messenger_protocol.messages import RoomKey

from ..support import day_messages, seed_history

DAYS = {dt.date(2026, 3, d): n for d, n in [(1, 3), (2, 1), (4, 5), (9, 2), (10, 4), (20, 2), (21, 3)]}
TOTAL = sum(DAYS.values())


def seeded_room(server, peers, db):
    kim, lee = peers("kim", "lee")
    reply = kim.create_room("diary", invite=["lee"])
    key = RoomKey(reply["session_id"], reply["creator_id"])
    assert seed_history(db, server.data_dir / "archive", key, DAYS) == TOTAL
    return kim, lee, key


@pytest.fixture
def seeded(server, peers, db):
    return seeded_room(server, peers, db)


def seqs(content) -> list[int]:
    return [m["seq"] for day in content for m in day_messages(day["content"])]


def test_history_pages_back_three_days_at_a_time(server, peers, db):
    _, lee, key = seeded_room(server, peers, db)
    page = lee.history(key)
    assert [d["chat_date"] for d in page["content"]] == ["2026-03-10", "2026-03-20", "2026-03-21"]
    assert page["beginning"] is False
    page2 = lee.history(key, before="2026-03-10")
    assert [d["chat_date"] for d in page2["content"]] == ["2026-03-02", "2026-03-04", "2026-03-09"]
    page3 = lee.history(key, before="2026-03-02")
    assert [d["chat_date"] for d in page3["content"]] == ["2026-03-01"] and page3["beginning"] is True
    assert seqs(page3["content"] + page2["content"] + page["content"]) == list(range(1, TOTAL + 1))
    assert lee.history(key, before="2026-03-01")["content"] == []


def test_new_messages_after_seeded_days_go_to_today(server, peers, db):
    kim, lee, key = seeded_room(server, peers, db)
    reply = kim.send_text(key, "today")
    assert reply["seq"] == TOTAL + 1
    page = lee.history(key)
    assert page["content"][-1]["chat_date"] == dt.date.today().isoformat()
    assert seqs(page["content"])[-1] == TOTAL + 1


def test_init_gap_flag(server, peers, db):
    _, lee, key = seeded_room(server, peers, db)
    fresh = lee.init()[0]
    assert [d["chat_date"] for d in fresh["content"]] == ["2026-03-10", "2026-03-20", "2026-03-21"]
    assert fresh["gap"] is True and fresh["last_seq"] == TOTAL
    near = lee.init({key: TOTAL - 2})[0]
    assert seqs(near["content"]) == [TOTAL - 1, TOTAL] and near["gap"] is False
    far = lee.init({key: 2})[0]
    assert far["gap"] is True and seqs(far["content"])[0] > 3


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(known=st.integers(min_value=0, max_value=TOTAL))
def test_what_a_client_had_plus_the_init_diff_is_the_full_history(seeded, known):
    # The fixture runs once for all examples; they only read the room, so sharing it is fine.
    _, lee, key = seeded
    full = []
    before = None
    while True:                                   # a fresh client pages the whole history
        page = lee.history(key, before=before)
        full = seqs(page["content"]) + full
        if page["beginning"] or not page["content"]:
            break
        before = page["content"][0]["chat_date"]
    assert full == list(range(1, TOTAL + 1))
    had = full[:known]
    entry = lee.init({key: known})[0]
    diff = seqs(entry["content"])
    if entry["gap"]:
        # The diff is the newest part; paging back from its first day fills the rest.
        first_day = entry["content"][0]["chat_date"]
        older = []
        before = first_day
        while True:
            page = lee.history(key, before=before)
            older = seqs(page["content"]) + older
            if page["beginning"] or not page["content"]:
                break
            before = page["content"][0]["chat_date"]
        merged = sorted(set(had) | set(older) | set(diff))
    else:
        merged = had + diff
    assert merged == full


def test_a_day_bigger_than_one_reply_comes_in_parts(server, peers, db):
    kim = peers("kim")
    reply = kim.create_room("big day")
    key = RoomKey(reply["session_id"], reply["creator_id"])
    # 260 messages of 60 KB on one day (~20 MB of base64): more than one reply may carry.
    total = seed_history(db, server.data_dir / "archive", key, {dt.date(2026, 3, 1): 260, dt.date(2026, 3, 2): 5},
                         text="{seq} " + "x" * 60_000)
    seen: list[int] = []
    page = kim.history(key)
    pages = 1
    while True:
        seen = seqs(page["content"]) + seen
        if page["beginning"]:
            break
        page = kim.history(key, before=page["next_before"], before_seq=page["next_before_seq"])
        pages += 1
        assert pages < 20
    assert seen == list(range(1, total + 1))
    assert pages >= 3, "the big day was split"
    fetched, after = [], 0
    while True:
        reply = kim.fetch(key, after)
        fetched += [m["seq"] for m in reply["messages"]]
        if not reply["more"]:
            break
        after = fetched[-1]
    assert fetched == list(range(1, total + 1))
    entry = kim.init()[0]
    assert entry["gap"] is True and seqs(entry["content"])[-1] == total
