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
    with pytest.raises(SystemExit) as exit_info:
        load_config(["--push-pacing", value], environ={})
    assert exit_info.value.code == 2
    assert "--push-pacing must be between 0 (off) and 100" in capsys.readouterr().err
