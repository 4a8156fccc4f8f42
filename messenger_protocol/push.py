"""The push side of the protocol: the listener handshake and push frames.

When the server connects to a peer's listener, the listener speaks first with a random
challenge; the server answers with HMAC-SHA256(push_secret, nonce), where push_secret is
the secret the server issued to that peer at login. The listener compares in constant time
and only then accepts push frames. The secret itself never crosses the wire after login.
"""
from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

NONCE_BYTES = 32

def new_challenge() -> dict[str, Any]:
    """The listener's first frame."""
    return {"op": "challenge", "nonce": os.urandom(NONCE_BYTES)}


def answer(secret: bytes, nonce: bytes) -> dict[str, Any]:
    """The server's reply to a challenge."""
    return {"op": "auth", "mac": hmac.new(secret, nonce, hashlib.sha256).digest()}


def verify(secret: bytes, nonce: bytes, frame: Any) -> bool:
    """True when ``frame`` is a correct answer to ``nonce`` for ``secret`` (constant time)."""
    if not isinstance(frame, dict) or frame.get("op") != "auth":
        return False
    mac = frame.get("mac")
    if not isinstance(mac, bytes):
        return False
    expected = hmac.new(secret, nonce, hashlib.sha256).digest()
    return hmac.compare_digest(expected, mac)


def push_frame(event: str, data: dict[str, Any]) -> dict[str, Any]:
    """A push map: ``{"op": "push", "event": ..., **data}``."""
    return {"op": "push", "event": event, **data}
