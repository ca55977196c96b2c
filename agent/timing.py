"""When to probe next, and how long to wait before a retry. Pure arithmetic.

Every (account, service) probes on its own grid: `phase + k * interval`. The phase comes
from a hash, so a fleet's probes spread evenly over the interval without randomness and
stay where they were across restarts.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

from agent.model import Service, ServiceHealth, State
from agent.state import RULES, Confirm, Policy


def phase(account_id: str, service: Service, interval: float) -> float:
    """A stable offset in [0, interval) for this account and service."""
    if not interval > 0:
        raise ValueError(f"interval must be positive, got {interval!r}")
    digest = hashlib.sha256(f"{account_id}\x1f{service.value}".encode()).digest()
    fraction = (int.from_bytes(digest[:8], "big") >> 11) / float(1 << 53)  # [0, 1)
    offset = fraction * interval
    return offset if offset < interval else math.nextafter(interval, 0.0)


def next_slot(after: float, *, interval: float, phase: float) -> float:
    """The first time on the grid `phase + k * interval` strictly after `after`."""
    k = math.floor((after - phase) / interval) + 1
    slot = phase + k * interval
    while slot <= after:  # float rounding
        slot += interval
    return slot


def _slot_at_or_after(t: float, *, interval: float, phase: float) -> float:
    slot = phase + math.ceil((t - phase) / interval) * interval
    return slot if slot >= t else slot + interval


def next_probe_at(
    health: ServiceHealth | None,
    *,
    interval: float,
    now: float,
    policy: Policy,
    phase: float,
) -> float:
    """When this service should be probed next; never before `now`.

    - Never probed: the first slot of its grid at or after `now`.
    - Otherwise: the first slot after the last probe (`now` if that slot was missed).
    - DEGRADED with a cause confirmed by strikes: also at the confirming time,
      `confirm_interval` after the first strike, when that comes sooner.
      Transient causes keep the normal interval (their grace is long).
    - No sooner than `retry_after_until` (the server asked for a pause) and
      `breaker_until` (logins with this credential are paused).
    """
    if health is None or health.last_probe_at is None:
        at = _slot_at_or_after(now, interval=interval, phase=phase)
    else:
        last = health.last_probe_at
        at = next_slot(last, interval=interval, phase=phase)
        confirm_at = _confirm_at(health, policy)
        if confirm_at is not None and last < confirm_at < at:
            at = confirm_at
    for hold in (health.retry_after_until, health.breaker_until) if health else ():
        if hold is not None and hold > at:
            at = hold
    return max(at, now)


def _confirm_at(health: ServiceHealth, policy: Policy) -> float | None:
    if health.state is not State.DEGRADED or health.cause is None:
        return None
    if RULES[health.cause].confirm is Confirm.GRACE:
        return None
    start = health.strike_since if health.strike_since is not None else health.first_failure_at
    return None if start is None else start + policy.confirm_interval


def backoff(attempt: int, *, base: float, cap: float, rand: Callable[[], float]) -> float:
    """Capped exponential backoff with full jitter: a delay in [0, min(cap, base * 2**(n-1))).

    `attempt` counts the attempts that failed so far (1 after the first failure);
    `rand` returns a float in [0, 1) (e.g. `random.Random().random`).
    """
    if attempt < 1:
        raise ValueError(f"attempt must be at least 1, got {attempt}")
    exponent = min(attempt - 1, 1023)
    ceiling = min(cap, base * math.ldexp(1.0, exponent)) if base > 0 else 0.0
    return rand() * ceiling
