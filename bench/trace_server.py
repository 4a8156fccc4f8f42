"""The real server with stopwatches around its hot path, for finding where a send's latency
goes (py-spy shows CPU; most of a closed-loop sender's wait is not CPU but round trips to
PostgreSQL, fsyncs and queueing behind the batch in flight).

Runs ``messenger_server`` exactly as ``python -m messenger_server`` does, after wrapping (in
this process only; no server file is changed):

* every SQL statement (by its first words) and every COMMIT: wall time from call to return,
  which under gevent includes waiting for the hub to come back to the greenlet;
* ``PendingSync.sync`` (the archive's fdatasync + directory fsyncs) and the whole
  ``Messages._append`` (writes + parallel syncs + the size update);
* ``Messages._commit`` (one group-commit batch: its size and duration) and the time a send
  waits in the queue before its batch starts;
* ``PushHub._fan_out_messages`` (the online-sessions query + queueing every push) and
  ``PushHub._sessions``;
* ``Messages.do_send``: from the request's arrival to its acknowledgement.

On SIGTERM/SIGINT the server stops as usual and the statistics (count, total, mean, p50, p99
per timer) are written as JSON to ``--trace-out`` and as a table to stderr.

    messenger-loadtest --server-command "python bench/trace_server.py --trace-out t.json -- --port 0" ...
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


SAMPLES: dict[str, list[float]] = defaultdict(list)
COUNTS: dict[str, list[int]] = defaultdict(list)


def record(name: str, seconds: float) -> None:
    SAMPLES[name].append(seconds * 1000)


def timed(name: str):
    def wrap(func):
        @functools.wraps(func)
        def inner(*args, **kwargs):
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                record(name, time.perf_counter() - start)
        return inner
    return wrap


_WORDS = re.compile(r"\s+")


def statement_name(sql) -> str:
    text = sql.decode(errors="replace") if isinstance(sql, bytes) else str(sql)
    text = _WORDS.sub(" ", text).strip()
    if text.upper().startswith("BEGIN;"):      # the pool opens transactions this way
        text = text[6:].strip()
    words = text.split(" ")
    head = " ".join(words[:2]).upper()
    table = next((w for w in words if w.upper().endswith("_TB")), "")
    return f"sql {head} {table}".strip()


def install() -> None:
    from messenger_server.actions import messages
    from messenger_server.storage import archive, pool
    from messenger_server import push

    class TimedCursor(pool._TxCursor):
        def execute(self, query, vars=None):
            start = time.perf_counter()
            try:
                return super().execute(query, vars)
            finally:
                record(statement_name(query), time.perf_counter() - start)

        def end(self, command):
            start = time.perf_counter()
            try:
                return super().end(command)
            finally:
                record(f"sql {command}", time.perf_counter() - start)
    pool._TxCursor = TimedCursor             # the pool's module-level name

    archive.PendingSync.sync = timed("archive fsync (one file; storage/syncing.py says where)")(archive.PendingSync.sync)
    messages.Messages._append = timed("_append (record round trip, writes, fsyncs)")(messages.Messages._append)

    original_commit = messages.Messages._commit

    def commit(self, batch):
        now = time.perf_counter()
        for item in batch:
            queued = getattr(item, "_trace_queued", None)
            if queued is not None:
                record("send queued before its batch", now - queued)
        COUNTS["batch size (sends)"].append(len(batch))
        start = time.perf_counter()
        try:
            return original_commit(self, batch)
        finally:
            record("_commit (one batch, whole transaction)", time.perf_counter() - start)
    messages.Messages._commit = commit

    original_pending_init = messages._Pending.__init__

    def pending_init(self, *args, **kwargs):
        original_pending_init(self, *args, **kwargs)
        self._trace_queued = time.perf_counter()
    messages._Pending.__init__ = pending_init

    messages.Messages.do_send = timed("do_send (arrival -> ack)")(messages.Messages.do_send)

    original_fan_out = push.PushHub._fan_out_messages

    def fan_out(self, messages_, audience):
        COUNTS["fan-out: messages per call"].append(len(messages_))
        start = time.perf_counter()
        try:
            return original_fan_out(self, messages_, audience)
        finally:
            record("push fan-out call (sessions query + queueing)", time.perf_counter() - start)
    push.PushHub._fan_out_messages = fan_out
    push.PushHub._sessions = timed("push: online sessions query")(push.PushHub._sessions)


def report(path: str | None) -> None:
    def pct(values, q):
        values = sorted(values)
        return values[min(len(values) - 1, max(0, int(-(-q * len(values) // 100)) - 1))] if values else None
    stats = {}
    for name, values in SAMPLES.items():
        stats[name] = {"count": len(values), "total_ms": round(sum(values), 1),
                       "mean_ms": round(sum(values) / len(values), 3), "p50_ms": round(pct(values, 50), 3),
                       "p99_ms": round(pct(values, 99), 3)}
    for name, values in COUNTS.items():
        stats[name] = {"count": len(values), "total": sum(values), "mean": round(sum(values) / len(values), 2),
                       "p50": pct(values, 50), "max": max(values)}
    if path:
        Path(path).write_text(json.dumps(stats, indent=1))
    lines = [f"{'timer':<52}{'count':>8}{'total ms':>11}{'mean ms':>9}{'p50 ms':>9}{'p99 ms':>9}"]
    for name, s in sorted(stats.items(), key=lambda kv: -kv[1].get("total_ms", 0)):
        if "total_ms" in s:
            lines.append(f"{name[:51]:<52}{s['count']:>8}{s['total_ms']:>11.1f}{s['mean_ms']:>9.3f}"
                         f"{s['p50_ms']:>9.3f}{s['p99_ms']:>9.3f}")
        else:
            lines.append(f"{name[:51]:<52}{s['count']:>8}   mean {s['mean']}, p50 {s['p50']}, max {s['max']}")
    sys.stderr.write("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description="messenger_server with hot-path timers",
                                     usage="trace_server.py [--trace-out FILE] -- SERVER ARGS")
    parser.add_argument("--trace-out", help="write the statistics here as JSON at exit")
    argv = sys.argv[1:]
    server_args = []
    if "--" in argv:
        i = argv.index("--")
        argv, server_args = argv[:i], argv[i + 1:]
    args = parser.parse_args(argv)
    install()
    from messenger_server.__main__ import main as server_main
    try:
        return server_main(server_args)
    finally:
        report(args.trace_out)


if __name__ == "__main__":
    sys.exit(main())
