"""Benchmark: a login storm: 1,000 users log in at the same moment.

The accounts are seeded directly into USER_TB with a password hash of the server's production
cost (scrypt N=2^14, r=8: ~50 ms of CPU to verify), so the storm measures what a real storm
costs. Each user is a real live ``Peer``: it starts its push listener, connects, says hello,
logs in (the password check runs in the server's thread pool) and catches up with ``init``.
All 1,000 are started at once (``--processes`` worker processes share them); a login's time
runs from its start to the end of its catch-up. Reports the storm's total time, logins/s,
p50/p99/max and the server's CPU, median over ``--runs`` storms (everyone logs out between).

    .venv/bin/python bench/bench_login_storm.py [--users 1000] [--runs 3] [--processes 2]
"""
from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import PASSWORD, db_pid, emit, machine, median, pct, real_hash, seed_users, server_with_database  # noqa: E402

import gevent  # noqa: E402

from messenger_peer.loadtest import CpuMeter, LocalWorker, ProcessWorker, raise_nofile_limit  # noqa: E402


def spec(server, users: list[str]) -> dict:
    return {"server": list(server.address), "users": users, "password": PASSWORD, "register": "never",
            "request_timeout": 600.0, "login_concurrency": len(users) or 1, "full_cache": False,
            "listen_host": "127.0.0.1", "run_id": "storm", "size": 64}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="1,000 users logging in at once.")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3, help="storms (medians are reported)")
    parser.add_argument("--processes", type=int, default=2, help="load generator processes (0: this one)")
    parser.add_argument("--quick", action="store_true", help="200 users, 1 storm")
    args = parser.parse_args(argv)
    if args.quick:
        args.users, args.runs = 200, 1
    raise_nofile_limit()
    info = machine()
    users = [f"storm{i:05d}" for i in range(1, args.users + 1)]
    result: dict = {"bench": "login_storm", "users": args.users, "runs": args.runs,
                    "processes": args.processes, "machine": info}
    storms = []
    with server_with_database() as (server, url, data_dir):
        seed_users(url, users, real_hash())
        meter = CpuMeter(server.pid, db_pid(data_dir.parent / "pg"))
        ctx = multiprocessing.get_context("spawn")
        print(f"{'storm':>6}{'total s':>9}{'logins/s':>10}{'p50 s':>8}{'p99 s':>8}{'max s':>8}{'srv cpu s':>11}"
              f"{'+db s':>8}{'failed':>8}")
        for run in range(1, args.runs + 1):
            n = max(1, args.processes)
            parts = [users[i::n] for i in range(n)]
            hard = time.time() + 900
            workers = ([ProcessWorker(ctx, spec(server, p), hard) for p in parts] if args.processes
                       else [LocalWorker(spec(server, users))])
            try:
                gevent.sleep(1.0 if args.processes else 0)     # let the worker processes import
                for w in workers:
                    w.call("status", 60, rep=0)               # ... and answer: they are ready
                before = meter.snapshot()
                start = time.monotonic()
                jobs = [gevent.spawn(w.call, "setup", 900) for w in workers]
                gevent.joinall(jobs, raise_error=True)
                total = time.monotonic() - start
                cpu = CpuMeter.delta(before, meter.snapshot())
            finally:
                gevent.joinall([gevent.spawn(w.stop) for w in workers], timeout=120)
            setups = [j.value for j in jobs]
            times = sorted(x / 1000 for s in setups for x in s["login_ms"])
            failed = sum(s["failed"] for s in setups)
            row = {"total_s": round(total, 3), "logins_per_s": round(len(times) / total, 1),
                   "p50_s": round(pct(times, 50), 3), "p99_s": round(pct(times, 99), 3),
                   "max_s": round(times[-1], 3), "server_cpu_s": round(cpu[0], 2),
                   "server_db_cpu_s": round(cpu[1], 2), "failed": failed}
            storms.append(row)
            print(f"{run:>6}{row['total_s']:>9.2f}{row['logins_per_s']:>10.1f}{row['p50_s']:>8.2f}"
                  f"{row['p99_s']:>8.2f}{row['max_s']:>8.2f}{row['server_cpu_s']:>11.2f}"
                  f"{row['server_db_cpu_s']:>8.2f}{failed:>8}", flush=True)
            if failed:
                print("  failures: " + "; ".join(f for s in setups for f in s["failures"][:3]))
            gevent.sleep(2)          # let the server close the sessions
    for key in ("total_s", "logins_per_s", "p50_s", "p99_s", "max_s", "server_cpu_s", "server_db_cpu_s"):
        result[key] = median([s[key] for s in storms])
    result["server_cpu_ms_per_login"] = round(result["server_cpu_s"] / args.users * 1000, 2)
    result["failed"] = sum(s["failed"] for s in storms)
    result["storms"] = storms
    print(f"median: {result['total_s']:.2f} s for {args.users:,} logins ({result['logins_per_s']:.0f}/s), "
          f"p50 {result['p50_s']:.2f} s, p99 {result['p99_s']:.2f} s; server CPU "
          f"{result['server_cpu_ms_per_login']:.1f} ms per login")
    emit(result)
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
