"""Views of the fleet's health kept up to date as it changes (HealthListeners of the
Monitor): what the API and the notifier read without walking every account."""

from __future__ import annotations

from agent.api import Rendered
from agent.config.types import Account
from agent.model import Service, ServiceHealth, State
from agent.monitor import HealthListener


class DocCache(HealthListener):
    """API documents rendered once; a health change of an account drops its status and
    its owner's banner, so the next poll renders them again."""

    def __init__(self) -> None:
        self.accounts: dict[str, Rendered] = {}
        self.owners: dict[str, Rendered] = {}

    def health_changed(
        self, account: Account, old: ServiceHealth | None, new: ServiceHealth | None
    ) -> None:
        self.accounts.pop(account.id, None)
        self.owners.pop(account.owner.id, None)

    def clear(self) -> None:
        self.accounts.clear()
        self.owners.clear()


class Unhealthy(HealthListener):
    """The ids of accounts with a service not ok, kept as health changes."""

    def __init__(self) -> None:
        self._bad: dict[str, set[Service]] = {}

    @property
    def ids(self) -> list[str]:
        return list(self._bad)

    def health_changed(
        self, account: Account, old: ServiceHealth | None, new: ServiceHealth | None
    ) -> None:
        h = new or old
        if h is None:
            return
        bad = self._bad.setdefault(account.id, set())
        if new is not None and new.state is not State.OK:
            bad.add(h.service)
        else:
            bad.discard(h.service)
        if not bad:
            del self._bad[account.id]
