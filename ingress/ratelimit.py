"""A token bucket per key (the panel's username, a signed-in customer), so one runaway panel or
browser cannot flood a renewal with updates, and a lockout per key for a guessing run (discount
codes on the customer's pages). In memory, per ingress process: each process enforces its own
share; the renewal's own budget of cart changes (workflows/state.py) bounds them all."""

import time
from collections.abc import Callable


class RateLimiter:
    """`rate` events per second on average, bursts of up to `burst`."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key → (tokens, when)

    def retry_after(self, key: str) -> float | None:
        """Take one token for `key`: None when allowed, else the seconds until one is free."""
        now = self.clock()
        tokens, when = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - when) * self.rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate
        self._buckets[key] = (tokens - 1, now)
        if len(self._buckets) > 10_000:
            self._forget_full(now)
        return None

    def _forget_full(self, now: float) -> None:
        """Buckets that have refilled are the same as absent ones: drop them to bound memory."""
        full_after = self.burst / self.rate
        self._buckets = {key: value for key, value in self._buckets.items() if now - value[1] < full_after}


class Lockout:
    """Refuses a key for `lockout` seconds once it has failed `tries` times within `window` seconds:
    a guessing run stops at its first few tries, a customer's typo costs nothing. A success does
    not clear the failures (else one known good value would reset every run). In memory, per
    ingress process, like RateLimiter."""

    def __init__(self, tries: int, window: float, lockout: float, clock: Callable[[], float] = time.monotonic) -> None:
        if tries < 1 or window <= 0 or lockout <= 0:
            raise ValueError("tries must be at least 1, window and lockout positive")
        self.tries, self.window, self.lockout = tries, window, lockout
        self.clock = clock
        self._failures: dict[str, list[float]] = {}
        self._until: dict[str, float] = {}

    def locked_for(self, key: str) -> float | None:
        """The seconds `key` stays refused, or None when it may try."""
        until = self._until.get(key)
        if until is None:
            return None
        left = until - self.clock()
        if left <= 0:
            del self._until[key]
            return None
        return left

    def failed(self, key: str) -> None:
        now = self.clock()
        recent = [when for when in self._failures.get(key, []) if now - when < self.window]
        recent.append(now)
        if len(recent) >= self.tries:
            self._until[key] = now + self.lockout
            self._failures.pop(key, None)
        else:
            self._failures[key] = recent
        if len(self._failures) + len(self._until) > 10_000:
            self._forget_stale(now)

    def _forget_stale(self, now: float) -> None:
        self._failures = {k: v for k, v in self._failures.items() if v and now - v[-1] < self.window}
        self._until = {k: v for k, v in self._until.items() if v > now}
