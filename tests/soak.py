"""A bounded soak: many peers doing random things, then a full consistency check.

``python -m tests.soak --duration 600 --peers 200`` (``make soak``) starts its own server and
PostgreSQL, runs peers that send, invite, leave, log out and back in, and vanish without a
word (their connections cut as a kill would), for the given time; then every peer comes back,
catches up, and the check runs:

- every room's archive is valid JSON with seq 1..N, no gap, no repeat;
- every acknowledged message is in the archive with its text;
- every peer's view (its local cache) of every room it is in equals the archive over the
  range it holds, up to the room's last seq;
- the server's memory after warm-up stays flat (RSS sampled every few seconds).

It prints a table and one JSON line with the figures; exit status 1 when any check fails.
Traffic goes only to 127.0.0.1 and everything is bounded in time.
"""
from __future__ import annotations

import argparse
import base64
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import gevent
import psutil

from messenger_protocol import ProtocolError
from messenger_protocol.messages import RoomKey
from messenger_peer import Peer

from .support import PASSWORD, ServerProcess, archive_messages


class Actor:
    """One user: a Peer that comes and goes, and what it saw."""

    def __init__(self, name: str, server: ServerProcess, home: Path) -> None:
        self.name, self.server, self.home = name, server, home
        self.peer: Peer | None = None

    def online(self) -> Peer:
        if self.peer is None:
            peer = Peer(self.server.address, data_dir=self.home, timeout=60)
            try:
                peer.connect()
                peer.login(self.name, PASSWORD)
            except BaseException:
                peer.close()
                raise
            self.peer = peer
        return self.peer

    def logout(self) -> None:
        if self.peer is not None:
            try:
                self.peer.logout()
            finally:
                self.peer.close()
                self.peer = None

    def vanish(self) -> None:
        """Gone without a word, as if killed: sockets cut, no logout."""
        if self.peer is not None:
            self.peer.close()
            self.peer = None


