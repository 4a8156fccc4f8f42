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
