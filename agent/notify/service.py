"""The notifier the daemon drives: plan (pure decisions applied to the store), deliver
(claim due outbox rows, send, mark), release a burst hold, reload settings, and numbers
for the metrics collector.

Crash safety: a message is enqueued (rendered, keyed by owner incident and step) before the
incident record says it happened, and the key makes a repeated enqueue a no-op; a row is
marked sent only after the relay accepted it, under a lease. A kill at any point therefore
repeats at most the one message whose acceptance was not yet recorded.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agent.config.types import Account, Config, NotifySettings, Owner, OwnerSettings, PortalSettings
from agent.model import Service, ServiceHealth
from agent.notify.backoff import next_attempt
from agent.notify.planner import BurstHold, Intent, Kind, OwnerIncident, Plan, decide, groups
from agent.notify.render import context, environment, fill, render, resolve_templates_dir
from agent.notify.transport import AppriseTransport, Message, NotifyError, Transport, email_url
from agent.store.base import Conflict, OutboxItem, Record, Store

log = logging.getLogger(__name__)

NS_INCIDENT = "owner_incident"
NS_BURST = "notify_burst"
NS_SRE = "notify_sre"
LEASE = 300.0  # seconds a claimed row stays with this worker


def url_id(url: str) -> str:
    """Names an Apprise URL in the outbox without storing it (it may hold credentials)."""
    return hashlib.sha256(url.encode()).hexdigest()[:12]


@dataclass
class NotifyStats:
    """Numbers the daemon's collector reads. `counts` is cumulative; `take_counts` returns
    what was added since its last call (for incrementing a prometheus Counter)."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    outbox_pending: int = 0
    outbox_oldest_pending_age: float = 0.0
    burst_active: dict[str, bool] = field(default_factory=dict)
    _taken: Counter[tuple[str, str]] = field(default_factory=Counter)

    def count(self, kind: str, result: str, n: int = 1) -> None:
        if n:
            self.counts[(kind, result)] += n

    def take_counts(self) -> dict[tuple[str, str], int]:
        out = {k: v - self._taken[k] for k, v in self.counts.items() if v > self._taken[k]}
        self._taken = Counter(self.counts)
        return out


