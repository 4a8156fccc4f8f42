"""messenger-loadtest end to end: a small run against a real server and against the baseline
relay of bench/, checking that every member got every message exactly once and that the JSON
line a benchmark script parses is there and sane."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from messenger_peer import loadtest

RELAY = Path(__file__).resolve().parents[2] / "bench" / "relay.py"


def run_loadtest(capsys, *argv: str) -> tuple[int, dict, str]:
    status = loadtest.main([*argv, "--progress", "off", "--timeout", "25"])
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    return status, json.loads(lines[-1]), out


def check_complete(result: dict, peers: int, messages: int, repeat: int = 1) -> None:
    expected = peers * messages * repeat        # one room: every member receives every message
    assert result["ok"] is True
    assert result["lost"] == 0
    assert result["duplicates"] == 0
    assert result["failed_sends"] == 0
    assert result["unacked_deliveries"] == 0
    assert result["timed_out"] is False
    assert result["acked"] == messages * repeat
    assert result["deliveries"] == result["expected_deliveries"] == expected
    assert [r["deliveries"] for r in result["reps"]] == [peers * messages] * repeat
    assert result["deliveries_per_s"] > 0 and result["accepted_msgs_per_s"] > 0
    lat = result["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]


@pytest.mark.database
def test_against_the_real_server(server, capsys):
    host, port = server.address
    status, result, out = run_loadtest(
        capsys, "--server", f"{host}:{port}", "--server-pid", str(server.proc.pid),
        "--members", "6", "--senders", "2", "--messages", "100", "--size", "64")
    assert status == 0, out
    check_complete(result, peers=6, messages=100)
    assert result["server_software"].startswith("messenger-server/")
    assert result["server_cpu_s_per_1k_deliveries"] is not None
    assert "lost 0, duplicates 0" in out          # the table


def test_against_the_baseline_relay_in_worker_processes(capsys):
    status, result, out = run_loadtest(
        capsys, "--server-command", f"{sys.executable} {RELAY} --port 0",
        "--members", "6", "--senders", "2", "--messages", "100", "--repeat", "2", "--processes", "2")
    assert status == 0, out
    check_complete(result, peers=6, messages=100, repeat=2)
    assert result["server_software"] == "messenger-relay/baseline"
    assert result["server_cpu_s_per_1k_deliveries"] is not None      # the relay's PID is known


def test_open_loop_for_a_duration_against_the_relay(capsys):
    status, result, out = run_loadtest(
        capsys, "--server-command", f"{sys.executable} {RELAY} --port 0",
        "--members", "4", "--senders", "2", "--duration", "1", "--rate", "200")
    assert status == 0, out
    assert result["mode"] == "open" and result["lost"] == 0 and result["duplicates"] == 0
    assert 100 <= result["acked"] <= 260          # ~200 msg/s for 1 s
    assert result["deliveries"] == 4 * result["acked"]


def test_only_loopback_servers_are_accepted(capsys):
    assert loadtest.main(["--server", "192.0.2.1:9100", "--progress", "off"]) == 2
    assert "loopback" in capsys.readouterr().err


def test_track_counts_each_seq_once_even_out_of_order():
    track = loadtest.Track(base=10)
    assert [track.add(s) for s in (11, 13, 12, 12, 14, 9, 13)] == [True, True, True, False, True, False, False]
    assert (track.high, track.extra) == (14, set())


def test_percentile_is_nearest_rank():
    values = sorted(float(v) for v in range(1, 101))
    assert [loadtest.percentile(values, q) for q in (50, 95, 99, 100)] == [50.0, 95.0, 99.0, 100.0]
    assert loadtest.percentile([], 50) is None


@pytest.mark.database
@pytest.mark.parametrize("pacing", ["2", "0"], ids=["paced", "--push-pacing 0"])
def test_a_big_busy_room_loses_nothing_when_fan_outs_are_paced(server_factory, capsys, pacing):
    """400 members and 5 closed-loop senders: each fan-out costs over a millisecond (with 300
    it was ~1 ms, and some runs paced none), so the hub paces them and joins batches committed
    meanwhile (push.py), unless pacing is off. Either way every member gets every message once."""
    server = server_factory(*loadtest.RELAXED_LIMITS, "--log-level", "info", "--push-pacing", pacing)
    host, port = server.address
    status, result, out = run_loadtest(
        capsys, "--server", f"{host}:{port}", "--members", "400", "--senders", "5",
        "--messages", "300", "--size", "64")
    assert status == 0, out
    check_complete(result, peers=400, messages=300)
    server.stop()
    pushed = re.search(r"pushed (\d+) deliveries; (\d+) message batches joined", server.stderr())
    assert pushed is not None, server.stderr()[-2000:]
    assert int(pushed[1]) >= 400 * 300       # plus the load test's warm-up messages
    if pacing == "0":
        assert int(pushed[2]) == 0
    else:
        assert int(pushed[2]) > 0, "no fan-out was paced: the test no longer covers joined batches"
