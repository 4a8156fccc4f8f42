"""Benchmark: one server process against several (``--workers N``) on one database, the same
workload in alternating runs, and the ratio (issue 8: throughput grows with processes).

Each run starts a fresh server (a temporary embedded PostgreSQL, abuse limits lifted as
``messenger-loadtest`` does) with ``--workers 1`` or ``--workers N`` in turn, drives it
with a load generator, then stops it and keeps the lines its stop log writes about session
and room affinity and batches. The default shape is the many-room group chat (50 rooms of 4
members, 4 closed-loop senders each); ``--rooms/--members/--senders`` change it.

The default generator is ``bench/lean_load.py``: on a 2-core machine the Peer-based
``messenger-loadtest`` takes about a core for itself, which leaves a second worker nothing
to run on (BENCHMARKS.md); ``--generator peers`` uses it anyway.

    .venv/bin/python bench/bench_workers.py [--workers 2] [--runs 3] [--rooms 50] [--members 4]
        [--senders 4] [--messages 20000] [--repeat 3] [--generator lean|peers]

Prints each run's figures, the medians and the ratio, and one JSON line.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import db_pid, emit, machine, median, run_loadtest, server_with_database  # noqa: E402

STOP_LOG_MARKS = ("session affinity:", "room affinity:", "committed ")


def one_run(workers: int, shape: list[str], generator: str, timeout: float) -> dict:
    """Start a server with ``workers`` processes, load it, stop it; the generator's figures."""
    with server_with_database(["--workers", str(workers), "--log-level", "info"]) as (server, _, data):
        dbp = db_pid(data.parent / "pg")
        where = ["--server", "%s:%d" % server.address, "--server-pid", str(server.pid),
                 *(["--db-pid", str(dbp)] if dbp else [])]
        extra = [] if generator == "lean" else ["--progress", "lines"]
        result = run_loadtest([*where, *shape, *extra, "--label", f"workers-{workers}"], timeout,
                              lean=generator == "lean")
        server.stop()                  # the stop log says what moved between the workers
        log = (data / "server.stderr").read_text(errors="replace")
    result["stop_log"] = [line.split(" INFO ", 1)[-1] for line in log.splitlines()
                          if any(mark in line for mark in STOP_LOG_MARKS)]
    return result


def figures(result: dict, generator: str) -> dict:
    """Deliveries/s, latency and CPU of one run, whichever generator made it."""
    if generator == "lean":
        return {"deliveries_per_s": result.get("deliveries_per_s"), "p50_ms": result.get("p50_ms"),
                "p99_ms": result.get("p99_ms"),
                "server_db_cpu_us_per_delivery": result.get("server_db_cpu_us_per_delivery"),
                "generator_cpu_us_per_delivery": result.get("generator_cpu_us_per_delivery")}
    cpu = result.get("server_cpu_with_children_s_per_1k_deliveries")
    gen = result.get("client_cpu_s_per_1k_deliveries")
    return {"deliveries_per_s": result.get("deliveries_per_s"), "p50_ms": (result.get("latency_ms") or {}).get("p50"),
            "p99_ms": (result.get("latency_ms") or {}).get("p99"),
            "server_db_cpu_us_per_delivery": None if cpu is None else cpu * 1000,
            "generator_cpu_us_per_delivery": None if gen is None else gen * 1000}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="One server process against --workers N, alternating runs.")
    p.add_argument("--workers", type=int, default=2, help="the processes to compare against one")
    p.add_argument("--runs", type=int, default=3, help="runs of each, alternating")
    p.add_argument("--rooms", type=int, default=50)
    p.add_argument("--members", type=int, default=4, help="members per room")
    p.add_argument("--senders", type=int, default=4, help="closed-loop senders per room")
    p.add_argument("--messages", type=int, default=20000, help="messages per repetition, all rooms together")
    p.add_argument("--repeat", type=int, default=3, help="repetitions per run (the run's figure is their median)")
    p.add_argument("--size", type=int, default=100)
    p.add_argument("--generator", choices=("lean", "peers"), default="lean")
    p.add_argument("--timeout", type=float, default=600, help="deadline of each run, s")
    args = p.parse_args(argv)
    shape = ["--rooms", str(args.rooms), "--members", str(args.members), "--senders", str(args.senders),
             "--messages", str(args.messages), "--repeat", str(args.repeat), "--size", str(args.size)]
    info = machine()
    print(f"machine: {info['nproc']} cores, {info['memory_gib']} GiB, {info['cpu']}; code {info['commit']}; "
          f"{args.rooms} rooms x {args.members} members, {args.senders} senders each, {args.generator} generator")
    counts = (1, args.workers)
    runs: dict[int, list[dict]] = {n: [] for n in counts}
    failures = 0
    for r in range(args.runs):
        for n in counts:
            print(f"\n== run {r + 1}/{args.runs}: {n} worker(s) ==", flush=True)
            result = one_run(n, shape, args.generator, args.timeout)
            failures += result.get("exit_status") != 0 or not result.get("ok")
            for line in result["stop_log"]:
                print("   server: " + line)
            runs[n].append(figures(result, args.generator) | {"ok": result.get("ok"),
                                                               "lost": result.get("lost"),
                                                               "duplicates": result.get("duplicates")})
    summary = {}
    print(f"\n{'workers':>7} {'deliveries/s (each run)':<40} {'median':>9} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'srv+db µs/d':>11} {'gen µs/d':>8}")
    for n in counts:
        rows = runs[n]
        summary[n] = {k: median([row[k] for row in rows]) for k in
                      ("deliveries_per_s", "p50_ms", "p99_ms", "server_db_cpu_us_per_delivery",
                       "generator_cpu_us_per_delivery")}
        summary[n]["runs"] = [row["deliveries_per_s"] for row in rows]
        each = " · ".join(f"{v:,.0f}" for v in summary[n]["runs"] if v is not None)
        s = summary[n]
        print(f"{n:>7} {each:<40} {s['deliveries_per_s'] or 0:>9,.0f} {s['p50_ms'] or 0:>7.2f} {s['p99_ms'] or 0:>7.2f} "
              f"{s['server_db_cpu_us_per_delivery'] or 0:>11.2f} {s['generator_cpu_us_per_delivery'] or 0:>8.2f}")
    one, many = summary[1]["deliveries_per_s"], summary[args.workers]["deliveries_per_s"]
    ratio = round(many / one, 3) if one and many else None
    ahead = sum(1 for a, b in zip(summary[1]["runs"], summary[args.workers]["runs"]) if a and b and b > a)
    print(f"{args.workers} workers / 1 worker: {ratio} (ahead in {ahead} of {args.runs} pairs); "
          f"lost {sum(row['lost'] or 0 for rows in runs.values() for row in rows)}, "
          f"duplicates {sum(row['duplicates'] or 0 for rows in runs.values() for row in rows)}")
    emit({"bench": "workers", "machine": info, "generator": args.generator, "shape": vars(args),
          "summary": {str(k): v for k, v in summary.items()}, "ratio": ratio, "pairs_ahead": ahead})
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
