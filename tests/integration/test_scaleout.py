"""Several server processes on one database and one archive: one gapless order, written once,
delivered to everyone in order; NAT fallback across processes; a worker killed under load."""
from __future__ import annotations

import base64
import os
import signal

import re

import gevent
import psutil
import pytest

from messenger_protocol import ProtocolError
from messenger_protocol.messages import RoomKey
from messenger_peer import Peer

from ..support import PASSWORD, admin_connection, archive_messages, logged_in_peer, wait_for


AFFINITY_LOG = (r"room affinity: (\d+) sends handed to their room's worker, (\d+) taken from siblings, "
                r"(\d+) committed here because the owner was unreachable; (\d+) push hand-offs to siblings")
SESSION_LOG = (r"session affinity: (\d+) connections moved to their home worker at login, (\d+) taken from "
               r"siblings, (\d+) kept here because the move failed; (\d+) logged-in sessions moved later, "
               r"(\d+) taken")


def two_servers(server_factory, tmp_path):
    archive = tmp_path / "shared-archive"
    return [server_factory("--archive-dir", str(archive), data_dir=tmp_path / f"s{i}") for i in range(2)], archive


def send_together_and_check(peers: list[Peer], names: list[str], archive, per_sender: int,
                            key: RoomKey | None = None) -> int:
    """Every peer sends ``per_sender`` messages to one room of them all at once (``key``, an
    empty room of them all, else a new one); then the acks, the archive and every member's
    pushes must show one gapless order, each message once and in order. Returns how many
    were sent."""
    inbox: dict[str, list[int]] = {n: [] for n in names}
    for n, p in zip(names, peers):
        p.on_event(lambda e, n=n: inbox[n].append(e["seq"]) if e["event"] == "message" else None)
    if key is None:
        reply = peers[0].create_room("shared", invite=names[1:])
        key = RoomKey(reply["session_id"], reply["creator_id"])
    acked: dict[int, str] = {}

    def sender(peer, name):
        for i in range(per_sender):
            text = f"{name}:{i}"
            acked[peer.send_text(key, text)["seq"]] = text
    gevent.joinall([gevent.spawn(sender, p, n) for p, n in zip(peers, names)], raise_error=True)
    total = len(names) * per_sender
    assert sorted(acked) == list(range(1, total + 1))
    records = archive_messages(archive, key.folder)
    assert [r["seq"] for r in records] == list(range(1, total + 1)), "one gapless order, written once"
    assert all(base64.b64decode(r["content"]).decode() == acked[r["seq"]] for r in records)
    for n in names:
        wait_for(lambda n=n: len(inbox[n]) >= total, 30,
                 f"all messages at {n} (has {len(inbox[n])}, last {inbox[n][-3:]}, pending "
                 f"{ {k: sorted(v)[:3] for k, v in peers[names.index(n)]._pending.items()} })")
        assert inbox[n] == list(range(1, total + 1)), f"{n} got every message once, in order"
    return total


def test_two_processes_one_order_exactly_once(server_factory, tmp_path):
    (s1, s2), archive = two_servers(server_factory, tmp_path)
    names = [f"u{i}" for i in range(8)]
    peers = [logged_in_peer(s1 if i % 2 else s2, n) for i, n in enumerate(names)]
    send_together_and_check(peers, names, archive, per_sender=40)
    # Each process pushes only to the sessions it holds and hands the rest to their owner:
    # one push link per peer, not one per process.
    assert [p.listener.accepted for p in peers] == [1] * len(peers)
    for p in peers:
        p.close()


def test_nat_fallback_across_processes(server_factory, tmp_path):
    (s1, s2), _ = two_servers(server_factory, tmp_path)
    a = logged_in_peer(s1, "a")
    b = Peer(s2.address).connect()
    b.register("b", PASSWORD)
    # b's listener is unreachable (a port where nothing listens); its session is on s2.
    import socket
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    dead_port = probe.getsockname()[1]
    probe.close()
    reply = b.request("login", user_id="b", password=PASSWORD, listen_host="127.0.0.1", listen_port=dead_port)
    b.user_id, b.push_secret, b.live = "b", reply["push_secret"], True
    got = []
    b.on_event(lambda e: got.append(e["seq"]) if e["event"] == "message" else None)
    room = a.create_room("nat", invite=["b"])
    key = RoomKey(room["session_id"], room["creator_id"])
    for i in range(5):
        a.send_text(key, f"m{i}")            # pushed by s1, relayed through PostgreSQL to s2
    wait_for(lambda: got == [1, 2, 3, 4, 5], 30, "relayed pushes at b")
    a.close()
    b.close()


