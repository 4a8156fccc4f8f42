"""kill -9 of the server while clients send: after a restart every acknowledged message is in
the archive with its seq, every file is valid JSON, and numbering goes on without a gap."""
from __future__ import annotations

import base64

import gevent
import pytest

from messenger_protocol import ProtocolError
from messenger_protocol.messages import RoomKey

from ..support import archive_messages, logged_in_peer, wait_for


@pytest.mark.parametrize("kill_after", [50, 400])
def test_kill_9_under_load_loses_no_acknowledged_message(server, db, kill_after):
    owner = logged_in_peer(server, "owner")
    names = [f"s{i}" for i in range(8)]
    senders = [logged_in_peer(server, n) for n in names]
    reply = owner.create_room("busy", invite=names)
    key = RoomKey(reply["session_id"], reply["creator_id"])
    acked: dict[int, str] = {}

    def send_forever(peer, name):
        i = 0
        while True:
            text = f"{name}-{i}"
            try:
                acked[peer.send_text(key, text)["seq"]] = text
            except ProtocolError:
                return
            i += 1

    jobs = [gevent.spawn(send_forever, p, n) for p, n in zip(senders, names)]
    wait_for(lambda: len(acked) >= kill_after or gevent.sleep(0.005), timeout=60, what=f"{kill_after} acks")
    server.kill()
    gevent.joinall(jobs, timeout=30)
    assert all(j.dead for j in jobs)
    for p in [owner, *senders]:
        p.close()

    server.start()   # same data dir and database
    records = archive_messages(server.data_dir / "archive", key.folder)   # parses every file
    stored = {r["seq"]: base64.b64decode(r["content"]).decode() for r in records}
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1)), "gapless, in order"
    for seq, text in acked.items():
        assert stored.get(seq) == text, f"acknowledged seq {seq} lost"
    db.execute("SELECT LAST_SEQ FROM SESSION_TB WHERE SESSION_ID = %s AND CREATOR_ID = %s", key)
    assert db.fetchone()[0] == len(records)
    again = logged_in_peer(server, "owner", register=False)
    try:
        assert again.send_text(key, "after the crash")["seq"] == len(records) + 1
        assert [r["seq"] for r in archive_messages(server.data_dir / "archive", key.folder)][-1] == len(records) + 1
    finally:
        again.close()
