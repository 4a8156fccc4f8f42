"""Which worker a login moves to (handover.home_of); the move itself is tested end to end in
tests/integration/test_scaleout.py."""
from __future__ import annotations

from messenger_protocol.messages import RoomKey
from messenger_server.affinity import owner_of
from messenger_server.handover import home_of


def rooms_owned_by(worker: int, workers: int, count: int) -> list[RoomKey]:
    rooms = (RoomKey(f"20261125-{i:06d}", "maker") for i in range(10_000))
    return [room for room in rooms if owner_of(room, workers) == worker][:count]


def test_home_is_the_owner_of_most_of_the_rooms() -> None:
    rooms = rooms_owned_by(2, 3, 3) + rooms_owned_by(0, 3, 1) + rooms_owned_by(1, 3, 2)
    assert home_of(rooms, 3, me=0) == 2
    assert home_of(rooms, 3, me=2) == 2


def test_no_rooms_or_a_tie_with_this_worker_stays() -> None:
    assert home_of([], 2, me=1) == 1
    tie = rooms_owned_by(0, 2, 2) + rooms_owned_by(1, 2, 2)
    assert home_of(tie, 2, me=0) == 0 and home_of(tie, 2, me=1) == 1


def test_a_tie_between_other_workers_goes_to_the_lowest() -> None:
    tie = rooms_owned_by(1, 3, 2) + rooms_owned_by(2, 3, 2) + rooms_owned_by(0, 3, 1)
    assert home_of(tie, 3, me=0) == 1
