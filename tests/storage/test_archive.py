"""The chat archive on disk: format, committed-size appends, strays, repair, id checks, and a
real kill -9 of a writer process."""
from __future__ import annotations

import base64
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from messenger_protocol import ErrorCode, ProtocolError
from messenger_server.storage import archive as arc
from messenger_server.storage.archive import Archive, ArchiveError, make_record

SID, CID = "20230914_000001", "tongstar"
D1, D2, D3 = date(2023, 9, 14), date(2023, 9, 15), date(2023, 10, 1)
CRASH_WRITER = Path(__file__).with_name("archive_crash_writer.py")
REPO = Path(__file__).resolve().parents[2]


def rec(seq: int, text: str = "", user: str = "tongstar", kind: str = "text") -> bytes:
    return make_record(user, "2023-09-14T09:30:00.123+09:00", kind,
                       (text or f"message {seq}").encode(), seq)


def all_files_valid(root: Path) -> None:
    """Every JSON file under the root parses (the SPEC promise after every operation)."""
    for path in root.rglob("*.json"):
        json.loads(path.read_bytes())


@pytest.fixture
def archive(tmp_path: Path) -> Archive:
    return Archive(tmp_path / "archive")


@pytest.fixture
def room(archive: Archive) -> Path:
    return archive.room_dir(SID, CID)


def seqs(data: bytes | None) -> list[int]:
    assert data is not None
    return [r["seq"] for r in arc.parse_day(data)]


# -- format and round trips ---------------------------------------------------------------------
def test_append_and_read_round_trip(archive: Archive, room: Path) -> None:
    size = archive.append(room, D1, [rec(1, "안녕 🙂")], None, 0)
    path = room / "2023" / "09" / "14.json"
    assert path.stat().st_size == size
    all_files_valid(archive.root)
    size = archive.append(room, D1, [rec(2), rec(3, kind="emoticon")], D1, size)
    assert path.stat().st_size == size
    all_files_valid(archive.root)
    data = archive.read_day(room, D1, D1, size)
    assert data == path.read_bytes()
    chat = arc.parse_day(data)
    assert [r["seq"] for r in chat] == [1, 2, 3]
    assert list(chat[0]) == ["user_id", "chat_time", "chat_type", "content", "seq"]
    assert base64.b64decode(chat[0]["content"]).decode() == "안녕 🙂"
    assert chat[2]["chat_type"] == "emoticon"
    lines = [rec(1, "안녕 🙂"), rec(2), rec(3, kind="emoticon")]
    assert data == arc.HEADER + arc.SEP.join(lines) + arc.TAIL
    assert arc.last_seq_in(data) == 3


def test_day_rollover_keeps_each_day_separate(archive: Archive, room: Path) -> None:
    s1 = archive.append(room, D1, [rec(1)], None, 0)
    s1 = archive.append(room, D1, [rec(2)], D1, s1)
    s2 = archive.append(room, D2, [rec(3)], D1, s1)
    all_files_valid(archive.root)
    s3 = archive.append(room, D3, [rec(4), rec(5)], D2, s2)
    all_files_valid(archive.root)
    assert archive.list_days(room) == [D1, D2, D3]
    assert seqs(archive.read_day(room, D1, D3, s3)) == [1, 2]
    assert seqs(archive.read_day(room, D2, D3, s3)) == [3]
    assert seqs(archive.read_day(room, D3, D3, s3)) == [4, 5]
    assert archive.read_day(room, date(2023, 9, 20), D3, s3) is None  # no file that day
    assert (room / "2023" / "10" / "01.json").stat().st_size == s3


def test_size_after_predicts_every_append(archive: Archive, room: Path) -> None:
    """The send path records the new committed size before it writes (size_after): it must be
    exactly what the write then produces, on a first day, the same day and a new day."""
    day, size = None, 0
    for when, records in [(D1, [rec(1)]), (D1, [rec(2, "두 번째"), rec(3)]), (D2, [rec(4)]),
                          (D3, [rec(5), rec(6, kind="emoticon")]), (D3, [rec(7)])]:
        expected = arc.size_after(when, records, day, size)
        size = archive.append(room, when, records, day, size)
        day = when
        assert size == expected
    all_files_valid(archive.root)


