"""Retry arithmetic for the outbox: pure, randomness injected."""

from __future__ import annotations

from collections.abc import Callable

BASE = 60.0  # first retry after about a minute
CAP = 3600.0  # never wait more than an hour between attempts


def retry_delay(
    attempt: int, rand: Callable[[], float], base: float = BASE, cap: float = CAP
) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): capped exponential
    with "equal jitter", so the delay is in [half, full] of min(cap, base * 2**(attempt-1))."""
    full = min(cap, base * 2.0 ** max(0, attempt - 1))
    return full / 2 + (full / 2) * min(max(rand(), 0.0), 1.0)


def next_attempt(
    *,
    attempts: int,
    created_at: float,
    now: float,
    max_attempts: int,
    max_age: float,
    permanent: bool,
    rand: Callable[[], float],
    base: float = BASE,
) -> float | None:
    """When to try again after a failure, or None to give up. `attempts` counts the one
    that just failed; `base` is the first delay (notify.retry_base)."""
    if permanent or attempts >= max_attempts:
        return None
    at = now + retry_delay(attempts, rand, base)
    if at - created_at > max_age:
        return None
    return at
