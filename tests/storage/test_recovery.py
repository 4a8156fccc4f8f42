"""Start-up repair of the archive: every room, a chunk of rooms per short transaction,
leaving a room that another process holds locked to that process."""
from __future__ import annotations

import datetime as dt

import psycopg2

from messenger_protocol.messages import RoomKey
from messenger_server.recovery import repair_archive
from messenger_server.storage import rooms as room_db
from messenger_server.storage import users as user_db
from messenger_server.storage.archive import Archive, make_record
from messenger_server.storage.pool import Pool

DAY = dt.date(2026, 11, 24)


def test_repair_walks_every_room_in_chunks_and_skips_locked_rooms(database_url, tmp_path) -> None:
    archive = Archive(tmp_path / "archive")
    keys = [RoomKey(f"20261124_00000{n}", "alice") for n in range(1, 8)]
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    cur = conn.cursor()
    assert user_db.create_user(cur, "alice", "alice", "x")
    for key in keys:
        room_db.insert_room(cur, key, "club", False)
        folder = archive.room_dir(*key)
        size = archive.append(folder, DAY, [make_record("alice", "2026-11-24T10:00:00.000+00:00", "text",
                                                        b"committed", 1)], None, 0)
        cur.execute("UPDATE SESSION_TB SET ARCHIVE_DAY = %s, ARCHIVE_SIZE = %s, LAST_SEQ = 1 "
                    "WHERE SESSION_ID = %s AND CREATOR_ID = %s", (DAY, size, *key))
        # An append that never committed (the process died before its COMMIT).
        _, pending = archive.write_records(folder, DAY, [make_record("alice", "2026-11-24T10:00:01.000+00:00",
                                                                     "text", b"lost", 2)], DAY, size)
        pending.sync()
    holder = psycopg2.connect(database_url)
    try:
        with holder.cursor() as busy:        # another live process is committing to room 4
            busy.execute("SELECT 1 FROM SESSION_TB WHERE SESSION_ID = %s AND CREATOR_ID = %s FOR UPDATE", keys[3])
            pool = Pool(database_url, size=2)
            try:
                assert repair_archive(pool, archive, chunk=2) == 6
            finally:
                pool.close()
    finally:
        holder.rollback()
        holder.close()
    for i, key in enumerate(keys):
        cur.execute("SELECT ARCHIVE_DAY, ARCHIVE_SIZE FROM SESSION_TB WHERE SESSION_ID = %s AND CREATOR_ID = %s", key)
        day, size = cur.fetchone()
        on_disk = (archive.room_dir(*key) / "2026" / "11" / "24.json").stat().st_size
        assert (on_disk == size) == (i != 3), f"room {i + 1}: repaired unless locked by another process"
    conn.close()
