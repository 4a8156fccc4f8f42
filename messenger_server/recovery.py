"""Start-up recovery of the archive after a crash (kill -9, power loss).

A crash between an archive append and its database commit leaves bytes past a room's
committed size, or a day file after its committed day. Nothing there was acknowledged, so
repair cuts each file back to exactly its committed content. Rows are locked with SKIP LOCKED:
a room that another live process is appending to right now is left to that process, whose
append overwrites any stray bytes anyway.

The rooms go CHUNK at a time, each chunk in its own short transaction: with other processes
serving, a room's send batches wait for its lock, and one transaction over every room would
hold them all for the whole walk (seconds with tens of thousands of rooms).
"""
from __future__ import annotations

import logging

from .storage.archive import Archive, ArchiveError
from .storage.pool import Pool

log = logging.getLogger(__name__)

CHUNK = 200


def repair_archive(pool: Pool, archive: Archive, chunk: int = CHUNK) -> int:
    """Repair every room's files against its committed state; return how many changed."""
    repaired = 0
    after = ("", "")
    while True:
        with pool.transaction("recovery.repair") as cur:
            cur.execute("""SELECT SESSION_ID, CREATOR_ID, ARCHIVE_DAY, ARCHIVE_SIZE FROM SESSION_TB
                           WHERE (SESSION_ID, CREATOR_ID) > (%s, %s)
                           ORDER BY SESSION_ID, CREATOR_ID LIMIT %s
                           FOR UPDATE SKIP LOCKED""", (*after, chunk))
            rows = cur.fetchall()
            for session_id, creator_id, day, size in rows:
                repaired += _repair_room(archive, session_id, creator_id, day, size)
        if len(rows) < chunk:
            return repaired
        after = rows[-1][:2]


def _repair_room(archive: Archive, session_id: str, creator_id: str, day, size: int) -> int:
    folder = archive.room_dir(session_id, creator_id)
    if not folder.exists():
        return 0
    try:
        if archive.repair(folder, day, size):
            log.warning("repaired the archive of room %s_%s after an interrupted append", session_id, creator_id)
            return 1
    except ArchiveError as exc:
        # Files shorter than committed are damage from outside (disk, an operator):
        # report loudly, keep serving the other rooms.
        log.error("archive of room %s_%s is damaged: %s", session_id, creator_id, exc)
    return 0
