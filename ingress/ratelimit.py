"""A token bucket per key (the panel's username), so one runaway panel cannot flood a renewal
with updates. In memory, per ingress process: each process enforces its own share."""

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
