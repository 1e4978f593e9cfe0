"""When to try a call again, and how long to wait first.

Retried: 429 and 503 (and 502/504 from a proxy) when the call is idempotent, and a
connection that could not be made for any call (the request never reached the server).
A server's ``Retry-After`` is honoured, capped; otherwise the wait doubles from
``initial_delay`` with jitter, so many clients do not come back in step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx

from openjules._errors import APIError

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    # Tries after the first; 0 disables retrying.
    max_retries: int = 3
    initial_delay: float = 0.5
    max_delay: float = 8.0

    def delay(self, *, attempt: int, retry_after: int | None = None) -> float:
        """Seconds to wait before try ``attempt + 1`` (``attempt`` counts from 1)."""
        if retry_after is not None:
            return float(min(retry_after, self.max_delay * 4))
        backoff: float = min(self.max_delay, self.initial_delay * 2.0 ** (attempt - 1))
        return backoff * random.uniform(0.5, 1.0)

    def should_retry_error(self, error: APIError, *, idempotent: bool, attempt: int) -> bool:
        return idempotent and attempt <= self.max_retries and error.http_code in RETRYABLE_STATUSES

    def should_retry_exception(
        self, exc: httpx.TransportError, *, idempotent: bool, attempt: int
    ) -> bool:
        if attempt > self.max_retries:
            return False
        # A connection never made cannot have changed anything; any other transport
        # failure (a reset, a timeout mid-answer) may have, so only idempotent calls retry.
        return idempotent or isinstance(exc, httpx.ConnectError)
