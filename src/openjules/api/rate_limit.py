"""Requests per API key per rolling minute (``rate_limit_per_minute``; 0 is no limit).

A token bucket per key, in memory, per server process: a key may spend its whole
minute's allowance at once, then one request every ``60 / limit`` seconds as it refills.
Beyond it the request is refused with 429 RESOURCE_EXHAUSTED and ``Retry-After``, the
seconds until the next request would be let through. Several server processes each
count their own requests.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from openjules._errors import ResourceExhausted

WINDOW_S = 60.0
# Keys remembered at once. A bucket untouched for a minute is full, the same as a key not
# remembered, so dropping the least recently used loses nothing for idle keys.
MAX_KEYS = 100_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """``check(key)`` spends one request of ``key``'s allowance or raises
    ResourceExhausted. Not thread-safe: one event loop calls it, without awaiting."""

    def __init__(
        self,
        *,
        per_minute: int,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_minute = per_minute
        self.max_keys = max_keys
        self._clock = clock
        self._rate = per_minute / WINDOW_S  # tokens per second
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0

    def check(self, key: str) -> None:
        if not self.enabled:
            return
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(tokens=float(self.per_minute), updated=now)
            self._buckets[key] = bucket
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(float(self.per_minute), bucket.tokens + elapsed * self._rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return
        wait = math.ceil((1.0 - bucket.tokens) / self._rate)
        raise ResourceExhausted(
            f"Quota exceeded: this API key may make {self.per_minute} requests per minute "
            f"(rate_limit_per_minute). Retry in {wait} s.",
            retry_after_seconds=max(1, wait),
        )

    def __len__(self) -> int:
        return len(self._buckets)
