"""The hub thread: jobs from other threads run on its own gevent hub, lanes keep order."""
from __future__ import annotations

import threading

import gevent
import gevent.event

from ui.hub import HubThread


def test_jobs_run_on_the_hub_thread_and_lanes_keep_order():
    hub = HubThread(name="test-hub").start()
    done = threading.Event()
    seen: list[tuple[int, str]] = []

    def job(i: int):
        def run() -> None:
            gevent.sleep(0.001 * (5 - i))      # later jobs would overtake earlier ones without a lane
            seen.append((i, threading.current_thread().name))
            if i == 4:
                done.set()
        return run
    for i in range(5):
        hub.submit(job(i), lane="send")
    assert done.wait(10)
    assert seen == [(i, "test-hub") for i in range(5)]
    last = []
    hub.stop(lambda: last.append("closed"))
    assert last == ["closed"]


def test_jobs_without_a_lane_run_concurrently_and_failures_do_not_stop_the_hub():
    hub = HubThread().start()
    started, release, finished = threading.Event(), gevent.event.Event(), threading.Event()

    def slow() -> None:
        started.set()
        release.wait()
    hub.submit(slow)
    assert started.wait(10)
    hub.submit(lambda: 1 / 0)                  # logged, and the hub goes on
    hub.submit(lambda: (release.set(), finished.set()))
    assert finished.wait(10)
    hub.stop()
