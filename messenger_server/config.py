"""Server configuration: one frozen dataclass built from flags and MESSENGER_* variables.

Precedence: command-line flag, then environment variable, then default. Every component
receives the Config it needs; nothing reads the environment elsewhere.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Mapping, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from messenger_protocol import DEFAULT_MAX_FRAME_SIZE

from .storage.users import CLOSED_SESSION_DAYS, SEND_TXN_DAYS

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True)
class Config:
    """Everything the server needs to start. Paths are absolute once built."""

    host: str = "127.0.0.1"
    port: int = 9100
    data_dir: Path = Path("var")
    database_url: str | None = None
    archive_dir: Path | None = None       # None: <data_dir>/archive
    timezone: str = "UTC"
    pool_size: int = 10
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    max_text_bytes: int = 64 * KiB
    max_image_bytes: int = 10 * MiB
    max_emoticon_bytes: int = 64
    max_profile_image_bytes: int = 2 * MiB
    hello_timeout: float = 10.0           # a connection that never says hello is closed
    auth_timeout: float = 60.0            # ... and one that never logs in
    max_connections: int = 20_000
    max_connections_per_address: int = 1_000
    max_room_members: int = 5_000
    max_rooms_per_user: int = 5_000
    sends_per_user: float = 200.0         # per second (token bucket; burst 5x); 0 = no limit
    sends_per_address: float = 5_000.0
    logins_per_user: float = 5.0
    logins_per_address: float = 100.0
    tls_cert: str | None = None           # PEM certificate chain; with tls_key, clients must use TLS
    tls_key: str | None = None
    workers: int = 1
    room_affinity: bool = True            # with --workers: a room's sends go to one worker (affinity.py)
    session_affinity: bool = True         # with room affinity: a session moves to its rooms' worker (handover.py)
    push_pacing: float = 2.0              # see push.py PushHub._paced; 0 = off
    txn_retention_days: float = SEND_TXN_DAYS            # a send retried later is stored anew
    session_retention_days: float = CLOSED_SESSION_DAYS  # closed login sessions go after this
    log_level: str = "WARNING"

    @property
    def archive_root(self) -> Path:
        return self.archive_dir if self.archive_dir is not None else self.data_dir / "archive"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


_HELP = {
    "host": "address to listen on",
    "port": "port to listen on; 0 picks a free one (printed when ready)",
    "data_dir": "where the server keeps its files (embedded database, archive, profile images)",
    "database_url": "PostgreSQL URL; without it an embedded PostgreSQL runs in <data-dir>/pg",
    "archive_dir": "chat history archive; default <data-dir>/archive",
    "timezone": "IANA time zone that decides a message's day file, e.g. Asia/Seoul",
    "pool_size": "database connections per server process",
    "max_frame_size": "largest frame accepted, in bytes; bigger frames close the connection",
    "max_text_bytes": "largest text message, in bytes of UTF-8",
    "max_image_bytes": "largest image message or room image, in bytes",
    "max_emoticon_bytes": "longest emoticon id, in bytes",
    "max_profile_image_bytes": "largest profile image, in bytes",
    "hello_timeout": "seconds a new connection may take to send hello",
    "auth_timeout": "seconds a connection may stay without logging in",
    "max_connections": "connections the process holds at most; more are refused",
    "max_connections_per_address": "connections from one IP address at most",
    "max_room_members": "members a room may have",
    "max_rooms_per_user": "rooms a user may belong to",
    "sends_per_user": "messages per second one user may send (bursts of 5x); 0 turns it off",
    "sends_per_address": "messages per second from one IP address; 0 turns it off",
    "logins_per_user": "login attempts per second for one user id; 0 turns it off",
    "logins_per_address": "login and register attempts per second from one IP address; 0 turns it off",
    "tls_cert": "PEM certificate (chain) to serve TLS with; needs --tls-key",
    "tls_key": "PEM private key of --tls-cert",
    "workers": "server processes sharing the port, the database and the archive",
    "room_affinity": "with --workers: hand each send to the worker that owns its room, so that one "
                     "worker commits each room's messages (on or off)",
    "session_affinity": "with --workers and room affinity, over plain TCP: move a connection to the "
                        "worker that owns most of the user's rooms, at login or later when its sends "
                        "or pushes cross workers, so they stay in one process (on or off)",
    "push_pacing": "after a push fan-out that took over 1 ms (a big room), wait this many times "
                   "its duration, at most 25 ms, before the next and send the messages committed "
                   "meanwhile with it: more throughput in busy big rooms for a little latency; 0 turns it off",
    "txn_retention_days": "days a send's txn_id is remembered, so that a client's retry is answered "
                          "instead of stored twice (at least 1)",
    "session_retention_days": "days a closed login session is kept for whoever looks into a problem "
                              "(0 deletes it at the next heartbeat)",
    "log_level": "DEBUG, INFO, WARNING or ERROR",
}


def _on_off(raw: str) -> bool:
    """A switch's value: on/off (also true/false, yes/no, 1/0)."""
    value = raw.strip().lower()
    if value in ("on", "true", "yes", "1"):
        return True
    if value in ("off", "false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"{raw!r} is not on or off")


def _env_name(name: str) -> str:
    return "MESSENGER_" + name.upper()


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``messenger-server``; every flag also reads MESSENGER_<NAME>."""
    parser = argparse.ArgumentParser(
        prog="messenger-server",
        description="Run the messenger server. Every option can also be set with the "
                    "environment variable shown in brackets.")
    for f in fields(Config):
        flag = "--" + f.name.replace("_", "-")
        kind = {int: int, float: float, bool: _on_off}.get(type(f.default), str)
        if f.name == "port":
            kind = int
        shown = "<data-dir>/archive" if f.name == "archive_dir" else f.default
        if f.name in ("tls_cert", "tls_key", "database_url"):
            kind = str
        parser.add_argument(flag, dest=f.name, type=kind, default=None,
                            help=f"{_HELP[f.name]} [{_env_name(f.name)}] (default: {shown})")
    return parser


def load_config(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Build a Config from flags and environment; exits with a usage error on bad values."""
    environ = os.environ if environ is None else environ
    parser = build_parser()
    args = parser.parse_args(argv)
    values: dict[str, object] = {}
    for f in fields(Config):
        value = getattr(args, f.name)
        if value is None and _env_name(f.name) in environ:
            raw = environ[_env_name(f.name)]
            try:
                if isinstance(f.default, bool):
                    value = _on_off(raw)
                else:
                    value = type(f.default)(raw) if isinstance(f.default, (int, float)) else raw
            except (ValueError, argparse.ArgumentTypeError):
                wanted = "on or off" if isinstance(f.default, bool) else f"a valid {type(f.default).__name__}"
                parser.error(f"{_env_name(f.name)}={raw!r} is not {wanted}")
        if value is None or value == "":
            continue
        if f.name in ("data_dir", "archive_dir"):
            value = Path(str(value)).expanduser().resolve()
        values[f.name] = value
    values.setdefault("data_dir", Path("var").resolve())
    config = Config(**values)  # type: ignore[arg-type]
    try:
        config.zone
    except (ZoneInfoNotFoundError, ValueError):
        parser.error(f"unknown time zone {config.timezone!r}; use an IANA name like UTC or Asia/Seoul")
    if not 0 <= config.port <= 65535:
        parser.error("--port must be between 0 and 65535")
    if bool(config.tls_cert) != bool(config.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if config.workers < 1:
        parser.error("--workers must be at least 1")
    if config.pool_size < 1:
        parser.error("--pool-size must be at least 1")
    if not 0 <= config.push_pacing <= 100:
        parser.error("--push-pacing must be between 0 (off) and 100")
    if not config.txn_retention_days >= 1:
        parser.error("--txn-retention-days must be at least 1: clients retry a send with the same "
                     "txn_id after reconnecting, and a forgotten one is stored twice")
    if not config.session_retention_days >= 0:
        parser.error("--session-retention-days must be 0 or more")
    return config
