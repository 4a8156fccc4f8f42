"""Helpers shared by the bench/ scripts: a server with its own embedded PostgreSQL (so a script
can seed accounts and history directly), cheap seeded accounts, history seeding, RSS, medians
and the output convention (a table for people, then one JSON line per benchmark)."""
from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))      # runnable from a checkout even without the editable install

import psycopg2  # noqa: E402

from messenger_peer.loadtest import (RELAXED_LIMITS, CpuMeter, ServerUnderTest,  # noqa: E402
                                     raise_nofile_limit)

PASSWORD = "bench-password"


def machine() -> dict[str, Any]:
    """nproc, memory and CPU model, for the record."""
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "memory_gib": round(mem / 2**30, 1), "cpu": model,
            "loadavg": [round(x, 2) for x in os.getloadavg()], "commit": commit()}


def commit() -> str | None:
    """The checkout's commit, with ``+dirty`` when the server, peer or protocol code has
    uncommitted changes (the figures belong to that code)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "messenger_server", "messenger_peer",
                                "messenger_protocol", "db"], cwd=ROOT, capture_output=True, text=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + ("+dirty" if dirty else "")) or None


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def pct(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    rank = max(1, int(-(-q * len(sorted_values) // 100)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def emit(result: dict[str, Any]) -> None:
    """The benchmark's one JSON line (last line of its output)."""
    print(json.dumps(result, separators=(",", ":")), flush=True)


def rss(pid: int) -> int:
    """Resident memory of a process and its children (a server started with --workers)."""
    import psutil
    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])


def cheap_hash(password: str = PASSWORD) -> str:
    """A valid ``scrypt$n$r$p$salt$key`` hash with the smallest cost (n=2): seeded accounts log
    in for almost nothing, so a benchmark of sessions is not a benchmark of password hashing.
    The server verifies with the parameters stored in the hash."""
    salt = os.urandom(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=2, r=1, p=1, dklen=32)
    return f"scrypt$2$1$1${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"


def real_hash(password: str = PASSWORD) -> str:
    """A hash with the server's production parameters (messenger_server.passwords)."""
    from messenger_server import passwords
    salt = os.urandom(16)
    key = passwords._scrypt(password, salt, passwords.SCRYPT_N, passwords.SCRYPT_R, passwords.SCRYPT_P)
    return (f"scrypt${passwords.SCRYPT_N}${passwords.SCRYPT_R}${passwords.SCRYPT_P}$"
            f"{base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}")


def seed_users(url: str, user_ids: list[str], pw_hash: str) -> None:
    """Insert accounts directly (one hash shared by all: same password, same cost to verify)."""
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.executemany("""INSERT INTO USER_TB (USER_ID, USER_NM, PASSWORD) VALUES (%s, %s, %s)
                               ON CONFLICT (USER_ID) DO NOTHING""", [(u, u, pw_hash) for u in user_ids])
    finally:
        conn.close()


def seed_history(url: str, archive_root: Path, key: tuple[str, str], days: dict[dt.date, int],
                 user_id: str, content: bytes) -> int:
    """Write ``days`` ({date: count}) of messages into an existing, empty room's archive and
    record the committed state in SESSION_TB (tests/support.py ``seed_history`` over its own
    connection to ``url``). Returns the last seq."""
    from tests.support import seed_history as seed
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            return seed(cur, archive_root, key, days, user_id=user_id, content=content)
    finally:
        conn.close()


@contextlib.contextmanager
def temporary_database() -> Iterator[tuple[str, Path]]:
    """A temporary embedded PostgreSQL in a fresh folder. Yields (database URL, folder); stops
    it and removes the folder at the end."""
    from messenger_server.storage.embedded import EmbeddedPostgres
    tmp = Path(tempfile.mkdtemp(prefix="messenger-bench-"))
    os.chmod(tmp, 0o755)          # the embedded PostgreSQL may run as another user
    pg = EmbeddedPostgres(tmp / "pg")
    try:
        yield pg.start(), tmp
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def server_with_database(extra: list[str] = (), relaxed: bool = True) -> Iterator[tuple[ServerUnderTest, str, Path]]:
    """A temporary embedded PostgreSQL and a ``messenger_server`` on it (port 0, open-file limit
    raised to the hard limit). Yields (server, database URL, data dir); cleans everything up."""
    with temporary_database() as (url, tmp):
        server = None
        try:
            data = tmp / "server"
            argv = [sys.executable, "-m", "messenger_server", "--host", "127.0.0.1", "--port", "0",
                    "--data-dir", str(data), "--database-url", url, *(RELAXED_LIMITS if relaxed else []), *extra]
            data.mkdir()
            server = ServerUnderTest.start(argv, str(data), keep=True)
            yield server, url, data
        finally:
            if server is not None:
                server.stop()


def db_pid(pgdata: Path) -> int | None:
    return CpuMeter.find_postmaster(str(pgdata))


def run_loadtest(args: list[str], timeout: float, lean: bool = False) -> dict[str, Any]:
    """Run ``python -m messenger_peer.loadtest`` (or, ``lean``, ``bench/lean_load.py``) and
    return its JSON line (``{"error": ...}`` when it printed none). Its table goes to our
    stdout, its stderr to ours."""
    tool = [str(ROOT / "bench" / "lean_load.py")] if lean else ["-m", "messenger_peer.loadtest"]
    cmd = [sys.executable, *tool, *args, "--timeout", str(timeout)]
    print("$ " + " ".join(_quote(a) for a in cmd[1:]), flush=True)
    started = time.monotonic()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT, timeout=timeout + 120)
    lines = proc.stdout.strip().splitlines()
    for line in lines[:-1]:
        print("  " + line)
    try:
        result = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        result = {"error": f"no JSON line (exit {proc.returncode})"}
    result["exit_status"] = proc.returncode
    result["wall_s"] = round(time.monotonic() - started, 1)
    return result


def _quote(arg: str) -> str:
    return arg if arg and all(c.isalnum() or c in "-_./:=," for c in arg) else repr(arg)


__all__ = ["ROOT", "PASSWORD", "machine", "median", "pct", "emit", "rss", "cheap_hash", "real_hash",
           "seed_users", "seed_history", "server_with_database", "db_pid", "run_loadtest", "raise_nofile_limit"]
