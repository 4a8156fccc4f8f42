"""Benchmark: the most that room affinity could give two server processes (issue 8).

Two load generators each drive their own half of the rooms (their own users, rooms and
members). In turns: both talk to one server process ("one"), or each to its own of two
server processes on the same database and archive ("two"). In "two" no room is sent to
through both processes and no member of a room is held by the other process, which is what
perfect room affinity would give (every send committed by its room's process, no hand-off),
without the cost of getting the sends and pushes there (``--workers 2`` with room affinity
pays that: sends reaching the other worker are handed over, and so are the pushes for the
members it holds). Prints each run, then the medians and their ratio, and one
JSON line.

    .venv/bin/python bench/bench_affinity_bound.py [--rounds N] [--rooms-each N] [--messages N]
"""
from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.benchlib import emit, machine, run_loadtest, temporary_database  # noqa: E402
from messenger_peer.loadtest import RELAXED_LIMITS, ServerUnderTest  # noqa: E402

MODES = ("one", "two")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds; one and two processes take turns")
    parser.add_argument("--rooms-each", type=int, default=25, help="rooms per load generator")
    parser.add_argument("--members", type=int, default=4, help="members per room")
    parser.add_argument("--senders", type=int, default=4, help="closed-loop senders per room")
    parser.add_argument("--messages", type=int, default=10000, help="messages per repetition and generator")
    parser.add_argument("--repeat", type=int, default=2, help="repetitions per run")
    parser.add_argument("--timeout", type=float, default=600, help="deadline of each load test run, s")
    args = parser.parse_args()
    shape = ["--rooms", str(args.rooms_each), "--members", str(args.members), "--senders", str(args.senders),
             "--messages", str(args.messages), "--size", "100", "--repeat", str(args.repeat),
             "--processes", "0", "--progress", "off"]
    totals: dict[str, list[float]] = {mode: [] for mode in MODES}
    with temporary_database() as (url, tmp):
        data = tmp / "server"
        data.mkdir()
        argv = [sys.executable, "-m", "messenger_server", "--host", "127.0.0.1", "--port", "0",
                "--data-dir", str(data), "--database-url", url, *RELAXED_LIMITS]
        servers = [ServerUnderTest.start(argv, str(data), keep=True) for _ in range(2)]
        registered: set[str] = set()

        def run(prefix: str, server: ServerUnderTest) -> dict:
            where = ["--server", "%s:%d" % server.address, "--server-pid", str(server.pid), "--prefix", prefix]
            reuse = ["--reuse"] if prefix in registered else []
            registered.add(prefix)
            return run_loadtest([*where, *reuse, *shape], args.timeout)

        try:
            for rnd in range(1, args.rounds + 1):
                for mode in MODES:
                    with concurrent.futures.ThreadPoolExecutor(2) as pool:
                        first = pool.submit(run, "aff-a-", servers[0])
                        second = pool.submit(run, "aff-b-", servers[0] if mode == "one" else servers[1])
                        a, b = first.result(), second.result()
                    if not (a.get("ok") and b.get("ok")):
                        print(f"round {rnd} {mode}: a run failed: {a.get('error') or a.get('ok')}, "
                              f"{b.get('error') or b.get('ok')}", file=sys.stderr)
                        return 1
                    sums = [x["deliveries_per_s"] + y["deliveries_per_s"] for x, y in zip(a["reps"], b["reps"])]
                    totals[mode].extend(sums)
                    print(f"== round {rnd}, {mode} process(es): deliveries/s of both generators together, "
                          f"per repetition: {' · '.join(f'{t:,.0f}' for t in sums)}", flush=True)
        finally:
            for server in servers:
                server.stop()
    medians = {mode: statistics.median(values) for mode, values in totals.items()}
    ratio = medians["two"] / medians["one"]
    print(f"median: one process {medians['one']:,.0f}, two processes {medians['two']:,.0f} deliveries/s; "
          f"ratio {ratio:.2f}")
    emit({"bench": "affinity_bound", "machine": machine(), "rounds": args.rounds,
          "shape": {"rooms_each": args.rooms_each, "members": args.members, "senders": args.senders,
                    "messages": args.messages, "repeat": args.repeat},
          "deliveries_per_s": {m: round(v, 1) for m, v in medians.items()}, "ratio_two_one": round(ratio, 3)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
