"""The peer: the client side of the messenger, usable headless (CLI, scripts, load tests) and
inside the desktop UI. It holds no Qt: the UI bridge is the only place Qt meets gevent."""
from .client import ServerConnection, parse_address
from .peer import Peer

__all__ = ["Peer", "ServerConnection", "parse_address"]
