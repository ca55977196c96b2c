"""A real Radicale for CalDAV tests.

`radicale` (function scope): a running private Radicale with
  alice / alice-pw: a writable calendar `work`;
  bob / bob-pw: one calendar `work`, read-only for him.
`dav_standin` (function scope): a started `DavStandIn` over plain HTTP; set its
`handler` to shape answers; `seen` lists the requests it got.

Use `radicale.forbid(user)`, `radicale.set_password(...)`, `radicale.make_calendar(...)`
in a test; they take effect without a restart.

`caldav_account(radicale, user, password, **overrides) -> Account`: an Account whose
CalDAV settings point at the server. Overrides naming a CalDavServer field (url,
calendar_url, timeout, auth, tls, ...) go there, the others (id, oauth2, ...) to Account.
"""

from __future__ import annotations

import dataclasses
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

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


# -- a CalDAV stand-in over a real socket, for what Radicale cannot do -------------------
# (503/429, huge bodies, redirects, TLS, Bearer tokens). It speaks HTTP; `handler`
# decides each answer. `canned_ok` answers every PROPFIND like a one-calendar server.

MULTISTATUS_OK = b"""<?xml version="1.0" encoding="utf-8"?>
<multistatus xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">
 <response><href>/u/</href><propstat><prop>
  <current-user-principal><href>/u/</href></current-user-principal>
  <C:calendar-home-set><href>/u/</href></C:calendar-home-set>
  <resourcetype><collection/><principal/></resourcetype>
 </prop><status>HTTP/1.1 200 OK</status></propstat></response>
 <response><href>/u/cal/</href><propstat><prop>
  <resourcetype><collection/><C:calendar/></resourcetype>
  <current-user-privilege-set><privilege><read/></privilege><privilege><write/></privilege>
  </current-user-privilege-set>
 </prop><status>HTTP/1.1 200 OK</status></propstat></response>
</multistatus>"""


async def canned_ok(request: web.Request) -> web.StreamResponse:
    return web.Response(status=207, body=MULTISTATUS_OK, content_type="application/xml")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


class DavStandIn:
    def __init__(self, handler: Handler = canned_ok) -> None:
        self.handler = handler
        self.seen: list[Seen] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(Seen(request.method, request.path, dict(request.headers)))
        return await self.handler(request)

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        self.port = free_port()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=ssl_context)
        await site.start()
        return self.url(ssl_context is not None)

    def url(self, tls: bool = False, host: str = "127.0.0.1") -> str:
        return f"{'https' if tls else 'http'}://{host}:{self.port}/"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@pytest.fixture
async def dav_standin() -> AsyncIterator[DavStandIn]:
    server = DavStandIn()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