def test_day_before_committed_day_is_refused(archive: Archive, room: Path) -> None:
    size = archive.append(room, D2, [rec(1)], None, 0)
    with pytest.raises(ValueError):
        archive.append(room, D1, [rec(2)], D2, size)
    assert seqs(archive.read_day(room, D2, D2, size)) == [1]
    assert not (room / "2023" / "09" / "14.json").exists()


def test_bad_records_and_wrong_committed_state_are_refused(archive: Archive, room: Path) -> None:
    size = archive.append(room, D1, [rec(1), rec(2)], None, 0)
    before = (room / "2023" / "09" / "14.json").read_bytes()
    for records in ([], [b'{"a":\n1}'], [b"not json"], ["{}"]):
        with pytest.raises(ValueError):
            archive.append(room, D1, records, D1, size)
    with pytest.raises(ArchiveError):  # a size that ends inside a record
        archive.append(room, D1, [rec(3)], D1, size - 7)
    with pytest.raises(ArchiveError):  # a size beyond the file
        archive.append(room, D1, [rec(3)], D1, size + 100)
    assert (room / "2023" / "09" / "14.json").read_bytes() == before


# -- uncommitted appends (strays) ---------------------------------------------------------------
def test_uncommitted_append_is_invisible_and_overwritten(archive: Archive, room: Path) -> None:
    committed = archive.append(room, D1, [rec(1)], None, 0)
    committed = archive.append(room, D1, [rec(2)], D1, committed)
    # This append's transaction "fails": the caller keeps the old committed size.
    stray = archive.append(room, D1, [rec(3, "x" * 500), rec(4)], D1, committed)
    assert stray > committed
    assert seqs(archive.read_day(room, D1, D1, committed)) == [1, 2]
    # The retry (smaller than the stray) overwrites it and trims the leftover bytes.
    new = archive.append(room, D1, [rec(3)], D1, committed)
    path = room / "2023" / "09" / "14.json"
    assert path.stat().st_size == new < stray
    assert seqs(path.read_bytes()) == [1, 2, 3]
    assert archive.read_day(room, D1, D1, new) == path.read_bytes()


def test_torn_write_is_invisible_and_repaired(archive: Archive, room: Path) -> None:
    committed = archive.append(room, D1, [rec(1)], None, 0)
    committed = archive.append(room, D1, [rec(2)], D1, committed)
    path = room / "2023" / "09" / "14.json"
    good = path.read_bytes()
    for torn in (b",\n", b",\n{\"user_id\":\"ton", b"\n]}\n,\n{", b"XXXX" * 3000):
        with open(path, "r+b") as f:  # what a kill -9 in mid-pwrite leaves
            f.seek(committed - len(arc.TAIL))
            f.write(torn)
        with pytest.raises(json.JSONDecodeError):
            json.loads(path.read_bytes())
        assert archive.read_day(room, D1, D1, committed) == good
        assert archive.repair(room, D1, committed) is True
        assert path.read_bytes() == good
        assert archive.repair(room, D1, committed) is False  # idempotent, nothing left to fix


def test_stray_new_day_file_is_ignored_then_deleted(archive: Archive, room: Path) -> None:
    s1 = archive.append(room, D1, [rec(1)], None, 0)
    s2 = archive.append(room, D2, [rec(2)], D1, s1)   # never committed
    archive.append(room, D3, [rec(3)], D2, s2)        # never committed, built on the stray
    assert archive.read_day(room, D2, D1, s1) is None
    assert archive.read_day(room, D3, D1, s1) is None
    assert archive.list_days(room) == [D1, D2, D3]
    assert archive.repair(room, D1, s1) is True
    assert archive.list_days(room) == [D1]
    assert seqs(archive.read_day(room, D1, D1, s1)) == [1]
    all_files_valid(archive.root)


