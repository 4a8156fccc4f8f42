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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until SIGINT or SIGTERM; return the exit status."""
    config = load_config(argv)
    configure_logging(config.log_level)
    patch_psycopg()
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
