"""messenger-server's options: defaults, environment, and refusal of bad values."""
from __future__ import annotations

import pytest

from messenger_server.config import load_config


def test_push_pacing_defaults_on_and_can_be_turned_off() -> None:
    assert load_config([], environ={}).push_pacing == 2.0
    assert load_config(["--push-pacing", "0"], environ={}).push_pacing == 0.0
    assert load_config([], environ={"MESSENGER_PUSH_PACING": "1.5"}).push_pacing == 1.5


@pytest.mark.parametrize("value", ["-1", "1000"])
def test_push_pacing_out_of_range_is_a_usage_error(value: str, capsys) -> None:
    assert_usage_error(["--push-pacing", value], {}, "--push-pacing must be between 0 (off) and 100", capsys)


def test_retention_periods_default_to_a_week_and_can_be_set() -> None:
    config = load_config([], environ={})
    assert (config.txn_retention_days, config.session_retention_days) == (7.0, 7.0)
    config = load_config(["--txn-retention-days", "30", "--session-retention-days", "0"], environ={})
    assert (config.txn_retention_days, config.session_retention_days) == (30.0, 0.0)
    assert load_config([], environ={"MESSENGER_TXN_RETENTION_DAYS": "2.5"}).txn_retention_days == 2.5


@pytest.mark.parametrize(("argv", "message"), [
    (["--txn-retention-days", "0.5"], "--txn-retention-days must be at least 1"),
    (["--session-retention-days", "-1"], "--session-retention-days must be 0 or more"),
])
def test_retention_periods_out_of_range_are_usage_errors(argv: list[str], message: str, capsys) -> None:
    assert_usage_error(argv, {}, message, capsys)


def test_room_affinity_is_on_unless_switched_off() -> None:
    assert load_config([], environ={}).room_affinity is True
    assert load_config(["--room-affinity", "off"], environ={}).room_affinity is False
    assert load_config([], environ={"MESSENGER_ROOM_AFFINITY": "no"}).room_affinity is False
    assert load_config(["--room-affinity", "on"], environ={"MESSENGER_ROOM_AFFINITY": "off"}).room_affinity is True


@pytest.mark.parametrize("argv, environ, message", [
    (["--room-affinity", "maybe"], {}, "argument --room-affinity: 'maybe' is not on or off"),
    ([], {"MESSENGER_ROOM_AFFINITY": "2"}, "MESSENGER_ROOM_AFFINITY='2' is not on or off"),
])
def test_room_affinity_takes_on_or_off(argv: list[str], environ: dict[str, str], message: str, capsys) -> None:
    assert_usage_error(argv, environ, message, capsys)


def assert_usage_error(argv: list[str], environ: dict[str, str], message: str, capsys) -> None:
    """load_config exits as argparse does on a usage error (status 2), saying ``message``."""
    with pytest.raises(SystemExit) as exit_info:
        load_config(argv, environ=environ)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_session_affinity_is_on_unless_switched_off() -> None:
    assert load_config([], environ={}).session_affinity is True
    assert load_config(["--session-affinity", "off"], environ={}).session_affinity is False
    assert load_config([], environ={"MESSENGER_SESSION_AFFINITY": "off"}).session_affinity is False
