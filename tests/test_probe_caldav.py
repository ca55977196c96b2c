"""CalDAV probe against a real Radicale, and against an HTTP stand-in for what Radicale
cannot do (503/429/500, huge bodies, redirects, hangs, TLS).

Two kinds of assertion: the Evidence the probe raises (the probe's own job), and the
cause `run_probe` + `agent.classify` give it (depends on the classifier)."""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path

import pytest
from aiohttp import web

from agent.classify import classify
from agent.config.types import Account, TlsSettings
from agent.localservers.radicale import Radicale
from agent.model import Cause, Evidence, ProbeResult, Service
from agent.net import StaticResolver
from agent.probes import caldav
from agent.probes.base import ProbeContext, ProbeError, run_probe
from tests.servers import tls as test_tls
from tests.servers.radicale import MULTISTATUS_OK, DavStandIn, caldav_account, free_port


def _ctx(**kw: object) -> ProbeContext:
    kw.setdefault("timeout", 10.0)
    kw.setdefault("debug", True)
    return ProbeContext(**kw)  # type: ignore[arg-type]


async def run(account: Account, **kw: object) -> ProbeResult:
    return await run_probe(caldav.probe, Service.CALDAV, account, _ctx(**kw), classify)


async def evidence(account: Account, **kw: object) -> Evidence:
    with pytest.raises(ProbeError) as info:
        await caldav.probe(account, _ctx(**kw))
    return info.value.evidence


def assert_no_secret(result: ProbeResult, *secrets: str) -> None:
    blob = json.dumps(result.to_json()) + "\n".join(result.transcript)
    blob += result.failure.detail if result.failure else ""
    for s in secrets:
        assert s not in blob


# -- real Radicale ------------------------------------------------------------------------
async def test_it_passes_with_a_writable_calendar(radicale: Radicale) -> None:
    result = await run(caldav_account(radicale, "alice", "alice-pw"))
    assert result.ok, result.failure
    assert [s.name for s in result.steps] == ["discovery", "home", "calendars", "privileges"]
    assert_no_secret(result, "alice-pw")


async def test_it_passes_with_the_synced_calendar_url(radicale: Radicale) -> None:
    acct = caldav_account(radicale, "alice", "alice-pw", calendar_url=radicale.url + "alice/work/")
    assert (await run(acct)).ok


async def test_wrong_password_is_a_401_at_discovery(radicale: Radicale) -> None:
    acct = caldav_account(radicale, "alice", "wrong-pw")
    ev = await evidence(acct)
    assert (ev.protocol, ev.stage, ev.code) == ("caldav", "discovery", 401)
    assert "basic" in ev.headers["www-authenticate"].lower()
    result = await run(acct)
    assert_no_secret(result, "wrong-pw")
    assert result.failure is not None and result.failure.cause is Cause.AUTH_FAILED


async def test_a_password_change_takes_effect_without_restart(radicale: Radicale) -> None:
    acct = caldav_account(radicale, "alice", "alice-pw")
    assert (await run(acct)).ok
    radicale.set_password("alice", "new-pw")
    assert (await evidence(acct)).code == 401
    assert (await run(caldav_account(radicale, "alice", "new-pw"))).ok


async def test_forbidden_is_a_403_and_permission_denied(radicale: Radicale) -> None:
    radicale.forbid("alice")
    acct = caldav_account(radicale, "alice", "alice-pw")
    ev = await evidence(acct)
    assert (ev.stage, ev.code) == ("discovery", 403)
    result = await run(acct)
    assert result.failure is not None and result.failure.cause is Cause.PERMISSION_DENIED


async def test_a_read_only_calendar_is_permission_denied(radicale: Radicale) -> None:
    acct = caldav_account(radicale, "bob", "bob-pw")
    ev = await evidence(acct)
    assert ev.stage == "privileges"
    assert ev.text.startswith("read-only:")
    assert "/bob/work/" in ev.text
    result = await run(acct)
    assert result.failure is not None and result.failure.cause is Cause.PERMISSION_DENIED


