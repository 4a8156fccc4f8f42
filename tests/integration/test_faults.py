"""Faults survived with nothing lost: the database restarting under load, a full or read-only
disk, and thousands of idle connections."""
from __future__ import annotations

import base64
import socket
import subprocess
from pathlib import Path

import gevent
import pytest

from messenger_protocol import ErrorCode, ProtocolError, encode
from messenger_protocol.messages import RoomKey

from ..support import DedicatedPostgres, ServerProcess, archive_messages, logged_in_peer, wait_for


def make_room(owner, members) -> RoomKey:
    reply = owner.create_room("faults", invite=members)
    return RoomKey(reply["session_id"], reply["creator_id"])


def check_archive(root: Path, key: RoomKey, acked: dict[int, str]) -> list[dict]:
    records = archive_messages(root, key.folder)
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1)), "gapless"
    texts = [base64.b64decode(r["content"]).decode() for r in records]
    assert len(texts) == len(set(texts)), "no message stored twice"
    by_seq = {r["seq"]: t for r, t in zip(records, texts)}
    for seq, text in acked.items():
        assert by_seq.get(seq) == text, f"acknowledged seq {seq} lost"
    return records




def test_database_restart_under_load(private_dir):
    pg = DedicatedPostgres(private_dir)
    server = ServerProcess(private_dir / "data", pg.url, [])
    try:
        server.start()
        senders = [logged_in_peer(server, f"s{i}") for i in range(4)]
        key = make_room(senders[0], [f"s{i}" for i in range(1, 4)])
        acked: dict[int, str] = {}
        unavailable = [0]
        stop = gevent.event.Event()

        def send_loop(peer, name):
            i = 0
            while not stop.is_set():
                text, txn = f"{name}-{i}", f"{name}-txn-{i}"
                while not stop.is_set():                   # retry the same txn until it is stored
                    try:
                        acked[peer.send_text(key, text, txn_id=txn)["seq"]] = text
                        break
                    except ProtocolError as exc:
                        assert exc.code is ErrorCode.UNAVAILABLE, exc
                        unavailable[0] += 1
                        if peer.conn is None or peer.conn.closed:
                            return
                        gevent.sleep(0.05)
                i += 1
        jobs = [gevent.spawn(send_loop, p, f"s{i}") for i, p in enumerate(senders)]
        wait_for(lambda: len(acked) >= 50, 30, "sends before the outage")
        pg.stop()
        wait_for(lambda: unavailable[0] > 0, 30, "sends refused while the database is down")
        before = len(acked)
        pg.start()
        wait_for(lambda: len(acked) >= before + 50, 60, "sends after the database came back")
        stop.set()
        gevent.joinall(jobs, timeout=30, raise_error=True)
        check_archive(private_dir / "data" / "archive", key, acked)
        for p in senders:
            p.close()
        assert server.proc.poll() is None, "the server survived the outage"
    finally:
        server.stop()
        pg.close()


def mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)


def test_full_disk_refuses_sends_and_loses_nothing(server_factory, private_dir):
    archive = private_dir / "archive"
    mount_tmpfs(archive, "1m")
    server = None
    try:
        server = server_factory("--archive-dir", str(archive))
        kim = logged_in_peer(server, "kim")
        key = make_room(kim, [])
        filler = archive / "filler"
        with open(filler, "wb") as f:          # leave about 200 KB free
            f.write(b"\0" * (800 * 1024))
        acked: dict[int, str] = {}
        refused = None
        for i in range(100):
            text = f"{i}-" + "x" * 30_000
            try:
                acked[kim.send_text(key, text)["seq"]] = text
            except ProtocolError as exc:
                refused = exc
                break
        assert refused is not None and refused.code is ErrorCode.UNAVAILABLE
        assert "not stored" in refused.message
        check_archive(archive, key, acked)
        filler.unlink()                         # space again: sending works and numbering goes on
        seq = kim.send_text(key, "after the disk was freed")["seq"]
        assert seq == len(acked) + 1
        acked[seq] = "after the disk was freed"
        check_archive(archive, key, acked)
        kim.close()
    finally:
        if server is not None:
            server.stop()
        subprocess.run(["umount", "-l", str(archive)], check=False)


def test_unwritable_archive_refuses_sends(server, tmp_path):
    kim = logged_in_peer(server, "kim")
    key = make_room(kim, [])
    acked = {1: "first"}
    assert kim.send_text(key, "first")["seq"] == 1
    day_dir = next((server.data_dir / "archive" / key.folder).glob("[0-9]*/[0-9]*"))
    day_file = next(day_dir.iterdir())
    subprocess.run(["chattr", "+i", str(day_file)], check=True)      # even root cannot write it
    try:
        with pytest.raises(ProtocolError) as info:
            kim.send_text(key, "refused")
        assert info.value.code is ErrorCode.UNAVAILABLE
    finally:
        subprocess.run(["chattr", "-i", str(day_file)], check=True)
    assert kim.send_text(key, "second")["seq"] == 2
    acked[2] = "second"
    check_archive(server.data_dir / "archive", key, acked)
    kim.close()


def test_two_thousand_idle_connections_while_others_chat(server_factory):
    server = server_factory("--max-connections-per-address", "5000")
    idle = []
    try:
        for _ in range(2000):
            sock = socket.create_connection(server.address, timeout=10)
            sock.sendall(encode({"id": 1, "op": "hello", "version": 1}))
            idle.append(sock)
        a, b = logged_in_peer(server, "a"), logged_in_peer(server, "b")
        got = []
        b.on_event(lambda e: got.append(e) if e["event"] == "message" else None)
        key = make_room(a, ["b"])
        for i in range(100):
            a.send_text(key, f"m{i}")
        wait_for(lambda: len(got) == 100, 30, "100 messages at b")
        assert [e["seq"] for e in got] == list(range(1, 101))
        a.close()
        b.close()
    finally:
        for sock in idle:
            sock.close()
