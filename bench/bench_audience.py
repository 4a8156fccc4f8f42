"""Benchmark: the audience bump of a login (every room of the user) and of an invite (one
room) in a database of many rooms, against the single statement it replaced.

Every login, logout, invite and leave bumps AUDIENCE_VERSION of the rooms whose audience it
changes (storage/rooms.py ``bump_audience``). Its cost must follow the user's rooms, not
all the rooms there are. The old form, one statement with ``(room) IN (given rooms) OR
(room) IN (the user's rooms)``, made PostgreSQL filter every row of SESSION_TB; it runs
here as the baseline, in the same database, alternating with the current code.

A temporary embedded PostgreSQL gets ``--rooms`` rooms of 4 members among ``--users``
users (so each user is in ~4 x rooms / users of them), analysed. Each variant runs
``--runs`` times in a transaction that is rolled back.

    .venv/bin/python bench/bench_audience.py [--rooms 20000] [--users 2000] [--runs 50]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg2  # noqa: E402

from benchlib import emit, machine, median, temporary_database  # noqa: E402

from messenger_protocol.messages import RoomKey  # noqa: E402
from messenger_server.storage import rooms as room_db  # noqa: E402
from messenger_server.storage.migrate import migrate  # noqa: E402

OLD_BUMP = """WITH locked AS (
                  SELECT SESSION_ID, CREATOR_ID FROM SESSION_TB
                  WHERE (SESSION_ID, CREATOR_ID) IN (SELECT * FROM unnest(%s::varchar[], %s::varchar[]))
                     OR (SESSION_ID, CREATOR_ID) IN (SELECT SESSION_ID, CREATOR_ID FROM SESSION_USER_RELATION_TB
                                                     WHERE USER_ID = ANY(%s::varchar[]))
                  ORDER BY SESSION_ID, CREATOR_ID FOR UPDATE)
              UPDATE SESSION_TB s SET AUDIENCE_VERSION = s.AUDIENCE_VERSION + 1
              FROM locked l WHERE s.SESSION_ID = l.SESSION_ID AND s.CREATOR_ID = l.CREATOR_ID"""


def seed(cur, rooms: int, users: int) -> None:
    cur.execute("""INSERT INTO USER_TB (USER_ID, USER_NM, PASSWORD)
                   SELECT 'u' || g, 'u' || g, 'x' FROM generate_series(1, %s) g""", (users,))
    cur.execute("""INSERT INTO SESSION_TB (SESSION_ID, CREATOR_ID, SESSION_NM, HAS_IMAGE)
                   SELECT '20261124_' || lpad(g::text, 6, '0'), 'u' || (g %% %s + 1), 'room', false
                   FROM generate_series(1, %s) g""", (users, rooms))
    cur.execute("""INSERT INTO SESSION_USER_RELATION_TB (SESSION_ID, CREATOR_ID, USER_ID)
                   SELECT '20261124_' || lpad(g::text, 6, '0'), 'u' || (g %% %s + 1), 'u' || ((g + k) %% %s + 1)
                   FROM generate_series(1, %s) g, generate_series(0, 3) k ON CONFLICT DO NOTHING""",
                (users, users, rooms))


def timed_ms(conn, fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        with conn.cursor() as cur:
            start = time.perf_counter()
            fn(cur)
            times.append((time.perf_counter() - start) * 1000)
        conn.rollback()
    return median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Audience bump of a login and of an invite among many rooms.")
    parser.add_argument("--rooms", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=50, help="timed runs of each variant")
    args = parser.parse_args(argv)
    with temporary_database() as (url, _):
        migrate(url)
        conn = psycopg2.connect(url)
        with conn.cursor() as cur:
            print(f"seeding {args.rooms:,} rooms of 4 members among {args.users:,} users ...", flush=True)
            seed(cur, args.rooms, args.users)
        conn.commit()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("ANALYZE")
        conn.autocommit = False
        user = "u17"
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM SESSION_USER_RELATION_TB WHERE USER_ID = %s", (user,))
            user_rooms = cur.fetchone()[0]
            cur.execute("SELECT SESSION_ID, CREATOR_ID FROM SESSION_TB LIMIT 1")
            room = RoomKey(*cur.fetchone())
        conn.rollback()
        cases = {
            "login (the user's rooms)": (lambda cur: room_db.bump_audience(cur, users=[user]),
                                         lambda cur: cur.execute(OLD_BUMP, ([], [], [user]))),
            "invite (one room)": (lambda cur: room_db.bump_audience(cur, rooms=[room]),
                                  lambda cur: cur.execute(OLD_BUMP, ([room[0]], [room[1]], []))),
        }
        result = {"bench": "audience_bump", "rooms": args.rooms, "users": args.users, "user_rooms": user_rooms,
                  "runs": args.runs, "machine": machine()}
        print(f"{'bump':<28}{'current ms':>12}{'old ms':>10}{'old / current':>15}")
        for name, (current, old) in cases.items():
            now_ms, old_ms = [], []
            for _ in range(3):      # alternate, so drifts of a shared machine hit both
                now_ms.append(timed_ms(conn, current, args.runs))
                old_ms.append(timed_ms(conn, old, args.runs))
            a, b = median(now_ms), median(old_ms)
            print(f"{name:<28}{a:>12.3f}{b:>10.3f}{b / a:>15.1f}")
            result[name.split()[0]] = {"current_ms": round(a, 3), "old_ms": round(b, 3), "ratio_old_current": round(b / a, 1)}
        conn.close()
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