@pytest.mark.parametrize("affinity", ["off", "on"], ids=["every worker commits", "room affinity"])
def test_worker_killed_under_load_loses_nothing(server_factory, tmp_path, affinity):
    """With room affinity the killed worker may be the room's owner: the survivor then
    commits the sends it can no longer hand over, and retries are still stored once."""
    server = server_factory("--workers", "2", "--room-affinity", affinity)
    workers = psutil.Process(server.proc.pid).children()
    assert len(workers) == 2
    names = [f"w{i}" for i in range(6)]
    peers = [logged_in_peer(server, n) for n in names]
    reply = peers[0].create_room("busy", invite=names[1:])
    key = RoomKey(reply["session_id"], reply["creator_id"])
    acked: dict[int, str] = {}
    failures = [0]

    def sender(peer, name):
        i = 0
        while len(acked) < 600:
            text = f"{name}:{i}"
            try:
                acked[peer.send_text(key, text, txn_id=f"{name}-{i}")["seq"]] = text
                i += 1
            except ProtocolError:
                failures[0] += 1
                # its worker died: reconnect (the kernel picks a live worker) and resend the same txn
                peer.close()
                peer.conn = None
                peer._closing = False
                gevent.sleep(0.05)
                try:
                    peer.connect()
                    peer.login(name, PASSWORD, live=False)
                except ProtocolError:
                    pass
    jobs = [gevent.spawn(sender, p, n) for p, n in zip(peers, names)]
    wait_for(lambda: len(acked) >= 150, 60, "acks before the kill")
    os.kill(workers[0].pid, signal.SIGKILL)
    gevent.joinall(jobs, timeout=90, raise_error=True)
    assert len(acked) >= 600
    records = archive_messages(tmp_path / "server0" / "archive", key.folder)
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    texts = [base64.b64decode(r["content"]).decode() for r in records]
    assert len(texts) == len(set(texts)), "retried sends were stored once"
    for seq, text in acked.items():
        assert texts[seq - 1] == text
    wait_for(lambda: len(psutil.Process(server.proc.pid).children()) == 2, 30, "the worker to be replaced")
    for p in peers:
        p.close()


def test_processes_taking_turns_on_one_room_never_overwrite_each_other(server_factory, tmp_path):
    """Each process remembers a room's row from its own last commit and records its next
    batch only if the row is unchanged (messages.py, _commit_known). Strict turns between two
    processes make every remembered row stale: each send must notice and still take the next
    seq, with nothing in the shared archive overwritten."""
    (s1, s2), archive = two_servers(server_factory, tmp_path)
    alice, bob = logged_in_peer(s1, "alice"), logged_in_peer(s2, "bob")
    reply = alice.create_room("turns", invite=["bob"])
    key = RoomKey(reply["session_id"], reply["creator_id"])
    sent = []
    for i in range(30):
        peer = (alice, alice, bob)[i % 3]       # two in a row on s1: one fast, one stale
        text = f"turn {i}"
        assert peer.send_text(key, text)["seq"] == i + 1
        sent.append(text)
    records = archive_messages(archive, key.folder)
    assert [r["seq"] for r in records] == list(range(1, 31))
    assert [base64.b64decode(r["content"]).decode() for r in records] == sent
    for p in (alice, bob):
        p.close()


def test_room_affinity_one_worker_commits_each_room(server_factory, tmp_path):
    """Room affinity (on by default with --workers): sends reaching the other worker are
    handed to the room's worker and committed there, with one gapless order, written once,
    delivered in order."""
    # Room affinity alone: sessions stay where the kernel put them (session affinity would
    # move them, and a moved session gets a second push link).
    server = server_factory("--workers", "2", "--session-affinity", "off", "--log-level", "info")
    names = [f"a{i}" for i in range(12)]      # connections spread over both workers
    peers = [logged_in_peer(server, n) for n in names]
    total = send_together_and_check(peers, names, tmp_path / "server0" / "archive", per_sender=20)
    # Only the worker holding a peer's session pushes to it: one push link per peer.
    assert [p.listener.accepted for p in peers] == [1] * len(peers)
    for p in peers:
        p.close()
    server.stop()
    counts = [tuple(map(int, m)) for m in re.findall(AFFINITY_LOG, server.stderr())]
    assert len(counts) == 2, server.stderr()[-2000:]
    handed, taken, fallbacks, pushes = (sum(c[i] for c in counts) for i in range(4))
    assert handed > 0 and handed == taken and fallbacks == 0, counts
    assert handed < total, "the owner's own connections commit without a hand-over"
    assert pushes > 0, "members held by the other worker get their pushes from it, over the link"


