"""Builders shared by the notify tests: accounts, healths, and an in-memory planner loop."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from agent.config.types import (
    Account,
    MailServer,
    NotifySettings,
    Owner,
    OwnerSettings,
    Security,
)
from agent.model import Cause, Service, ServiceHealth, State
from agent.notify.planner import BurstHold, Intent, OwnerIncident, decide

DAY = 86400.0
T0 = 1_700_000_000.0


def account(
    aid: str, owner: str = "o1", provider: str = "generic", host: str | None = None
) -> Account:
    server = MailServer(
        host=host or f"imap.{aid}.example", port=993, security=Security.TLS, username=aid
    )
    return Account(
        id=aid,
        owner=Owner(owner, f"{owner}@example.com", owner.upper()),
        provider=provider,
        address=f"{aid}@example.com",
        imap=server,
    )


def broken(
    aid: str, cause: Cause = Cause.AUTH_FAILED, at: float = T0, service: Service = Service.IMAP
) -> dict[Service, ServiceHealth]:
    return {
        service: ServiceHealth(
            account_id=aid,
            service=service,
            state=State.DISCONNECTED,
            cause=cause,
            since=at,
            first_failure_at=at,
        )
    }


@dataclass
class Sim:
    """Runs decide() the way the Notifier does, keeping its state in memory."""

    settings: NotifySettings = field(default_factory=NotifySettings)
    owners: Mapping[str, OwnerSettings] = field(default_factory=dict)
    incidents: dict[str, OwnerIncident] = field(default_factory=dict)
    bursts: dict[str, BurstHold] = field(default_factory=dict)
    sre: dict[str, float] = field(default_factory=dict)
    sent: list[tuple[float, Intent]] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    dropped: set[str] = field(default_factory=set)

    def run(
        self,
        now: float,
        accounts: list[Account],
        healths: Mapping[str, Mapping[Service, ServiceHealth]],
        group_totals: Mapping[str, int] | None = None,
    ) -> list[Intent]:
        keys = frozenset(i.key for _, i in self.sent)
        plan = decide(
            now=now,
            settings=self.settings,
            owners=self.owners,
            accounts=accounts,
            healths=healths,
            incidents=self.incidents,
            bursts=self.bursts,
            sre_alerts=self.sre,
            sent_keys=keys,
            group_totals=group_totals,
        )
        self.cancelled += plan.cancel_prefixes
        self.dropped |= plan.dropped_accounts
        new = [i for i in plan.send if i.key not in keys]
        self.sent += [(now, i) for i in new]
        self.incidents.update(plan.incidents)
        for g, h in plan.bursts.items():
            if h is None:
                self.bursts.pop(g, None)
            else:
                self.bursts[g] = h
        for a, s in plan.sre_alerts.items():
            if s is None:
                self.sre.pop(a, None)
            else:
                self.sre[a] = s
        return new

    def release(self, group: str) -> None:
        self.bursts[group] = replace(self.bursts[group], released=True)

    def owner_sent(self) -> list[tuple[float, Intent]]:
        return [(t, i) for t, i in self.sent if i.owner_id]

    def steps(self) -> list[str]:
        return [i.step for _, i in self.owner_sent()]
