"""CalDAV probe: can this account reach its calendars, and write to the one it syncs?

Steps (each a `ctx.step`): discovery (DAV:current-user-principal of the configured URL),
home (CALDAV:calendar-home-set of the principal), calendars (Depth 1 listing of the home,
with each calendar's DAV:current-user-privilege-set), privileges (the synced calendar,
`caldav.calendar_url`, or else any calendar, must grant a write privilege).

Which part uses the `caldav` library and which does not, and why:
- HTTP goes through our own thin layer (agent.probes.http_guard, aiohttp), for every
  request. caldav.aio (over niquests) cannot be bounded here: it reads bodies whole
  (a 100 MB multistatus was read completely), follows redirects to any host (turning a
  PROPFIND into an unauthenticated GET and reading a 404 there as ok), sleeps and
  retries by itself on 429/503 (eating the probe deadline), takes no injectable
  resolver, and logs raw bodies. `get_principal()` being lazy also hides where a failure
  happened. The guarded layer caps body and headers, follows at most 3 same-origin
  redirects, uses agent.net.Resolver, verifies TLS by default, and turns every failure
  into Evidence at the step it happened.
- caldav stays where it is safe: its element classes (caldav.elements.dav/cdav) build
  the PROPFIND bodies (agent.probes.caldav_xml). Answers are parsed with lxml directly,
  entities/DTD/network off, because caldav's DAVResponse logs raw bodies.

Auth: `password` sends Basic preemptively; if the server challenges with Digest only,
the request is repeated through aiohttp's DigestAuthMiddleware (a challenge answered
with credentials is not a failure). `xoauth2` sends a Bearer token from
`ctx.tokens.access_token(account, Service.CALDAV)`; on a 401 the token is refreshed once
and the request retried.

Evidence: protocol "caldav", stage = the step, code = HTTP status, text = the body
(capped, redacted), headers (www-authenticate, retry-after, content-type, location, ...).
Conditions found in a good answer carry no code and say what they are in `text`:
"read-only: ..." (stage privileges), "not a calendar: ..." (stage privileges),
"no calendars: ..." (stage calendars), "no calendar-home-set: ..." (stage home).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import aiohttp
from yarl import URL

from agent.config.types import Account, AuthKind, CalDavServer
from agent.model import Evidence, Service
from agent.probes.base import ProbeContext, ProbeError
from agent.probes.caldav_xml import (
    DavResource,
    XmlError,
    parse_multistatus,
    propfind_body,
    short_names,
)
from agent.probes.http_guard import GuardedHttp, HttpLimits, HttpResponse

PROTOCOL = "caldav"
MAX_PRIVILEGE_LOOKUPS = 10  # calendars whose privileges the listing did not report


async def probe(account: Account, ctx: ProbeContext) -> None:
    server = account.caldav
    if server is None:
        raise ProbeError(
            Evidence(protocol=PROTOCOL, stage="config", text="no caldav settings for account")
        )
    limits = HttpLimits(max_body=ctx.max_body, max_line=min(ctx.max_line, 64 * 1024))
    async with GuardedHttp(
        protocol=PROTOCOL,
        resolver=ctx.resolver,
        tls=server.tls,
        timeout=ctx.timeout,
        limits=limits,
        redact=ctx.redact,
        log_line=ctx.log,
    ) as http:
        ctx.on_abort(http.abort)
        dav = _Dav(http, account, server, ctx)
        await dav.start()
        with ctx.step("discovery"):
            principal = await dav.discover(server.url)
        with ctx.step("home"):
            home = await dav.home(principal)
        with ctx.step("calendars"):
            calendars = await dav.calendars(home)
        with ctx.step("privileges"):
            if server.calendar_url:
                await dav.check_calendar(server.calendar_url)
            else:
                await dav.check_any_writable(calendars, home)


@dataclass
class _Dav:
    http: GuardedHttp
    account: Account
    server: CalDavServer
    ctx: ProbeContext
    auth_header: str | None = None
    digest: aiohttp.DigestAuthMiddleware | None = None
    refreshed: bool = False

    async def start(self) -> None:
        if self.server.auth is AuthKind.XOAUTH2:
            await self._bearer(refresh=False)
        else:
            password = self.server.password.reveal() if self.server.password else ""
            blob = base64.b64encode(f"{self.server.username}:{password}".encode()).decode()
            self.ctx.redact.add(password)
            self.ctx.redact.add(blob)
            self.auth_header = f"Basic {blob}"

    async def _bearer(self, *, refresh: bool) -> None:
        if self.ctx.tokens is None:
            raise ProbeError(
                Evidence(protocol="oauth", stage="token", text="no OAuth token source configured")
            )
        token = await self.ctx.tokens.access_token(self.account, Service.CALDAV, refresh=refresh)
        self.ctx.redact.add(token)
        self.auth_header = f"Bearer {token}"

    # -- steps ---------------------------------------------------------------------------
    async def discover(self, url: str) -> str:
        found = await self.propfind(url, ("principal", "home", "resourcetype"), 0, "discovery")
        res = _first(found)
        principal = res.hrefs.get("{DAV:}current-user-principal") if res else None
        if principal:
            return self._abs(principal[0])
        return url  # no current-user-principal: treat the URL as the principal

    async def home(self, principal: str) -> str:
        found = await self.propfind(principal, ("home",), 0, "home")
        res = _first(found)
        homes = res.hrefs.get("{urn:ietf:params:xml:ns:caldav}calendar-home-set") if res else None
        if not homes:
            raise ProbeError(
                Evidence(
                    protocol=PROTOCOL,
                    stage="home",
                    text=f"no calendar-home-set: the principal {URL(principal).path} has none",
                )
            )
        return self._abs(homes[0])

    async def calendars(self, home: str) -> list[DavResource]:
        props = ("resourcetype", "displayname", "privileges")
        found = await self.propfind(home, props, 1, "calendars")
        cals = [r for r in found if r.is_calendar and r.status == 200]
        self.ctx.log("*", f"{len(cals)} calendar(s) in {URL(home).path}")
        return cals

    async def check_calendar(self, url: str) -> None:
        found = await self.propfind(url, ("resourcetype", "privileges"), 0, "privileges")
        res = _first(found)
        if res is None or not res.is_calendar:
            raise ProbeError(
                Evidence(
                    protocol=PROTOCOL,
                    stage="privileges",
                    text=f"not a calendar: calendar_url {URL(url).path} is not a calendar "
                    f"collection (resourcetype: {short_names(res.types if res else ())})",
                )
            )
        if not res.writable:
            raise ProbeError(_read_only([res]))

    async def check_any_writable(self, calendars: list[DavResource], home: str) -> None:
        if not calendars:
            raise ProbeError(
                Evidence(
                    protocol=PROTOCOL,
                    stage="calendars",
                    text=f"no calendars: the calendar home {URL(home).path} holds none",
                )
            )
        checked: list[DavResource] = []
        for cal in calendars:
            if cal.privileges is None and len(checked) < MAX_PRIVILEGE_LOOKUPS:
                res = _first(
                    await self.propfind(
                        self._abs(cal.href), ("resourcetype", "privileges"), 0, "privileges"
                    )
                )
                if res is not None:
                    cal = res
            if cal.writable:
                return
            checked.append(cal)
        raise ProbeError(_read_only(checked))

    # -- one PROPFIND ----------------------------------------------------------------------
    async def propfind(
        self, url: str, props: tuple[str, ...], depth: int, stage: str
    ) -> list[DavResource]:
        body = propfind_body(*props)
        resp = await self._send(url, body, depth, stage)
        if resp.status == 401 and await self._answer_401(resp):
            resp = await self._send(url, body, depth, stage)
        if resp.status not in (200, 207):
            raise ProbeError(self.http.evidence(resp, stage))
        try:
            return parse_multistatus(resp.body)
        except XmlError as exc:
            ev = self.http.evidence(resp, stage, note=f"unusable answer: {exc}")
            raise ProbeError(ev) from None

    async def _send(self, url: str, body: bytes, depth: int, stage: str) -> HttpResponse:
        headers = {"Depth": str(depth), "Content-Type": 'application/xml; charset="utf-8"'}
        middlewares: tuple[aiohttp.ClientMiddlewareType, ...] = ()
        if self.digest is not None:
            middlewares = (self.digest,)
        elif self.auth_header:
            headers["Authorization"] = self.auth_header
        return await self.http.request(
            "PROPFIND", url, stage=stage, headers=headers, data=body, middlewares=middlewares
        )

    async def _answer_401(self, resp: HttpResponse) -> bool:
        """A 401 we can answer once: a Bearer token to refresh, or a Digest-only challenge."""
        challenge = resp.headers.get("www-authenticate", "").lower()
        if self.server.auth is AuthKind.XOAUTH2:
            if self.refreshed:
                return False
            self.refreshed = True
            self.ctx.log("*", "bearer token refused; refreshing it once")
            await self._bearer(refresh=True)
            return True
        if self.digest is None and "digest" in challenge and "basic" not in challenge:
            password = self.server.password.reveal() if self.server.password else ""
            self.digest = aiohttp.DigestAuthMiddleware(self.server.username, password)
            self.ctx.log("*", "server asks for Digest; answering the challenge")
            return True
        return False

    def _abs(self, href: str) -> str:
        return str(URL(self.server.url).join(URL(href)))


def _first(found: list[DavResource]) -> DavResource | None:
    return found[0] if found else None


def _read_only(cals: list[DavResource]) -> Evidence:
    parts = [f"{URL(c.href).path} grants {short_names(c.privileges or ())}" for c in cals[:5]]
    return Evidence(
        protocol=PROTOCOL,
        stage="privileges",
        text="read-only: no write privilege on the calendar(s): " + "; ".join(parts),
    )
