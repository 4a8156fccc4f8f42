"""``messenger-server`` / ``python -m messenger_server``: parse options, patch, serve."""
from __future__ import annotations

# Monkey-patching must happen before anything imports socket, ssl or threading.
from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402
from typing import Sequence  # noqa: E402

from psycogreen.gevent import patch_psycopg  # noqa: E402

from .app import Server, configure_logging  # noqa: E402
from .config import load_config  # noqa: E402


def raise_fd_limit() -> int:
    """Every connection and push link is a file descriptor: allow as many as the system lets."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in (max(hard, 65536), hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, target) if target > hard else (target, hard))
            return target
        except (ValueError, OSError):
            continue
    return soft


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until SIGINT or SIGTERM; return the exit status."""
    config = load_config(argv)
    configure_logging(config.log_level)
    raise_fd_limit()
    patch_psycopg()
    if config.workers > 1:
        from .workers import run_workers
        return run_workers(config)
    server = Server(config)
    server.install_signal_handlers()
    try:
        server.start()
    except Exception as exc:
        print(f"messenger-server: could not start: {exc}", file=sys.stderr)
        server.stop(grace=0)
        return 1
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
