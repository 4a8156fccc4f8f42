"""Benchmark: 10,000 peers online at once: the server's memory per online peer, and fan-out
time in a 1,000-member room.

Accounts are seeded directly into USER_TB with a minimal-cost password hash (a login storm is
bench_login_storm.py's subject, not this one's), and rooms of ``--room-size`` members are
created before anyone is online. Then ``--peers`` real live ``Peer``s (each with its push
listener) log in, spread over ``--processes`` worker processes, and the server's RSS is read
at each step:

1. ``rss_idle``: the server started, rooms made, nobody online;
2. ``rss_online``: every peer logged in (a session each: a connection, its greenlet and state);
3. fan-out: ``--messages`` messages, one at a time, to room 1 (its members' push links open
   at the first); fan-out time = send start -> the last of the room's members has it; the
   first message (links opening) is reported apart from the rest (links open);
4. ``rss_linked``: one message to each further room until as many push links are open as the
   open-file limit allows (the server holds two sockets per online, linked peer: its session
   and its push link; this machine's hard RLIMIT_NOFILE caps the total).

Per online peer: session = (rss_online - rss_idle) / peers; push link = (rss_linked -
rss_online) / links; both together are what a peer that is online and receiving costs.

    .venv/bin/python bench/bench_online.py [--peers 10000] [--room-size 1000] [--processes 4]
"""
from __future__ import annotations

import argparse
import gc
import multiprocessing
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import PASSWORD, cheap_hash, emit, machine, median, pct, rss, seed_users, server_with_database  # noqa: E402

import gevent  # noqa: E402
import psutil  # noqa: E402

from messenger_peer import Peer  # noqa: E402
from messenger_peer.loadtest import ProcessWorker, raise_nofile_limit  # noqa: E402

KiB = 1024


