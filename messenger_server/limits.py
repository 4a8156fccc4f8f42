"""Abuse limits: token buckets per user and per address, and slow-down after failed logins.

All state is per process and in memory: a limit is a brake on abuse, not an exact quota, so
several processes each enforcing it is acceptable (documented in docs/operations.md). Tables
are bounded: the least recently used keys are evicted beyond ``MAX_KEYS``.
"""
from __future__ import annotations

import time
from collections import OrderedDict

from messenger_protocol import ErrorCode, ProtocolError

MAX_KEYS = 100_000


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst``."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class RateLimiter:
    """One bucket per key; ``check(key)`` raises ``rate_limited`` when it is empty.
    A rate of 0 turns the limit off."""

    def __init__(self, what: str, rate: float, burst: float) -> None:
        self.what = what
        self.rate, self.burst = rate, max(burst, 1.0)
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def check(self, key: str) -> None:
        if self.rate <= 0:
            return
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
            if len(self._buckets) > MAX_KEYS:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        if not bucket.take(time.monotonic()):
            raise ProtocolError(ErrorCode.RATE_LIMITED,
                                f"too many {self.what}; at most {self.rate:g} per second — wait a moment and retry")


class FailedLogins:
    """Counts failed logins per user id; from the ``free``-th on, each attempt waits longer
    (doubling up to ``max_delay``). A success or ``forget_after`` quiet seconds reset it."""

    def __init__(self, free: int = 5, base_delay: float = 0.25, max_delay: float = 8.0,
                 forget_after: float = 900.0) -> None:
        self.free, self.base_delay, self.max_delay, self.forget_after = free, base_delay, max_delay, forget_after
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def delay(self, user_id: str) -> float:
        count, last = self._failures.get(user_id, (0, 0.0))
        if count < self.free or time.monotonic() - last > self.forget_after:
            return 0.0
        return min(self.max_delay, self.base_delay * 2 ** (count - self.free))

    def failed(self, user_id: str) -> None:
        count, last = self._failures.pop(user_id, (0, 0.0))
        if time.monotonic() - last > self.forget_after:
            count = 0
        self._failures[user_id] = (count + 1, time.monotonic())
        if len(self._failures) > MAX_KEYS:
            self._failures.popitem(last=False)

    def succeeded(self, user_id: str) -> None:
        self._failures.pop(user_id, None)


class Limits:
    """Every rate limit of one server process, built from its Config."""

    def __init__(self, config) -> None:
        burst = 5.0
        self.sends_per_user = RateLimiter("messages from you", config.sends_per_user, config.sends_per_user * burst)
        self.sends_per_address = RateLimiter("messages from your address", config.sends_per_address,
                                             config.sends_per_address * burst)
        self.logins_per_user = RateLimiter("login attempts for this user", config.logins_per_user,
                                           config.logins_per_user * 2)
        self.logins_per_address = RateLimiter("login attempts from your address", config.logins_per_address,
                                              config.logins_per_address * 20)
        self.failed_logins = FailedLogins()