def test_session_affinity_moves_a_login_to_its_rooms_worker(server_factory, database_url, tmp_path):
    """Session affinity (on with room affinity): a user whose rooms one worker owns is served
    by that worker from the next login on, whichever worker the kernel gave the connection
    to; the moved connections work as before, and sends and pushes then need no hand-over."""
    server = server_factory("--workers", "2", "--log-level", "info")
    names = [f"h{i:02d}" for i in range(12)]
    first = [logged_in_peer(server, n) for n in names]     # no rooms yet: they stay where they land
    reply = first[0].create_room("home", invite=names[1:])
    key = RoomKey(reply["session_id"], reply["creator_id"])
    for peer in first:
        peer.close()
    peers = [logged_in_peer(server, n, register=False) for n in names]
    with admin_connection(database_url) as cur:
        cur.execute("SELECT USER_ID, SERVER_ID FROM USER_SESSION_TB WHERE ONLINE AND USER_ID = ANY(%s)", (names,))
        rows = cur.fetchall()
    assert sorted(u for u, _ in rows) == names
    assert len({s for _, s in rows}) == 1, f"every session on the room's worker: {rows}"
    send_together_and_check(peers, names, tmp_path / "server0" / "archive", per_sender=10, key=key)
    assert [p.listener.accepted for p in peers] == [1] * len(peers)
    for peer in peers:
        peer.close()
    server.stop()
    log = server.stderr()
    moves = [tuple(map(int, m)) for m in re.findall(SESSION_LOG, log)]
    sends = [tuple(map(int, m)) for m in re.findall(AFFINITY_LOG, log)]
    assert len(moves) == 2 and len(sends) == 2, log[-2000:]
    moved, taken, kept = (sum(c[i] for c in moves) for i in range(3))
    assert moved == taken and kept == 0 and 0 < moved < len(names), moves
    assert all(c[0] == c[1] == c[3] == 0 for c in sends), f"no send or push crossed workers: {sends}"


def online_servers(database_url: str, names: list[str]) -> dict[str, str]:
    """Which process holds each of these users' online sessions (USER_SESSION_TB)."""
    with admin_connection(database_url) as cur:
        cur.execute("SELECT USER_ID, SERVER_ID FROM USER_SESSION_TB WHERE ONLINE AND USER_ID = ANY(%s)", (names,))
        return dict(cur.fetchall())


def test_session_affinity_moves_logged_in_sessions_to_their_rooms_worker(server_factory, database_url, tmp_path):
    """Users who logged in before their room existed (so nothing moved at login) move to the
    room's worker once their traffic crosses workers: a sender when its send is handed over,
    a member who only listens when its pushes are. Sends going on while they move keep one
    gapless order, written once, delivered to everyone once and in order."""
    server = server_factory("--workers", "2", "--log-level", "info")
    senders = [f"m{i:02d}" for i in range(10)]
    listeners = [f"l{i:02d}" for i in range(4)]
    peers = {n: logged_in_peer(server, n) for n in senders + listeners}   # spread over both workers
    heard: dict[str, list[int]] = {n: [] for n in listeners}
    for n in listeners:
        peers[n].on_event(lambda e, n=n: heard[n].append(e["seq"]) if e["event"] == "message" else None)
    before = online_servers(database_url, senders + listeners)
    reply = peers[senders[0]].create_room("later", invite=senders[1:] + listeners)
    key = RoomKey(reply["session_id"], reply["creator_id"])
    total = send_together_and_check([peers[n] for n in senders], senders, tmp_path / "server0" / "archive",
                                    per_sender=20, key=key)
    for n in listeners:
        wait_for(lambda n=n: len(heard[n]) >= total, 30, f"every message at {n}")
        assert heard[n] == list(range(1, total + 1)), f"{n} got every message once, in order"
    wait_for(lambda: len(set(online_servers(database_url, senders + listeners).values())) == 1, 30,
             f"every session on the room's worker (before: {before})")
    assert len(set(before.values())) == 2, "the kernel spread the logins over both workers"
    for peer in peers.values():
        peer.close()
    server.stop()
    log = server.stderr()
    moves = [tuple(map(int, m)) for m in re.findall(SESSION_LOG, log)]
    assert len(moves) == 2, log[-2000:]
    at_login, _, kept, moved, taken = (sum(c[i] for c in moves) for i in range(5))
    assert at_login == 0 and kept == 0 and moved == taken > 0, moves
    assert "Traceback" not in log, log[-3000:]


def test_nat_fallback_between_workers(server_factory):
    """Members whose listeners cannot be reached still receive over their own connections
    when the room's worker is not the one holding them (pushes handed over the link)."""
    server = server_factory("--workers", "2")
    sender = logged_in_peer(server, "nat-sender")
    import socket
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    dead_port = probe.getsockname()[1]
    probe.close()
    names = [f"nat{i}" for i in range(8)]      # connections spread over both workers
    members, got = [], {n: [] for n in names}
    for name in names:
        peer = Peer(server.address).connect()
        peer.register(name, PASSWORD)
        reply = peer.request("login", user_id=name, password=PASSWORD, listen_host="127.0.0.1",
                             listen_port=dead_port)
        peer.user_id, peer.push_secret, peer.live = name, reply["push_secret"], True
        peer.on_event(lambda e, n=name: got[n].append(e["seq"]) if e["event"] == "message" else None)
        members.append(peer)
    room = sender.create_room("nat", invite=names)
    key = RoomKey(room["session_id"], room["creator_id"])
    for i in range(5):
        sender.send_text(key, f"m{i}")
    for name in names:
        wait_for(lambda n=name: got[n] == [1, 2, 3, 4, 5], 30, f"pushes over the connection at {name}: {got}")
    for peer in [sender, *members]:
        peer.close()
