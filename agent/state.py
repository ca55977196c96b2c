"""The state machine: previous health + probe result + now + policy -> new health.

Pure: no I/O, no clock. Per account and service the state goes
OK -> DEGRADED (failing, not confirmed) -> DISCONNECTED (confirmed; the banner shows) -> OK.

How a failure is confirmed depends on its cause (see RULES):

- DEFINITIVE_OR_STRIKES (auth_failed, access_revoked, account_suspended): at once when the
  server's answer is definitive, else two strikes.
- STRIKES (permission_denied, over_quota, config_error, integration_error): two strikes.
- GRACE (transient causes): once the failure streak has lasted the transient grace.

"Two strikes": a second (or later) failure with a non-transient cause, at least
`confirm_interval` after the first failure of the streak with a non-transient cause
(`strike_since`). A streak may change cause: the latest cause is reported and judged by its
own rule; transient grace counts from the first failure of the streak (`first_failure_at`),
strikes from the first non-transient failure (transient failures in between do not reset it).

While DISCONNECTED a failure with another cause replaces the confirmed cause (Transition
DISCONNECTED -> DISCONNECTED) when that cause is confirmed by its own rule, except that a
cause needing no user action (transient, integration_error) never replaces one that does:
while the provider is down we cannot tell whether the password was fixed, so the owner's
to-do stays on the banner until a probe gets through.

A result with another credential fingerprint means the owner reconnected: the streak and
the breaker restart and the result is judged as if the service had been OK (so a failing
new credential is DEGRADED until confirmed again, even if the old one was DISCONNECTED).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

from agent.config.types import ScheduleSettings
from agent.model import (
    BREAKER_CAUSES,
    TRANSIENT_CAUSES,
    USER_ACTION_CAUSES,
    Cause,
    Failure,
    ProbeResult,
    ServiceHealth,
    State,
    Transition,
    action_needed,
)


@dataclass(frozen=True)
class Policy:
    confirm_interval: float = 120.0
    transient_grace: float = 1800.0
    recover_after: int = 1
    breaker_min: float = 3600.0
    breaker_max: float = 86400.0

    @classmethod
    def from_settings(cls, s: ScheduleSettings) -> Policy:
        return cls(
            confirm_interval=s.confirm_interval,
            transient_grace=s.transient_grace,
            recover_after=s.recover_after,
            breaker_min=s.breaker_min,
            breaker_max=s.breaker_max,
        )


class Confirm(StrEnum):
    DEFINITIVE_OR_STRIKES = "definitive_or_strikes"
    STRIKES = "strikes"
    GRACE = "grace"


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"

    @property
    def rank(self) -> int:
        """Lower is worse."""
        return 0 if self is Severity.ERROR else 1


class Email(StrEnum):
    AT_ONCE = "at_once"  # when confirmed
    AFTER_TRANSIENT = "after_transient"  # only after lasting notify.transient_after
    NEVER = "never"


@dataclass(frozen=True)
class CauseRule:
    confirm: Confirm
    banner: Severity | None  # None: no banner (the owner cannot do anything)
    email: Email
    breaker: bool  # a confirmed failure pauses logins with the credential


def _rule(cause: Cause) -> CauseRule:
    if cause in TRANSIENT_CAUSES:
        return CauseRule(Confirm.GRACE, Severity.WARNING, Email.AFTER_TRANSIENT, breaker=False)
    if cause is Cause.INTEGRATION_ERROR:
        return CauseRule(Confirm.STRIKES, None, Email.NEVER, breaker=False)
    assert cause in USER_ACTION_CAUSES
    return CauseRule(
        Confirm.DEFINITIVE_OR_STRIKES if cause in BREAKER_CAUSES else Confirm.STRIKES,
        Severity.WARNING if cause is Cause.OVER_QUOTA else Severity.ERROR,
        Email.AT_ONCE,
        breaker=cause in BREAKER_CAUSES,
    )


RULES: dict[Cause, CauseRule] = {cause: _rule(cause) for cause in Cause}


def advance(
    prev: ServiceHealth, result: ProbeResult, now: float, policy: Policy
) -> tuple[ServiceHealth, Transition | None]:
    """Fold one probe result into the health of its service."""
    if (result.account_id, result.service) != (prev.account_id, prev.service):
        raise ValueError(
            f"probe result for {result.account_id}/{result.service} "
            f"given to health of {prev.account_id}/{prev.service}"
        )
    base = prev
    if result.credential and prev.credential and result.credential != prev.credential:
        base = _fresh(prev)
    if result.credential and result.credential != base.credential:
        base = replace(base, credential=result.credential)

    if result.failure is None:
        new = _on_success(base, now, policy)
    else:
        new = _on_failure(base, result.failure, now, policy)

    changed = new.state is not prev.state
    recaused = new.state is State.DISCONNECTED and not changed and new.cause is not prev.cause
    if changed or new.since is None:
        new = replace(new, since=now)
    if not (changed or recaused):
        return new, None
    return new, Transition(
        account_id=new.account_id,
        service=new.service,
        old=prev.state,
        new=new.state,
        cause=new.cause,
        hint=new.hint,
        at=now,
    )


def _fresh(h: ServiceHealth) -> ServiceHealth:
    """New credentials: forget the streak, the confirmed cause and the breaker."""
    return replace(
        h,
        state=State.OK,
        cause=None,
        hint=None,
        definitive=False,
        detail="",
        first_failure_at=None,
        strike_since=None,
        consecutive_failures=0,
        consecutive_successes=0,
        breaker_until=None,
        breaker_backoff=0.0,
        retry_after_until=None,
    )


def _on_success(h: ServiceHealth, now: float, policy: Policy) -> ServiceHealth:
    successes = h.consecutive_successes + 1
    common = replace(
        h,
        last_probe_at=now,
        last_success_at=now,
        consecutive_successes=successes,
        consecutive_failures=0,
        first_failure_at=None,
        strike_since=None,
        retry_after_until=None,
        # the credential just worked: no reason to hold logins back
        breaker_until=None,
        breaker_backoff=0.0,
    )
    if h.state is State.DISCONNECTED and successes < policy.recover_after:
        return common  # still disconnected, with its cause, until enough successes
    return replace(common, state=State.OK, cause=None, hint=None, definitive=False, detail="")


def _on_failure(h: ServiceHealth, f: Failure, now: float, policy: Policy) -> ServiceHealth:
    in_streak = h.consecutive_failures > 0
    first_failure_at = h.first_failure_at if in_streak and h.first_failure_at is not None else now
    strike_since = h.strike_since if in_streak else None
    if strike_since is None and in_streak and h.cause is not None and not _transient(h.cause):
        strike_since = first_failure_at  # not persisted by an older store: best estimate
    prior_strike = strike_since
    if strike_since is None and not _transient(f.cause):
        strike_since = now

    confirmed = _confirmed(f, now, first_failure_at, prior_strike, policy)
    observed = replace(
        h,
        last_probe_at=now,
        consecutive_failures=h.consecutive_failures + 1,
        consecutive_successes=0,
        first_failure_at=first_failure_at,
        strike_since=strike_since,
        retry_after_until=now + f.retry_after if f.retry_after else None,
    )
    with_cause = replace(
        observed, cause=f.cause, hint=f.hint, definitive=f.definitive, detail=f.detail
    )

    if h.state is State.DISCONNECTED:
        # a cause needing no action never hides one that does (see the module docstring)
        downgrade = action_needed(h.cause) and not action_needed(f.cause)
        if f.cause is not h.cause and (not confirmed or downgrade):
            return observed  # keep the confirmed cause, its hint and detail
        new = with_cause
    elif confirmed:
        new = replace(with_cause, state=State.DISCONNECTED)
    else:
        return replace(with_cause, state=State.DEGRADED)

    if RULES[f.cause].breaker and new.cause is f.cause:
        backoff = (
            policy.breaker_min
            if h.breaker_backoff <= 0
            else min(h.breaker_backoff * 2, policy.breaker_max)
        )
        new = replace(new, breaker_backoff=backoff, breaker_until=now + backoff)
    return new


def _confirmed(
    f: Failure, now: float, first_failure_at: float, prior_strike: float | None, policy: Policy
) -> bool:
    rule = RULES[f.cause]
    if rule.confirm is Confirm.GRACE:
        return first_failure_at + policy.transient_grace <= now
    if rule.confirm is Confirm.DEFINITIVE_OR_STRIKES and f.definitive:
        return True
    return prior_strike is not None and prior_strike + policy.confirm_interval <= now


def _transient(cause: Cause) -> bool:
    return RULES[cause].confirm is Confirm.GRACE


def breaker_blocks(
    healths: Iterable[ServiceHealth], credential_fingerprint: str, now: float
) -> float | None:
    """When logging in with this credential is allowed again, or None if allowed now.

    Pass the healths of every service sharing the credential key (Account.credential_key):
    a breaker opened by IMAP also holds SMTP back. A breaker opened under another
    fingerprint does not count: the owner changed the credential since.
    """
    until = [
        h.breaker_until
        for h in healths
        if h.credential == credential_fingerprint
        and h.breaker_until is not None
        and h.breaker_until > now
    ]
    return max(until) if until else None


def confirm_shared(
    h: ServiceHealth, sibling: ServiceHealth, now: float
) -> tuple[ServiceHealth, Transition | None]:
    """A sibling service logging in with the same credential has confirmed that the
    credential is refused (a breaker cause): this service, failing with a breaker cause
    under that credential too, is confirmed with it and shares its breaker. (IMAP and SMTP
    share one password; once the breaker holds logins back, SMTP would otherwise never
    get its second strike, and the banner would not say that sending stopped.)"""
    if (
        h.state is not State.DEGRADED
        or h.cause is None
        or not RULES[h.cause].breaker
        or sibling.state is not State.DISCONNECTED
        or sibling.cause is None
        or not RULES[sibling.cause].breaker
        or not h.credential
        or h.credential != sibling.credential
    ):
        return h, None
    new = replace(
        h,
        state=State.DISCONNECTED,
        since=now,
        breaker_until=sibling.breaker_until,
        breaker_backoff=sibling.breaker_backoff,
    )
    return new, Transition(
        account_id=h.account_id,
        service=h.service,
        old=h.state,
        new=new.state,
        cause=new.cause,
        hint=new.hint,
        at=now,
    )


def reset_breaker(h: ServiceHealth) -> ServiceHealth:
    """Lift the breaker (an explicit re-check). The backoff is kept: if the same credential
    is refused again, the next pause is twice as long (no lockout by repeated re-checks)."""
    return replace(h, breaker_until=None)


def account_state(healths: Iterable[ServiceHealth]) -> State:
    """The worst state among an account's services (OK when it has none)."""
    return max((h.state for h in healths), key=lambda s: s.rank, default=State.OK)
