"""Benchmark: ``init`` for a user in 100 rooms that each hold 3 days x 1,000 messages.

The history is seeded directly into the archive and SESSION_TB (as tests/support.py
``seed_history`` does), with 100-byte text messages, on a real server with its own embedded
PostgreSQL. Then one client, logged in, times ``init`` requests (request written -> reply
decoded, on this machine's loopback) in three situations:

* ``cold``: the client has nothing cached: the server sends the last 3 days of every room
  (300,000 messages). The reply is one frame of ~70 MB, over the client's default 16 MiB frame
  cap: this benchmark's client raises its cap to measure it, and reports whether a default
  ``Peer`` can receive it at all;
* ``behind_10``: the client has every room up to 10 messages ago (a day file cut to those);
* ``up_to_date``: the client has everything (only the room list and counters travel).

    .venv/bin/python bench/bench_init.py [--rooms 100] [--days 3] [--per-day 1000] [--runs 5]
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import PASSWORD, db_pid, emit, machine, median, seed_history, server_with_database  # noqa: E402

import gevent  # noqa: E402

from messenger_peer import Peer  # noqa: E402
from messenger_peer.client import ServerConnection  # noqa: E402
from messenger_peer.loadtest import CpuMeter  # noqa: E402
from messenger_protocol import ProtocolError  # noqa: E402

CONTENT = (b"benchmark chat message of one hundred bytes of UTF-8 text. " * 2)[:100]
USER = "init-user"


def timed_init(conn: ServerConnection, rooms: list[dict]) -> tuple[float, int, int]:
    """Seconds for one init, messages and content bytes in the reply."""
    start = time.perf_counter()
    reply = conn.request("init", rooms=rooms, timeout=300)
    elapsed = time.perf_counter() - start
    data = reply["chatroom_init_data"]
    size = sum(len(day["content"]) for room in data for day in room["content"])
    messages = sum(day["content"].count(b'"seq"') for room in data for day in room["content"])
    return elapsed, messages, size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time init for a user in many rooms with seeded history.")
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--per-day", type=int, default=1000, help="messages per room per day")
    parser.add_argument("--runs", type=int, default=5, help="timed inits per situation")
    parser.add_argument("--quick", action="store_true", help="10 rooms, 2 runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.rooms, args.runs = 10, 2
    info = machine()
    today = dt.datetime.now(dt.timezone.utc).date()
    days = {today - dt.timedelta(days=i): args.per_day for i in range(args.days)}
    result: dict = {"bench": "init", "rooms": args.rooms, "days": args.days, "per_day": args.per_day,
                    "message_bytes": len(CONTENT), "runs": args.runs, "machine": info}
    with server_with_database() as (server, url, data_dir):
        meter = CpuMeter(server.pid, db_pid(data_dir.parent / "pg"))
        peer = Peer(server.address, timeout=300).connect()
        peer.register(USER, PASSWORD)
        peer.login(USER, PASSWORD, live=False)
        t0 = time.monotonic()
        keys = []
        for i in range(args.rooms):
            reply = peer.create_room(f"room {i + 1}")
            keys.append((reply["session_id"], reply["creator_id"]))
        last = 0
        for key in keys:
            last = seed_history(url, data_dir / "archive", key, days, USER, CONTENT)
        peer.close()
        result["seed_s"] = round(time.monotonic() - t0, 1)
        print(f"seeded {args.rooms} rooms x {args.days} days x {args.per_day:,} messages in {result['seed_s']} s")

        conn = ServerConnection(*server.address, timeout=300, max_frame_size=1 << 30).connect()
        conn.request("login", user_id=USER, password=PASSWORD)
        situations = {
            "cold": [],
            "behind_10": [{"session_id": k[0], "creator_id": k[1], "last_seq": last - 10} for k in keys],
            "up_to_date": [{"session_id": k[0], "creator_id": k[1], "last_seq": last} for k in keys],
        }
        print(f"{'situation':<12}{'median s':>10}{'min s':>9}{'max s':>9}{'messages':>10}{'reply MB':>10}"
              f"{'srv cpu s':>11}{'+db s':>8}")
        for name, rooms in situations.items():
            timings, cpus = [], []
            messages = size = 0
            timed_init(conn, rooms)                        # warm the page cache and code paths
            for _ in range(args.runs):
                before = meter.snapshot()
                elapsed, messages, size = timed_init(conn, rooms)
                cpus.append(CpuMeter.delta(before, meter.snapshot()))
                timings.append(elapsed)
            row = {"median_s": round(median(timings), 4), "min_s": round(min(timings), 4),
                   "max_s": round(max(timings), 4), "messages": messages, "reply_bytes": size,
                   "server_cpu_s": round(median([c[0] for c in cpus]), 4),
                   "server_db_cpu_s": round(median([c[1] for c in cpus]), 4)}
            result[name] = row
            print(f"{name:<12}{row['median_s']:>10.3f}{row['min_s']:>9.3f}{row['max_s']:>9.3f}{messages:>10,}"
                  f"{size / 1e6:>10.1f}{row['server_cpu_s']:>11.3f}{row['server_db_cpu_s']:>8.3f}")
        conn.close()

        # Can a default Peer (16 MiB frame cap) take the cold init at all?
        peer = Peer(server.address, timeout=300)
        start = time.perf_counter()
        try:
            peer.login(USER, PASSWORD)          # live: listener + catch_up (init with an empty cache)
            result["default_peer_cold_login"] = {"ok": True, "s": round(time.perf_counter() - start, 3)}
        except ProtocolError as exc:
            result["default_peer_cold_login"] = {"ok": False, "error": exc.code.value, "message": exc.message[:200]}
        finally:
            peer.close()
        print(f"a default Peer logging in with an empty cache: {result['default_peer_cold_login']}")
    result["target_cold_under_1s"] = result["cold"]["median_s"] < 1.0
    emit(result)
    return 0


if __name__ == "__main__":
    gevent.get_hub()
    sys.exit(main())
