"""Password hashing: salted scrypt, verified in constant time, computed off the event loop.

A hash costs tens of milliseconds of CPU on purpose; running it in gevent's thread pool
(hashlib.scrypt releases the GIL) keeps one login from freezing every other connection.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os

import gevent

# 16 MiB of memory and ~50 ms per hash on a current core: OWASP's scrypt baseline.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_SALT_BYTES = 16
_KEY_BYTES = 32
_MAXMEM = 64 * 1024 * 1024


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          dklen=_KEY_BYTES, maxmem=_MAXMEM)


def _run_off_loop(func, *args):
    return gevent.get_hub().threadpool.apply(func, args)


def hash_password(password: str) -> str:
    """A storable ``scrypt$n$r$p$salt$key`` string for ``password``."""
    salt = os.urandom(_SALT_BYTES)
    key = _run_off_loop(_scrypt, password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    b64 = lambda b: base64.b64encode(b).decode("ascii")  # noqa: E731
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt)}${b64(key)}"


def verify_password(password: str, stored: str | None) -> bool:
    """True when ``password`` matches ``stored``; with ``stored`` None, burns the same time.

    Doing the work for unknown users too means the response time does not reveal whether
    an id exists.
    """
    if stored is None:
        _run_off_loop(_scrypt, password, b"\0" * _SALT_BYTES, SCRYPT_N, SCRYPT_R, SCRYPT_P)
        return False
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(key)
        actual = _run_off_loop(_scrypt, password, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(expected, actual)
