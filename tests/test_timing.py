"""Probe timing and retry backoff, as tables."""

from __future__ import annotations

from dataclasses import replace

import pytest

from agent.model import Cause, Service, ServiceHealth, State
from agent.state import Policy
from agent.timing import backoff, next_probe_at, next_slot, phase

P = Policy()  # confirm_interval 120
I = 300.0  # noqa: E741
PH = 17.0  # this account's phase: slots at ..., 17, 317, 617, 917, ...


def health(**kw: object) -> ServiceHealth:
    return replace(ServiceHealth(account_id="a", service=Service.IMAP), **kw)  # type: ignore[arg-type]


def degraded(cause: Cause, first: float, last: float, strike: float | None = None) -> ServiceHealth:
    return health(
        state=State.DEGRADED,
        cause=cause,
        first_failure_at=first,
        strike_since=strike,
        last_probe_at=last,
        consecutive_failures=1,
    )


# --- phase -------------------------------------------------------------------------


def test_phase_is_stable_and_in_range() -> None:
    p = phase("acct-42", Service.IMAP, 300)
    assert 0 <= p < 300
    assert phase("acct-42", Service.IMAP, 300) == p  # no randomness: same after a restart
    assert phase("acct-42", Service.SMTP, 300) != p
    assert phase("acct-43", Service.IMAP, 300) != p


def test_phase_scales_with_the_interval() -> None:
    assert phase("x", Service.CALDAV, 600) == pytest.approx(2 * phase("x", Service.CALDAV, 300))


