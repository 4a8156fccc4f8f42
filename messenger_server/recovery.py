"""Start-up recovery of the archive after a crash (kill -9, power loss).

A crash between an archive append and its database commit leaves bytes past a room's
committed size, or a day file after its committed day. Nothing there was acknowledged, so
repair cuts each file back to exactly its committed content. Rows are locked with SKIP LOCKED:
a room that another live process is appending to right now is left to that process, whose
append overwrites any stray bytes anyway.
"""
from __future__ import annotations

import logging

from .storage.archive import Archive, ArchiveError
from .storage.pool import Pool

log = logging.getLogger(__name__)


def repair_archive(pool: Pool, archive: Archive) -> int:
    """Repair every room's files against its committed state; return how many changed."""
    repaired = 0
    with pool.transaction("recovery.repair") as cur:
        cur.execute("""SELECT SESSION_ID, CREATOR_ID, ARCHIVE_DAY, ARCHIVE_SIZE FROM SESSION_TB
                       FOR UPDATE SKIP LOCKED""")
        for session_id, creator_id, day, size in cur.fetchall():
            folder = archive.room_dir(session_id, creator_id)
            if not folder.exists():
                continue
            try:
                if archive.repair(folder, day, size):
                    repaired += 1
                    log.warning("repaired the archive of room %s_%s after an interrupted append",
                                session_id, creator_id)
            except ArchiveError as exc:
                # Files shorter than committed are damage from outside (disk, an operator):
                # report loudly, keep serving the other rooms.
                log.error("archive of room %s_%s is damaged: %s", session_id, creator_id, exc)
    return repaired
