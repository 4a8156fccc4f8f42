"""Benchmark: cost of appending one ~100-byte text record to a day file that already holds
10 records vs 100,000 records. The archive's append is designed to be O(1) (it overwrites the
4-byte tail in place), so the ratio big/small should be about 1.

Two modes: "fdatasync" is ``Archive.append`` exactly as production runs it; "no sync" is
``Archive.write_records`` + close, to isolate the CPU and write cost from the disk flush.
Each (round, mode) starts from freshly built, flushed files, so "10" and "100,000" hold.
Prints a table and one JSON line (medians over rounds of each round's median, in µs).

    .venv/bin/python bench/bench_archive_append.py [--rounds N] [--appends N] [--dir DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

# Runnable from a checkout even without the editable install.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from messenger_server.storage.archive import HEADER, SEP, TAIL, Archive, make_record  # noqa: E402

DAY = date(2023, 9, 14)
CONTENT = b"benchmark message, about seventy bytes of UTF-8 text: 0123456789"


def record(seq: int) -> bytes:
    return make_record("tongstar", "2023-09-14T09:30:00.123+09:00", "text", CONTENT[:28], seq)


def build(archive: Archive, room: Path, body: bytes) -> int:
    """Write a day file directly in the archive's format and flush it, so the first timed
    fdatasync does not pay for the build. Returns its (committed) size."""
    path = room / f"{DAY:%Y/%m/%d}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = HEADER + body + TAIL
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return len(data)


def time_appends(archive: Archive, room: Path, size: int, first_seq: int, n: int,
                 sync: bool) -> list[float]:
    """µs per append, committing each new size as the server would."""
    samples = []
    for i in range(n):
        records = [record(first_seq + i)]
        start = time.perf_counter_ns()
        if sync:
            new_size = archive.append(room, DAY, records, DAY, size)
        else:
            new_size, pending = archive.write_records(room, DAY, records, DAY, size)
            pending.close()
        samples.append((time.perf_counter_ns() - start) / 1000)
        size = new_size
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Time one-record appends to a 10-record vs a 100,000-record day file.")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per mode (default 5)")
    parser.add_argument("--appends", type=int, default=200,
                        help="timed appends per file per round (default 200)")
    parser.add_argument("--small", type=int, default=10, help="records in the small file")
    parser.add_argument("--big", type=int, default=100_000, help="records in the big file")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to make the temp dir (default: the system temp dir); "
                             "put it on the disk you want to measure")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.appends < 1 or args.small < 1 or args.big < 1:
        parser.error("--rounds, --appends, --small and --big must be >= 1")

    bodies = {"small": SEP.join(record(s) for s in range(1, args.small + 1)),
              "big": SEP.join(record(s) for s in range(1, args.big + 1))}
    counts = {"small": args.small, "big": args.big}
    results: dict[str, dict[str, list[float]]] = {"fdatasync": {"small": [], "big": []},
                                                  "no sync": {"small": [], "big": []}}
    with tempfile.TemporaryDirectory(prefix="bench_archive_", dir=args.dir) as tmp:
        archive = Archive(tmp)
        rooms = {"small": archive.room_dir("20230914_000001", "small"),
                 "big": archive.room_dir("20230914_000002", "big")}
        for rnd in range(args.rounds):
            for mode, sync in (("fdatasync", True), ("no sync", False)):
                # Alternate the order so drift in the machine hits both files alike.
                order = ("small", "big") if rnd % 2 == 0 else ("big", "small")
                for which in order:
                    size = build(archive, rooms[which], bodies[which])
                    samples = time_appends(archive, rooms[which], size, counts[which] + 1,
                                           args.appends, sync)
                    results[mode][which].append(statistics.median(samples))

    summary = {}
    print(f"append of one {len(record(1))}-byte record; median of {args.rounds} rounds x "
          f"{args.appends} appends (µs per append)")
    print(f"{'mode':<10} {f'{args.small:,} records':>16} {f'{args.big:,} records':>18} "
          f"{'big/small':>10}")
    for mode, per_file in results.items():
        small = statistics.median(per_file["small"])
        big = statistics.median(per_file["big"])
        key = "fdatasync" if mode == "fdatasync" else "nosync"
        summary[key] = {"small_us": round(small, 1), "big_us": round(big, 1),
                        "ratio": round(big / small, 3)}
        print(f"{mode:<10} {small:>16.1f} {big:>18.1f} {big / small:>10.2f}")
    print(json.dumps({"bench": "archive_append", "record_bytes": len(record(1)),
                      "small_records": args.small, "big_records": args.big,
                      "rounds": args.rounds, "appends": args.appends, **summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