def settle(pid: int, seconds: float = 2.0) -> int:
    gevent.sleep(seconds)
    return rss(pid)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Many peers online: server memory per peer, fan-out time.")
    parser.add_argument("--peers", type=int, default=10_000)
    parser.add_argument("--room-size", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=20, help="fan-out messages to room 1")
    parser.add_argument("--processes", type=int, default=4, help="load generator worker processes")
    parser.add_argument("--login-concurrency", type=int, default=64, help="logins in flight per process")
    parser.add_argument("--workers", type=int, default=1, help="server processes (messenger-server --workers)")
    parser.add_argument("--quick", action="store_true", help="1,000 peers, 5 messages")
    args = parser.parse_args(argv)
    if args.quick:
        args.peers, args.messages = 1000, 5
    args.room_size = min(args.room_size, args.peers)
    raise_nofile_limit()
    info = machine()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    users = [f"on{i:05d}" for i in range(1, args.peers + 1)]
    rooms_members = [users[i:i + args.room_size] for i in range(0, args.peers, args.room_size)]
    result: dict = {"bench": "online", "peers": args.peers, "room_size": args.room_size, "processes": args.processes,
                    "workers": args.workers, "nofile_hard_limit": hard, "machine": info}
    t_start = time.monotonic()
    with server_with_database(["--workers", str(args.workers)]) as (server, url, data_dir):
        spid = server.pid
        seed_users(url, users, cheap_hash())
        keys = []
        for members in rooms_members:           # made while nobody is online
            creator = Peer(server.address, timeout=120).connect()
            creator.login(members[0], PASSWORD, live=False)
            reply = creator.create_room(f"big room {len(keys) + 1}", invite=members[1:501])
            key = [reply["session_id"], reply["creator_id"]]
            for start in range(501, len(members), 500):
                creator.request("invite", session_id=key[0], creator_id=key[1], user_ids=members[start:start + 500])
            creator.close()
            keys.append(key)
        rooms = [{"key": k, "members": m, "base": 0} for k, m in zip(keys, rooms_members)]
        rss_idle = settle(spid)
        print(f"server RSS idle: {rss_idle / 2**20:.1f} MiB; logging in {args.peers:,} peers "
              f"in {args.processes} processes ...", flush=True)

        ctx = multiprocessing.get_context("spawn")
        n = max(1, args.processes)
        owner = {u: i % n for i, u in enumerate(users)}
        workers = [ProcessWorker(ctx, {"server": list(server.address), "users": [u for u in users if owner[u] == w],
                                       "password": PASSWORD, "register": "never", "request_timeout": 120.0,
                                       "login_concurrency": args.login_concurrency, "full_cache": False,
                                       "listen_host": "127.0.0.1", "run_id": "online", "size": 64},
                                   time.time() + 1800) for w in range(n)]
        try:
            t0 = time.monotonic()
            jobs = [gevent.spawn(w.call, "setup", 1200) for w in workers]
            gevent.joinall(jobs, raise_error=True)
            setups = [j.value for j in jobs]
            online = sum(s["online"] for s in setups)
            login_s = time.monotonic() - t0
            if online < args.peers:
                print("  login failures: " + "; ".join(f for s in setups for f in s["failures"][:3]))
            rss_online = settle(spid)
            fds_online = psutil.Process(spid).num_fds()
            print(f"{online:,} online after {login_s:.1f} s; server RSS {rss_online / 2**20:.1f} MiB "
                  f"(+{(rss_online - rss_idle) / max(1, online) / KiB:.1f} KiB per session), {fds_online:,} fds",
                  flush=True)
            gevent.joinall([gevent.spawn(w.call, "set_rooms", 120, rooms=rooms) for w in workers], raise_error=True)

            def one_message(rep: int, ri: int) -> list[float]:
                sender = rooms[ri]["members"][0]
                expected = len(rooms[ri]["members"])
                workers[owner[sender]].call("start_rep", 60, rep=rep, duration=None, max_inflight=1,
                                            tasks=[{"user": sender, "room": ri, "count": 1, "rate": None}])
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    gevent.sleep(0.02)
                    got = sum(w.call("status", 60, rep=rep)["delivered"] for w in workers)
                    if got >= expected:
                        break
                lat = []
                for w in workers:
                    r = w.call("rep_result", 60, rep=rep)
                    from array import array
                    chunk = array("d")
                    chunk.frombytes(r["lat_ms"])
                    lat.extend(chunk)
                return sorted(lat)

            fanouts = []
            rep = 0
            for i in range(args.messages):
                rep += 1
                lat = one_message(rep, 0)
                fanouts.append({"deliveries": len(lat), "last_ms": lat[-1] if lat else None,
                                "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99)})
                gevent.sleep(0.2)
            rss_room1 = settle(spid, 1.0)
            first, rest = fanouts[0], fanouts[1:] or fanouts
            result["fanout"] = {
                "room_members": len(rooms[0]["members"]), "messages": len(fanouts),
                "first_last_ms": round(first["last_ms"], 2),
                "last_ms_median": round(median([f["last_ms"] for f in rest]), 2),
                "last_ms_max": round(max(f["last_ms"] for f in rest), 2),
                "delivery_p50_ms_median": round(median([f["p50_ms"] for f in rest]), 2),
                "incomplete": sum(1 for f in fanouts if f["deliveries"] < len(rooms[0]["members"]))}
            print(f"fan-out to {len(rooms[0]['members']):,} members: first message (links opening) "
                  f"{first['last_ms']:.1f} ms to the last member; then median {result['fanout']['last_ms_median']:.1f} ms "
                  f"(max {result['fanout']['last_ms_max']:.1f}), median delivery {result['fanout']['delivery_p50_ms_median']:.1f} ms",
                  flush=True)

            links = len(rooms[0]["members"])
            budget = hard - online - 400           # server sockets: sessions + links + pool, files, ...
            for ri in range(1, len(rooms)):
                if links + len(rooms[ri]["members"]) > budget:
                    break
                rep += 1
                one_message(rep, ri)
                links += len(rooms[ri]["members"])
            rss_linked = settle(spid)
            fds_linked = psutil.Process(spid).num_fds()
            gen_rss = sum(rss(w.pid) for w in workers)
        finally:
            gevent.joinall([gevent.spawn(w.stop) for w in workers], timeout=300)
    session_kib = (rss_online - rss_idle) / online / KiB
    link_kib = (rss_linked - rss_online) / links / KiB
    result.update({
        "online": online, "login_s": round(login_s, 1), "links": links, "fds_online": fds_online,
        "fds_linked": fds_linked, "rss_idle_mib": round(rss_idle / 2**20, 1),
        "rss_online_mib": round(rss_online / 2**20, 1), "rss_room1_mib": round(rss_room1 / 2**20, 1),
        "rss_linked_mib": round(rss_linked / 2**20, 1),
        "session_kib_per_peer": round(session_kib, 1), "link_kib_per_peer": round(link_kib, 1),
        "online_linked_kib_per_peer": round(session_kib + link_kib, 1),
        "generator_rss_kib_per_peer": round(gen_rss / online / KiB, 1),
        "elapsed_s": round(time.monotonic() - t_start, 1)})
    print(f"server memory: {session_kib:.1f} KiB per online session + {link_kib:.1f} KiB per push link = "
          f"{session_kib + link_kib:.1f} KiB per online, receiving peer (target < 100); "
          f"{links:,} links open, {fds_linked:,} fds (hard limit {hard:,})")
    emit(result)
    return 0 if online == args.peers and not result["fanout"]["incomplete"] else 1


if __name__ == "__main__":
    gc.collect()
    sys.exit(main())
