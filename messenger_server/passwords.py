"""Password hashing: salted scrypt, verified in constant time, computed off the event loop.

A hash costs tens of milliseconds of CPU on purpose; running it in threads (hashlib.scrypt
releases the GIL) keeps one login from freezing every other connection. The threads are a pool
of their own, as many as cores: each hash needs 16 MiB, and a thread keeps its malloc arena,
so a small fixed pool keeps that memory fixed too (and a login storm cannot take more CPU
than the machine has).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os

from gevent.threadpool import ThreadPool

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


class PasswordHasher:
    """Hashes and verifies passwords in a thread pool of its own."""

    def __init__(self, threads: int | None = None) -> None:
        self.pool = ThreadPool(threads or os.cpu_count() or 2)

    def _run(self, *args):
        return self.pool.apply(_scrypt, args)

    def hash(self, password: str) -> str:
        """A storable ``scrypt$n$r$p$salt$key`` string for ``password``."""
        salt = os.urandom(_SALT_BYTES)
        key = self._run(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
        b64 = lambda b: base64.b64encode(b).decode("ascii")  # noqa: E731
        return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt)}${b64(key)}"

    def verify(self, password: str, stored: str | None) -> bool:
        """True when ``password`` matches ``stored``; with ``stored`` None, burns the same time.

        Doing the work for unknown users too means the response time does not reveal whether
        an id exists.
        """
        if stored is None:
            self._run(password, b"\0" * _SALT_BYTES, SCRYPT_N, SCRYPT_R, SCRYPT_P)
            return False
        try:
            scheme, n, r, p, salt, key = stored.split("$")
            if scheme != "scrypt":
                return False
            expected = base64.b64decode(key)
            actual = self._run(password, base64.b64decode(salt), int(n), int(r), int(p))
        except (ValueError, TypeError):
            return False
        return hmac.compare_digest(expected, actual)

    def close(self) -> None:
        self.pool.kill()
