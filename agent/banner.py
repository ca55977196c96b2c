"""The documents the banner API serves: one account's status, one owner's banner.

Pure: healths in, JSON-ready dicts out. The banner shows only for DISCONNECTED services
whose cause has a banner (RULES; integration_error has none). No secret and no email
address other than the account's own `address` ever reaches these documents: server
details are scrubbed of both before they are shown.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from agent import wording
from agent.config.types import Account
from agent.model import Cause, Service, ServiceHealth, State, action_needed
from agent.secret import Redactor
from agent.state import RULES, Severity, account_state

_CAUSE_ORDER = {cause: i for i, cause in enumerate(Cause)}
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")
ADDRESS_REDACTED = "<address>"


def iso(t: float | None) -> str | None:
    """POSIX seconds -> ISO-8601 in UTC, e.g. "2024-05-01T12:00:00Z"."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def reconnect_url(template: str, account: Account) -> str:
    """The portal page where the owner reconnects this account ({account_id}, {owner_id})."""
    return template.format_map(
        {"account_id": quote(account.id, safe=""), "owner_id": quote(account.owner.id, safe="")}
    )


@dataclass(frozen=True)
class _Banner:
    severity: Severity
    cause: Cause
    hint: str | None
    services: tuple[Service, ...]
    since: float | None

    @property
    def sort_key(self) -> tuple[int, int]:
        return _rank(self.cause)

    @property
    def title(self) -> str:
        if action_needed(self.cause):
            return f"Your {wording.integration_name(self.services)} integration needs attention"
        if self.services == (Service.CALDAV,):
            return "Your calendar provider is having trouble"
        return "Your email provider is having trouble"

    @property
    def message(self) -> str:
        affected = wording.service_list(self.services)
        verb = "has" if len(self.services) == 1 else "have"
        parts = [
            f"{affected[:1].upper()}{affected[1:]} {verb} stopped syncing.",
            wording.cause_text(self.cause, self.hint),
            wording.action_text(self.cause),
        ]
        return " ".join(p for p in parts if p)


def _healths(account: Account, healths: Mapping[Service, ServiceHealth]) -> list[ServiceHealth]:
    """One health per service the account has, in a stable order (none yet: OK)."""
    return [
        healths.get(s) or ServiceHealth(account_id=account.id, service=s)
        for s in account.services()
    ]


def _rank(cause: Cause) -> tuple[int, int]:
    """Lower is worse: errors before warnings, then the order of the Cause enum."""
    severity = RULES[cause].banner
    return (severity.rank if severity else 2, _CAUSE_ORDER[cause])


def _shows(h: ServiceHealth) -> bool:
    return (
        h.state is State.DISCONNECTED and h.cause is not None and RULES[h.cause].banner is not None
    )


def _banner(healths: Iterable[ServiceHealth]) -> _Banner | None:
    shown = [h for h in healths if _shows(h)]
    if not shown:
        return None
    worst = min(shown, key=lambda h: _rank(h.cause) if h.cause else (3, 0))  # first of the worst
    assert worst.cause is not None
    severity = RULES[worst.cause].banner
    assert severity is not None
    sinces = [h.since for h in shown if h.since is not None]
    return _Banner(
        severity=severity,
        cause=worst.cause,
        hint=worst.hint,
        services=tuple(h.service for h in shown),
        since=min(sinces) if sinces else None,
    )


def _scrubber(account: Account) -> Callable[[str], str]:
    redact = Redactor(account.secrets())
    own = account.address.lower()

    def scrub(text: str) -> str:
        text = redact(text)
        return _EMAIL.sub(
            lambda m: m.group(0) if own and m.group(0).lower() == own else ADDRESS_REDACTED, text
        )

    return scrub


def _service_doc(h: ServiceHealth, scrub: Callable[[str], str]) -> dict[str, Any]:
    return {
        "service": h.service.value,
        "state": h.state.value,
        "cause": h.cause.value if h.cause else None,
        "hint": h.hint,
        # the owner has something to do: confirmed, and a cause only the owner can fix
        "action_needed": h.state is State.DISCONNECTED and action_needed(h.cause),
        "detail": scrub(h.detail),
        "since": iso(h.since),
        "last_probe_at": iso(h.last_probe_at),
        "last_success_at": iso(h.last_success_at),
        "consecutive_failures": h.consecutive_failures,
    }


def account_status(
    account: Account,
    healths: Mapping[Service, ServiceHealth],
    *,
    reconnect_url: str,
    checked_at: float | None,
) -> dict[str, Any]:
    """GET /api/v1/accounts/{id}/status: the account's state, its banner (or null) and
    every service's health."""
    rows = _healths(account, healths)
    b = _banner(rows)
    banner: dict[str, Any] | None = None
    if b is not None:
        banner = {
            "show": True,
            "severity": b.severity.value,
            "title": b.title,
            "message": b.message,
            "cause": b.cause.value,
            "hint": b.hint,
            "impacts": wording.impacts(b.services),
            "services": [s.value for s in b.services],
            "reconnect_url": reconnect_url,
            "since": iso(b.since),
        }
    scrub = _scrubber(account)
    return {
        "account": account.id,
        "state": account_state(rows).value,
        "banner": banner,
        "services": [_service_doc(h, scrub) for h in rows],
        "checked_at": iso(checked_at),
    }


def owner_banner(
    owner_id: str,
    accounts: Sequence[tuple[Account, Mapping[Service, ServiceHealth]]],
    *,
    reconnect_url_for: Callable[[Account], str],
    checked_at: float | None,
) -> dict[str, Any]:
    """GET /api/v1/owners/{id}/banner: one banner for everything an owner connected.
    Accounts of other owners are ignored; an unknown owner gets `"show": false`."""
    broken: list[tuple[Account, _Banner]] = []
    for account, healths in accounts:
        if account.owner.id != owner_id:
            continue
        b = _banner(_healths(account, healths))
        if b is not None:
            broken.append((account, b))
    broken.sort(key=lambda ab: ab[1].sort_key)  # worst first; stable otherwise

    doc: dict[str, Any] = {
        "owner": owner_id,
        "show": bool(broken),
        "severity": broken[0][1].severity.value if broken else None,
        "title": "",
        "message": "",
        "accounts": [
            {
                "account": a.id,
                "address": a.address,
                "services": [s.value for s in b.services],
                "cause": b.cause.value,
                "hint": b.hint,
                "impacts": wording.impacts(b.services),
                "reconnect_url": reconnect_url_for(a),
                "since": iso(b.since),
            }
            for a, b in broken
        ],
        "checked_at": iso(checked_at),
    }
    if len(broken) == 1:
        doc["title"], doc["message"] = broken[0][1].title, broken[0][1].message
    elif broken:
        doc["title"], doc["message"] = _several(broken)
    return doc


def _several(broken: Sequence[tuple[Account, _Banner]]) -> tuple[str, str]:
    names = [a.address or a.id for a, _ in broken]
    listed = ", ".join(names[:-1]) + " and " + names[-1]
    acting = [(a, b) for a, b in broken if action_needed(b.cause)]
    if acting:
        title = f"{len(broken)} of your connected accounts need attention"
        message = (
            f"{listed} have stopped syncing. "
            "Open each one below to see what happened and how to fix it."
        )
    else:
        title = "Your email providers are having trouble"
        message = f"{listed} have stopped syncing for now. {wording.WAIT_TEXT}"
    return title, message
