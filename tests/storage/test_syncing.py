"""SyncRunner: where an append's fsync runs, and that every sync finishes (and closes its
file) before the batch goes on, whichever way it ran and whatever failed."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import gevent
import pytest

from messenger_server.storage.archive import PendingSync
from messenger_server.storage.syncing import INLINE_MAX_SECONDS, SYNC_GROUPS, SyncRunner


@pytest.fixture
def runner():
    runner = SyncRunner(4)
    yield runner
    runner.stop()


def appended(path: Path, data: bytes = b"x" * 100) -> PendingSync:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.write(fd, data)
    return PendingSync(fd)


def unsyncable() -> PendingSync:
    """A pending sync the kernel refuses: fdatasync of a pipe fails with EINVAL."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    return PendingSync(write_end)


def is_closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError as exc:
        return exc.errno == errno.EBADF
    return False


def test_one_file_syncs_in_the_servers_thread_beside_the_round_trip(runner, tmp_path):
    pending = appended(tmp_path / "a")
    fd = pending.fd
    order = []

    def round_trip():
        order.append("sent")
        gevent.sleep(0.05)          # the database answers after the fsync is done
        order.append("answered, file synced" if is_closed(fd) else "answered, file open")
        return "recorded"

    assert runner.run([pending], round_trip) == "recorded"
    assert (runner.inline, runner.threaded) == (1, 0)
    assert order == ["sent", "answered, file synced"], "the fsync ran while the round trip was out"
    assert is_closed(fd)
    assert 0 < runner.typical_seconds < INLINE_MAX_SECONDS


def test_one_file_without_a_round_trip(runner, tmp_path):
    pending = appended(tmp_path / "a")
    fd = pending.fd
    assert runner.run([pending], None) is None
    assert runner.inline == 1 and is_closed(fd)


def test_several_files_sync_in_threads(runner, tmp_path):
    pending = [appended(tmp_path / name) for name in "abc"]
    fds = [p.fd for p in pending]
    assert runner.run(pending, lambda: 7) == 7
    assert (runner.inline, runner.threaded) == (0, 3)
    assert all(is_closed(fd) for fd in fds)


def test_a_slow_file_system_gets_threads_until_syncs_are_quick_again(runner, tmp_path):
    runner.typical_seconds = 10 * INLINE_MAX_SECONDS     # as after a 20 ms fsync
    runner.run([appended(tmp_path / "a")], None)
    assert (runner.inline, runner.threaded) == (0, 1)
    for _ in range(100):
        if runner.inline:
            break
        runner.run([appended(tmp_path / "a")], None)
    assert runner.inline == 1, "quick syncs in threads bring the server's thread back"
    assert runner.typical_seconds < INLINE_MAX_SECONDS


@pytest.mark.parametrize("files", [1, 3])
def test_a_failed_sync_is_raised_after_the_round_trip_and_the_other_syncs(runner, tmp_path, files):
    pending = [unsyncable()] + [appended(tmp_path / f"f{i}") for i in range(files - 1)]
    fds = [p.fd for p in pending]
    finished = []

    def round_trip():
        gevent.sleep(0.01)
        finished.append(True)

    with pytest.raises(OSError) as info:
        runner.run(pending, round_trip)
    assert info.value.errno == errno.EINVAL
    assert finished == [True]
    assert all(is_closed(fd) for fd in fds)


@pytest.mark.parametrize("files", [1, 3])
def test_a_failed_round_trip_is_raised_after_every_sync(runner, tmp_path, files):
    pending = [appended(tmp_path / f"f{i}") for i in range(files)]
    fds = [p.fd for p in pending]

    def round_trip():
        raise RuntimeError("the database went away")

    with pytest.raises(RuntimeError, match="went away"):
        runner.run(pending, round_trip)
    assert all(is_closed(fd) for fd in fds)


def test_many_files_share_a_few_threads_and_a_failure_skips_none(runner, tmp_path):
    # File 0 fails; files SYNC_GROUPS, 2 * SYNC_GROUPS, ... are synced by its thread after it.
    assert 2 * SYNC_GROUPS < 20
    pending = [unsyncable()] + [appended(tmp_path / f"f{i}") for i in range(1, 20)]
    fds = [p.fd for p in pending]
    with pytest.raises(OSError):
        runner.run(pending, None)
    assert runner.threaded == 20
    assert all(is_closed(fd) for fd in fds), "every file was synced or closed before the error"
