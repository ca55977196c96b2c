"""A real Radicale for CalDAV tests.

`radicale` (function scope): a running private Radicale with
  alice / alice-pw: a writable calendar `work`;
  bob / bob-pw: one calendar `work`, read-only for him.
Use `radicale.forbid(user)`, `radicale.set_password(...)`, `radicale.make_calendar(...)`
in a test; they take effect without a restart.

`caldav_account(radicale, user, password, **overrides) -> Account`: an Account whose
CalDAV settings point at the server. Overrides naming a CalDavServer field (url,
calendar_url, timeout, auth, tls, ...) go there, the others (id, oauth2, ...) to Account.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.config.types import Account, CalDavServer, Owner
from agent.localservers.radicale import Radicale
from agent.secret import Secret

_CALDAV_FIELDS = {f.name for f in dataclasses.fields(CalDavServer)}


@pytest.fixture
def radicale(tmp_path: Path) -> Iterator[Radicale]:
    server = Radicale(tmp_path / "radicale")
    server.add_user("alice", "alice-pw", calendar="work")
    server.add_user("bob", "bob-pw")
    server.make_calendar("bob", "work", read_only=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def caldav_account(
    radicale: Radicale | str, user: str, password: str | None, **overrides: Any
) -> Account:
    url = radicale if isinstance(radicale, str) else radicale.url
    server_kw: dict[str, Any] = {"url": url, "username": user}
    if password is not None:
        server_kw["password"] = Secret(password)
    account_kw: dict[str, Any] = {
        "id": f"acct-{user}",
        "owner": Owner(id=f"owner-{user}", email=f"{user}@example.com"),
        "address": f"{user}@example.com",
    }
    for key, value in overrides.items():
        if key in _CALDAV_FIELDS:
            server_kw[key] = value
        else:
            account_kw[key] = value
    return Account(caldav=CalDavServer(**server_kw), **account_kw)
