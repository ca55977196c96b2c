"""The health of every account and service: probe results go in, through the pure state
machine, into the store; state changes open and close incidents, are logged once, and
are handed to whoever listens (the notifier, metrics)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import replace

from agent.config.types import Account
from agent.model import ProbeResult, Service, ServiceHealth, State, Transition
from agent.state import Policy, advance, breaker_blocks, confirm_shared, reset_breaker
from agent.store.base import Conflict, Store

log = logging.getLogger(__name__)


class HealthListener:
    """Told of every health write (metrics keep their pre-rendered series this way)."""

    def health_changed(
        self, account: Account, old: ServiceHealth | None, new: ServiceHealth | None
    ) -> None: ...

    def probed(self, account: Account, result: ProbeResult) -> None: ...

    def transition(self, account: Account, transition: Transition) -> None: ...


class Monitor:
    def __init__(
        self,
        store: Store,
        policy: Policy,
        *,
        clock: Callable[[], float],
        listeners: Iterable[HealthListener] = (),
    ) -> None:
        self.store = store
        self.policy = policy
        self._clock = clock
        self._listeners = list(listeners)
        self.accounts: dict[str, Account] = {}
        self.health: dict[str, dict[Service, ServiceHealth]] = {}
        self.by_owner: dict[str, set[str]] = {}
        self._stored: dict[str, dict[Service, ServiceHealth]] = {}
        self._dirty: set[tuple[str, Service]] = set()

    # --- inventory ----------------------------------------------------------------------
    def load(self) -> None:
        """Read every stored health row (after a restart nothing is decided afresh)."""
        for h in self.store.load_health():
            self._stored.setdefault(h.account_id, {})[h.service] = h

    def set_accounts(self, accounts: Iterable[Account]) -> tuple[list[Account], list[str]]:
        """Install a new inventory. Returns (accounts new or whose credentials changed,
        ids removed). Removed accounts' health is dropped and their incidents closed."""
        now = self._clock()
        fresh = {a.id: a for a in accounts}
        changed: list[Account] = []
        for acc in fresh.values():
            if self._install(acc):
                changed.append(acc)
        removed = [aid for aid in self.accounts if aid not in fresh]
        for aid in removed:
            self.remove(aid, now)
        return changed, removed

    def upsert(self, account: Account) -> bool:
        """Install or replace one account; True if it is new or its credentials changed."""
        return self._install(account)

    def _install(self, acc: Account) -> bool:
        old = self.accounts.get(acc.id)
        if old is not None and old.owner.id != acc.owner.id:
            self.by_owner.get(old.owner.id, set()).discard(acc.id)
        self.accounts[acc.id] = acc
        self.by_owner.setdefault(acc.owner.id, set()).add(acc.id)
        services = acc.services()
        current = self.health.setdefault(acc.id, {})
        # Listeners keep counts by account (provider, owner): tell them the account's
        # services left with the old details, then arrived with the new ones. A service
        # whose account details did not change is not told again (counted once).
        moved = old is not None and (old.provider, old.owner) != (acc.provider, acc.owner)
        for service in list(current):
            if service not in services:
                self._notify_health(old or acc, current.pop(service), None)
            elif moved:
                assert old is not None
                self._notify_health(old, current[service], None)
                self._notify_health(acc, None, current[service])
        for service, h in self._stored.pop(acc.id, {}).items():
            if service in services and service not in current:
                current[service] = h
                self._notify_health(acc, None, h)
        for service in services:
            if service not in current:
                current[service] = ServiceHealth(account_id=acc.id, service=service)
                self._notify_health(acc, None, current[service])
        if old is None:
            return True
        # new credentials or settings (host, port, TLS...) are probed at once
        return old.services() != services or old.oauth2 != acc.oauth2

    def remove(self, account_id: str, now: float) -> None:
        acc = self.accounts.pop(account_id, None)
        healths = self.health.pop(account_id, {})
        if acc is None:
            return
        self.by_owner.get(acc.owner.id, set()).discard(account_id)
        for h in healths.values():
            self._notify_health(acc, h, None)
        self.store.delete_account(account_id, now)
        log.info("account removed account=%s", account_id)

    # --- health -------------------------------------------------------------------------
    def healths(self, account_id: str) -> dict[Service, ServiceHealth]:
        return self.health.get(account_id, {})

    def breaker_until(self, account: Account, service: Service, now: float) -> float | None:
        """When a login with this service's credential is allowed again (None: now). The
        breaker is keyed by credential: IMAP and SMTP sharing one password share it."""
        own = self.healths(account.id).get(service)
        if own is None or own.state is State.OK:
            return None  # one login to learn this service's own state is no lockout risk
        key = account.credential_key(service)
        sharing = [
            h
            for s, h in self.healths(account.id).items()
            if s in account.services() and account.credential_key(s) == key
        ]
        return breaker_blocks(sharing, account.credential_fingerprint(service), now)

    def lift_breaker(self, account: Account) -> None:
        """An explicit recheck: the user says they fixed it, so try the login once more."""
        for h in list(self.healths(account.id).values()):
            if h.breaker_until is not None:
                self._write(account, reset_breaker(h))

    def apply(self, account: Account, result: ProbeResult) -> Transition | None:
        live = self.accounts.get(account.id)
        current = self.health.get(account.id, {})
        if live is None or result.service not in current:
            return None  # removed while the probe ran
        if result.credential != live.credential_fingerprint(result.service):
            return None  # probed with credentials that have since been replaced
        account = live
        prev = current[result.service]
        new, transition = advance(prev, result, self._clock(), self.policy)
        for listener in self._listeners:
            listener.probed(account, result)
        self._write(account, new)
        if transition is not None:
            self._transition(account, transition)
        self._confirm_siblings(account, result.service)
        return transition

    def _confirm_siblings(self, account: Account, service: Service) -> None:
        """Services sharing one refused credential are confirmed together (see
        state.confirm_shared)."""
        healths = self.healths(account.id)
        if not any(h.state is State.DEGRADED for h in healths.values()):
            return  # only a degraded service can be confirmed by a sibling
        key = account.credential_key(service)
        group = [s for s in healths if s in account.services() and account.credential_key(s) == key]
        for s in group:
            for other in group:
                if other is s:
                    continue
                new, t = confirm_shared(healths[s], healths[other], self._clock())
                if t is not None:
                    self._write(account, new)
                    self._transition(account, t)

    def _write(self, account: Account, new: ServiceHealth) -> None:
        """Keep `new` as the service's health. What a restart must not lose (a state, a
        cause, a streak's start, the breaker) is written at once; a routine update (one
        more probe, same verdict) waits for the next `flush()`, so the store sees one
        transaction a second, not one per probe."""
        current = self.health.setdefault(account.id, {})
        prev = current.get(new.service)
        key = (new.account_id, new.service)
        if prev is not None and _routine(prev, new):
            current[new.service] = new
            self._dirty.add(key)
            self._notify_health(account, prev, new)
            return
        self._dirty.discard(key)
        try:
            stored = self.store.put_health(new)
        except Conflict:
            stored = self._theirs(new)
        current[new.service] = stored
        self._notify_health(account, prev, stored)

    def _theirs(self, new: ServiceHealth) -> ServiceHealth:
        """Another writer (a replica, or a reload race) wrote first: theirs is newer."""
        theirs = self.store.get_health(new.account_id, new.service)
        log.warning(
            "health write conflict account=%s service=%s; keeping the stored row",
            new.account_id,
            new.service.value,
        )
        return self.store.put_health(replace(new, version=0)) if theirs is None else theirs

    def flush(self) -> int:
        """Write the routine updates kept back since the last flush, in one transaction."""
        if not self._dirty:
            return 0
        keys = [k for k in self._dirty if k[1] in self.health.get(k[0], {})]
        self._dirty.clear()
        rows = [self.health[a][s] for a, s in keys]
        try:
            stored = self.store.put_health_many(rows)
        except Exception:
            self._dirty.update(keys)  # nothing was written: keep them for the next flush
            raise
        for (account_id, service), row, written in zip(keys, rows, stored, strict=True):
            current = self.health.get(account_id, {})
            if current.get(service) is not row:
                continue  # changed while the transaction ran: the next flush writes it
            current[service] = written if written is not None else self._theirs(row)
        return len(rows)

    def _transition(self, account: Account, t: Transition) -> None:
        log.info(
            "state change account=%s service=%s old=%s new=%s cause=%s hint=%s",
            t.account_id,
            t.service.value,
            t.old.value,
            t.new.value,
            t.cause.value if t.cause else "-",
            t.hint or "-",
        )
        if t.new is State.DISCONNECTED and t.cause is not None:
            if t.old is State.DISCONNECTED:
                self.store.close_incident(t.account_id, t.service, t.at)
            self.store.open_incident(t.account_id, t.service, t.cause, t.hint, t.at)
        elif t.old is State.DISCONNECTED:
            self.store.close_incident(t.account_id, t.service, t.at)
        for listener in self._listeners:
            listener.transition(account, t)

    def _notify_health(
        self, account: Account, old: ServiceHealth | None, new: ServiceHealth | None
    ) -> None:
        for listener in self._listeners:
            listener.health_changed(account, old, new)


# What must reach the store before anything else happens: a restart (or a kill -9) then
# finds every banner, streak and breaker as it was. The rest (counters, timestamps, the
# server's latest words) may lag by one flush.
_DURABLE_FIELDS = (
    "state",
    "cause",
    "hint",
    "definitive",
    "since",
    "first_failure_at",
    "strike_since",
    "credential",
    "breaker_until",
    "breaker_backoff",
    "retry_after_until",
)


def _routine(prev: ServiceHealth, new: ServiceHealth) -> bool:
    return all(getattr(prev, f) == getattr(new, f) for f in _DURABLE_FIELDS)