def run_soak(duration: float, peers: int, rooms: int, seed: int = 1, progress: bool = True,
             workdir: Path | None = None) -> dict:
    rng = random.Random(seed)
    own = workdir is None
    workdir = workdir or Path(tempfile.mkdtemp(prefix="messenger-soak-"))
    server = ServerProcess(workdir / "server", None, ["--sends-per-user", "0"]).start()
    figures: dict = {"peers": peers, "rooms": rooms, "duration_s": duration}
    try:
        actors = [Actor(f"soak{i:04d}", server, workdir / "peers" / f"{i}") for i in range(peers)]
        setup = Peer(server.address).connect()
        for a in actors:
            setup.register(a.name, PASSWORD)
        setup.close()
        for a in actors:
            a.online()
        keys: list[RoomKey] = []
        members: dict[RoomKey, set[str]] = {}
        for r in range(rooms):
            owner = rng.choice(actors)
            invited = {a.name for a in rng.sample(actors, min(len(actors), rng.randint(3, 30)))} - {owner.name}
            reply = owner.online().create_room(f"room {r}", invite=sorted(invited))
            key = RoomKey(reply["session_id"], reply["creator_id"])
            keys.append(key)
            members[key] = invited | {owner.name}
        acked: dict[RoomKey, dict[int, str]] = {k: {} for k in keys}
        counts = {"send": 0, "invite": 0, "leave": 0, "logout": 0, "vanish": 0, "refused": 0}
        refused: dict[str, int] = {}
        proc = psutil.Process(server.proc.pid)
        rss: list[tuple[float, int]] = []
        started = time.monotonic()
        deadline = started + duration

        def act(actor: Actor) -> None:
            local = random.Random(rng.random())
            while time.monotonic() < deadline:
                gevent.sleep(local.uniform(0.05, 0.5))
                roll = local.random()
                try:
                    if roll < 0.80:
                        mine = [k for k in keys if actor.name in members[k]]
                        if not mine:
                            continue
                        key = local.choice(mine)
                        text = f"{actor.name} {counts['send']} {local.random():.6f}"
                        seq = actor.online().send_text(key, text)["seq"]
                        acked[key][seq] = text
                        counts["send"] += 1
                    elif roll < 0.86:
                        mine = [k for k in keys if actor.name in members[k]]
                        if not mine:
                            continue
                        key = local.choice(mine)
                        other = local.choice(actors).name
                        actor.online().invite(key, [other])
                        members[key].add(other)
                        counts["invite"] += 1
                    elif roll < 0.89:
                        mine = [k for k in keys if actor.name in members[k]]
                        if len(mine) < 2:
                            continue
                        key = local.choice(mine)
                        members[key].discard(actor.name)
                        actor.online().leave(key)
                        counts["leave"] += 1
                    elif roll < 0.95:
                        actor.logout()
                        counts["logout"] += 1
                    else:
                        actor.vanish()
                        counts["vanish"] += 1
                except ProtocolError as exc:
                    counts["refused"] += 1
                    refused[exc.code.value] = refused.get(exc.code.value, 0) + 1
                    if exc.code.value in ("unavailable", "unauthorized"):
                        actor.vanish()

        def sample() -> None:
            while time.monotonic() < deadline:
                rss.append((time.monotonic() - started, proc.memory_info().rss))
                if progress:
                    print(f"\r{time.monotonic() - started:6.0f}/{duration:.0f} s  sends {counts['send']:7d}  "
                          f"server RSS {rss[-1][1] / 2**20:6.1f} MiB", end="", file=sys.stderr, flush=True)
                gevent.sleep(min(5.0, max(0.5, duration / 40)))
        jobs = [gevent.spawn(act, a) for a in actors] + [gevent.spawn(sample)]
        gevent.joinall(jobs, timeout=duration + 120, raise_error=True)
        if progress:
            print(file=sys.stderr)
        # Everybody comes back and catches up.
        for a in actors:
            a.vanish()
        for a in actors:
            a.online()
        last = {}
        checker = actors[0].online()
        failures: list[str] = []
        archive_root = workdir / "server" / "archive"
        for key in keys:
            records = archive_messages(archive_root, key.folder)
            seqs = [r["seq"] for r in records]
            if seqs != list(range(1, len(seqs) + 1)):
                failures.append(f"{key.folder}: seqs not gapless")
            texts = {r["seq"]: base64.b64decode(r["content"]).decode() for r in records}
            for seq, text in acked[key].items():
                if texts.get(seq) != text:
                    failures.append(f"{key.folder}: acknowledged seq {seq} missing")
            last[key] = (len(seqs), {r["seq"]: r for r in records})
        views = 0
        membership_races = 0
        for a in actors:
            p = a.online()
            # The server says which rooms a user is in. Our own bookkeeping can be wrong when a
            # leave and an invite of the same user cross (the invite finds a member, then the
            # leave commits), so it only counts how often that happened.
            mine = {RoomKey(r["session_id"], r["creator_id"]) for r in p.list_rooms()}
            membership_races += sum(1 for key in keys if (key in mine) != (a.name in members[key]))
            for key in keys:
                if key not in mine:
                    continue
                n, by_seq = last[key]
                cached = p.cache.messages(key)
                views += 1
                if n and (not cached or cached[-1]["seq"] != n):
                    failures.append(f"{a.name} sees {key.folder} up to {cached[-1]['seq'] if cached else 0}, not {n}")
                    continue
                for m in cached:
                    r = by_seq.get(m["seq"])
                    if r is None or base64.b64decode(r["content"]) != m["content"] or r["user_id"] != m["user_id"]:
                        failures.append(f"{a.name}'s copy of {key.folder} seq {m['seq']} differs from the archive")
                        break
        del checker
        warm = [v for t, v in rss if t >= duration * 0.25]
        growth = (warm[-1] - warm[0]) / 2**20 if len(warm) >= 2 else 0.0
        figures.update(counts, refused_by_code=refused, messages=sum(len(v) for v in acked.values()),
                       sends_per_s=round(counts["send"] / duration, 1), views_checked=views,
                       membership_races=membership_races,
                       rss_warm_start_mib=round(warm[0] / 2**20, 1) if warm else None,
                       rss_end_mib=round(warm[-1] / 2**20, 1) if warm else None,
                       rss_growth_after_warmup_mib=round(growth, 1),
                       rss_median_mib=round(statistics.median(v for _, v in rss) / 2**20, 1) if rss else None,
                       failures=failures[:20], ok=not failures and growth < 64)
        for a in actors:
            a.vanish()
        return figures
    finally:
        server.stop()
        if own:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600, help="seconds of random activity (default 600)")
    parser.add_argument("--peers", type=int, default=200, help="users, each a live Peer (default 200)")
    parser.add_argument("--rooms", type=int, default=40, help="rooms (default 40)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    figures = run_soak(args.duration, args.peers, args.rooms, args.seed)
    for k, v in figures.items():
        if k != "failures":
            print(f"{k:32} {v}")
    for f in figures["failures"]:
        print("FAILED:", f)
    print(json.dumps(figures))
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
