"""Benchmark: the workloads of issue 6 against the no-storage baseline relay (bench/relay.py)
and against the real server (durable storage on), back to back, with the same load generator
and the ratio real/relay; by default with each of two generators in turn:
``messenger-loadtest`` (real Peers with real push listeners, ~6 µs of its own CPU per
delivery) and ``bench/lean_load.py`` (raw sockets on one epoll loop, ~3 µs), because on a
2-core machine the generator's appetite decides what the servers are left with.

    W1: 1 room, 50 members online, 10 senders closed-loop, 5,000 messages of 100 B
    W2: 1 room, 500 members online, 5 senders closed-loop, 1,000 messages of 100 B

For each workload one relay and one real server (temporary data dir, embedded PostgreSQL,
abuse limits lifted: every peer comes from 127.0.0.1) are started; then for ``--rounds``
rounds the relay and the real server take turns, each turn one ``messenger-loadtest`` run of
``--repeat`` repetitions on the same logged-in peers, so that slow drifts of a shared
machine hit both. Accounts are registered in the first round and reused after (a
registration or login costs the real server ~50 ms of scrypt). Figures are medians over all
repetitions of all rounds. Before each run the script waits (at most ``--settle-max`` s) for
the machine to be quiet, since other work on a 2-core machine changes every figure. Prints
every run's table, a summary and one JSON line.

    .venv/bin/python bench/bench_workloads.py [--quick] [--workloads W1,W2] [--rounds 3] [--repeat 2]
        [--generator both|peers|lean] [--processes N]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil  # noqa: E402

from benchlib import ROOT, db_pid, emit, machine, median, run_loadtest  # noqa: E402

from messenger_peer.loadtest import RELAXED_LIMITS, ServerUnderTest  # noqa: E402

WORKLOADS = {
    "W1": {"members": 50, "senders": 10, "messages": 5000},
    "W2": {"members": 500, "senders": 5, "messages": 1000},
}
# Load generator processes: W1's 50 peers fit one process best on 2 cores; W2's 500 peers
# receive ~100,000 pushes/s from the relay, more than one process of Peers can decode.
PROCESSES = {"W1": 0, "W2": 2}
QUICK = {"W1": {"messages": 1000}, "W2": {"members": 100, "messages": 200}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="W1/W2 against the baseline relay and the real server.")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (smaller workloads, 2 repetitions)")
    parser.add_argument("--workloads", default="W1,W2", help="comma-separated subset of W1,W2")
    parser.add_argument("--repeat", type=int, default=2, help="repetitions per run")
    parser.add_argument("--rounds", type=int, help="relay/real alternations per workload (default 3, quick 1)")
    parser.add_argument("--processes", type=int, default=None,
                        help="load generator worker processes (0: the peers share the loadtest process; "
                             f"default per workload: {PROCESSES})")
    parser.add_argument("--settle-max", type=float, default=120,
                        help="wait at most this long before each run for the machine to be quiet (0: never wait)")
    parser.add_argument("--size", type=int, default=100, help="message size in bytes")
    parser.add_argument("--timeout", type=float, default=420, help="deadline of each loadtest run, s")
    parser.add_argument("--generator", choices=("both", "peers", "lean"), default="both",
                        help="peers: messenger-loadtest (real Peer objects); lean: bench/lean_load.py (one epoll "
                             "loop, less than half the CPU per delivery); both: one after the other")
    args = parser.parse_args(argv)
    repeat = args.repeat
    rounds = args.rounds or (1 if args.quick else 3)
    generators = ["peers", "lean"] if args.generator == "both" else [args.generator]
    info = machine()
    print(f"machine: {info['nproc']} cores, {info['memory_gib']} GiB, {info['cpu']}; load average {info['loadavg']}; "
          f"code {info['commit']}")
    summary = {}
    failures = 0
    for name in [w.strip() for w in args.workloads.split(",") if w.strip()]:
        shape = {**WORKLOADS[name], **(QUICK[name] if args.quick else {})}
        sizes = ["--members", str(shape["members"]), "--senders", str(shape["senders"]),
                 "--messages", str(shape["messages"]), "--size", str(args.size), "--repeat", str(repeat)]
        servers = start_servers()
        try:
            for generator in generators:
                lean = generator == "lean"
                key = f"{name}-lean" if lean else name
                runs: dict[str, list[dict]] = {"relay": [], "real": []}
                for rnd in range(rounds):
                    for system in ("relay", "real"):
                        server, dbp = servers[system]
                        print(f"\n== {name} {system}, {generator} generator (round {rnd + 1}/{rounds}) ==", flush=True)
                        settle(args.settle_max)
                        where = ["--server", "%s:%d" % server.address, "--server-pid", str(server.pid),
                                 *(["--db-pid", str(dbp)] if dbp else [])]
                        if lean:    # its own accounts, registered in the first round
                            opts = [*where, *sizes, "--prefix", f"{name.lower()}-lean-",
                                    *(["--reuse"] if rnd else []), "--label", f"{key}-{system}"]
                        else:
                            opts = [*where, "--reuse", "--prefix", f"{name.lower()}-", "--rooms", "1", *sizes,
                                    "--processes", str(PROCESSES[name] if args.processes is None else args.processes),
                                    "--progress", "lines", "--label", f"{key}-{system}"]
                        result = run_loadtest(opts, args.timeout, lean=lean)
                        if result.get("exit_status") != 0:
                            failures += 1
                        runs[system].append(result)
                summary[key] = summarize(runs, lean, {"shape": shape, "repeat": repeat, "rounds": rounds,
                                                      "generator": generator})
        finally:
            for server, _ in servers.values():
                server.stop()

    print("\n== summary (medians over repetitions) ==")
    print(f"{'workload':<9}{'system':<7}{'deliv/s':>10}{'msgs/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'ack p50':>9}"
          f"{'srv cpu/1k':>11}{'+db/1k':>8}{'gen cpu/1k':>11}{'other':>7}{'lost':>6}{'dup':>5}{'real/relay':>12}{'cpu ratio':>11}")
    for name, row in summary.items():
        for system in ("relay", "real"):
            s = row[system]
            ratio = f"{row['ratio_real_relay']:.3f}" if system == "real" and row["ratio_real_relay"] else ""
            cpu_ratio = f"{row['cpu_ratio_real_relay']:.3f}" if system == "real" and row["cpu_ratio_real_relay"] else ""
            print(f"{name:<9}{system:<7}{_f(s['deliveries_per_s'], ',.0f'):>10}{_f(s['accepted_msgs_per_s'], ',.0f'):>9}"
                  f"{_f(s['p50_ms'], '.2f'):>9}{_f(s['p99_ms'], '.2f'):>9}{_f(s['ack_p50_ms'], '.2f'):>9}"
                  f"{_f(s['server_cpu_s_per_1k'], '.4f'):>11}{_f(s['server_db_cpu_s_per_1k'], '.4f'):>8}"
                  f"{_f(s['client_cpu_s_per_1k'], '.4f'):>11}{_f(s['other_cpu_share'], '.0%'):>7}{s['lost']:>6}"
                  f"{s['duplicates']:>5}{ratio:>12}{cpu_ratio:>11}")
    targets = []
    for key in summary:
        name, lean = key.split("-")[0], key.endswith("-lean")
        ratio, real = summary[key]["ratio_real_relay"], summary[key]["real"]
        if ratio is None:
            continue
        gen = "lean generator" if lean else "Peer generator"
        if name == "W1":
            targets.append(f"W1 ({gen}) real/relay {ratio:.2f} (target >= 0.8), p99 {real['p99_ms']:.1f} ms (target <= 10)")
        elif name == "W2":
            targets.append(f"W2 ({gen}) real/relay {ratio:.2f} (target >= 0.7)")
    for line in targets:
        print("  " + line)
    info["loadavg_end"] = [round(x, 2) for x in __import__("os").getloadavg()]
    print("  (srv cpu/1k: server CPU s per 1,000 deliveries, +db: with PostgreSQL; gen: the load generator; "
          "other: share of the machine's CPU used by other processes during the runs; cpu ratio: relay srv cpu/1k "
          "over real +db/1k, the real/relay ratio if both were CPU-bound)")
    emit({"bench": "workloads", "quick": args.quick, "machine": info,
          "size": args.size, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **summary})
    return 1 if failures else 0


def start_servers() -> dict[str, tuple[ServerUnderTest, int | None]]:
    """One relay and one real server for a workload's rounds."""
    relay = ServerUnderTest.start([sys.executable, str(ROOT / "bench" / "relay.py"), "--port", "0"], None, keep=False)
    data = tempfile.mkdtemp(prefix="messenger-bench-")
    os.chmod(data, 0o755)          # the embedded PostgreSQL may run as another user
    try:
        real = ServerUnderTest.start([sys.executable, "-m", "messenger_server", "--host", "127.0.0.1", "--port", "0",
                                      "--data-dir", data, *RELAXED_LIMITS], data, keep=False)
    except BaseException:
        relay.stop()
        shutil.rmtree(data, ignore_errors=True)
        raise
    return {"relay": (relay, None), "real": (real, db_pid(Path(data) / "pg"))}