def test_phases_of_a_fleet_spread_evenly() -> None:
    buckets = [0] * 10
    n = 5000
    for i in range(n):
        for service in Service:
            buckets[int(phase(f"acct-{i}", service, 300) // 30)] += 1
    expected = n * len(Service) / 10
    assert all(abs(b - expected) < 0.1 * expected for b in buckets), buckets


@pytest.mark.parametrize("interval", [0.0, -5.0, float("nan")])
def test_phase_refuses_a_bad_interval(interval: float) -> None:
    with pytest.raises(ValueError, match="interval"):
        phase("a", Service.IMAP, interval)


# --- grid ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("after", "slot"),
    [(0, 17), (16.9, 17), (17, 317), (316, 317), (317, 617), (-400, -283), (10_000, 10_217)],
)
def test_next_slot(after: float, slot: float) -> None:
    assert next_slot(after, interval=I, phase=PH) == slot


# --- next_probe_at ------------------------------------------------------------------

NEXT_CASES = [
    # (id, health, now, expected)
    ("never probed: its first slot", None, 0.0, 17.0),
    ("never probed: a slot right now counts", None, 317.0, 317.0),
    ("never probed: next slot", None, 318.0, 617.0),
    ("health without a probe yet", health(), 100.0, 317.0),
    ("ok: slot after the last probe", health(last_probe_at=317.0), 318.0, 617.0),
    ("ok: probed late, still on the grid", health(last_probe_at=330.0), 331.0, 617.0),
    ("ok: missed slot is due now", health(last_probe_at=317.0), 700.0, 700.0),
    ("ok: a recheck in between does not add a probe", health(last_probe_at=400.0), 401.0, 617.0),
    (
        "degraded by strikes: re-probe after confirm_interval",
        degraded(Cause.AUTH_FAILED, 317.0, 317.0, strike=317.0),
        318.0,
        437.0,
    ),
    (
        "degraded by strikes: strike start without strike_since",
        degraded(Cause.PERMISSION_DENIED, 317.0, 317.0),
        318.0,
        437.0,
    ),
    (
        "degraded by strikes: after a too-early second strike",
        degraded(Cause.CONFIG_ERROR, 317.0, 400.0, strike=317.0),
        401.0,
        437.0,
    ),
    (
        "degraded by strikes: the grid slot comes first",
        degraded(Cause.OVER_QUOTA, 317.0, 610.0, strike=550.0),
        611.0,
        617.0,
    ),
    (
        "degraded by strikes: strikes counted from the first non-transient failure",
        degraded(Cause.AUTH_FAILED, 17.0, 400.0, strike=400.0),
        401.0,
        520.0,
    ),
    (
        "degraded by a transient cause: the normal interval",
        degraded(Cause.TIMEOUT, 317.0, 317.0),
        318.0,
        617.0,
    ),
    (
        "disconnected: the normal interval",
        health(state=State.DISCONNECTED, cause=Cause.AUTH_FAILED, last_probe_at=317.0),
        318.0,
        617.0,
    ),
    (
        "retry_after beyond the slot",
        health(last_probe_at=317.0, retry_after_until=700.0),
        318.0,
        700.0,
    ),
    (
        "retry_after before the slot",
        health(last_probe_at=317.0, retry_after_until=400.0),
        318.0,
        617.0,
    ),
    (
        "retry_after beats the confirm re-probe",
        replace(degraded(Cause.AUTH_FAILED, 317.0, 317.0, strike=317.0), retry_after_until=500.0),
        318.0,
        500.0,
    ),
    (
        "breaker holds the probe",
        health(
            state=State.DISCONNECTED,
            cause=Cause.AUTH_FAILED,
            last_probe_at=317.0,
            breaker_until=317.0 + 3600,
        ),
        318.0,
        3917.0,
    ),
    ("breaker already over", health(last_probe_at=317.0, breaker_until=400.0), 318.0, 617.0),
    ("never in the past", health(last_probe_at=0.0, retry_after_until=50.0), 5000.0, 5000.0),
]


@pytest.mark.parametrize(
    ("health_", "now", "expected"), [c[1:] for c in NEXT_CASES], ids=[c[0] for c in NEXT_CASES]
)
def test_next_probe_at(health_: ServiceHealth | None, now: float, expected: float) -> None:
    assert next_probe_at(health_, interval=I, now=now, policy=P, phase=PH) == expected


def test_next_probe_at_uses_the_policy_confirm_interval() -> None:
    h = degraded(Cause.AUTH_FAILED, 317.0, 317.0, strike=317.0)
    at = next_probe_at(h, interval=I, now=318.0, policy=Policy(confirm_interval=60), phase=PH)
    assert at == 377.0


@pytest.mark.parametrize("now", [0.0, 1.5, 299.9, 1e9 + 0.25])
@pytest.mark.parametrize("ph", [0.0, 17.0, 299.99])
def test_next_probe_at_is_on_the_grid_and_not_in_the_past(now: float, ph: float) -> None:
    at = next_probe_at(None, interval=I, now=now, policy=P, phase=ph)
    assert now <= at < now + I
    assert ((at - ph) / I) == pytest.approx(round((at - ph) / I), abs=1e-9)


# --- backoff ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "rand", "expected"),
    [
        (1, 0.5, 5.0),  # ceiling 10
        (2, 0.5, 10.0),  # ceiling 20
        (3, 0.5, 20.0),  # ceiling 40
        (5, 0.5, 80.0),  # ceiling 160
        (6, 0.5, 150.0),  # ceiling capped at 300
        (60, 0.5, 150.0),
        (5000, 0.5, 150.0),  # no overflow
        (3, 0.0, 0.0),  # full jitter: may retry at once
        (3, 0.999, 39.96),
    ],
)
def test_backoff(attempt: int, rand: float, expected: float) -> None:
    got = backoff(attempt, base=10.0, cap=300.0, rand=lambda: rand)
    assert got == pytest.approx(expected)


def test_backoff_refuses_attempt_zero() -> None:
    with pytest.raises(ValueError, match="attempt"):
        backoff(0, base=1.0, cap=10.0, rand=lambda: 0.5)


def test_backoff_draws_once_per_call() -> None:
    draws: list[float] = []

    def rand() -> float:
        draws.append(0.25)
        return 0.25

    assert backoff(2, base=1.0, cap=10.0, rand=rand) == 0.5
    assert draws == [0.25]