async def test_a_read_only_synced_calendar_is_permission_denied(radicale: Radicale) -> None:
    radicale.make_calendar("alice", "shared", read_only=True)
    url = radicale.url + "alice/shared/"
    ev = await evidence(caldav_account(radicale, "alice", "alice-pw", calendar_url=url))
    assert ev.stage == "privileges" and ev.text.startswith("read-only:")
    # without calendar_url, the writable `work` calendar is enough
    assert (await run(caldav_account(radicale, "alice", "alice-pw"))).ok


async def test_a_missing_calendar_url_is_a_404_config_error(radicale: Radicale) -> None:
    acct = caldav_account(radicale, "alice", "alice-pw", calendar_url=radicale.url + "alice/gone/")
    ev = await evidence(acct)
    assert (ev.stage, ev.code) == ("privileges", 404)
    result = await run(acct)
    assert result.failure is not None and result.failure.cause is Cause.CONFIG_ERROR


async def test_server_down_is_server_unavailable(radicale: Radicale) -> None:
    radicale.stop()
    acct = caldav_account(radicale, "alice", "alice-pw")
    ev = await evidence(acct)
    assert (ev.stage, ev.network) == ("discovery", "refused")
    result = await run(acct)
    assert result.failure is not None and result.failure.cause is Cause.SERVER_UNAVAILABLE


# -- stand-in: statuses -------------------------------------------------------------------
def _status(status: int, headers: dict[str, str] | None = None, body: str = "") -> object:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, headers=headers or {}, text=body)

    return handler


async def test_503_with_retry_after_is_transient_with_retry_after(
    dav_standin: DavStandIn,
) -> None:
    dav_standin.handler = _status(503, {"Retry-After": "120"}, "down for maintenance")  # type: ignore[assignment]
    acct = caldav_account(dav_standin.url(), "u", "pw")
    ev = await evidence(acct)
    assert (ev.code, ev.headers.get("retry-after")) == (503, "120")
    assert "maintenance" in ev.text
    result = await run(acct)
    assert result.failure is not None
    assert result.failure.cause in (Cause.SERVER_UNAVAILABLE, Cause.RATE_LIMITED)
    assert result.failure.retry_after == 120


async def test_429_is_rate_limited(dav_standin: DavStandIn) -> None:
    dav_standin.handler = _status(429, {"Retry-After": "30"})  # type: ignore[assignment]
    acct = caldav_account(dav_standin.url(), "u", "pw")
    assert (await evidence(acct)).code == 429
    result = await run(acct)
    assert result.failure is not None and result.failure.cause is Cause.RATE_LIMITED
    assert result.failure.retry_after == 30


async def test_plain_500_is_not_the_users_fault(dav_standin: DavStandIn) -> None:
    dav_standin.handler = _status(500, body="Internal Server Error")  # type: ignore[assignment]
    acct = caldav_account(dav_standin.url(), "u", "pw")
    ev = await evidence(acct)
    assert (ev.stage, ev.code) == ("discovery", 500)
    result = await run(acct)
    assert result.failure is not None and not result.failure.action_needed


