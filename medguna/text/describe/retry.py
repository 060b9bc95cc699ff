"""Bounded exponential backoff that honours a server's Retry-After."""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from medguna.errors import ConfigError

# Statuses worth asking again: rate limits and server-side failures.
RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """At most `max_attempts` tries; waits base_delay_s * 2**(k-1), capped at max_delay_s.

    A Retry-After longer than the backoff wins; one longer than max_retry_after_s ends the
    run instead of waiting hours for a quota to refill.
    """

    max_attempts: int = 6
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0
    max_retry_after_s: float = 300.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.base_delay_s < 0 or self.max_delay_s < 0:
            raise ConfigError("retry delays must be >= 0")

    def backoff_s(self, failed_attempts: int) -> float:
        """Wait after the given number of failed attempts (1 -> base delay)."""
        return min(self.max_delay_s, self.base_delay_s * 2 ** (failed_attempts - 1))

    def wait_s(self, failed_attempts: int, retry_after_s: float | None) -> float | None:
        """Seconds to wait before the next try, or None when the server asks for too long."""
        wait = self.backoff_s(failed_attempts)
        if retry_after_s is not None:
            if retry_after_s > self.max_retry_after_s:
                return None
            wait = max(wait, retry_after_s)
        return wait


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None if absent/garbled."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.fromtimestamp(time.time() if now is None else now, tz=UTC)
    return max(0.0, (when - current).total_seconds())