def summarize(runs: dict[str, list[dict]], lean: bool, row: dict) -> dict:
    """Medians over every repetition of every round, per system, and the ratios."""
    for system, results in runs.items():
        reps = [r for res in results for r in res.get("reps", [])]
        if lean:      # bench/lean_load.py: flat figures, CPU in µs per delivery
            row[system] = {
                "deliveries_per_s": median([r["deliveries_per_s"] for r in reps]),
                "accepted_msgs_per_s": median([r["accepted_msgs_per_s"] for r in reps]),
                "p50_ms": median([r["p50_ms"] for r in reps]),
                "p99_ms": median([r["p99_ms"] for r in reps]),
                "max_ms": max((r["max_ms"] for r in reps), default=None),
                "ack_p50_ms": median([r["ack_p50_ms"] for r in reps]),
                "server_cpu_s_per_1k": _per_1k(median([r["server_cpu_us_per_delivery"] for r in reps])),
                "server_db_cpu_s_per_1k": _per_1k(median([r["server_db_cpu_us_per_delivery"] for r in reps])),
                "client_cpu_s_per_1k": _per_1k(median([r["generator_cpu_us_per_delivery"] for r in reps])),
                "other_cpu_share": None,
            }
        else:
            row[system] = {
                "deliveries_per_s": median([r["deliveries_per_s"] for r in reps]),
                "accepted_msgs_per_s": median([r["accepted_msgs_per_s"] for r in reps]),
                "p50_ms": median([r["latency_ms"]["p50"] for r in reps]),
                "p99_ms": median([r["latency_ms"]["p99"] for r in reps]),
                "max_ms": max((r["latency_ms"]["max"] or 0 for r in reps), default=None),
                "ack_p50_ms": median([r["ack_latency_ms"]["p50"] for r in reps]),
                "server_cpu_s_per_1k": median([r["server_cpu_s_per_1k_deliveries"] for r in reps]),
                "server_db_cpu_s_per_1k": median([r["server_cpu_with_children_s_per_1k_deliveries"] for r in reps]),
                "client_cpu_s_per_1k": median([r["client_cpu_s"] / r["deliveries"] * 1000 for r in reps if r["deliveries"]]),
                "other_cpu_share": median([(r["other_cpu_s"] or 0) / (r["wall_s"] * (r.get("cores") or 1))
                                           for r in reps if r.get("wall_s")]),
            }
        row[system].update(lost=sum(res.get("lost", 0) or 0 for res in results),
                           duplicates=sum(res.get("duplicates", 0) or 0 for res in results),
                           ok=all(res.get("ok") for res in results), reps=len(reps))
    relay_dps, real_dps = row["relay"]["deliveries_per_s"], row["real"]["deliveries_per_s"]
    row["ratio_real_relay"] = round(real_dps / relay_dps, 3) if relay_dps and real_dps else None
    # What the ratio would be if both were CPU-bound (a load generator that never limits):
    # the relay's server CPU per delivery over the real server's (with its PostgreSQL).
    relay_cpu, real_cpu = row["relay"]["server_cpu_s_per_1k"], row["real"]["server_db_cpu_s_per_1k"]
    row["cpu_ratio_real_relay"] = round(relay_cpu / real_cpu, 3) if relay_cpu and real_cpu else None
    return row


def _per_1k(us_per_delivery: float | None) -> float | None:
    return None if us_per_delivery is None else us_per_delivery / 1000


def settle(max_wait: float, busy_below: float = 15.0) -> None:
    """Wait until the machine's CPUs have been under ``busy_below`` % busy for 2 s in a row."""
    if max_wait <= 0:
        return
    deadline = time.monotonic() + max_wait
    quiet = 0
    waited = False
    while time.monotonic() < deadline:
        busy = psutil.cpu_percent(interval=1.0)
        quiet = quiet + 1 if busy < busy_below else 0
        if quiet >= 2:
            break
        if not waited and busy >= busy_below:
            print(f"  (waiting for the machine to be quiet: {busy:.0f}% busy)", flush=True)
            waited = True
    else:
        print(f"  (the machine stayed busy for {max_wait:.0f} s; measuring anyway)", flush=True)


def _f(value, spec):
    return "-" if value is None else format(value, spec)


if __name__ == "__main__":
    sys.exit(main())
