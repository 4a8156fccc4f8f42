"""bench/lean_load.py end to end: the lean load generator speaks the real protocol (logins
with listeners, the push challenge, sends) and checks every delivery, against the real server
(two rooms, two generator processes) and against the baseline relay."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from messenger_peer.loadtest import RELAXED_LIMITS, ServerUnderTest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def run_lean(address: tuple[str, int], *argv: str) -> tuple[int, dict, str]:
    proc = subprocess.run([sys.executable, str(BENCH / "lean_load.py"), "--server", "%s:%d" % address,
                           "--timeout", "30", *argv], capture_output=True, text=True, timeout=90)
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr
    return proc.returncode, json.loads(lines[-1]), proc.stdout + proc.stderr


def check(result: dict, deliveries_each_rep: int, repeat: int) -> None:
    assert result["ok"] is True
    assert result["lost"] == result["duplicates"] == result["disorder"] == 0
    assert [r["deliveries"] for r in result["reps"]] == [deliveries_each_rep] * repeat
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert result["deliveries_per_s"] > 0 and result["generator_cpu_us_per_delivery"] > 0


@pytest.mark.database
def test_against_the_real_server_with_two_rooms_and_two_processes(server_factory):
    server = server_factory(*RELAXED_LIMITS)
    status, result, out = run_lean(server.address, "--server-pid", str(server.proc.pid), "--rooms", "2",
                                   "--members", "5", "--senders", "2", "--messages", "120", "--repeat", "2",
                                   "--processes", "2")
    assert status == 0, out
    check(result, deliveries_each_rep=120 * 5, repeat=2)     # each member gets its room's 60
    assert result["server_cpu_us_per_delivery"] is not None
    assert "-> OK" in out


def test_against_the_baseline_relay():
    relay = ServerUnderTest.start([sys.executable, str(BENCH / "relay.py"), "--port", "0"], None, keep=False)
    try:
        status, result, out = run_lean(relay.address, "--members", "6", "--senders", "3", "--messages", "90",
                                       "--repeat", "1")
    finally:
        relay.stop()
    assert status == 0, out
    check(result, deliveries_each_rep=90 * 6, repeat=1)


def test_only_loopback_servers_are_accepted():
    proc = subprocess.run([sys.executable, str(BENCH / "lean_load.py"), "--server", "192.0.2.1:9100"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0 and "loopback" in proc.stderr
