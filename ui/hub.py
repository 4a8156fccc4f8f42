"""A gevent hub in a native thread, fed with jobs from other threads.

gevent allows one hub per thread, so the UI process keeps Qt's event loop in the main thread
and runs the ``Peer`` (and everything that does network or disk I/O) on a hub of its own in
this thread, without monkey-patching. Other threads hand it callables with ``submit``; a
libev/libuv async watcher (the one thread-safe way into a hub) wakes it up. This module knows
nothing about Qt.
"""
from __future__ import annotations

import collections
import logging
import threading
from typing import Any, Callable

import gevent
import gevent.event
import gevent.queue

log = logging.getLogger(__name__)

Job = Callable[[], Any]


class HubThread:
    """Runs submitted jobs as greenlets on a private gevent hub.

    Jobs without a ``lane`` run concurrently (each in its own greenlet); jobs that name a
    lane run one after another in submission order (sends must reach the server in the order
    they were typed)."""

    def __init__(self, name: str = "peer-hub") -> None:
        self._jobs: collections.deque[tuple[str | None, Job]] = collections.deque()
        self._started = threading.Event()
        self._stopping = False
        self._watcher: Any = None
        self._wakeup: gevent.event.Event | None = None
        self._lanes: dict[str, gevent.queue.Queue] = {}
        self._running: set[gevent.Greenlet] = set()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "HubThread":
        self._thread.start()
        self._started.wait(10)
        return self

    def submit(self, job: Job, lane: str | None = None) -> None:
        """Run ``job()`` on the hub thread; safe to call from any thread."""
        if self._stopping:
            return
        self._jobs.append((lane, job))   # deque.append is atomic under the GIL
        self._watcher.send()

    def stop(self, last_job: Job | None = None, timeout: float = 5.0) -> None:
        """Run ``last_job`` (e.g. closing the peer), give running jobs a moment, and end the thread."""
        if not self._thread.is_alive():
            return
        if last_job is not None:
            self.submit(last_job)
        self._stopping = True
        self._watcher.send()
        self._thread.join(timeout)

    @property
    def is_hub_thread(self) -> bool:
        return threading.current_thread() is self._thread

    # -- in the hub thread ---------------------------------------------------------------
    def _run(self) -> None:
        hub = gevent.get_hub()
        self._wakeup = gevent.event.Event()
        self._watcher = hub.loop.async_()
        self._watcher.start(self._wakeup.set)
        self._started.set()
        try:
            while True:
                self._wakeup.wait()
                self._wakeup.clear()
                self._dispatch()
                if self._stopping:
                    gevent.joinall(list(self._running), timeout=3)
                    break
        finally:
            gevent.killall(list(self._running), block=False)
            self._watcher.stop()
            self._watcher.close()
            hub.destroy(destroy_loop=True)

    def _dispatch(self) -> None:
        while self._jobs:
            lane, job = self._jobs.popleft()
            if lane is None:
                self._track(gevent.spawn(self._guarded, job))
                continue
            queue = self._lanes.get(lane)
            if queue is None:
                queue = self._lanes[lane] = gevent.queue.Queue()
                gevent.spawn(self._lane_worker, queue)
            queue.put(job)

    def _track(self, greenlet: gevent.Greenlet) -> None:
        self._running.add(greenlet)
        greenlet.link(self._running.discard)

    def _lane_worker(self, queue: gevent.queue.Queue) -> None:
        while True:
            self._guarded(queue.get())

    @staticmethod
    def _guarded(job: Job) -> None:
        try:
            job()
        except Exception:   # a job reports its own errors; this only keeps the hub alive
            log.exception("hub job failed")