async def test_an_echoed_password_is_redacted(dav_standin: DavStandIn) -> None:
    async def echo(request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        return web.Response(
            status=401,
            text=f"bad credentials {auth} for u:s3cret-pw",
            headers={"WWW-Authenticate": f'Basic realm="{auth}"'},
        )

    dav_standin.handler = echo
    acct = caldav_account(dav_standin.url(), "u", "s3cret-pw")
    result = await run(acct)
    assert not result.ok
    ev = await evidence(acct)
    assert ev.code == 401
    blob = json.dumps(result.to_json()) + "\n".join(result.transcript) + ev.text
    blob += ev.headers.get("www-authenticate", "")
    assert "s3cret-pw" not in ev.text  # the probe redacts before run_probe does
    assert "s3cret-pw" not in blob
    assert "dTpzM2NyZXQtcHc=" not in blob  # base64 of u:s3cret-pw


async def test_a_multistatus_that_is_not_xml_is_a_protocol_problem(
    dav_standin: DavStandIn,
) -> None:
    dav_standin.handler = _status(207, {"Content-Type": "application/xml"}, "<not-xml")  # type: ignore[assignment]
    ev = await evidence(caldav_account(dav_standin.url(), "u", "pw"))
    assert ev.code == 207 and "unusable answer" in ev.text


async def test_an_entity_bomb_is_refused(dav_standin: DavStandIn) -> None:
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE m [<!ENTITY a "aaaaaaaaaa">'
        + "".join(
            f'<!ENTITY {c} "{("&" + p + ";") * 10}">'
            for p, c in zip("abcdefg", "bcdefgh", strict=True)
        )
        + ']><multistatus xmlns="DAV:"><response><href>&h;</href></response></multistatus>'
    )
    dav_standin.handler = _status(207, {"Content-Type": "application/xml"}, bomb)  # type: ignore[assignment]
    result = await run(caldav_account(dav_standin.url(), "u", "pw"))
    assert not result.ok


# -- stand-in: hostile bodies, redirects, hangs -------------------------------------------
async def test_a_100mb_body_ends_the_probe_without_reading_it(dav_standin: DavStandIn) -> None:
    sent = 0
    chunk = b"<x>" + b"a" * (1024 * 1024 - 7) + b"</x>"

    async def huge(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        resp = web.StreamResponse(status=207, headers={"Content-Type": "application/xml"})
        await resp.prepare(request)
        try:
            await resp.write(b'<?xml version="1.0"?><multistatus xmlns="DAV:">')
            for _ in range(100):
                await resp.write(chunk)
                sent += len(chunk)
        except (ConnectionError, RuntimeError):
            pass
        return resp

    dav_standin.handler = huge
    acct = caldav_account(dav_standin.url(), "u", "pw")
    ev = await evidence(acct, max_body=1024 * 1024)
    assert ev.network == "too_large" and ev.code == 207
    result = await run(acct, max_body=1024 * 1024)
    assert not result.ok
    await asyncio.sleep(0.2)  # let the stand-in notice the closed connection
    assert sent < 40 * 1024 * 1024, sent


async def test_a_declared_100mb_body_is_not_read_at_all(dav_standin: DavStandIn) -> None:
    async def declared(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=207, headers={"Content-Type": "application/xml"})
        resp.content_length = 100 * 1024 * 1024
        await resp.prepare(request)
        try:
            await resp.write(b"<multistatus/>")
            await asyncio.sleep(30)
        except (ConnectionError, RuntimeError):
            pass
        return resp

    dav_standin.handler = declared
    ev = await evidence(caldav_account(dav_standin.url(), "u", "pw"))
    assert ev.network == "too_large"


async def test_a_redirect_to_another_origin_is_not_followed(dav_standin: DavStandIn) -> None:
    other = DavStandIn()
    await other.start()
    try:

        async def redirect(request: web.Request) -> web.StreamResponse:
            raise web.HTTPFound(other.url() + "steal")

        dav_standin.handler = redirect
        ev = await evidence(caldav_account(dav_standin.url(), "u", "pw"))
        assert ev.code == 302 and "another origin" in ev.text
        assert ev.headers["location"].endswith("/steal")
        assert other.seen == []  # neither the request nor the credentials went there
    finally:
        await other.stop()


async def test_a_same_origin_redirect_is_followed_with_credentials(
    dav_standin: DavStandIn,
) -> None:
    async def moved(request: web.Request) -> web.StreamResponse:
        if request.path == "/":
            raise web.HTTPMovedPermanently("/dav/")
        return web.Response(status=207, body=MULTISTATUS_OK, content_type="application/xml")

    dav_standin.handler = moved
    assert (await run(caldav_account(dav_standin.url(), "u", "pw"))).ok
    assert dav_standin.seen[1].path == "/dav/"
    assert dav_standin.seen[1].headers["Authorization"].startswith("Basic ")


async def test_a_redirect_loop_stops_after_three_hops(dav_standin: DavStandIn) -> None:
    async def loop(request: web.Request) -> web.StreamResponse:
        raise web.HTTPMovedPermanently("/")

    dav_standin.handler = loop
    ev = await evidence(caldav_account(dav_standin.url(), "u", "pw"))
    assert ev.code == 301 and "redirects" in ev.text
    assert len(dav_standin.seen) == 4


async def test_a_server_that_never_answers_times_out() -> None:
    writers: list[asyncio.StreamWriter] = []
    release = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await release.wait()
        writer.close()

    port = free_port()
    server = await asyncio.start_server(silent, "127.0.0.1", port)
    try:
        result = await run(caldav_account(f"http://127.0.0.1:{port}/", "u", "pw"), timeout=1.0)
    finally:
        release.set()
        server.close()
        await server.wait_closed()
    assert writers  # it did connect, and got no answer
    assert result.failure is not None and result.failure.cause is Cause.TIMEOUT


async def test_a_host_name_goes_through_the_injected_resolver(dav_standin: DavStandIn) -> None:
    resolver = StaticResolver({"dav.example.test": ["127.0.0.1"], "gone.example.test": "nxdomain"})
    acct = caldav_account(dav_standin.url(host="dav.example.test"), "u", "pw")
    assert (await run(acct, resolver=resolver)).ok
    gone = caldav_account(dav_standin.url(host="gone.example.test"), "u", "pw")
    assert (await evidence(gone, resolver=resolver)).network == "dns_nxdomain"


# -- TLS ----------------------------------------------------------------------------------
async def _tls_standin(pki_pair_ctx: ssl.SSLContext) -> DavStandIn:
    server = DavStandIn()
    await server.start(ssl_context=pki_pair_ctx)
    return server


async def test_a_self_signed_certificate_is_a_tls_error(pki: test_tls.TestPKI) -> None:
    server = await _tls_standin(pki.self_signed.server_context())
    try:
        acct = caldav_account(server.url(tls=True, host="localhost"), "u", "pw")
        resolver = StaticResolver({"localhost": ["127.0.0.1"]})
        ev = await evidence(acct, resolver=resolver)
        assert (ev.stage, ev.network) == ("tls", "tls_cert")
        result = await run(acct, resolver=resolver)
        assert result.failure is not None and result.failure.cause is Cause.TLS_ERROR
        assert server.seen == []
    finally:
        await server.stop()


async def test_the_good_certificate_with_ca_file_passes(pki: test_tls.TestPKI) -> None:
    server = await _tls_standin(pki.good.server_context())
    try:
        tls = TlsSettings(ca_file=Path(pki.ca))
        acct = caldav_account(server.url(tls=True, host="localhost"), "u", "pw", tls=tls)
        resolver = StaticResolver({"localhost": ["127.0.0.1"]})
        result = await run(acct, resolver=resolver)
        assert result.ok, result.failure
        # the same server without the CA is refused: verification is on by default
        plain = caldav_account(server.url(tls=True, host="localhost"), "u", "pw")
        assert (await evidence(plain, resolver=resolver)).network == "tls_cert"
    finally:
        await server.stop()


async def test_verify_false_accepts_a_self_signed_certificate(pki: test_tls.TestPKI) -> None:
    server = await _tls_standin(pki.self_signed.server_context())
    try:
        tls = TlsSettings(verify=False)
        acct = caldav_account(server.url(tls=True), "u", "pw", tls=tls)
        assert (await run(acct)).ok
    finally:
        await server.stop()


async def test_an_oversized_header_is_refused(dav_standin: DavStandIn) -> None:
    dav_standin.handler = _status(207, {"X-Junk": "a" * 200_000})  # type: ignore[assignment]
    ev = await evidence(caldav_account(dav_standin.url(), "u", "pw"))
    assert ev.network == "too_large"


async def test_a_digest_only_server_gets_a_digest_answer(dav_standin: DavStandIn) -> None:
    import hashlib
    import re

    def md5(s: str) -> str:
        return hashlib.md5(s.encode()).hexdigest()  # noqa: S324 - RFC 7616 MD5

    async def digest(request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Digest "):
            p = dict(re.findall(r'(\w+)="?([^",]*)"?', auth[7:]))
            ha1 = md5("u:r:digest-pw")
            ha2 = md5(f"{request.method}:{p['uri']}")
            want = md5(f"{ha1}:{p['nonce']}:{p['nc']}:{p['cnonce']}:{p['qop']}:{ha2}")
            if p.get("response") == want:
                return web.Response(status=207, body=MULTISTATUS_OK, content_type="application/xml")
        return web.Response(
            status=401, headers={"WWW-Authenticate": 'Digest realm="r", nonce="n1", qop="auth"'}
        )

    dav_standin.handler = digest
    result = await run(caldav_account(dav_standin.url(), "u", "digest-pw"))
    assert result.ok, result.failure
    ev = await evidence(caldav_account(dav_standin.url(), "u", "wrong-pw"))
    assert ev.code == 401
