"""Benchmark: cost of appending one record (a 100-byte text message, ~240 bytes of JSON) to
a day file that already holds 10 records vs 100,000 records. The archive's append is designed
to be O(1) (it overwrites the 4-byte tail in place), so the ratio big/small should be about 1.

Two modes: "fdatasync" is ``Archive.append`` exactly as production runs it; "no sync" is
``Archive.write_records`` + close, to isolate the CPU and write cost from the disk flush.
Each (round, mode) starts from freshly built, flushed files; the two files take turns.
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
# A 100-byte text message; its record (base64 content plus the other fields) is ~240 bytes.
CONTENT = (b"benchmark chat message of one hundred bytes of UTF-8 text. " * 2)[:100]


def record(seq: int) -> bytes:
    return make_record("tongstar", "2023-09-14T09:30:00.123+09:00", "text", CONTENT, seq)


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


def time_appends(archive: Archive, rooms: dict[str, Path], sizes: dict[str, int],
                 counts: dict[str, int], n: int, sync: bool) -> dict[str, list[float]]:
    """µs per append for each file, committing each new size as the server would. The files
    take turns append by append (in alternating order), so a noisy moment on the machine
    hits both alike instead of skewing the ratio."""
    samples: dict[str, list[float]] = {which: [] for which in rooms}
    names = list(rooms)
    for i in range(n):
        for which in names if i % 2 == 0 else reversed(names):
            records = [record(counts[which] + 1 + i)]
            start = time.perf_counter_ns()
            if sync:
                new_size = archive.append(rooms[which], DAY, records, DAY, sizes[which])
            else:
                new_size, pending = archive.write_records(rooms[which], DAY, records, DAY,
                                                          sizes[which])
                pending.close()
            samples[which].append((time.perf_counter_ns() - start) / 1000)
            sizes[which] = new_size
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
        for _ in range(args.rounds):
            for mode, sync in (("fdatasync", True), ("no sync", False)):
                sizes = {which: build(archive, rooms[which], bodies[which]) for which in rooms}
                samples = time_appends(archive, rooms, sizes, counts, args.appends, sync)
                for which, values in samples.items():
                    results[mode][which].append(statistics.median(values))

    summary = {}
    print(f"append of one {len(record(1))}-byte record ({len(CONTENT)}-byte text); "
          f"median of {args.rounds} rounds x "
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
