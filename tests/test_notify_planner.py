"""The pure planner, driven with an injected clock (no store, no SMTP)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from agent.config.types import Account, BurstSettings, NotifySettings, OwnerSettings
from agent.model import Cause, Service, ServiceHealth
from agent.notify.planner import Kind
from tests.test_notify_support import DAY, T0, Sim, account, broken


def tick(
    sim: Sim,
    start: float,
    end: float,
    step: float,
    accounts: list[Account],
    healths: Mapping[str, Mapping[Service, ServiceHealth]],
) -> None:
    t = start
    while t <= end:
        sim.run(t, accounts, healths)
        t += step


def test_it_sends_one_first_message_after_the_coalescing_window() -> None:
    sim = Sim()
    a = account("a1")
    healths = {"a1": broken("a1")}
    assert sim.run(T0, [a], healths) == []
    assert sim.run(T0 + 119, [a], healths) == []
    [first] = sim.run(T0 + 120, [a], healths)
    assert (first.kind, first.step, first.key) == (Kind.FIRST, "first", "o1/1/first")
    assert [b.account_id for b in first.accounts] == ["a1"]
    assert first.accounts[0].services == ((Service.IMAP, Cause.AUTH_FAILED, None),)
    tick(sim, T0 + 121, T0 + 3600, 60, [a], healths)
    assert sim.steps() == ["first"]


def test_it_names_two_accounts_breaking_within_the_window_in_one_message() -> None:
    sim = Sim()
    accts = [account("a1"), account("a2")]
    sim.run(T0, accts, {"a1": broken("a1")})
    both = {"a1": broken("a1"), "a2": broken("a2", Cause.OVER_QUOTA, T0 + 60)}
    sim.run(T0 + 60, accts, both)
    tick(sim, T0 + 61, T0 + 600, 30, accts, both)
    [(_, first)] = sim.owner_sent()
    assert sorted(b.account_id for b in first.accounts) == ["a1", "a2"]


def test_a_later_break_is_named_in_the_next_reminder() -> None:
    sim = Sim()
    accts = [account("a1"), account("a2")]
    one = {"a1": broken("a1")}
    tick(sim, T0, T0 + 300, 60, accts, one)
    both = {**one, "a2": broken("a2", at=T0 + 3600)}
    tick(sim, T0 + 3600, T0 + DAY + 1200, 600, accts, both)
    assert sim.steps() == ["first", "reminder-1"]
    reminder = sim.owner_sent()[1][1]
    assert sorted(b.account_id for b in reminder.accounts) == ["a1", "a2"]
    assert reminder.new_accounts == ("a2",)


def test_reminders_follow_the_cadence_from_the_first_email_then_stop() -> None:
    sim = Sim()
    a = account("a1")
    h = {"a1": broken("a1")}
    tick(sim, T0, T0 + 30 * DAY, 3600, [a], h)
    sent = sim.owner_sent()
    assert [i.step for _, i in sent] == ["first", *(f"reminder-{n}" for n in (1, 2, 3, 4))]
    first_at = sent[0][0]
    assert [t - first_at for t, _ in sent[1:]] == [1 * DAY, 3 * DAY, 7 * DAY, 14 * DAY]
    assert all(i.kind is Kind.REMINDER for _, i in sent[1:])


def test_a_daemon_down_for_days_sends_one_reminder_not_a_pile() -> None:
    sim = Sim()
    a = account("a1")
    h = {"a1": broken("a1")}
    tick(sim, T0, T0 + 300, 60, [a], h)
    sim.run(T0 + 8 * DAY, [a], h)
    assert sim.steps() == ["first", "reminder-3"]


@pytest.mark.parametrize("on_recovery", [False, True])
def test_recovery_cancels_pending_reminders(on_recovery: bool) -> None:
    sim = Sim(settings=NotifySettings(on_recovery=on_recovery))
    a = account("a1")
    tick(sim, T0, T0 + 300, 60, [a], {"a1": broken("a1")})
    sim.run(T0 + 3600, [a], {})
    assert sim.cancelled == ["o1/1/"]
    tick(sim, T0 + 3600, T0 + 20 * DAY, 3600, [a], {})
    expected = ["first", "recovery"] if on_recovery else ["first"]
    assert sim.steps() == expected
    if on_recovery:
        assert sim.owner_sent()[1][1].kind is Kind.RECOVERY


def test_no_recovery_message_when_the_first_never_went_out() -> None:
    sim = Sim(settings=NotifySettings(on_recovery=True))
    a = account("a1")
    sim.run(T0, [a], {"a1": broken("a1")})
    sim.run(T0 + 60, [a], {})
    assert sim.steps() == []


def test_a_new_break_after_recovery_is_a_new_incident() -> None:
    sim = Sim()
    a = account("a1")
    tick(sim, T0, T0 + 300, 60, [a], {"a1": broken("a1")})
    sim.run(T0 + 400, [a], {})
    tick(sim, T0 + 500, T0 + 800, 60, [a], {"a1": broken("a1", at=T0 + 500)})
    assert [i.key for _, i in sim.owner_sent()] == ["o1/1/first", "o1/2/first"]


def test_a_transient_cause_waits_for_transient_after_then_says_no_action_needed() -> None:
    sim = Sim()
    a = account("a1")
    h = {"a1": broken("a1", Cause.SERVER_UNAVAILABLE)}
    tick(sim, T0, T0 + DAY - 1, 3600, [a], h)
    assert sim.steps() == []
    tick(sim, T0 + DAY, T0 + DAY + 600, 60, [a], h)
    [(_, msg)] = sim.owner_sent()
    assert msg.kind is Kind.TRANSIENT
    assert not msg.accounts[0].action_needed


def test_integration_error_never_emails_the_owner() -> None:
    sim = Sim(settings=NotifySettings(sre=("json://127.0.0.1:1/",)))
    a = account("a1")
    tick(sim, T0, T0 + 30 * DAY, 3600, [a], {"a1": broken("a1", Cause.INTEGRATION_ERROR)})
    assert sim.owner_sent() == []
    assert [i.kind for _, i in sim.sent] == [Kind.SRE]  # the SRE channel hears once


def test_a_muted_owner_gets_nothing() -> None:
    sim = Sim(owners={"o1": OwnerSettings(mute=True)})
    a = account("a1")
    tick(sim, T0, T0 + 10 * DAY, 3600, [a], {"a1": broken("a1")})
    assert sim.sent == []


def test_muting_an_owner_mid_incident_cancels_what_is_pending() -> None:
    sim = Sim()
    a = account("a1")
    h = {"a1": broken("a1")}
    tick(sim, T0, T0 + 300, 60, [a], h)
    sim.owners = {"o1": OwnerSettings(mute=True)}
    tick(sim, T0 + 400, T0 + 20 * DAY, 3600, [a], h)
    assert sim.steps() == ["first"]
    assert sim.cancelled == ["o1/1/"]


def test_removing_an_account_drops_its_part_of_the_incident() -> None:
    sim = Sim(settings=NotifySettings(on_recovery=True))
    a1, a2 = account("a1"), account("a2")
    h = {"a1": broken("a1"), "a2": broken("a2")}
    tick(sim, T0, T0 + 300, 60, [a1, a2], h)
    sim.run(T0 + 400, [a2], {"a2": h["a2"]})
    assert sim.dropped == {"a1"}
    tick(sim, T0 + 500, T0 + DAY + 600, 3600, [a2], {"a2": h["a2"]})
    reminder = sim.owner_sent()[1][1]
    assert [b.account_id for b in reminder.accounts] == ["a2"]
    sim.run(T0 + 2 * DAY, [], {})  # the last one goes too: closed, no "all good" for it
    assert sim.steps() == ["first", "reminder-1"]


def test_removing_the_only_broken_account_closes_without_a_recovery_message() -> None:
    sim = Sim(settings=NotifySettings(on_recovery=True))
    a1, a2 = account("a1"), account("a2")
    tick(sim, T0, T0 + 300, 60, [a1, a2], {"a1": broken("a1")})
    sim.run(T0 + 400, [a2], {})
    assert not sim.incidents["o1"].open
    assert sim.steps() == ["first"]


def gmail_fleet(n: int) -> list[Account]:
    return [
        account(f"g{i}", owner=f"o{i}", provider="gmail", host="imap.gmail.com") for i in range(n)
    ]


def test_a_burst_holds_owner_emails_and_tells_the_sre_channel_once() -> None:
    sim = Sim(settings=NotifySettings(sre=("json://127.0.0.1:1/",)))
    fleet = gmail_fleet(50)
    h = {a.id: broken(a.id, at=T0 + i) for i, a in enumerate(fleet[:20])}
    tick(sim, T0 + 20, T0 + 3 * DAY, 600, fleet, h)
    assert sim.owner_sent() == []
    [(_, alert)] = sim.sent
    assert (alert.kind, alert.group, alert.broken, alert.total) == (
        Kind.BURST,
        "provider:gmail",
        20,
        50,
    )


def test_released_burst_emails_go_out_once() -> None:
    sim = Sim(settings=NotifySettings(sre=("json://127.0.0.1:1/",)))
    fleet = gmail_fleet(50)
    h = {a.id: broken(a.id, at=T0) for a in fleet[:20]}
    tick(sim, T0, T0 + 600, 60, fleet, h)
    sim.release("provider:gmail")
    tick(sim, T0 + 660, T0 + 3600, 60, fleet, h)
    firsts = [i for _, i in sim.owner_sent()]
    assert sorted(i.owner_id for i in firsts) == sorted(f"o{i}" for i in range(20))
    assert all(i.step == "first" for i in firsts)
    assert len([i for _, i in sim.sent if i.kind is Kind.BURST]) == 1


def test_owner_emails_follow_when_the_burst_ends() -> None:
    sim = Sim()
    fleet = gmail_fleet(50)
    h = {a.id: broken(a.id, at=T0) for a in fleet[:20]}
    tick(sim, T0, T0 + 600, 60, fleet, h)
    assert sim.bursts and sim.owner_sent() == []
    still = {"g0": h["g0"]}  # the rest recovered: the burst is over, g0 is told
    tick(sim, T0 + 660, T0 + 1200, 60, fleet, still)
    assert not sim.bursts
    assert [i.owner_id for _, i in sim.owner_sent()] == ["o0"]


@pytest.mark.parametrize(
    ("fleet", "down", "burst"),
    [
        (3, 1, False),  # a small fleet never trips it by one account
        (3, 3, False),  # every account, but fewer than `count`
        (200, 20, False),  # enough accounts, but only 10% of the provider
        (100, 20, True),
        (50, 19, False),
    ],
)
def test_both_burst_thresholds_must_be_reached(fleet: int, down: int, burst: bool) -> None:
    sim = Sim(settings=NotifySettings(burst=BurstSettings(count=20, share=0.2)))
    accts = gmail_fleet(fleet)
    h = {a.id: broken(a.id, at=T0) for a in accts[:down]}
    tick(sim, T0, T0 + 600, 60, accts, h)
    assert bool(sim.bursts) is burst
    assert len(sim.owner_sent()) == (0 if burst else down)


def test_old_breaks_outside_the_window_do_not_trip_the_burst() -> None:
    sim = Sim()
    accts = gmail_fleet(50)
    h = {a.id: broken(a.id, at=T0 + i * 1000) for i, a in enumerate(accts[:20])}
    sim.run(T0 + 20 * 1000, accts, h)
    assert not sim.bursts


def test_wake_at_says_when_the_next_decision_is_due() -> None:
    from agent.notify.planner import decide

    a = account("a1")
    plan = decide(
        now=T0,
        settings=NotifySettings(),
        owners={},
        accounts=[a],
        healths={"a1": broken("a1")},
        incidents={},
        bursts={},
        sre_alerts={},
    )
    assert plan.wake_at == T0 + 120


@pytest.mark.parametrize(("fleet", "down"), [(100, 20), (200, 20), (3, 1)])
def test_planning_only_the_owners_in_trouble_decides_like_planning_everyone(
    fleet: int, down: int
) -> None:
    """The daemon plans only owners with something broken or an incident open, and gives
    the burst guard the groups' sizes: the outcome is the same as planning the fleet."""
    from agent.notify.service import group_sizes

    settings = NotifySettings(sre=("json://127.0.0.1:1/",), on_recovery=True)
    accts = gmail_fleet(fleet)
    h = {a.id: broken(a.id, at=T0) for a in accts[:down]}
    full, part = Sim(settings=settings), Sim(settings=settings)
    totals = group_sizes(accts)
    for t in range(int(T0), int(T0 + 3600), 60):
        healths = h if t < T0 + 1800 else {}  # everyone recovers half-way
        full.run(float(t), accts, healths)
        troubled = {a.owner.id for a in accts if a.id in healths} | {
            o for o, inc in part.incidents.items() if inc.open
        }
        part.run(float(t), [a for a in accts if a.owner.id in troubled], healths, totals)
    assert [(t, i.key, i.kind) for t, i in part.sent] == [(t, i.key, i.kind) for t, i in full.sent]
    assert part.sent  # something happened at all
