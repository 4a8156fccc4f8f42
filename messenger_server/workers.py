"""``--workers N``: N server processes sharing one port, one database and one archive.

The parent starts the embedded PostgreSQL when no URL is given, applies the migrations, binds
the port, and forks the workers. Each worker listens on the port with its own SO_REUSEPORT
socket, so the kernel spreads new connections evenly over them (one shared accepting socket
would hand most connections of a burst to whichever worker happened to be idle).
Everything they share goes through PostgreSQL: seq numbers by row locks, room ids by upserts,
pushes to sessions held by a sibling through the relay table. With room affinity (on by
default) a send is handed to the worker that owns its room, and pushes to a sibling's
sessions go straight to that sibling, over Unix sockets (affinity.py); with session
affinity a session moves to the worker owning most of the user's rooms (handover.py). The parent
only supervises: it restarts a worker that dies (with the same index, so it owns the same
rooms), forwards SIGTERM / SIGINT, and stops PostgreSQL after the last worker has exited.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import signal
import socket
import sys
import time

import gevent
import gevent.event
import gevent.socket

from .affinity import WorkerSlot, make_run_dir
from .app import Server
from .config import Config
from .storage import migrate
from .storage.embedded import EmbeddedPostgres

log = logging.getLogger(__name__)

RESTART_BACKOFF = 1.0


def _port_socket(host: str, port: int, listen: bool) -> socket.socket:
    """A socket bound to the port (SO_REUSEPORT where there is one), accepting if ``listen``."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    if listen:
        sock.listen(1024)
        sock.setblocking(False)
    return sock


def _worker(config: Config, listener: socket.socket, ready_fd: int, slot: WorkerSlot) -> int:
    """Body of one forked worker; returns its exit status."""
    server = Server(config, worker=slot)
    server.install_signal_handlers()
    try:
        if hasattr(socket, "SO_REUSEPORT"):
            host, port = listener.getsockname()[:2]
            listener.close()           # the parent's holds the port; this worker gets its own
            listener = _port_socket(host, port, listen=True)
        server.start(listen_socket=listener, announce=False)
    except Exception as exc:
        print(f"messenger-server worker {os.getpid()}: could not start: {exc}", file=sys.stderr)
        return 1
    os.write(ready_fd, b"r")
    os.close(ready_fd)
    server.serve_forever()
    return 0


def run_workers(config: Config) -> int:
    """Supervise ``config.workers`` worker processes until SIGINT/SIGTERM."""
    embedded = None
    if not config.database_url:
        embedded = EmbeddedPostgres(config.data_dir / "pg")
        config = dataclasses.replace(config, database_url=embedded.start())
    try:
        migrate.migrate(config.database_url)
        # Without SO_REUSEPORT the workers share this one accepting socket.
        listener = _port_socket(config.host, config.port, listen=not hasattr(socket, "SO_REUSEPORT"))
    except Exception as exc:
        print(f"messenger-server: could not start: {exc}", file=sys.stderr)
        if embedded is not None:
            embedded.stop()
        return 1
    host, port = listener.getsockname()[:2]
    config.data_dir.mkdir(parents=True, exist_ok=True)
    run_dir, temporary_run_dir = (make_run_dir(config.data_dir) if config.room_affinity
                                  else (config.data_dir / "run", False))
    stopping = gevent.event.Event()
    children: dict[int, tuple[float, int]] = {}     # pid -> (start time, worker index)
    handlers: list = []

    def spawn(index: int) -> int:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:                              # the worker
            for handler in handlers:              # the parent's signal handling is not ours
                handler.cancel()
            os.close(read_fd)
            code = 1
            try:
                code = _worker(config, listener, write_fd, WorkerSlot(index, config.workers, run_dir))
            finally:
                os._exit(code)                    # never run the parent's atexit handlers
        os.close(write_fd)
        children[pid] = (time.monotonic(), index)
        return read_fd

    ready = [spawn(index) for index in range(config.workers)]
    for fd in ready:
        gevent.socket.wait_read(fd, timeout=120)
        started = os.read(fd, 1) == b"r"
        os.close(fd)
        if not started:
            log.error("a worker failed to start")
    print(f"listening on {host}:{port}", flush=True)
    print(f"{config.workers} workers: {' '.join(map(str, sorted(children)))}", file=sys.stderr, flush=True)

    def stop(*_: object) -> None:
        stopping.set()
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    handlers.extend(gevent.signal_handler(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM))

    status = 0
    while children:
        try:
            pid, code = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        child = children.pop(pid, None)
        if child is None:
            continue
        started, index = child
        if stopping.is_set():
            if os.WIFEXITED(code) and os.WEXITSTATUS(code) != 0:
                status = 1
            continue
        log.error("worker %d died (%s); starting another", pid, _describe(code))
        print(f"messenger-server: worker {pid} died ({_describe(code)}); starting another",
              file=sys.stderr, flush=True)
        if time.monotonic() - started < RESTART_BACKOFF:
            gevent.sleep(RESTART_BACKOFF)
        fd = spawn(index)           # the same index: it owns the same rooms
        gevent.socket.wait_read(fd, timeout=120)
        os.read(fd, 1)
        os.close(fd)
    listener.close()
    if temporary_run_dir:
        shutil.rmtree(run_dir, ignore_errors=True)
    if embedded is not None:
        embedded.stop()
    return status


def _describe(code: int) -> str:
    if os.WIFSIGNALED(code):
        return f"signal {os.WTERMSIG(code)}"
    return f"exit {os.WEXITSTATUS(code)}"
