"""What to tell whom, and when: a pure function of the inventory, the health of every
service, and the notifier's own remembered state. No I/O, no clock, no templates.

`decide` returns a Plan: state to write back (owner incidents, burst holds, SRE alerts),
messages to enqueue now (rendered later by the caller), and outbox rows to cancel.
Messages are enqueued when they are due, not ahead of time, so they name what is broken
at that moment; the outbox keys make every step happen at most once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from agent.config.types import Account, NotifySettings, OwnerSettings
from agent.model import Cause, Service, ServiceHealth, State
from agent.state import RULES, Email


class Kind(StrEnum):
    FIRST = "first"
    REMINDER = "reminder"
    RECOVERY = "recovery"
    TRANSIENT = "transient"
    SRE = "sre"  # integration_error: our fault, the SRE channel hears of it, never the owner
    BURST = "burst"  # many accounts of one provider or host broke at once


def cause_class(cause: Cause | None) -> str:
    """ "action" (owner must act), "transient" (email only after transient_after), "sre"
    (integration_error: never the owner) or "none"; agent.state.RULES says which."""
    if cause is None:
        return "none"
    rule = RULES[cause].email
    if rule is Email.AT_ONCE:
        return "action"
    if rule is Email.AFTER_TRANSIENT:
        return "transient"
    return "sre" if cause is Cause.INTEGRATION_ERROR else "none"


@dataclass(frozen=True)
class Broken:
    """One account as a message names it."""

    account_id: str
    services: tuple[tuple[Service, Cause, str | None], ...]  # (service, cause, hint)
    action_needed: bool
    since: float


@dataclass(frozen=True)
class OwnerIncident:
    """From the first confirmed break on any of an owner's accounts until all work again.
    `seq` numbers the owner's incidents; it survives closing so outbox keys stay unique."""

    owner_id: str
    seq: int
    open: bool
    opened_at: float
    first_at: float | None = None  # when the first message was enqueued
    reminders_done: int = 0  # reminder slots used (sent or skipped)
    named: tuple[str, ...] = ()  # accounts named in a message of this incident
    closed_at: float | None = None

    def key(self, step: str) -> str:
        return f"{self.owner_id}/{self.seq}/{step}"

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "open": self.open,
            "opened_at": self.opened_at,
            "first_at": self.first_at,
            "reminders_done": self.reminders_done,
            "named": list(self.named),
            "closed_at": self.closed_at,
        }

    @classmethod
    def from_json(cls, owner_id: str, v: Mapping[str, Any]) -> OwnerIncident:
        return cls(
            owner_id=owner_id,
            seq=int(v["seq"]),
            open=bool(v["open"]),
            opened_at=float(v["opened_at"]),
            first_at=None if v.get("first_at") is None else float(v["first_at"]),
            reminders_done=int(v.get("reminders_done", 0)),
            named=tuple(v.get("named", ())),
            closed_at=None if v.get("closed_at") is None else float(v["closed_at"]),
        )


@dataclass(frozen=True)
class BurstHold:
    """Owner emails for accounts of `group` ("provider:NAME" or "host:NAME") wait."""

    group: str
    since: float
    broken: int
    total: int
    released: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "broken": self.broken,
            "total": self.total,
            "released": self.released,
        }

    @classmethod
    def from_json(cls, group: str, v: Mapping[str, Any]) -> BurstHold:
        return cls(
            group=group,
            since=float(v["since"]),
            broken=int(v["broken"]),
            total=int(v["total"]),
            released=bool(v.get("released", False)),
        )


@dataclass(frozen=True)
class Intent:
    """A message to enqueue now. Owner messages name accounts; SRE ones a group or account."""

    key: str
    kind: Kind
    owner_id: str  # "" for SRE messages
    step: str  # first | reminder-N | recovery | burst | integration_error
    accounts: tuple[Broken, ...] = ()
    new_accounts: tuple[str, ...] = ()  # named for the first time in this incident
    group: str | None = None
    broken: int = 0
    total: int = 0


@dataclass(frozen=True)
class Plan:
    incidents: dict[str, OwnerIncident] = field(default_factory=dict)  # changed ones
    bursts: dict[str, BurstHold | None] = field(default_factory=dict)  # None: delete
    sre_alerts: dict[str, float | None] = field(default_factory=dict)  # None: delete
    send: list[Intent] = field(default_factory=list)
    cancel_prefixes: list[str] = field(default_factory=list)  # pending rows of closed incidents
    dropped_accounts: frozenset[str] = frozenset()  # left the inventory
    wake_at: float | None = None  # call decide again by then at the latest


def _disconnected(healths: Mapping[Service, ServiceHealth]) -> list[ServiceHealth]:
    return [h for h in healths.values() if h.state is State.DISCONNECTED]


