"""The server process itself: start-up line, options, clean stop, embedded PostgreSQL."""
from __future__ import annotations

import os
import subprocess
import sys


import psutil

from messenger_peer import Peer
from ..support import ServerProcess


def postgres_children(data_dir) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if proc.info.get("name") == "postgres" and any(str(data_dir) in part for part in cmdline):
            found.append(proc)
    return found




def test_embedded_postgres_start_and_clean_stop(private_dir):
    """No database URL: the server runs its own PostgreSQL in <data-dir>/pg and stops it."""
    tmp_path = private_dir
    server = ServerProcess(tmp_path / "data", None, [])
    server.start()
    try:
        assert (tmp_path / "data" / "pg" / "PG_VERSION").exists()
        assert (tmp_path / "data" / "archive").is_dir()
        with Peer(server.address).connect() as p:
            p.register("solo", "password-1")
            assert p.login("solo", "password-1")["user_id"] == "solo"
        assert postgres_children(tmp_path / "data" / "pg")
        assert server.terminate() == 0
        assert not [p for p in postgres_children(tmp_path / "data" / "pg") if p.is_running()
                    and p.status() != psutil.STATUS_ZOMBIE]
    finally:
        server.stop()
    # Data survives a restart: the same account logs in against the same embedded database.
    server = ServerProcess(tmp_path / "data", None, [])
    server.start()
    try:
        with Peer(server.address).connect() as p:
            assert p.login("solo", "password-1")["user_id"] == "solo"
    finally:
        server.stop()


def test_sigint_stops_cleanly(server):
    import signal
    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(30) == 0


def test_environment_variables_configure_the_server(tmp_path, database_url):
    env = {"MESSENGER_TIMEZONE": "Asia/Seoul", "MESSENGER_ARCHIVE_DIR": str(tmp_path / "elsewhere")}
    server = ServerProcess(tmp_path / "d", database_url, [], env=env)
    server.start()
    try:
        assert (tmp_path / "elsewhere").is_dir()
    finally:
        server.stop()


def test_bad_timezone_is_a_usage_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "messenger_server", "--timezone", "Mars/Base",
                             "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "unknown time zone" in result.stderr


def test_help_lists_every_option():
    result = subprocess.run([sys.executable, "-m", "messenger_server", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for flag in ("--host", "--port", "--data-dir", "--database-url", "--archive-dir", "--timezone"):
        assert flag in result.stdout
    assert "MESSENGER_DATABASE_URL" in result.stdout


def test_port_in_use_fails_with_a_message(server, tmp_path, database_url):
    other = ServerProcess(tmp_path / "other", database_url, [])
    argv = other.argv
    argv[argv.index("--port") + 1] = str(server.address[1])
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                            env={k: v for k, v in os.environ.items() if k != "MESSENGER_DATABASE_URL"})
    assert result.returncode == 1 and "could not start" in result.stderr


def test_heartbeat_prunes_by_the_configured_retention(server_factory, db):
    """--txn-retention-days and --session-retention-days reach the heartbeat's upkeep: with
    0 days a closed session goes at the next beat, and a txn id older than the 1 day set
    goes while a newer one stays."""
    from ..support import logged_in_peer, wait_for

    server = server_factory("--txn-retention-days", "1", "--session-retention-days", "0")
    peer = logged_in_peer(server, "alice")
    room = peer.create_room("club", [])
    db.execute("""INSERT INTO SEND_TXN_TB (USER_ID, TXN_ID, SESSION_ID, CREATOR_ID, SEQ, CHAT_TIME, CREATED_AT)
                  VALUES ('alice', 'two-days', %(s)s, %(c)s, 1, 't', now() - interval '2 days'),
                         ('alice', 'half-a-day', %(s)s, %(c)s, 2, 't', now() - interval '12 hours')""",
               {"s": room["session_id"], "c": room["creator_id"]})
    peer.logout()
    peer.close()

    def count(sql: str) -> int:
        db.execute(sql)
        return db.fetchone()[0]

    wait_for(lambda: count("SELECT count(*) FROM USER_SESSION_TB") == 0, timeout=30,
             what="the closed session pruned by the heartbeat")
    assert wait_for(lambda: count("SELECT count(*) FROM SEND_TXN_TB WHERE TXN_ID = 'two-days'") == 0,
                    timeout=5, what="the two-day-old txn id pruned")
    assert count("SELECT count(*) FROM SEND_TXN_TB WHERE TXN_ID = 'half-a-day'") == 1
