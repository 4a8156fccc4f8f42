"""Helper for the kill -9 test in test_archive.py: appends to one room until it is killed.

Each loop appends a batch of 1-3 records (seq 1, 2, 3 ... with no gaps) with
``Archive.append``, then "commits" by atomically replacing a small JSON state file with the
new committed state (what the database does in production), and only then prints the batch's
last seq as the acknowledgement, flushed. So every printed seq is in the state file, and the
state file never names bytes that were not synced. The day moves on every ``--per-day``
records so kills also land around day rollovers. Content of record ``seq`` starts with
``b"<seq>:"`` so the test can check it.

Usage: archive_crash_writer.py ROOT STATE [--per-day N] [--seed N] [--max-seconds S]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from datetime import date, timedelta

from messenger_server.storage.archive import Archive, make_record

SESSION_ID = "20230914_000001"
CREATOR_ID = "tongstar"
FIRST_DAY = date(2023, 9, 14)


def commit(state_path: str, committed_day: date | None, committed_size: int, last_seq: int) -> None:
    """Atomic replace; no fsync: the test kills the process, not the machine."""
    tmp = state_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"committed_day": committed_day.isoformat() if committed_day else None,
                   "committed_size": committed_size, "last_seq": last_seq}, f)
    os.replace(tmp, state_path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("state")
    parser.add_argument("--per-day", type=int, default=150, help="records per day file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=60.0,
                        help="stop by itself after this long, so an orphan cannot run forever")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    archive = Archive(args.root)
    room = archive.room_dir(SESSION_ID, CREATOR_ID)
    archive.write_info(room, "crash test")
    committed_day: date | None = None
    committed_size = 0
    seq = 0
    commit(args.state, committed_day, committed_size, seq)
    stop_at = time.monotonic() + args.max_seconds
    while time.monotonic() < stop_at:
        day = FIRST_DAY + timedelta(days=seq // args.per_day)
        batch = []
        for _ in range(rng.randint(1, 3)):
            seq += 1
            # Sizes up to 64 KiB make a kill during a (multi-page) write likely enough.
            content = (f"{seq}:".encode() * 40_000)[:rng.choice((8, 100, 3000, 65_536))]
            batch.append(make_record("tongstar", f"{day.isoformat()}T09:30:00.000+09:00",
                                     "text", content, seq))
        committed_size = archive.append(room, day, batch, committed_day, committed_size)
        committed_day = day
        commit(args.state, committed_day, committed_size, seq)
        sys.stdout.write(f"{seq}\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