def test_stray_new_day_file_is_replaced_by_the_retry(archive: Archive, room: Path) -> None:
    s1 = archive.append(room, D1, [rec(1)], None, 0)
    archive.append(room, D2, [rec(2, "long stray " * 50), rec(3)], D1, s1)  # not committed
    s2 = archive.append(room, D2, [rec(2)], D1, s1)
    assert seqs((room / "2023" / "09" / "15.json").read_bytes()) == [2]
    assert archive.read_day(room, D2, D2, s2) == (room / "2023" / "09" / "15.json").read_bytes()


def test_first_append_of_a_room_may_replace_a_stray(archive: Archive, room: Path) -> None:
    archive.append(room, D1, [rec(1, "never committed")], None, 0)
    assert archive.read_day(room, D1, None, 0) is None
    assert archive.repair(room, None, 0) is True
    assert archive.list_days(room) == []


def test_rollover_repairs_the_old_day_first(archive: Archive, room: Path) -> None:
    s1 = archive.append(room, D1, [rec(1)], None, 0)
    archive.append(room, D1, [rec(2)], D1, s1)  # stray on the old day, never committed
    s2 = archive.append(room, D2, [rec(2)], D1, s1)
    # D1 is now read whole, so it must be exactly its committed content.
    assert seqs(archive.read_day(room, D1, D2, s2)) == [1]
    assert (room / "2023" / "09" / "14.json").stat().st_size == s1


def test_repair_is_a_no_op_when_all_is_well(archive: Archive, room: Path) -> None:
    s1 = archive.append(room, D1, [rec(1)], None, 0)
    before = (room / "2023" / "09" / "14.json").stat()
    assert archive.repair(room, D1, s1) is False
    assert (room / "2023" / "09" / "14.json").stat().st_mtime_ns == before.st_mtime_ns
    with pytest.raises(ArchiveError):
        archive.repair(room, D2, s1)  # committed file missing


def test_list_days_ignores_other_names(archive: Archive, room: Path) -> None:
    archive.append(room, D1, [rec(1)], None, 0)
    for junk in ("2023/09/1.json", "2023/09/31.json", "2023/13/01.json", "2023/09/15.json.tmp",
                 "abcd/09/15.json", "2023/09/١٥.json", "2023/9/15.json"):
        (room / junk).parent.mkdir(parents=True, exist_ok=True)
        (room / junk).write_text("{}")
    assert archive.list_days(room) == [D1]


def test_write_records_defers_the_sync(archive: Archive, room: Path) -> None:
    size, pending = archive.write_records(room, D1, [rec(1)], None, 0)
    assert pending.fd >= 0 and room / "2023" / "09" in pending.dirs
    pending.sync()
    assert pending.fd == -1
    with pytest.raises(ValueError):
        pending.sync()
    size2, pending = archive.write_records(room, D1, [rec(2)], D1, size)
    pending.close()
    assert seqs(archive.read_day(room, D1, D1, size2)) == [1, 2]


# -- room info and image ------------------------------------------------------------------------
def test_info_and_image(archive: Archive, room: Path) -> None:
    assert archive.read_info(room) is None and archive.read_image(room) is None
    archive.write_info(room, "test session")
    assert json.loads((room / "session_info.json").read_bytes()) == {
        "session_id": SID, "session_name": "test session", "creator_id": CID}
    archive.write_info(room, "새 이름")
    assert archive.read_info(room)["session_name"] == "새 이름"
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    archive.write_image(room, png)
    assert archive.read_image(room) == png
    assert sorted(p.name for p in room.iterdir()) == ["session_img.png", "session_info.json"]


# -- ids and paths --------------------------------------------------------------------------------
BAD_CREATORS = ["../x", "a/b", ".hidden", "..", "a\x00b", "x" * 51, "tōng", "", "a b", "a\\b",
                "tongstar\n", 7, None]
