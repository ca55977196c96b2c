"""The state machine, as tables: (previous health, probe result, now) -> new health."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import pytest

from agent.config.types import ScheduleSettings
from agent.model import (
    BREAKER_CAUSES,
    TRANSIENT_CAUSES,
    USER_ACTION_CAUSES,
    Cause,
    Failure,
    ProbeResult,
    Service,
    ServiceHealth,
    State,
)
from agent.state import (
    RULES,
    Confirm,
    Email,
    Policy,
    Severity,
    account_state,
    advance,
    breaker_blocks,
    confirm_shared,
    reset_breaker,
)

ACCOUNT = "acct-1"
SERVICE = Service.IMAP
CRED = "fp-one"
P = Policy()
OK, DEG, DISC = State.OK, State.DEGRADED, State.DISCONNECTED


def health(**kw: object) -> ServiceHealth:
    base = ServiceHealth(account_id=ACCOUNT, service=SERVICE, credential=CRED, since=0.0)
    return replace(base, **kw)  # type: ignore[arg-type]


def degraded(cause: Cause, first: float = 0.0, failures: int = 1, **kw: object) -> ServiceHealth:
    strike = None if cause in TRANSIENT_CAUSES else first
    fields: dict[str, object] = {
        "state": DEG,
        "cause": cause,
        "since": first,
        "first_failure_at": first,
        "strike_since": strike,
        "last_probe_at": first,
        "consecutive_failures": failures,
    }
    fields.update(kw)
    return health(**fields)


def disconnected(
    cause: Cause, first: float = 0.0, failures: int = 2, **kw: object
) -> ServiceHealth:
    return degraded(cause, first, failures, **{"state": DISC, **kw})


def fail(
    cause: Cause,
    *,
    definitive: bool = False,
    hint: str | None = None,
    retry_after: float | None = None,
    credential: str = CRED,
    detail: str = "",
) -> ProbeResult:
    return ProbeResult(
        account_id=ACCOUNT,
        service=SERVICE,
        started_at=0.0,
        duration_seconds=0.1,
        failure=Failure(
            cause=cause, hint=hint, definitive=definitive, detail=detail, retry_after=retry_after
        ),
        credential=credential,
    )


def success(credential: str = CRED) -> ProbeResult:
    return ProbeResult(
        account_id=ACCOUNT,
        service=SERVICE,
        started_at=0.0,
        duration_seconds=0.1,
        credential=credential,
    )


@dataclass(frozen=True)
class Case:
    id: str
    prev: ServiceHealth
    result: ProbeResult
    now: float
    state: State
    cause: Cause | None
    transition: tuple[State, State] | None
    policy: Policy = P


AUTH, PERM, QUOTA, CONF = (
    Cause.AUTH_FAILED,
    Cause.PERMISSION_DENIED,
    Cause.OVER_QUOTA,
    Cause.CONFIG_ERROR,
)
TIMEOUT, UNAVAIL, INTEG = Cause.TIMEOUT, Cause.SERVER_UNAVAILABLE, Cause.INTEGRATION_ERROR
R2 = Policy(recover_after=2)

CASES = [
    Case("ok stays ok", health(), success(), 10, OK, None, None),
    # breaker causes: definitive confirms at once, else two strikes
    *[
        Case(
            f"{c} definitive confirms at once",
            health(),
            fail(c, definitive=True),
            10,
            DISC,
            c,
            (OK, DISC),
        )
        for c in sorted(BREAKER_CAUSES)
    ],
    *[
        Case(f"{c} not definitive is one strike", health(), fail(c), 10, DEG, c, (OK, DEG))
        for c in sorted(BREAKER_CAUSES)
    ],
    Case("second strike too soon", degraded(AUTH), fail(AUTH), 119, DEG, AUTH, None),
    Case(
        "second strike after confirm_interval",
        degraded(AUTH),
        fail(AUTH),
        120,
        DISC,
        AUTH,
        (DEG, DISC),
    ),
    Case(
        "third strike after confirm_interval",
        degraded(AUTH, failures=2),
        fail(AUTH),
        300,
        DISC,
        AUTH,
        (DEG, DISC),
    ),
    # two-strike causes: definitive does not matter
    *[
        Case(
            f"{c} definitive is still one strike",
            health(),
            fail(c, definitive=True),
            10,
            DEG,
            c,
            (OK, DEG),
        )
        for c in (PERM, QUOTA, CONF, INTEG)
    ],
    *[
        Case(f"{c} second strike too soon", degraded(c), fail(c), 60, DEG, c, None)
        for c in (PERM, QUOTA, CONF, INTEG)
    ],
    *[
        Case(f"{c} second strike confirms", degraded(c), fail(c), 120, DISC, c, (DEG, DISC))
        for c in (PERM, QUOTA, CONF, INTEG)
    ],
    # transient causes: only after the grace, however many failures
    *[
        Case(f"{c} first failure", health(), fail(c, definitive=True), 10, DEG, c, (OK, DEG))
        for c in sorted(TRANSIENT_CAUSES)
    ],
    *[
        Case(f"{c} before grace", degraded(c, failures=9), fail(c), 1799, DEG, c, None)
        for c in sorted(TRANSIENT_CAUSES)
    ],
    *[
        Case(f"{c} after grace", degraded(c), fail(c), 1800, DISC, c, (DEG, DISC))
        for c in sorted(TRANSIENT_CAUSES)
    ],
    Case(
        "transient grace of zero confirms at once",
        health(),
        fail(TIMEOUT),
        5,
        DISC,
        TIMEOUT,
        (OK, DISC),
        Policy(transient_grace=0),
    ),
    # a streak changing cause: latest cause reported, judged by its own rule
    Case(
        "timeout then auth: strikes start at the auth failure",
        degraded(TIMEOUT, failures=5),
        fail(AUTH),
        1000,
        DEG,
        AUTH,
        None,
    ),
    Case(
        "timeout, auth, auth too soon",
        degraded(TIMEOUT, failures=6, strike_since=1000.0),
        fail(AUTH),
        1119,
        DEG,
        AUTH,
        None,
    ),
    Case(
        "timeout, auth, auth after confirm_interval",
        degraded(TIMEOUT, failures=6, strike_since=1000.0),
        fail(AUTH),
        1120,
        DISC,
        AUTH,
        (DEG, DISC),
    ),
    Case(
        "timeout then definitive auth",
        degraded(TIMEOUT),
        fail(AUTH, definitive=True),
        10,
        DISC,
        AUTH,
        (DEG, DISC),
    ),
    Case(
        "auth then timeout: grace counts from the first failure",
        degraded(AUTH),
        fail(TIMEOUT),
        1800,
        DISC,
        TIMEOUT,
        (DEG, DISC),
    ),
    Case("auth then timeout within grace", degraded(AUTH), fail(TIMEOUT), 600, DEG, TIMEOUT, None),
    Case(
        "auth, timeout, auth: a transient failure does not reset the strikes",
        degraded(TIMEOUT, failures=2, strike_since=0.0),
        fail(AUTH),
        300,
        DISC,
        AUTH,
        (DEG, DISC),
    ),
    Case(
        "permission then quota: strikes carry over between non-transient causes",
        degraded(PERM),
        fail(QUOTA),
        120,
        DISC,
        QUOTA,
        (DEG, DISC),
    ),
    # recovery
    Case("degraded recovers", degraded(AUTH), success(), 50, OK, None, (DEG, OK)),
    Case("disconnected recovers", disconnected(AUTH), success(), 500, OK, None, (DISC, OK)),
    Case(
        "recover_after=2: first success keeps it disconnected",
        disconnected(AUTH),
        success(),
        500,
        DISC,
        AUTH,
        None,
        R2,
    ),
    Case(
        "recover_after=2: second success recovers",
        disconnected(AUTH, failures=0, consecutive_successes=1),
        success(),
        800,
        OK,
        None,
        (DISC, OK),
        R2,
    ),
    Case(
        "recover_after=2: degraded recovers at once",
        degraded(AUTH),
        success(),
        50,
        OK,
        None,
        (DEG, OK),
        R2,
    ),
    Case(
        "recover_after=2: failure after one success stays disconnected",
        disconnected(AUTH, failures=0, consecutive_successes=1),
        fail(AUTH),
        900,
        DISC,
        AUTH,
        None,
        R2,
    ),
    # cause changes while disconnected
    Case(
        "auth -> suspended definitive",
        disconnected(AUTH),
        fail(Cause.ACCOUNT_SUSPENDED, definitive=True),
        500,
        DISC,
        Cause.ACCOUNT_SUSPENDED,
        (DISC, DISC),
    ),
    Case(
        "auth -> suspended, strikes already counted",
        disconnected(AUTH),
        fail(Cause.ACCOUNT_SUSPENDED),
        500,
        DISC,
        Cause.ACCOUNT_SUSPENDED,
        (DISC, DISC),
    ),
    Case("auth -> permission", disconnected(AUTH), fail(PERM), 500, DISC, PERM, (DISC, DISC)),
    Case(
        "same cause while disconnected: no transition",
        disconnected(AUTH),
        fail(AUTH),
        500,
        DISC,
        AUTH,
        None,
    ),
    Case(
        "auth -> timeout: the owner's to-do stays",
        disconnected(AUTH),
        fail(TIMEOUT),
        5000,
        DISC,
        AUTH,
        None,
    ),
    Case(
        "auth -> integration error: the owner's to-do stays",
        disconnected(AUTH),
        fail(INTEG),
        5000,
        DISC,
        AUTH,
        None,
    ),
    Case(
        "timeout -> unavailable",
        disconnected(TIMEOUT),
        fail(UNAVAIL),
        2000,
        DISC,
        UNAVAIL,
        (DISC, DISC),
    ),
    Case(
        "timeout -> auth: first strike keeps timeout",
        disconnected(TIMEOUT),
        fail(AUTH),
        2000,
        DISC,
        TIMEOUT,
        None,
    ),
    Case(
        "timeout -> auth: second strike replaces",
        disconnected(TIMEOUT, strike_since=2000.0),
        fail(AUTH),
        2120,
        DISC,
        AUTH,
        (DISC, DISC),
    ),
    Case(
        "timeout -> definitive auth",
        disconnected(TIMEOUT),
        fail(AUTH, definitive=True),
        2000,
        DISC,
        AUTH,
        (DISC, DISC),
    ),
    Case(
        "integration -> timeout",
        disconnected(INTEG),
        fail(TIMEOUT),
        2000,
        DISC,
        TIMEOUT,
        (DISC, DISC),
    ),
    # a new credential: judged afresh
    Case(
        "new credential, disconnected, one strike",
        disconnected(AUTH),
        fail(AUTH, credential="fp-two"),
        500,
        DEG,
        AUTH,
        (DISC, DEG),
    ),
    Case(
        "new credential, degraded, would have been the second strike",
        degraded(AUTH),
        fail(AUTH, credential="fp-two"),
        500,
        DEG,
        AUTH,
        None,
    ),
    Case(
        "new credential, definitive",
        degraded(AUTH),
        fail(AUTH, definitive=True, credential="fp-two"),
        500,
        DISC,
        AUTH,
        (DEG, DISC),
    ),
    Case("new credential works", disconnected(AUTH), success("fp-two"), 500, OK, None, (DISC, OK)),
    Case(
        "new credential, transient grace restarts",
        degraded(TIMEOUT),
        fail(TIMEOUT, credential="fp-two"),
        1800,
        DEG,
        TIMEOUT,
        None,
    ),
    Case(
        "no fingerprint in the result is no change",
        degraded(AUTH),
        fail(AUTH, credential=""),
        120,
        DISC,
        AUTH,
        (DEG, DISC),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_transition_table(case: Case) -> None:
    new, transition = advance(case.prev, case.result, case.now, case.policy)
    assert (new.state, new.cause) == (case.state, case.cause)
    if case.transition is None:
        assert transition is None
    else:
        assert transition is not None
        assert (transition.old, transition.new) == case.transition
        assert transition.cause is case.cause
        assert transition.at == case.now
        assert (transition.account_id, transition.service) == (ACCOUNT, SERVICE)
    assert new.last_probe_at == case.now


# --- bookkeeping ---------------------------------------------------------------------


def test_it_tracks_a_failure_streak() -> None:
    h, _ = advance(health(), fail(AUTH, hint="app_password_required", detail="NO [AUTH]"), 10, P)
    assert h.consecutive_failures == 1
    assert h.consecutive_successes == 0
    assert h.first_failure_at == 10
    assert h.strike_since == 10
    assert h.since == 10
    assert (h.hint, h.detail, h.definitive) == ("app_password_required", "NO [AUTH]", False)
    h2, _ = advance(h, fail(AUTH, definitive=True, detail="NO again"), 20, P)
    assert h2.consecutive_failures == 2
    assert h2.first_failure_at == 10
    assert h2.since == 20  # entered DISCONNECTED
    assert h2.last_probe_at == 20
    assert (h2.hint, h2.detail, h2.definitive) == (None, "NO again", True)


def test_it_tracks_success_and_clears_the_streak() -> None:
    h, _ = advance(disconnected(AUTH, hint="x", detail="d"), success(), 700, P)
    assert h.consecutive_successes == 1
    assert h.consecutive_failures == 0
    assert h.first_failure_at is None
    assert h.strike_since is None
    assert (h.hint, h.detail, h.definitive) == (None, "", False)
    assert h.last_success_at == 700
    assert h.since == 700
    h2, _ = advance(h, success(), 1000, P)
    assert h2.consecutive_successes == 2
    assert h2.since == 700  # still OK since the recovery


def test_first_success_sets_since_on_a_fresh_health() -> None:
    fresh = ServiceHealth(account_id=ACCOUNT, service=SERVICE)
    h, t = advance(fresh, success(), 42, P)
    assert t is None
    assert (h.since, h.credential) == (42, CRED)


def test_transient_failures_do_not_start_strikes() -> None:
    h, _ = advance(health(), fail(TIMEOUT), 10, P)
    assert h.strike_since is None
    assert h.first_failure_at == 10


def test_a_lost_strike_since_falls_back_to_the_streak_start() -> None:
    # an older store row without strike_since: the streak start is the best estimate
    prev = degraded(AUTH, strike_since=None)
    h, t = advance(prev, fail(AUTH), 120, P)
    assert h.state is DISC and t is not None


def test_disconnected_keeps_the_confirmed_hint_and_detail_when_the_cause_is_kept() -> None:
    prev = disconnected(AUTH, hint="basic_auth_disabled", detail="NO [AUTHENTICATIONFAILED]")
    h, _ = advance(prev, fail(TIMEOUT, detail="timed out"), 5000, P)
    assert (h.cause, h.hint, h.detail) == (AUTH, "basic_auth_disabled", "NO [AUTHENTICATIONFAILED]")
    assert h.consecutive_failures == prev.consecutive_failures + 1


def test_a_hint_change_while_disconnected_updates_quietly() -> None:
    h, t = advance(disconnected(AUTH, hint=None), fail(AUTH, hint="app_password_required"), 9, P)
    assert t is None
    assert h.hint == "app_password_required"


def test_transition_carries_the_hint() -> None:
    _, t = advance(health(), fail(AUTH, definitive=True, hint="oauth_grant_invalid"), 1, P)
    assert t is not None and t.hint == "oauth_grant_invalid"


def test_a_result_for_another_service_is_refused() -> None:
    other = replace(success(), service=Service.SMTP)
    with pytest.raises(ValueError, match="acct-1/smtp"):
        advance(health(), other, 1, P)


# --- retry_after -----------------------------------------------------------------------


def test_retry_after_is_remembered_and_cleared() -> None:
    h, _ = advance(health(), fail(Cause.RATE_LIMITED, retry_after=60), 100, P)
    assert h.retry_after_until == 160
    h2, _ = advance(h, fail(Cause.RATE_LIMITED), 200, P)
    assert h2.retry_after_until is None
    h3, _ = advance(h, success(), 200, P)
    assert h3.retry_after_until is None


# --- the auth breaker ----------------------------------------------------------------


def test_breaker_opens_when_a_breaker_cause_is_confirmed() -> None:
    h, _ = advance(health(), fail(AUTH, definitive=True), 1000, P)
    assert (h.breaker_backoff, h.breaker_until) == (3600, 4600)


def test_breaker_stays_shut_while_only_degraded() -> None:
    h, _ = advance(health(), fail(AUTH), 1000, P)
    assert (h.breaker_backoff, h.breaker_until) == (0, None)


@pytest.mark.parametrize("cause", [PERM, QUOTA, CONF, INTEG, TIMEOUT])
def test_breaker_ignores_other_causes(cause: Cause) -> None:
    h, _ = advance(degraded(cause), fail(cause, definitive=True), 5000, P)
    assert h.state is DISC
    assert (h.breaker_backoff, h.breaker_until) == (0, None)


def test_breaker_doubles_on_each_further_failure_and_is_capped() -> None:
    h, _ = advance(health(), fail(AUTH, definitive=True), 0, P)
    seen = [h.breaker_backoff]
    now = 0.0
    for _ in range(7):
        assert h.breaker_until is not None
        now = h.breaker_until
        h, _ = advance(h, fail(AUTH), now, P)
        seen.append(h.breaker_backoff)
        assert h.breaker_until == now + h.breaker_backoff
    assert seen == [3600, 7200, 14400, 28800, 57600, 86400, 86400, 86400]


def test_breaker_is_not_extended_by_a_failure_that_keeps_the_old_cause() -> None:
    prev = disconnected(AUTH, breaker_backoff=3600.0, breaker_until=3600.0)
    h, _ = advance(prev, fail(TIMEOUT), 4000, P)
    assert (h.breaker_backoff, h.breaker_until) == (3600, 3600)


def test_breaker_doubles_when_suspension_replaces_auth() -> None:
    prev = disconnected(AUTH, breaker_backoff=3600.0, breaker_until=3600.0)
    h, _ = advance(prev, fail(Cause.ACCOUNT_SUSPENDED, definitive=True), 4000, P)
    assert (h.breaker_backoff, h.breaker_until) == (7200, 11200)


def test_success_closes_the_breaker() -> None:
    prev = disconnected(AUTH, breaker_backoff=7200.0, breaker_until=9000.0)
    h, _ = advance(prev, success(), 9500, P)
    assert (h.breaker_backoff, h.breaker_until) == (0, None)


def test_new_credential_resets_the_breaker() -> None:
    prev = disconnected(AUTH, breaker_backoff=7200.0, breaker_until=9000.0)
    h, _ = advance(prev, fail(AUTH, definitive=True, credential="fp-two"), 9500, P)
    assert h.credential == "fp-two"
    assert (h.breaker_backoff, h.breaker_until) == (3600, 13100)  # a fresh first period


def test_reset_breaker_lifts_it_but_keeps_doubling() -> None:
    prev = disconnected(AUTH, breaker_backoff=7200.0, breaker_until=9000.0)
    lifted = reset_breaker(prev)
    assert lifted.breaker_until is None
    assert breaker_blocks([lifted], CRED, 1000) is None
    h, _ = advance(lifted, fail(AUTH), 1000, P)
    assert (h.breaker_backoff, h.breaker_until) == (14400, 15400)


def test_breaker_blocks() -> None:
    imap = disconnected(AUTH, breaker_until=5000.0, breaker_backoff=3600.0)
    smtp = replace(
        ServiceHealth(account_id=ACCOUNT, service=Service.SMTP, credential=CRED),
        breaker_until=7000.0,
    )
    assert breaker_blocks([imap], CRED, 1000) == 5000
    assert breaker_blocks([imap, smtp], CRED, 1000) == 7000  # the latest of the shared ones
    assert breaker_blocks([imap, smtp], CRED, 6000) == 7000
    assert breaker_blocks([imap, smtp], CRED, 7000) is None  # allowed again at that instant
    assert breaker_blocks([imap, smtp], "fp-new", 1000) is None  # credential changed since
    assert breaker_blocks([], CRED, 1000) is None
    assert breaker_blocks([health()], CRED, 1000) is None


# --- account state, rules, policy ------------------------------------------------------


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ((), OK),
        ((OK,), OK),
        ((OK, DEG), DEG),
        ((DEG, OK, DISC), DISC),
        ((DISC, DISC), DISC),
    ],
)
def test_account_state_is_the_worst(states: tuple[State, ...], expected: State) -> None:
    assert account_state(health(state=s) for s in states) is expected


def test_every_cause_has_a_rule() -> None:
    assert set(RULES) == set(Cause)
    for cause, rule in RULES.items():
        assert rule.breaker == (cause in BREAKER_CAUSES)
        if cause in TRANSIENT_CAUSES:
            assert (rule.confirm, rule.banner, rule.email) == (
                Confirm.GRACE,
                Severity.WARNING,
                Email.AFTER_TRANSIENT,
            )
        elif cause in USER_ACTION_CAUSES:
            assert rule.email is Email.AT_ONCE
            expected = Severity.WARNING if cause is QUOTA else Severity.ERROR
            assert rule.banner is expected
    assert RULES[INTEG] == RULES[INTEG].__class__(Confirm.STRIKES, None, Email.NEVER, False)
    assert RULES[AUTH].confirm is Confirm.DEFINITIVE_OR_STRIKES
    assert RULES[PERM].confirm is Confirm.STRIKES


def test_policy_from_settings() -> None:
    s = ScheduleSettings(
        confirm_interval=1, transient_grace=2, recover_after=3, breaker_min=4, breaker_max=5
    )
    assert Policy.from_settings(s) == Policy(1, 2, 3, 4, 5)
    assert Policy.from_settings(ScheduleSettings()) == Policy()


# --- properties ---------------------------------------------------------------------

PREVS = [
    health(),
    health(state=OK, consecutive_successes=4, last_success_at=50.0),
    disconnected(AUTH, failures=0, consecutive_successes=1),
]


@pytest.mark.parametrize("cause", list(Cause))
@pytest.mark.parametrize("now", [0.0, 119.0, 120.0, 1799.0, 1800.0, 10**9])
@pytest.mark.parametrize("prev", PREVS[:2])
def test_a_single_non_definitive_failure_never_disconnects(
    cause: Cause, now: float, prev: ServiceHealth
) -> None:
    new, _ = advance(prev, fail(cause), now, P)
    assert new.state is DEG
    assert new.consecutive_failures == 1


def _random_result(rng: random.Random) -> ProbeResult:
    if rng.random() < 0.3:
        return success(rng.choice([CRED, CRED, CRED, "fp-two"]))
    return fail(
        rng.choice(list(Cause)),
        definitive=rng.random() < 0.3,
        retry_after=rng.choice([None, 30.0]),
        credential=rng.choice([CRED, CRED, CRED, "fp-two"]),
    )


@pytest.mark.parametrize("seed", range(20))
def test_invariants_over_random_histories(seed: int) -> None:
    rng = random.Random(seed)
    policy = rng.choice([P, R2])
    h = ServiceHealth(account_id=ACCOUNT, service=SERVICE)
    now = 0.0
    for _ in range(200):
        now += rng.choice([1.0, 60.0, 130.0, 600.0, 2000.0])
        result = _random_result(rng)
        prev = h
        h, t = advance(prev, result, now, policy)
        # a transition exactly when the state changes or the confirmed cause does
        moved = h.state is not prev.state or (h.state is DISC and h.cause is not prev.cause)
        assert (t is not None) == moved
        if t is not None:
            assert (t.old, t.new, t.cause, t.at) == (prev.state, h.state, h.cause, now)
            if h.state is not prev.state:
                assert h.since == now
        # one success recovers when recover_after is 1
        if result.ok and policy.recover_after == 1:
            assert h.state is OK
        if h.state is OK:
            assert h.cause is None and h.consecutive_failures == 0
        else:
            assert h.cause is not None
        if h.consecutive_failures:
            assert h.first_failure_at is not None and h.first_failure_at <= now
        if h.breaker_until is not None and h.breaker_until != prev.breaker_until:
            assert h.breaker_until > now and h.cause in BREAKER_CAUSES
        assert h.breaker_backoff <= policy.breaker_max
        assert h.last_probe_at == now


# --- confirm_shared: one refused password confirms IMAP and SMTP together -----------------
def _h(service: Service, state: State, cause: Cause | None, cred: str = "c1") -> ServiceHealth:
    return ServiceHealth(
        account_id="a",
        service=service,
        state=state,
        cause=cause,
        credential=cred,
        breaker_until=5000.0 if state is State.DISCONNECTED else None,
        breaker_backoff=3600.0 if state is State.DISCONNECTED else 0.0,
    )


@pytest.mark.parametrize(
    ("mine", "sibling", "confirmed"),
    [
        (
            _h(Service.SMTP, State.DEGRADED, Cause.AUTH_FAILED),
            _h(Service.IMAP, State.DISCONNECTED, Cause.AUTH_FAILED),
            True,
        ),
        (
            _h(Service.SMTP, State.DEGRADED, Cause.TIMEOUT),
            _h(Service.IMAP, State.DISCONNECTED, Cause.AUTH_FAILED),
            False,
        ),
        (
            _h(Service.SMTP, State.DEGRADED, Cause.AUTH_FAILED),
            _h(Service.IMAP, State.DISCONNECTED, Cause.OVER_QUOTA),
            False,
        ),
        (
            _h(Service.SMTP, State.DEGRADED, Cause.AUTH_FAILED, cred="other"),
            _h(Service.IMAP, State.DISCONNECTED, Cause.AUTH_FAILED),
            False,
        ),
        (
            _h(Service.SMTP, State.OK, None),
            _h(Service.IMAP, State.DISCONNECTED, Cause.AUTH_FAILED),
            False,
        ),
        (
            _h(Service.SMTP, State.DEGRADED, Cause.AUTH_FAILED),
            _h(Service.IMAP, State.DEGRADED, Cause.AUTH_FAILED),
            False,
        ),
    ],
)
def test_confirm_shared(mine: ServiceHealth, sibling: ServiceHealth, confirmed: bool) -> None:
    new, t = confirm_shared(mine, sibling, 1000.0)
    if confirmed:
        assert new.state is State.DISCONNECTED and t is not None
        assert t.old is State.DEGRADED and t.new is State.DISCONNECTED
        assert new.breaker_until == sibling.breaker_until
    else:
        assert new == mine and t is None
