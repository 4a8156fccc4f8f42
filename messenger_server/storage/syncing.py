"""Where the archive's fsyncs run: in the server's own thread when the file system syncs
fast, in a thread pool when it does not or when a batch has several files to sync.

A thread costs more than it looks in a gevent process. The worker thread needs the GIL to
start the call and again to hand back its result, and the server's thread, busy with
other connections, gives the GIL up only when it blocks or after the interpreter's switch
interval (5 ms). Then the result still has to wake the hub. Measured in W1 (one busy room,
one file per batch), the fsync itself took 0.40 ms on average, while a batch waited about
1 ms for it. Syncing in the server's thread holds up every other connection for the
fsync's duration instead. That is the better deal while an fsync is as quick as a small
fan-out, and the worse one on a slow disk or a network file system. So ``SyncRunner``
goes by the durations it sees (BENCHMARKS.md, "fsync in the server's thread").

Several files (a batch of many rooms) always sync in pool threads, at most SYNC_GROUPS of
them, each syncing its share one after the other: the file system joins parallel journal
commits, and one by one in the server's thread they would hold it up N times.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence, TypeVar

import gevent
from gevent.threadpool import ThreadPool

from .archive import PendingSync

T = TypeVar("T")

# An fsync slower than this, synced in the server's thread, would hold up every connection
# longer than a fan-out does: such a file system gets the thread pool.
INLINE_MAX_SECONDS = 0.002
# How quickly the estimate follows a change of the file system's speed.
EWMA_WEIGHT = 0.2
# A batch's files are synced by at most this many pool threads, each taking its share one
# after the other. Alone, more threads finish sooner (this machine's ext4, 40 files of a small
# append each: 40 threads 2.5-2.8 ms, 8 threads 1.5 ms, 4 threads 2.1 ms, 1 thread 4.6 ms).
# Under load fewer win: every thread started costs the server's thread a wake-up and a GIL
# hand-off, and the threads compete with the server and PostgreSQL for the cores. In the
# 50-room benchmark 3 threads beat 8 with one worker and with two (BENCHMARKS.md, "Fewer
# sync threads"); 2 measured like 3.
SYNC_GROUPS = 3


class SyncRunner:
    """Runs the fsyncs of a batch's appends beside the batch's database round trip."""

    def __init__(self, threads: int = SYNC_GROUPS) -> None:
        self._pool = ThreadPool(threads)
        # Start the threads now. Started late, by the first many-room batch, they stepped the
        # server's RSS up by ~16 MiB at that moment (a 90-s soak: +18 MiB after warm-up
        # against +2 with them started here, at the same RSS after warm-up): a one-off that
        # looks like a leak. See docs/reliability.md.
        self._pool.size = threads
        self.typical_seconds = 0.0   # moving average of recent fsync durations
        self.inline = 0              # fsyncs run in the server's thread
        self.threaded = 0            # fsyncs run in the pool

    def stop(self) -> None:
        self._pool.kill()

    def _observe(self, seconds: float) -> None:
        self.typical_seconds += EWMA_WEIGHT * (seconds - self.typical_seconds)

    def _timed(self, pending: PendingSync) -> float:
        started = time.perf_counter()
        pending.sync()
        return time.perf_counter() - started

    def run(self, pending: Sequence[PendingSync], meanwhile: Callable[[], T] | None) -> T | None:
        """Sync every appended file and, alongside, run ``meanwhile`` (a database round trip
        that must not wait for the disk); return its result. Every sync has finished (and
        closed its file) when this returns or raises; an OSError of a sync is raised after
        that, and after ``meanwhile`` is done."""
        if len(pending) == 1 and self.typical_seconds < INLINE_MAX_SECONDS:
            return self._run_inline(pending[0], meanwhile)
        return self._run_threaded(pending, meanwhile)

    def _run_inline(self, pending: PendingSync, meanwhile: Callable[[], T] | None) -> T | None:
        self.inline += 1
        if meanwhile is None:
            self._observe(self._timed(pending))
            return None
        # The round trip goes out first (its greenlet sends the query and waits for the
        # answer), then this thread syncs while PostgreSQL works.
        outcome: list = []

        def call() -> None:
            try:
                outcome.append((True, meanwhile()))
            except BaseException as exc:   # handed to the caller below, not to the hub
                outcome.append((False, exc))

        round_trip = gevent.spawn(call)
        try:
            gevent.sleep(0)
            self._observe(self._timed(pending))
        finally:
            round_trip.join()
        ok, value = outcome[0]
        if not ok:
            raise value
        return value

    def _run_threaded(self, pending: Sequence[PendingSync], meanwhile: Callable[[], T] | None) -> T | None:
        self.threaded += len(pending)
        groups = [pending[i::SYNC_GROUPS] for i in range(min(len(pending), SYNC_GROUPS))]
        tasks = [self._pool.spawn(self._sync_group, group) for group in groups]
        failures: list[OSError] = []
        try:
            result = meanwhile() if meanwhile is not None else None
        finally:
            for task in tasks:       # wait for every thread before anything closes an fd
                seconds, errors = task.get()
                if seconds is not None:
                    self._observe(seconds)
                failures.extend(errors)
        if failures:
            raise failures[0]
        return result

    def _sync_group(self, group: Sequence[PendingSync]) -> tuple[float | None, list[OSError]]:
        """Sync (and close) every file of ``group`` one after the other, even after a failure;
        return the mean time of the successful ones and the failures. Runs in a pool thread."""
        errors: list[OSError] = []
        took = []
        for one in group:
            try:
                took.append(self._timed(one))
            except OSError as exc:
                errors.append(exc)
        return (sum(took) / len(took) if took else None), errors
