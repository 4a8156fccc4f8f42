"""The headless CLI, run as a user would: JSON lines out, non-zero exit with the code on error."""
from __future__ import annotations

import json
import os
import subprocess
import sys


def run_peer(server, *args, password="password-1", user="cli-user"):
    env = {**os.environ, "MESSENGER_PASSWORD": password}
    result = subprocess.run([sys.executable, "-m", "messenger_peer", "--server", f"{server.address[0]}:{server.address[1]}",
                             "--user", user, *args], capture_output=True, text=True, env=env, timeout=60)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    return result.returncode, lines, result.stderr


def test_register_then_login(server):
    code, lines, _ = run_peer(server, "register", "--name", "Cli User")
    assert code == 0 and lines == [{"ok": True, "op": "register", "user_id": "cli-user", "name": "Cli User"}]
    code, lines, _ = run_peer(server, "login")
    assert code == 0 and lines[0]["ok"] is True and lines[0]["user_id"] == "cli-user"


def test_wrong_password_exits_non_zero_with_unauthorized(server):
    run_peer(server, "register")
    code, lines, stderr = run_peer(server, "login", password="wrong-password")
    assert code != 0
    assert lines[0]["error"]["code"] == "unauthorized"
    assert "unauthorized" in stderr


def test_duplicate_register_gives_conflict(server):
    run_peer(server, "register")
    code, lines, _ = run_peer(server, "register")
    assert code != 0 and lines[0]["error"]["code"] == "conflict"


def test_no_server_gives_unavailable(tmp_path):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()

    class Nowhere:
        address = ("127.0.0.1", port)
    code, lines, stderr = run_peer(Nowhere, "login")
    assert code != 0 and lines[0]["error"]["code"] == "unavailable" and "is the server running" in stderr


def test_help():
    result = subprocess.run([sys.executable, "-m", "messenger_peer", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "register" in result.stdout and "login" in result.stdout


def test_rooms_and_messages_from_the_cli(server, tmp_path):
    from ..support import PNG_1PX
    for user in ("kim", "lee"):
        assert run_peer(server, "register", user=user)[0] == 0
    code, lines, _ = run_peer(server, "create-room", "우리 가족", "--invite", "lee", user="kim")
    assert code == 0 and lines[0]["room"].endswith("_kim")
    room = lines[0]["room"]
    assert run_peer(server, "send", room, "안녕", user="kim")[1][0]["seq"] == 1
    image = tmp_path / "p.png"
    image.write_bytes(PNG_1PX)
    assert run_peer(server, "send-image", room, str(image), user="lee")[1][0]["seq"] == 2
    assert run_peer(server, "send-emoticon", room, "heart", user="lee")[1][0]["seq"] == 3
    first = run_peer(server, "send", room, "once", "--txn-id", "abc", user="kim")[1][0]
    again = run_peer(server, "send", room, "once", "--txn-id", "abc", user="kim")[1][0]
    assert first["seq"] == again["seq"] == 4
    code, lines, _ = run_peer(server, "history", room, user="lee")
    messages = [line for line in lines if "seq" in line]
    assert [m["seq"] for m in messages] == [1, 2, 3, 4] and messages[0]["text"] == "안녕"
    assert lines[-1]["ok"] is True and lines[-1]["beginning"] is True
    code, lines, _ = run_peer(server, "rooms", user="lee")
    assert lines[0]["room"] == room and lines[0]["unread"] == 1   # lee read up to its own seq 3
    code, lines, _ = run_peer(server, "init", user="lee")
    assert [line["seq"] for line in lines if "seq" in line] == [1, 2, 3, 4]
    assert lines[-1]["room"] == room and lines[-1]["gap"] is False
    code, lines, _ = run_peer(server, "leave", room, user="lee")
    assert code == 0
    code, lines, _ = run_peer(server, "send", room, "bye", user="lee")
    assert code != 0 and lines[0]["error"]["code"] == "forbidden"
    code, lines, _ = run_peer(server, "send", "not-a-room", "x", user="kim")
    assert code == 2
