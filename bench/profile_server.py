"""Profile the real server under a workload (default W1) with py-spy, and summarize where its
CPU goes: top functions (own and inclusive) and coarse categories (msgpack encode/decode,
push fan-out, socket syscalls, database driver, archive writes, fsync, gevent hub, ...).
The folded stacks it keeps (profile.raw) open in speedscope.app or flamegraph.pl.

Starts ``python -m messenger_server`` (temporary data dir, embedded PostgreSQL, abuse limits
lifted as messenger-loadtest does), attaches ``py-spy record`` to it (non-blocking sampling,
only the thread holding the GIL, so the figures are Python CPU time, not waiting: the hub's
epoll and the thread pool's fsync and scrypt release the GIL; ``--all-threads`` shows those), runs
``messenger-loadtest --server ... --server-pid ...`` against it, then writes the raw folded
stacks and the summary.

    .venv/bin/pip install py-spy
    .venv/bin/python bench/profile_server.py [--out DIR] [--repeat 4] [-- workload args]
    .venv/bin/python bench/profile_server.py --trace     # wall-time timers instead (no py-spy)
    .venv/bin/python bench/profile_server.py --workers 2 -- --rooms 50 --members 4   # every worker
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import ROOT, db_pid, run_loadtest  # noqa: E402

from messenger_peer.loadtest import RELAXED_LIMITS, ServerUnderTest  # noqa: E402

W1 = ["--rooms", "1", "--members", "50", "--senders", "10", "--messages", "5000", "--size", "100"]

# (category, pattern on "function (file:line)"), tried on every frame from the leaf up; the first
# frame that matches any rule decides the sample's category.
RULES = [
    ("fsync (archive durability)", re.compile(r"_fdatasync|_fsync_dir|\bfsync\b|fdatasync")),
    ("password hashing (set-up logins)", re.compile(r"passwords\.py|_scrypt")),
    ("database driver (psycopg2 + psycogreen waits)", re.compile(r"psycopg|psycogreen|pool\.py")),
    ("msgpack encode/decode + framing", re.compile(r"messenger_protocol/frames\.py|msgpack")),
    ("request validation", re.compile(r"messenger_protocol/messages\.py")),
    ("archive writes (records, pwrite)", re.compile(r"storage/archive\.py")),
    ("socket send/recv syscalls", re.compile(r"\b(send|sendall|recv|_sendall|__send_chunk|recv_into)\b \(.*gevent")),
    ("SQL round trips: psycopg2 execute + result decoding (storage/*.py)",
     re.compile(r"messenger_server/storage/(rooms|push|users)\.py|json/decoder\.py")),
    ("push fan-out logic (push.py)", re.compile(r"messenger_server/push\.py")),
    ("send pipeline logic (actions/messages.py)", re.compile(r"actions/messages\.py")),
    ("other server code", re.compile(r"messenger_server/")),
    ("gevent hub / greenlet switching", re.compile(r"gevent/")),
]


def categorize(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, pattern in RULES:
            if pattern.search(frame):
                return name
    return "other (interpreter, stdlib)"


def short(frame: str) -> str:
    """``func (/long/path/pkg/mod.py:12)`` -> ``func (pkg/mod.py:12)``."""
    m = re.match(r"(.*) \((.*):(\d+)\)$", frame)
    if not m:
        return frame
    func, path, line = m.groups()
    parts = Path(path).parts
    for anchor in ("site-packages", "messenger_server", "messenger_protocol", "messenger_peer", "lib"):
        if anchor in parts:
            i = parts.index(anchor)
            path = "/".join(parts[i + 1:] if anchor in ("site-packages", "lib") else parts[i:])
            break
    return f"{func} ({path}:{line})"


def summarize(raw: Path, out: Path, top: int = 25) -> str:
    own: Counter = Counter()
    own_fn: Counter = Counter()
    incl: Counter = Counter()
    cats: Counter = Counter()
    threads: Counter = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        if frames and frames[0].startswith(("process ", "thread ")):
            threads[frames[0].split(" ")[0] + " " + ("main" if "MainThread" in frames[0] else frames[0][-20:])] += n
            frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += n
        own[short(frames[-1])] += n
        own_fn[short(frames[-1]).rsplit(":", 1)[0]] += n
        for f in {short(f).rsplit(":", 1)[0] for f in frames}:
            incl[f] += n
        cats[categorize(frames)] += n
    lines = [f"py-spy samples: {total:,}", "", "by category:"]
    for name, n in cats.most_common():
        lines.append(f"  {n / total * 100:5.1f}%  {name}")
    lines += ["", f"top {top} functions by own time:"]
    for name, n in own_fn.most_common(top):
        lines.append(f"  {n / total * 100:5.1f}%  {name}")
    lines += ["", f"top {top} lines by own time:"]
    for name, n in own.most_common(top):
        lines.append(f"  {n / total * 100:5.1f}%  {name}")
    lines += ["", "top functions by inclusive time (server and protocol code):"]
    shown = 0
    for name, n in incl.most_common():
        if "messenger_" in name or "psycopg" in name or "msgpack" in name:
            lines.append(f"  {n / total * 100:5.1f}%  {name}")
            shown += 1
            if shown >= top + 10:
                break
    text = "\n".join(lines) + "\n"
    out.write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="py-spy profile (or, with --trace, hot-path timers) of the real "
                                                 "server under W1 or the workload given after --.")
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench" / "profile",
                        help="where to write profile.raw and summary.txt (or trace.json)")
    parser.add_argument("--repeat", type=int, default=4, help="loadtest repetitions (more samples)")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--processes", type=int, default=0, help="load generator processes")
    parser.add_argument("--workers", type=int, default=1,
                        help="server processes (messenger-server --workers N); py-spy follows them all")
    parser.add_argument("--all-threads", action="store_true",
                        help="sample every thread that py-spy deems active (fsync and scrypt threads, and "
                             "waits py-spy cannot tell from work) instead of only the thread holding the GIL")
    parser.add_argument("--trace", action="store_true",
                        help="no py-spy: run the server under bench/trace_server.py and print where a send's "
                             "wall time goes (SQL round trips, fsync, batch queueing, push fan-out)")
    parser.add_argument("--summarize", type=Path, metavar="RAW",
                        help="only summarize an existing profile.raw (writes summary.txt beside it)")
    parser.add_argument("loadtest_args", nargs="*", help="workload args for messenger-loadtest (after --); default W1")
    args = parser.parse_args(argv)
    if args.trace and args.workers > 1:
        parser.error("--trace times one server process; use it without --workers")
    if args.summarize:
        print(summarize(args.summarize, args.summarize.with_name("summary.txt")))
        return 0
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not args.trace and not Path(py_spy).exists():
        print("py-spy is not installed: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    data = tempfile.mkdtemp(prefix="messenger-profile-")
    os.chmod(data, 0o755)
    server_args = ["--host", "127.0.0.1", "--port", "0", "--data-dir", data, *RELAXED_LIMITS,
                   *(["--workers", str(args.workers)] if args.workers > 1 else [])]
    trace_json = args.out / "trace.json"
    if args.trace:
        argv_server = [sys.executable, str(ROOT / "bench" / "trace_server.py"), "--trace-out", str(trace_json),
                       "--", *server_args]
    else:
        argv_server = [sys.executable, "-m", "messenger_server", *server_args]
    server = ServerUnderTest.start(argv_server, data, keep=False)
    raw = args.out / "profile.raw"
    spy = None
    err = b""
    result: dict = {}
    try:
        dbp = db_pid(Path(data) / "pg")
        if not args.trace:
            spy = subprocess.Popen([py_spy, "record", "--pid", str(server.pid), "--format", "raw", "--output",
                                    str(raw), "--rate", str(args.rate), "--nonblocking", "--threads",
                                    *(["--subprocesses"] if args.workers > 1 else []),
                                    *([] if args.all_threads else ["--gil"])],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(1.0)
        work = args.loadtest_args or W1
        result = run_loadtest(["--server", "%s:%d" % server.address, "--server-pid", str(server.pid),
                               *(["--db-pid", str(dbp)] if dbp else []), *work, "--repeat", str(args.repeat),
                               "--processes", str(args.processes), "--progress", "off", "--label",
                               "traced" if args.trace else "profiled"],
                              timeout=600)
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            try:
                _, err = spy.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                spy.kill()
        server.stop()
    run_line = (f"(the measured run: {result.get('deliveries_per_s')} deliveries/s, "
                f"p50 {result.get('latency_ms', {}).get('p50')} ms)")
    if args.trace:
        if not trace_json.exists():
            print("the traced server wrote no statistics", file=sys.stderr)
            return 1
        print(trace_table(trace_json))
        print(f"{run_line}; statistics in {trace_json}")
        return 0
    if not raw.exists():
        print("py-spy wrote nothing: " + (err or b"").decode(errors="replace")[-500:], file=sys.stderr)
        return 1
    text = summarize(raw, args.out / "summary.txt")
    print(text)
    print(f"{run_line}; folded stacks in {raw} (flamegraph.pl or speedscope.app read them), "
          f"summary in {args.out / 'summary.txt'}")
    return 0


def trace_table(path: Path, top: int = 20) -> str:
    import json
    stats = json.loads(path.read_text())
    timers = sorted(((k, v) for k, v in stats.items() if "total_ms" in v), key=lambda kv: -kv[1]["total_ms"])
    lines = [f"{'timer (wall time, ms)':<56}{'count':>8}{'p50':>9}{'p99':>9}{'mean':>9}{'total':>11}"]
    for name, v in timers[:top]:
        lines.append(f"{name[:55]:<56}{v['count']:>8}{v['p50_ms']:>9.3f}{v['p99_ms']:>9.3f}{v['mean_ms']:>9.3f}"
                     f"{v['total_ms']:>11.0f}")
    for name, v in stats.items():
        if "total_ms" not in v:
            lines.append(f"{name:<56}{v['count']:>8}   mean {v['mean']}, p50 {v['p50']}, max {v['max']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
