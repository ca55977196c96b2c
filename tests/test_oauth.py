"""OAuth2 token handling against a real HTTP token endpoint on 127.0.0.1, and the CalDAV
probe with Bearer tokens against a stand-in that accepts only the current token."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from agent.classify import classify
from agent.config.types import Account, AuthKind, MailServer, OAuth2, Owner, Security
from agent.model import Cause, ProbeResult, Service
from agent.probes import caldav
from agent.probes.base import ProbeContext, ProbeError, run_probe
from agent.probes.oauth import MemoryRefreshTokenStore, OAuthTokens, decode_stored
from agent.secret import Secret
from tests.servers.radicale import MULTISTATUS_OK, DavStandIn, caldav_account, free_port

REFRESH = "rt-config-0123456789"
CLIENT_SECRET = "cs-topsecret-987"
Reply = Callable[[dict[str, str]], web.Response]


@dataclass
class TokenEndpoint:
    """A token endpoint: issues at-1, at-2, ...; `reply` can override the answer."""

    posts: list[dict[str, str]] = field(default_factory=list)
    rotate: bool = False
    expires_in: int = 3600
    reply: Reply | None = None
    delay: float = 0.0
    port: int = 0
    issued: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.posts.append(form)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.reply is not None:
            return self.reply(form)
        token = f"at-{len(self.posts)}"
        self.issued.append(token)
        body: dict[str, object] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        }
        if self.rotate:
            body["refresh_token"] = f"rt-rotated-{len(self.posts)}"
        return web.json_response(body)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"


def error_reply(status: int, error: str, desc: str = "") -> Reply:
    def reply(form: dict[str, str]) -> web.Response:
        body = {"error": error, "error_description": desc}
        return web.json_response(body, status=status)

    return reply


@pytest.fixture
async def token_endpoint() -> AsyncIterator[TokenEndpoint]:
    ep = TokenEndpoint()
    app = web.Application()
    app.router.add_post("/token", ep.handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    ep.port = free_port()
    await web.TCPSite(runner, "127.0.0.1", ep.port).start()
    try:
        yield ep
    finally:
        await runner.cleanup()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def oauth_account(
    endpoint: TokenEndpoint,
    dav_url: str = "http://127.0.0.1:9/",
    refresh: str = REFRESH,
    scopes: tuple[str, ...] = ("mail", "calendar"),
) -> Account:
    oauth = OAuth2(
        token_url=endpoint.url,
        client_id="client-1",
        refresh_token=Secret(refresh),
        client_secret=Secret(CLIENT_SECRET),
        scopes=scopes,
    )
    acct = caldav_account(dav_url, "u@example.com", None, auth=AuthKind.XOAUTH2, oauth2=oauth)
    imap = MailServer(
        host="127.0.0.1",
        port=993,
        security=Security.TLS,
        username="u@example.com",
        auth=AuthKind.XOAUTH2,
    )
    return Account(
        id=acct.id,
        owner=Owner(id="o", email="o@example.com"),
        caldav=acct.caldav,
        imap=imap,
        oauth2=oauth,
    )


# -- the token source on its own ----------------------------------------------------------
async def test_one_post_serves_every_service_of_an_account(token_endpoint: TokenEndpoint) -> None:
    tokens = OAuthTokens(clock=Clock())
    acct = oauth_account(token_endpoint)
    a = await tokens.access_token(acct, Service.IMAP)
    b = await tokens.access_token(acct, Service.CALDAV)
    assert a == b == "at-1"
    assert len(token_endpoint.posts) == 1
    form = token_endpoint.posts[0]
    assert form == {
        "grant_type": "refresh_token",
        "refresh_token": REFRESH,
        "client_id": "client-1",
        "client_secret": CLIENT_SECRET,
        "scope": "mail calendar",
    }


async def test_concurrent_callers_share_one_refresh(token_endpoint: TokenEndpoint) -> None:
    token_endpoint.delay = 0.1
    tokens = OAuthTokens(clock=Clock())
    acct = oauth_account(token_endpoint)
    got = await asyncio.gather(
        *(tokens.access_token(acct, s) for s in (Service.IMAP, Service.CALDAV, Service.IMAP))
    )
    assert got == ["at-1"] * 3
    assert len(token_endpoint.posts) == 1


async def test_a_token_is_reused_until_shortly_before_it_expires(
    token_endpoint: TokenEndpoint,
) -> None:
    clock = Clock()
    tokens = OAuthTokens(clock=clock, margin=60)
    acct = oauth_account(token_endpoint)
    assert await tokens.access_token(acct, Service.IMAP) == "at-1"
    clock.now += 3500
    assert await tokens.access_token(acct, Service.IMAP) == "at-1"
    clock.now += 50  # within the margin of expiry
    assert await tokens.access_token(acct, Service.IMAP) == "at-2"
    assert await tokens.access_token(acct, Service.IMAP, refresh=True) == "at-3"


async def test_a_service_with_its_own_scopes_gets_its_own_token(
    token_endpoint: TokenEndpoint,
) -> None:
    tokens = OAuthTokens(clock=Clock())
    base = oauth_account(token_endpoint)
    assert base.caldav is not None
    from dataclasses import replace

    acct = replace(base, caldav=replace(base.caldav, scopes=("calendar-only",)))
    await tokens.access_token(acct, Service.IMAP)
    await tokens.access_token(acct, Service.CALDAV)
    assert [p["scope"] for p in token_endpoint.posts] == ["mail calendar", "calendar-only"]


async def test_a_rotated_refresh_token_is_persisted_and_reused(
    token_endpoint: TokenEndpoint,
) -> None:
    token_endpoint.rotate = True
    store = MemoryRefreshTokenStore()
    clock = Clock()
    acct = oauth_account(token_endpoint)
    await OAuthTokens(store, clock=clock).access_token(acct, Service.IMAP)
    assert decode_stored(store.get(acct.id), REFRESH) == "rt-rotated-1"
    # a new process (new cache) with the same store uses the rotated token
    await OAuthTokens(store, clock=clock).access_token(acct, Service.IMAP)
    assert token_endpoint.posts[1]["refresh_token"] == "rt-rotated-1"
    assert decode_stored(store.get(acct.id), REFRESH) == "rt-rotated-2"
    # a new token in the config wins over the stored one
    changed = oauth_account(token_endpoint, refresh="rt-config-new-42")
    await OAuthTokens(store, clock=clock).access_token(changed, Service.IMAP)
    assert token_endpoint.posts[2]["refresh_token"] == "rt-config-new-42"


async def test_invalid_grant_raises_the_endpoint_answer_for_every_service(
    token_endpoint: TokenEndpoint, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token_endpoint.reply = error_reply(
        400, "invalid_grant", f"Token has been expired or revoked: {REFRESH}"
    )
    tokens = OAuthTokens(clock=Clock())
    acct = oauth_account(token_endpoint)
    for service in (Service.IMAP, Service.CALDAV):
        with pytest.raises(ProbeError) as info:
            await tokens.access_token(acct, service)
        ev = info.value.evidence
        assert (ev.protocol, ev.stage, ev.code) == ("oauth", "token", 400)
        assert json.loads(ev.text)["error"] == "invalid_grant"
        assert REFRESH not in ev.text and REFRESH not in str(info.value)
        assert ev.headers["content-type"].startswith("application/json")
    assert len(token_endpoint.posts) == 1  # the failure is shared, not asked again
    assert REFRESH not in caplog.text and CLIENT_SECRET not in caplog.text


async def test_a_token_endpoint_that_is_down_is_a_network_failure() -> None:
    ep = TokenEndpoint(port=free_port())
    with pytest.raises(ProbeError) as info:
        await OAuthTokens(clock=Clock()).access_token(oauth_account(ep), Service.IMAP)
    assert info.value.evidence.network == "refused"
    assert info.value.evidence.protocol == "oauth"


async def test_an_answer_without_access_token_is_evidence(token_endpoint: TokenEndpoint) -> None:
    token_endpoint.reply = lambda form: web.json_response({"token_type": "Bearer"})
    with pytest.raises(ProbeError) as info:
        await OAuthTokens(clock=Clock()).access_token(oauth_account(token_endpoint), Service.IMAP)
    assert info.value.evidence.code == 200
    assert "without an access_token" in info.value.evidence.text


# -- through the CalDAV probe -------------------------------------------------------------
@pytest.fixture
async def bearer_dav(token_endpoint: TokenEndpoint) -> AsyncIterator[DavStandIn]:
    """A CalDAV stand-in that accepts only the newest token the endpoint issued."""

    async def handler(request: web.Request) -> web.StreamResponse:
        current = token_endpoint.issued[-1] if token_endpoint.issued else None
        if current is None or request.headers.get("Authorization") != f"Bearer {current}":
            return web.Response(
                status=401,
                text="invalid token",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return web.Response(status=207, body=MULTISTATUS_OK, content_type="application/xml")

    server = DavStandIn(handler)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def probe(acct: Account, tokens: OAuthTokens) -> ProbeResult:
    ctx = ProbeContext(timeout=10.0, tokens=tokens, debug=True)
    return await run_probe(caldav.probe, Service.CALDAV, acct, ctx, classify)


def assert_clean(result: ProbeResult, caplog: pytest.LogCaptureFixture, *secrets: str) -> None:
    blob = json.dumps(result.to_json()) + "\n".join(result.transcript) + caplog.text
    blob += result.failure.detail if result.failure else ""
    for s in (REFRESH, CLIENT_SECRET, *secrets):
        assert s not in blob


async def test_bearer_token_is_accepted(
    token_endpoint: TokenEndpoint, bearer_dav: DavStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    result = await probe(oauth_account(token_endpoint, bearer_dav.url()), OAuthTokens())
    assert result.ok, result.failure
    assert all(s.headers["Authorization"] == "Bearer at-1" for s in bearer_dav.seen)
    assert_clean(result, caplog, "at-1")


async def test_an_expired_token_is_refreshed_once_and_then_works(
    token_endpoint: TokenEndpoint, bearer_dav: DavStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = OAuthTokens()
    acct = oauth_account(token_endpoint, bearer_dav.url())
    assert await tokens.access_token(acct, Service.CALDAV) == "at-1"
    token_endpoint.issued[-1] = "at-revoked"  # the server no longer accepts at-1
    result = await probe(acct, tokens)
    assert result.ok, result.failure
    assert len(token_endpoint.posts) == 2
    assert bearer_dav.seen[0].headers["Authorization"] == "Bearer at-1"
    assert bearer_dav.seen[-1].headers["Authorization"] == "Bearer at-2"
    assert_clean(result, caplog, "at-1", "at-2")


async def test_a_token_refused_after_refresh_is_a_401(
    token_endpoint: TokenEndpoint, dav_standin: DavStandIn
) -> None:
    async def refuse(request: web.Request) -> web.StreamResponse:
        return web.Response(status=401, headers={"WWW-Authenticate": 'Bearer error="x"'})

    dav_standin.handler = refuse
    acct = oauth_account(token_endpoint, dav_standin.url())
    ctx = ProbeContext(timeout=10.0, tokens=OAuthTokens())
    with pytest.raises(ProbeError) as info:
        await caldav.probe(acct, ctx)
    assert (info.value.evidence.protocol, info.value.evidence.code) == ("caldav", 401)
    assert len(token_endpoint.posts) == 2  # first token, then exactly one refresh
    assert len(dav_standin.seen) == 2


async def test_invalid_grant_is_access_revoked(
    token_endpoint: TokenEndpoint, dav_standin: DavStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token_endpoint.reply = error_reply(400, "invalid_grant", "Token has been expired or revoked.")
    result = await probe(oauth_account(token_endpoint, dav_standin.url()), OAuthTokens())
    assert result.failure is not None
    assert result.failure.cause is Cause.ACCESS_REVOKED
    assert result.failure.hint == "oauth_grant_invalid"
    assert dav_standin.seen == []  # no CalDAV request without a token
    assert_clean(result, caplog)


async def test_invalid_client_is_an_integration_error(
    token_endpoint: TokenEndpoint, dav_standin: DavStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    def echo(form: dict[str, str]) -> web.Response:  # a provider that echoes the request
        return web.json_response(
            {"error": "invalid_client", "error_description": json.dumps(form)}, status=401
        )

    token_endpoint.reply = echo
    result = await probe(oauth_account(token_endpoint, dav_standin.url()), OAuthTokens())
    assert result.failure is not None
    assert result.failure.cause is Cause.INTEGRATION_ERROR
    assert_clean(result, caplog)


async def test_xoauth2_without_a_token_source_is_an_integration_error(
    token_endpoint: TokenEndpoint, dav_standin: DavStandIn
) -> None:
    ctx = ProbeContext(timeout=10.0)
    acct = oauth_account(token_endpoint, dav_standin.url())
    result = await run_probe(caldav.probe, Service.CALDAV, acct, ctx, classify)
    assert result.failure is not None and result.failure.cause is Cause.INTEGRATION_ERROR