class Notifier:
    def __init__(
        self,
        settings: NotifySettings,
        portal: PortalSettings,
        owners: Mapping[str, OwnerSettings],
        store: Store,
        transport: Transport,
        *,
        clock: Callable[[], float],
        rand: Callable[[], float],
        worker_id: str,
        templates_dir: Path | None = None,
        lease: float = LEASE,
    ) -> None:
        self.store = store
        self.transport = transport
        self._clock = clock
        self._rand = rand
        self.worker_id = worker_id
        self.lease = lease
        self.stats = NotifyStats()
        self._configure(settings, portal, owners, templates_dir)

    @classmethod
    def from_config(
        cls,
        config: Config,
        store: Store,
        *,
        clock: Callable[[], float],
        worker_id: str,
        transport: Transport | None = None,
        rand: Callable[[], float] = random.random,
    ) -> Notifier:
        return cls(
            config.notify,
            config.portal,
            config.owners,
            store,
            transport or AppriseTransport(),
            clock=clock,
            rand=rand,
            worker_id=worker_id,
            templates_dir=resolve_templates_dir(config.notify, config.path),
        )

    def _configure(
        self,
        settings: NotifySettings,
        portal: PortalSettings,
        owners: Mapping[str, OwnerSettings],
        templates_dir: Path | None,
    ) -> None:
        self.settings = settings
        self.portal = portal
        self.owners = dict(owners)
        self.templates_dir = templates_dir
        self._env = environment(templates_dir)

    def update_config(self, config: Config) -> None:
        """After a reload (validated already). Pending rows keep their rendered text."""
        self._configure(
            config.notify,
            config.portal,
            config.owners,
            resolve_templates_dir(config.notify, config.path),
        )

    # --- inputs --------------------------------------------------------------------------
    def account_removed(self, account_id: str) -> int:
        """The account left the inventory: drop pending rows that name only it."""
        return self._drop({account_id}, self._clock())

    # --- planning ------------------------------------------------------------------------
    def plan(
        self,
        now: float,
        accounts: Sequence[Account],
        healths: Mapping[str, Mapping[Service, ServiceHealth]],
        *,
        group_totals: Mapping[str, int] | None = None,
    ) -> Plan:
        """Decide and record. `accounts` may be only the owners that need planning (see
        `open_owners` and `planner.decide`), with `group_totals` from `group_sizes`."""
        inc_records = {r.key: r for r in self.store.records(NS_INCIDENT)}
        burst_records = {r.key: r for r in self.store.records(NS_BURST)}
        sre_records = {r.key: r for r in self.store.records(NS_SRE)}
        incidents = {k: OwnerIncident.from_json(k, r.value) for k, r in inc_records.items()}
        sent = {
            i.key
            for inc in incidents.values()
            if inc.open and inc.first_at is not None
            for i in self.store.outbox(owner_id=inc.owner_id, status="sent", limit=1000)
        }
        plan = decide(
            now=now,
            settings=self.settings,
            owners=self.owners,
            accounts=accounts,
            healths=healths,
            incidents=incidents,
            bursts={k: BurstHold.from_json(k, r.value) for k, r in burst_records.items()},
            sre_alerts={k: float(r.value["since"]) for k, r in sre_records.items()},
            sent_keys=frozenset(sent),
            group_totals=group_totals,
        )
        by_id = {a.id: a for a in accounts}
        # 1. cancellations, 2. enqueue, 3. state: a crash between steps repeats no message
        for prefix in plan.cancel_prefixes:
            owner_id = prefix.split("/", 1)[0]
            rows = self.store.outbox(owner_id=owner_id, status="pending", limit=1000)
            self._cancel([r for r in rows if r.key.startswith(prefix)], "recovered", now)
        if plan.dropped_accounts:
            self._drop(set(plan.dropped_accounts), now)
        for intent in plan.send:
            self._enqueue(intent, by_id, now)
        for owner_id, inc in plan.incidents.items():
            old = inc_records.get(owner_id) or Record(NS_INCIDENT, owner_id)
            self._put(replace(old, value=inc.to_json()))
            if inc.open and (owner_id not in incidents or not incidents[owner_id].open):
                log.info("owner incident opened owner=%s seq=%d", owner_id, inc.seq)
            if not inc.open:
                log.info("owner incident closed owner=%s seq=%d", owner_id, inc.seq)
        for group, hold in plan.bursts.items():
            if hold is None:
                self.store.delete_record(NS_BURST, group)
                log.info("burst ended group=%s", group)
            else:
                old = burst_records.get(group) or Record(NS_BURST, group)
                if old.version == 0:
                    log.warning(
                        "burst hold group=%s broken=%d total=%d", group, hold.broken, hold.total
                    )
                self._put(replace(old, value=hold.to_json()))
        for account_id, since in plan.sre_alerts.items():
            if since is None:
                self.store.delete_record(NS_SRE, account_id)
            else:
                old = sre_records.get(account_id) or Record(NS_SRE, account_id)
                self._put(replace(old, value={"since": since}))
        self._refresh(now)
        return plan

    def open_owners(self) -> set[str]:
        """Owners with an owner incident open: they need planning even when all their
        accounts work again (to close it, cancel reminders, say "reconnected")."""
        return {
            r.key
            for r in self.store.records(NS_INCIDENT)
            if OwnerIncident.from_json(r.key, r.value).open
        }

    def _put(self, record: Record) -> None:
        try:
            self.store.put_record(record)
        except Conflict:
            log.info("notify record changed meanwhile ns=%s key=%s", record.namespace, record.key)

    def _enqueue(self, intent: Intent, accounts: Mapping[str, Account], now: float) -> None:
        owner = self._owner(intent.owner_id, accounts)
        rendered = render(
            self._env, intent.kind, context(intent, accounts, self.portal, owner, self.settings)
        )
        base: dict[str, Any] = {
            "subject": rendered.subject,
            "html": rendered.html,
            "text": rendered.text,
            "step": intent.step,
        }
        targets: list[tuple[str, dict[str, Any]]] = []
        if intent.kind in (Kind.SRE, Kind.BURST):
            for url in self.settings.sre:
                targets.append(
                    (f"{intent.key}#{url_id(url)}", {"target": "url", "url_id": url_id(url)})
                )
        else:
            if self.settings.email and owner is not None and owner.email:
                unsub = fill(self.portal.unsubscribe_url, account_id="", owner_id=intent.owner_id)
                targets.append(
                    (
                        intent.key,
                        {
                            "target": "email",
                            "to": owner.email,
                            "headers": {
                                "List-Unsubscribe": f"<{unsub}>",
                                "X-Syncwatch-Key": intent.key,
                            },
                        },
                    )
                )
            for url in self.owners.get(intent.owner_id, OwnerSettings()).notify_urls:
                targets.append(
                    (f"{intent.key}#{url_id(url)}", {"target": "url", "url_id": url_id(url)})
                )
        if not targets:
            log.warning("notify no target key=%s kind=%s", intent.key, intent.kind.value)
        for key, target in targets:
            item = OutboxItem(
                key=key,
                kind=intent.kind.value,
                owner_id=intent.owner_id,
                account_ids=tuple(b.account_id for b in intent.accounts),
                payload={**base, **target},
                status="pending",
                created_at=now,
                not_before=now,
            )
            if self.store.enqueue(item):
                log.info("notify enqueued key=%s kind=%s", key, intent.kind.value)

    def _owner(self, owner_id: str, accounts: Mapping[str, Account]) -> Owner | None:
        for a in accounts.values():
            if a.owner.id == owner_id:
                return a.owner
        o = self.owners.get(owner_id)
        if o is not None and o.email:
            return Owner(owner_id, o.email, o.name)
        return None

    def _cancel(self, rows: Sequence[OutboxItem], reason: str, now: float) -> int:
        n = 0
        for row in rows:
            if self.store.cancel([row.key], reason, now):
                self.stats.count(row.kind, "cancelled")
                log.info("notify cancelled key=%s reason=%s", row.key, reason)
                n += 1
        return n

    def _drop(self, account_ids: set[str], now: float) -> int:
        rows: dict[str, OutboxItem] = {}
        for a in account_ids:
            for r in self.store.outbox(account_id=a, status="pending", limit=1000):
                if set(r.account_ids) <= account_ids:
                    rows[r.key] = r
        return self._cancel(list(rows.values()), "account removed", now)

    # --- delivery ------------------------------------------------------------------------
    async def deliver(self, now: float) -> int:
        """Send what is due; returns how many the relay accepted."""
        sent = 0
        for item in self.store.claim_due(now, self.worker_id, self.lease):
            if item.lease_until is not None and self._clock() >= item.lease_until:
                # a slow relay used up the lease: another worker may hold the row by now;
                # leave it (unsent, unmarked) to whoever claims it next
                log.info("notify lease expired before sending key=%s", item.key)
                continue
            try:
                await self.transport.send(self._message(item))
            except Exception as e:  # one bad row must not stop the others
                err = (
                    e
                    if isinstance(e, NotifyError)
                    else NotifyError(f"{item.key}: {type(e).__name__}")
                )
                at = self._clock()
                retry = next_attempt(
                    attempts=item.attempts + 1,
                    created_at=item.created_at,
                    now=at,
                    max_attempts=self.settings.max_attempts,
                    max_age=self.settings.max_age,
                    permanent=err.permanent,
                    rand=self._rand,
                    base=self.settings.retry_base,
                )
                self.store.mark_failed(item.key, self.worker_id, str(err), at, retry)
                result = "failed" if retry is not None else "gave_up"
                self.stats.count(item.kind, result)
                log.warning(
                    "notify %s key=%s attempt=%d error=%s",
                    result,
                    item.key,
                    item.attempts + 1,
                    err,
                )
                continue
            self.store.mark_sent(item.key, self.worker_id, self._clock())
            self.stats.count(item.kind, "sent")
            log.info("notify sent key=%s kind=%s", item.key, item.kind)
            sent += 1
        self._refresh(self._clock())
        return sent

    def _message(self, item: OutboxItem) -> Message:
        p = item.payload
        if p.get("target") == "email":
            if not self.settings.email:
                raise NotifyError(f"{item.key}: notify.email is not set", permanent=True)
            url = email_url(self.settings.email, str(p["to"]), dict(p.get("headers", {})))
            return Message(url=url, title=str(p["subject"]), body=str(p["html"]), key=item.key)
        urls = list(self.settings.sre) + [u for o in self.owners.values() for u in o.notify_urls]
        for url in urls:
            if url_id(url) == p.get("url_id"):
                return Message(
                    url=url, title=str(p["subject"]), body=str(p["text"]), html=False, key=item.key
                )
        raise NotifyError(f"{item.key}: its Apprise URL is no longer configured", permanent=True)

    # --- bursts and numbers ----------------------------------------------------------------
    def release_burst(self, provider: str) -> int:
        """Let held owner emails go out (at the next plan); returns how many broken
        accounts the released holds covered (0: no such burst)."""
        n = 0
        for r in self.store.records(NS_BURST):
            if r.key in (provider, f"provider:{provider}", f"host:{provider}"):
                hold = BurstHold.from_json(r.key, r.value)
                if not hold.released:
                    self._put(replace(r, value=replace(hold, released=True).to_json()))
                    log.warning("burst released group=%s broken=%d", r.key, hold.broken)
                    n += hold.broken
        self._refresh(self._clock())
        return n

    def burst_providers(self) -> list[str]:
        """Groups whose owner emails are held now ("gmail", "host:imap.example.com")."""
        return sorted(
            g.removeprefix("provider:") for g, on in self.stats.burst_active.items() if on
        )

    def _refresh(self, now: float) -> None:
        pending = self.store.outbox(status="pending", limit=100_000)
        self.stats.outbox_pending = len(pending)
        oldest = min((p.created_at for p in pending), default=now)
        self.stats.outbox_oldest_pending_age = max(0.0, now - oldest)
        self.stats.burst_active = {
            r.key: not bool(r.value.get("released")) for r in self.store.records(NS_BURST)
        }


def group_sizes(accounts: Sequence[Account]) -> dict[str, int]:
    """How many accounts each burst group (provider, host) has: the guard's denominators."""
    sizes: Counter[str] = Counter()
    for a in accounts:
        sizes.update(groups(a))
    return dict(sizes)
