"""Benchmark: does an archive append's fdatasync slow down PostgreSQL's WAL flush after it?

A W1 batch syncs its day file, then commits, and the COMMIT's p99 is ~4 ms against a p50
of ~0.3 ms (``make bench-trace``). An append grows the file, so its fdatasync must also
journal the new size; if that made the next flush of a preallocated file (what the WAL is)
wait for the journal, the COMMIT's tail would be the disk's, and padding the day files
would pay. This measures the WAL-like flush alone, after an appending fdatasync, and after
an fdatasync of a file that does not grow (overwriting preallocated bytes), in turns.
Prints a table and one JSON line (µs).

    .venv/bin/python bench/bench_fsync_interplay.py [--flushes N] [--rounds N] [--dir DIR]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.benchlib import emit, machine, median, pct  # noqa: E402

WAL_SIZE = 16 << 20        # one WAL segment
WAL_WRITE = 2000           # about a W1 batch's WAL records
RECORD = 500               # about two archive records
MODES = ("wal alone", "after an append", "after an overwrite")


def one_round(folder: Path, mode: str, flushes: int) -> tuple[list[float], list[float]]:
    """``flushes`` WAL-like flushes in ``mode``; returns (archive fsync µs, WAL fsync µs)."""
    wal = os.open(folder / "wal", os.O_RDWR | os.O_CREAT, 0o600)
    archive = os.open(folder / "day.json", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.pwrite(wal, b"\0" * WAL_SIZE, 0)
        os.fsync(wal)
        if mode == "after an overwrite":
            os.pwrite(archive, b" " * (flushes * RECORD), 0)
            os.fsync(archive)
        archive_us, wal_us = [], []
        offset = wal_offset = 0
        for _ in range(flushes):
            started = time.perf_counter()
            if mode != "wal alone":
                os.pwrite(archive, b"x" * RECORD, offset)
                offset += RECORD
                os.fdatasync(archive)
            synced = time.perf_counter()
            os.pwrite(wal, b"w" * WAL_WRITE, wal_offset)
            wal_offset = (wal_offset + 8192) % WAL_SIZE
            os.fdatasync(wal)
            done = time.perf_counter()
            archive_us.append((synced - started) * 1e6)
            wal_us.append((done - synced) * 1e6)
        return archive_us, wal_us
    finally:
        os.close(wal)
        os.close(archive)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flushes", type=int, default=3000, help="flushes per round and mode")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the modes take turns in each")
    parser.add_argument("--dir", type=Path, default=None,
                        help="folder on the file system to measure (default: a temporary folder under var/)")
    args = parser.parse_args()
    base = args.dir or Path(__file__).resolve().parents[1] / "var"
    base.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, list[float]]] = {m: {"archive": [], "wal_p50": [], "wal_p99": []} for m in MODES}
    with tempfile.TemporaryDirectory(prefix="fsync-bench-", dir=base) as tmp:
        print(f"{'round':>5}  {'mode':<20} {'archive p50':>11} {'WAL p50':>8} {'WAL p99':>8} {'WAL max':>8}  (µs)")
        for r in range(1, args.rounds + 1):
            for mode in MODES:
                archive_us, wal_us = one_round(Path(tmp), mode, args.flushes)
                wal_sorted, archive_sorted = sorted(wal_us), sorted(archive_us)
                row = results[mode]
                row["archive"].append(pct(archive_sorted, 50) or 0.0)
                row["wal_p50"].append(pct(wal_sorted, 50))
                row["wal_p99"].append(pct(wal_sorted, 99))
                print(f"{r:>5}  {mode:<20} {row['archive'][-1]:>11.0f} {row['wal_p50'][-1]:>8.0f} "
                      f"{row['wal_p99'][-1]:>8.0f} {wal_sorted[-1]:>8.0f}", flush=True)
    summary = {mode: {k: round(median(v), 1) for k, v in row.items()} for mode, row in results.items()}
    for mode, row in summary.items():
        print(f"median {mode:<20} archive p50 {row['archive']:.0f} µs, WAL p50 {row['wal_p50']:.0f} µs, "
              f"p99 {row['wal_p99']:.0f} µs")
    emit({"bench": "fsync_interplay", "machine": machine(), "flushes": args.flushes,
          "rounds": args.rounds, "median_us": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