BAD_SESSIONS = ["../20230914_000001", "20230914_00000", "2023091a_000001", "20230914-000001",
                "20230914_000001/..", "２０２３０９１４_000001", "", None]


@pytest.mark.parametrize("creator", BAD_CREATORS)
def test_bad_creator_ids_are_refused(archive: Archive, tmp_path: Path, creator: object) -> None:
    with pytest.raises(ProtocolError) as info:
        archive.room_dir(SID, creator)
    assert info.value.code is ErrorCode.BAD_REQUEST
    assert list(tmp_path.iterdir()) == []  # not even the root was created


@pytest.mark.parametrize("session", BAD_SESSIONS)
def test_bad_session_ids_are_refused(archive: Archive, tmp_path: Path, session: object) -> None:
    with pytest.raises(ProtocolError) as info:
        archive.room_dir(session, CID)
    assert info.value.code is ErrorCode.BAD_REQUEST
    assert list(tmp_path.iterdir()) == []


def test_forged_room_paths_are_refused(archive: Archive, tmp_path: Path) -> None:
    good = archive.room_dir(SID, CID)
    forged = [archive.root / ".." / f"{SID}_{CID}", tmp_path / f"{SID}_{CID}", good / "sub",
              archive.root / f"{SID}_../x", archive.root / f"{SID}x{CID}", archive.root]
    for room in forged:
        for call in (lambda: archive.append(room, D1, [rec(1)], None, 0),
                     lambda: archive.write_info(room, "x"),
                     lambda: archive.read_day(room, D1, D1, 100),
                     lambda: archive.repair(room, None, 0)):
            with pytest.raises(ProtocolError) as info:
                call()
            assert info.value.code is ErrorCode.BAD_REQUEST
    assert list(tmp_path.iterdir()) == []


def test_room_symlinked_out_of_the_root_is_refused(archive: Archive, tmp_path: Path) -> None:
    archive.root.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (archive.root / f"{SID}_{CID}").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ProtocolError):
        archive.room_dir(SID, CID)


def test_a_room_folder_not_yet_made_is_checked_again_once_it_exists(archive: Archive, tmp_path: Path) -> None:
    # room_dir remembers only folders that exist when checked (the send path asks for its
    # rooms' folders at every batch); a name checked before it existed is checked again.
    archive.root.mkdir()
    assert archive.room_dir(SID, CID) == archive.root / f"{SID}_{CID}"
    (tmp_path / "elsewhere").mkdir()
    (archive.root / f"{SID}_{CID}").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ProtocolError):
        archive.room_dir(SID, CID)
    other = archive.room_dir(SID, "kim")
    archive.write_info(other, "x")                     # now it exists: remembered from here on
    assert archive.room_dir(SID, "kim") is archive.room_dir(SID, "kim")
    with pytest.raises(ProtocolError):
        archive.room_dir(["not", "hashable"], CID)     # bad ids are still refused, not cached


def test_valid_ids_make_one_folder_under_the_root(archive: Archive) -> None:
    room = archive.room_dir("20230914_000001", "a.b-c_D9")
    assert room == archive.root / "20230914_000001_a.b-c_D9"
    archive.write_info(room, "x")
    assert [p.name for p in archive.root.iterdir()] == ["20230914_000001_a.b-c_D9"]


# -- filter_after ---------------------------------------------------------------------------------
record_st = st.tuples(st.sampled_from(["tongstar", "a", "b.c-d_e"]),
                      st.sampled_from(["text", "image", "emoticon"]),
                      st.binary(max_size=40) | st.text(max_size=20).map(str.encode))


@settings(max_examples=200, deadline=None)
@given(first=st.integers(0, 10**6), gaps=st.lists(st.integers(1, 3), max_size=30),
       items=st.data(), after=st.integers(-5, 10**6 + 100))