def _start(h: ServiceHealth, now: float) -> float:
    return h.first_failure_at if h.first_failure_at is not None else (h.since or now)


def _broken(
    account: Account, healths: Mapping[Service, ServiceHealth], now: float, transient_after: float
) -> tuple[Broken | None, float | None]:
    """The account as an owner message would name it (None: nothing to tell the owner yet),
    and when an unqualified transient break would qualify."""
    down = _disconnected(healths)
    action = [h for h in down if cause_class(h.cause) == "action"]
    transient = [h for h in down if cause_class(h.cause) == "transient"]
    qualified = [h for h in transient if now - _start(h, now) >= transient_after]
    waiting = [_start(h, now) + transient_after for h in transient if h not in qualified]
    wake = min(waiting) if waiting else None
    shown = action + qualified
    if not shown:
        return None, wake
    order = {Service.SMTP: 0, Service.IMAP: 1, Service.CALDAV: 2}
    shown.sort(key=lambda h: order[h.service])
    since = min((h.since or now) for h in action) if action else min(_start(h, now) for h in shown)
    return (
        Broken(
            account_id=account.id,
            services=tuple((h.service, h.cause, h.hint) for h in shown if h.cause is not None),
            action_needed=bool(action),
            since=since,
        ),
        wake,
    )


def groups(account: Account) -> list[str]:
    """Burst groups of an account: its provider (unless "generic") and each host it uses."""
    out = [] if account.provider in ("", "generic") else [f"provider:{account.provider}"]
    for host in sorted({s.host for s in account.services().values() if s.host}):
        out.append(f"host:{host}")
    return out


def _bursts(
    now: float,
    settings: NotifySettings,
    accounts: Sequence[Account],
    healths: Mapping[str, Mapping[Service, ServiceHealth]],
    holds: Mapping[str, BurstHold],
    plan: Plan,
    group_totals: Mapping[str, int] | None = None,
) -> dict[str, BurstHold]:
    """Update burst holds; returns the active ones. `group_totals`: how many accounts
    each group has in the whole inventory, when `accounts` is only a part of it."""
    cfg = settings.burst
    members: dict[str, list[Account]] = {}
    for a in accounts:
        for g in groups(a):
            members.setdefault(g, []).append(a)
    active = dict(holds)
    for g in list(active):
        if g not in members:
            del active[g]
            plan.bursts[g] = None
    # providers first: one outage of one provider trips one hold, not one per host too
    for g in sorted(members, key=lambda g: (not g.startswith("provider:"), g)):
        group = members[g]
        total = max(len(group), group_totals.get(g, 0)) if group_totals else len(group)
        down = [a for a in group if _disconnected(healths.get(a.id, {}))]
        hold = active.get(g)
        if hold is not None:
            if len(down) < cfg.count or len(down) / total < cfg.share:
                del active[g]
                plan.bursts[g] = None
            elif hold.broken != len(down) or hold.total != total:
                active[g] = plan.bursts[g] = replace(hold, broken=len(down), total=total)
            continue
        covered = {a.id for h in active.values() for a in members.get(h.group, ()) if h.group != g}
        recent = [
            a
            for a in down
            if a.id not in covered
            and min(_start(h, now) for h in _disconnected(healths[a.id])) >= now - cfg.window
        ]
        if len(recent) >= cfg.count and len(recent) / total >= cfg.share:
            active[g] = plan.bursts[g] = BurstHold(g, now, len(down), total)
            if settings.sre:
                plan.send.append(
                    Intent(
                        key=f"sre/burst/{g}/{int(now)}",
                        kind=Kind.BURST,
                        owner_id="",
                        step="burst",
                        group=g,
                        broken=len(down),
                        total=total,
                    )
                )
    return active


