"""Benchmark: PostgreSQL's CPU for one W1-like send batch on the remembered-row path.

A batch of 5 sends to a 50-member room is recorded the way the server's committer does it
(``Pool.transaction``: ``BEGIN`` with the record statement ``send_known_one``, then
``COMMIT``), over and over, on a temporary embedded PostgreSQL whose ``SEND_TXN_TB``
already holds 20,000 rows. Reports the backend's CPU and the wall time per batch, with the
statements' plans generic (as the server runs them) and custom (planned at every run), in
turns. Prints a table and one JSON line (µs, medians over rounds).

    .venv/bin/python bench/bench_record_statement.py [--batches N] [--rounds N]
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402

from bench.benchlib import emit, machine, median, seed_users, temporary_database  # noqa: E402
from messenger_protocol.messages import RoomKey  # noqa: E402
from messenger_server.storage import rooms as room_db  # noqa: E402
from messenger_server.storage.migrate import migrate  # noqa: E402
from messenger_server.storage.pool import Pool  # noqa: E402

MEMBERS = [f"member{i:03d}" for i in range(50)]
KEY = RoomKey("20261124_000001", MEMBERS[0])
SENDS = 5
RECORD_BYTES = 240
PLANS = ("generic", "custom")


class Room:
    """The room's state as the committer remembers it, advanced batch by batch."""

    def __init__(self, pool: Pool) -> None:
        with pool.transaction() as cur:
            self.known = room_db.get_room(cur, KEY)
        self.txn = 0

    def record(self, pool: Pool) -> None:
        known = self.known
        now = dt.datetime.now(dt.timezone.utc)
        day = now.date()
        size = (known.archive_size if known.archive_day == day else 0) + SENDS * RECORD_BYTES
        seqs = range(known.last_seq + 1, known.last_seq + SENDS + 1)
        senders = [MEMBERS[seq % 10] for seq in seqs]
        reads = [(KEY, user, seq) for user, seq in zip(senders, seqs)]
        txns = []
        for user, seq in zip(senders, seqs):
            self.txn += 1
            txns.append((user, f"txn{self.txn}", KEY, seq, now.isoformat()))
        append = (KEY, seqs[-1], now, senders[-1], "text", "a benchmark message", day, size)
        with pool.transaction("bench.record") as cur:
            outcome = room_db.finish_known_batch(cur, known, append, reads, txns)
        if outcome != "ok":
            raise RuntimeError(f"the record statement answered {outcome!r}")
        self.known = room_db.Room(KEY, known.name, known.has_image, seqs[-1], now, senders[-1], "text",
                                  "a benchmark message", day, size, known.created_at, known.audience_version)


def backend_pid(pool: Pool) -> int:
    with pool.transaction() as cur:
        cur.execute("SELECT pg_backend_pid()")
        return cur.fetchone()[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=3000, help="batches per round and plan kind")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; generic and custom plans take turns")
    args = parser.parse_args()
    results: dict[str, dict[str, list[float]]] = {p: {"cpu_us": [], "wall_us": []} for p in PLANS}
    print("starting a temporary PostgreSQL ...", flush=True)
    with temporary_database() as (url, _):
        migrate(url)
        seed_users(url, MEMBERS, "not-a-password-hash")
        with Pool(url, size=1).transaction() as cur:
            room_db.insert_room(cur, KEY, "bench", False)
            room_db.add_members(cur, KEY, MEMBERS)
            cur.execute("""INSERT INTO SEND_TXN_TB (USER_ID, TXN_ID, SESSION_ID, CREATOR_ID, SEQ, CHAT_TIME)
                           SELECT %s, 'old' || g, %s, %s, g, now() FROM generate_series(1, 20000) g""",
                        (MEMBERS[1], *KEY))
        pools = {
            "generic": Pool(url, size=1, on_connect=room_db.prepare_statements),
            "custom": Pool(url, size=1, on_connect=lambda cur: (room_db.prepare_statements(cur),
                                                                 cur.execute("SET plan_cache_mode = force_custom_plan"))),
        }
        with pools["generic"].transaction() as cur:
            cur.execute("ANALYZE")
        room = Room(pools["generic"])
        backends = {kind: psutil.Process(backend_pid(pool)) for kind, pool in pools.items()}
        for kind, pool in pools.items():      # warm up: plans made, caches filled
            for _ in range(200):
                room.record(pool)
        print(f"{'round':>5}  {'plans':<8} {'PostgreSQL CPU / batch':>22} {'wall / batch':>13}")
        for r in range(1, args.rounds + 1):
            for kind in PLANS:
                cpu = backends[kind].cpu_times()
                started = time.perf_counter()
                for _ in range(args.batches):
                    room.record(pools[kind])
                wall = time.perf_counter() - started
                after = backends[kind].cpu_times()
                used = (after.user + after.system) - (cpu.user + cpu.system)
                results[kind]["cpu_us"].append(used / args.batches * 1e6)
                results[kind]["wall_us"].append(wall / args.batches * 1e6)
                print(f"{r:>5}  {kind:<8} {results[kind]['cpu_us'][-1]:>19.0f} µs {results[kind]['wall_us'][-1]:>10.0f} µs",
                      flush=True)
        for pool in pools.values():
            pool.close()
    summary = {kind: {k: round(median(v), 1) for k, v in row.items()} for kind, row in results.items()}
    for kind, row in summary.items():
        print(f"median {kind:<8} PostgreSQL CPU {row['cpu_us']:.0f} µs, wall {row['wall_us']:.0f} µs per batch")
    emit({"bench": "record_statement", "machine": machine(), "batches": args.batches, "rounds": args.rounds,
          "sends_per_batch": SENDS, "members": len(MEMBERS), "median_us": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