def test_filter_after_matches_parsing(first: int, gaps: list[int], items: st.DataObject,
                                      after: int) -> None:
    seq_list = [first]
    for gap in gaps:
        seq_list.append(seq_list[-1] + gap)
    if after >= 0 and items.draw(st.booleans()):  # often cut inside the file
        after = items.draw(st.sampled_from([s - 1 for s in seq_list] + seq_list))
    records = [make_record(u, "2023-09-14T00:00:00.000+00:00", k, c, s)
               for (u, k, c), s in zip(items.draw(st.lists(record_st, min_size=len(seq_list),
                                                           max_size=len(seq_list))), seq_list)]
    data = arc.HEADER + arc.SEP.join(records) + arc.TAIL
    expected = [r for r in arc.parse_day(data) if r["seq"] > after]
    got = arc.filter_after(data, after)
    if not expected:
        assert got is None
    else:
        assert got is not None and arc.parse_day(got) == expected
        assert got.startswith(arc.HEADER) and got.endswith(arc.TAIL)
    assert arc.last_seq_in(data) == seq_list[-1]


def test_filter_after_handles_other_layouts() -> None:
    data = json.dumps({"chat": [{"user_id": "a", "chat_time": "t", "chat_type": "text",
                                 "content": "", "seq": n} for n in (1, 2, 3)]}, indent=4).encode()
    assert seqs(arc.filter_after(data, 1)) == [2, 3]
    assert arc.filter_after(data, 3) is None
    assert arc.last_seq_in(data) == 3
    # A record whose keys are in another order still works (slow path per line).
    odd = arc.HEADER + b'{"seq":1,"user_id":"a"},\n{"seq":2,"x":"\\"seq\\":9}"}' + arc.TAIL
    assert seqs(arc.filter_after(odd, 1)) == [2]
    assert arc.last_seq_in(odd) == 2


# -- kill -9 --------------------------------------------------------------------------------------
@pytest.mark.parametrize("threshold,seed", [(200, 1), (333, 2), (520, 3)])
def test_kill_9_loses_no_acknowledged_record(tmp_path: Path, threshold: int, seed: int) -> None:
    root, state_path = tmp_path / "archive", tmp_path / "state.json"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, str(CRASH_WRITER), str(root), str(state_path),
                             "--per-day", "150", "--seed", str(seed), "--max-seconds", "90"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO)
    acked: list[int] = []
    buffer = b""
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + 60
            while not acked or acked[-1] < threshold:
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"writer acknowledged only {acked[-1:]} in time"
                if sel.select(timeout=remaining):
                    chunk = os.read(proc.stdout.fileno(), 65536)
                    assert chunk, f"writer exited early: {proc.stderr.read().decode()}"
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    acked.extend(int(line) for line in lines)
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        rest = buffer + proc.stdout.read()
        acked.extend(int(line) for line in rest.split(b"\n") if line.strip())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert acked == sorted(acked) and acked[-1] >= threshold

    state = json.loads(state_path.read_text())
    committed_day = date.fromisoformat(state["committed_day"])
    committed_size = state["committed_size"]
    archive = Archive(root)
    room = archive.room_dir("20230914_000001", "tongstar")
    # Before any repair, readers already see only complete, committed days.
    before = {day: archive.read_day(room, day, committed_day, committed_size)
              for day in archive.list_days(room) if day <= committed_day}
    archive.repair(room, committed_day, committed_size)
    all_files_valid(root)
    days = archive.list_days(room)
    assert days and days[-1] == committed_day
    found: list[int] = []
    for day in days:
        raw = (room / f"{day:%Y/%m/%d}.json").read_bytes()
        assert archive.read_day(room, day, committed_day, committed_size) == raw == before[day]
        for record in arc.parse_day(raw):
            assert base64.b64decode(record["content"]).startswith(f"{record['seq']}:".encode())
            found.append(record["seq"])
    assert found == list(range(1, len(found) + 1))
    assert len(found) == state["last_seq"] >= acked[-1]