def decide(
    *,
    now: float,
    settings: NotifySettings,
    owners: Mapping[str, OwnerSettings],
    accounts: Sequence[Account],
    healths: Mapping[str, Mapping[Service, ServiceHealth]],
    incidents: Mapping[str, OwnerIncident],
    bursts: Mapping[str, BurstHold],
    sre_alerts: Mapping[str, float],
    sent_keys: frozenset[str] = frozenset(),
    group_totals: Mapping[str, int] | None = None,
) -> Plan:
    """One planning pass. `sent_keys`: outbox keys of open incidents already accepted by the
    relay (a recovery message follows only a first message that really went out).

    `accounts` may be a part of the inventory (a large fleet plans only the owners with
    something broken or an incident open): then every account of each owner it names must
    be in it, and `group_totals` gives the burst groups' sizes in the whole inventory."""
    plan = Plan()
    wakes: list[float] = []
    active = _bursts(now, settings, accounts, healths, bursts, plan, group_totals)
    held_groups = {g for g, h in active.items() if not h.released}

    by_owner: dict[str, list[Account]] = {}
    for a in accounts:
        by_owner.setdefault(a.owner.id, []).append(a)
    inventory = {a.id for a in accounts}

    # integration_error: the SRE channel, once per break
    for a in accounts:
        ie = [h for h in _disconnected(healths.get(a.id, {})) if cause_class(h.cause) == "sre"]
        if ie:
            since = min(h.since or now for h in ie)
            if sre_alerts.get(a.id) != since and settings.sre:
                plan.sre_alerts[a.id] = since
                plan.send.append(
                    Intent(
                        key=f"sre/integration_error/{a.id}/{int(since)}",
                        kind=Kind.SRE,
                        owner_id="",
                        step="integration_error",
                        accounts=(
                            Broken(
                                a.id,
                                tuple((h.service, Cause.INTEGRATION_ERROR, h.hint) for h in ie),
                                False,
                                since,
                            ),
                        ),
                    )
                )
        elif a.id in sre_alerts:
            plan.sre_alerts[a.id] = None
    for account_id in sre_alerts:
        if account_id not in inventory:
            plan.sre_alerts[account_id] = None

    dropped: set[str] = set()
    for owner_id in sorted(set(by_owner) | set(incidents)):
        owned = by_owner.get(owner_id, [])
        muted = owners.get(owner_id, OwnerSettings()).mute
        inc = incidents.get(owner_id)
        if inc is not None and inc.open:
            dropped |= {x for x in inc.named if x not in inventory}
        notifiable: list[Broken] = []
        for a in owned:
            b, wake = _broken(a, healths.get(a.id, {}), now, settings.transient_after)
            if wake is not None:
                wakes.append(wake)
            if b is not None and not held_groups.intersection(groups(a)):
                notifiable.append(b)
        any_down = any(_disconnected(healths.get(a.id, {})) for a in owned)

        if inc is not None and inc.open and (muted or not any_down):
            plan.cancel_prefixes.append(inc.key(""))
            still_here = tuple(x for x in inc.named if x in inventory)
            closed = replace(inc, open=False, closed_at=now)
            plan.incidents[owner_id] = closed
            if not muted and settings.on_recovery and still_here and inc.key("first") in sent_keys:
                plan.send.append(
                    Intent(
                        key=inc.key("recovery"),
                        kind=Kind.RECOVERY,
                        owner_id=owner_id,
                        step="recovery",
                        accounts=tuple(Broken(x, (), False, now) for x in still_here),
                    )
                )
            continue
        if muted:
            continue
        if inc is None or not inc.open:
            if not notifiable:
                continue
            inc = OwnerIncident(
                owner_id=owner_id,
                seq=(inc.seq + 1) if inc is not None else 1,
                open=True,
                opened_at=min(now, min(b.since for b in notifiable)),
            )
            plan.incidents[owner_id] = inc
        if inc.first_at is None:
            due = inc.opened_at + settings.coalesce
            if now < due:
                wakes.append(due)
                continue
            if not notifiable:
                continue
            plan.send.append(_owner_intent(inc, "first", notifiable))
            plan.incidents[owner_id] = replace(
                inc, first_at=now, named=_merge(inc.named, notifiable)
            )
            if settings.reminders:
                wakes.append(now + settings.reminders[0])
            continue
        slots = [inc.first_at + d for d in settings.reminders]
        if inc.reminders_done >= len(slots):
            continue
        if now < slots[inc.reminders_done]:
            wakes.append(slots[inc.reminders_done])
            continue
        last = max(i for i, t in enumerate(slots) if t <= now)
        updated = replace(inc, reminders_done=last + 1)
        if notifiable:
            plan.send.append(_owner_intent(inc, f"reminder-{last + 1}", notifiable))
            updated = replace(updated, named=_merge(inc.named, notifiable))
        plan.incidents[owner_id] = updated
        if last + 1 < len(slots):
            wakes.append(slots[last + 1])

    future = [w for w in wakes if w > now]
    return replace(
        plan, dropped_accounts=frozenset(dropped), wake_at=min(future) if future else None
    )


def _merge(named: tuple[str, ...], broken: Sequence[Broken]) -> tuple[str, ...]:
    out = list(named)
    out += [b.account_id for b in broken if b.account_id not in out]
    return tuple(out)


def _owner_intent(inc: OwnerIncident, step: str, broken: Sequence[Broken]) -> Intent:
    action = any(b.action_needed for b in broken)
    kind = Kind.TRANSIENT if not action else (Kind.FIRST if step == "first" else Kind.REMINDER)
    return Intent(
        key=inc.key(step),
        kind=kind,
        owner_id=inc.owner_id,
        step=step,
        accounts=tuple(broken),
        new_accounts=tuple(b.account_id for b in broken if b.account_id not in inc.named)
        if step != "first"
        else (),
    )
