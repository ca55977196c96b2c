"""The SMTP probe against Dovecot's real submission service, and against small scripted
SMTP servers for the cases Dovecot cannot produce (XOAUTH2 error challenge, silence)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from typing import BinaryIO

import pytest

from agent.config.types import Account, AuthKind, Security
from agent.localservers.dovecot import Dovecot
from agent.model import Cause, Evidence, ProbeResult, Service
from agent.probes import probe_account, probe_service, smtp
from agent.probes.base import ProbeContext, ProbeError
from tests.servers.dovecot import imap_account, running_dovecot
from tests.servers.tls import TestPKI
from tests.test_probe_imap import (
    GRACE,
    RESOLVER,
    FakeTokens,
    Handler,
    ScriptedServer,
    account_at,
    assert_no_secret,
    scripted,  # noqa: F401  (fixture)
)


async def run(account: Account, **kw: object) -> ProbeResult:
    return await probe_service(account, Service.SMTP, resolver=RESOLVER, debug=True, **kw)  # type: ignore[arg-type]


async def evidence(account: Account, **kw: object) -> Evidence:
    ctx = ProbeContext(timeout=10, resolver=RESOLVER, debug=True, **kw)  # type: ignore[arg-type]
    with pytest.raises(ProbeError) as info:
        await asyncio.wait_for(smtp.probe(account, ctx), 10)
    return info.value.evidence


def smtp_script(replies: dict[str, list[str]], greeting: str = "220 fake ESMTP") -> Handler:
    """Answer each verb with lines; "<wait-empty-line>" reads one line first; unknown: 502."""

    def handler(rfile: BinaryIO, wfile: BinaryIO) -> None:
        if greeting:
            wfile.write(greeting.encode() + b"\r\n")
        for raw in rfile:
            verb = raw.decode(errors="replace").strip().split(" ", 1)[0].upper()
            for line in replies.get(verb, ["502 5.5.1 unknown"]):
                if line == "<close>":
                    return
                if line == "<wait-empty-line>":
                    if rfile.readline().strip() != b"":
                        return
                    continue
                wfile.write(line.encode() + b"\r\n")

    return handler


@pytest.mark.parametrize("security", ["starttls", "plain"])
async def test_good_submission_login(dovecot: Dovecot, pki: TestPKI, security: str) -> None:
    acct = imap_account(dovecot, "alice", "alice-pw", ca_file=pki.ca, smtp_security=security)
    result = await run(acct)
    assert result.ok, result.failure
    names = [s.name for s in result.steps]
    for step in ("connect", "greeting", "ehlo", "auth", "mail_from"):
        assert step in names
    assert ("starttls" in names) == (security == "starttls")
    assert any("MAIL FROM:<alice@example.com>" in line for line in result.transcript)
    assert not any("DATA" in line for line in result.transcript)
    assert_no_secret(result, "alice-pw")


async def test_wrong_password_is_auth_failed(dovecot: Dovecot, pki: TestPKI) -> None:
    acct = imap_account(dovecot, "alice", "wrong-pw", ca_file=pki.ca)
    ev = await evidence(acct)
    assert (ev.stage, ev.code, ev.text) == ("auth", 535, "5.7.8 Authentication failed.")
    result = await run(acct)
    assert result.failure is not None
    assert result.failure.cause is Cause.AUTH_FAILED
    # the debug transcript shows the server's refusal, right after the redacted AUTH
    auth = next(i for i, line in enumerate(result.transcript) if line.startswith("C: AUTH "))
    assert result.transcript[auth + 1] == "S: 535 5.7.8 Authentication failed."
    assert_no_secret(result, "wrong-pw")


async def test_nologin_over_submission(dovecot: Dovecot, pki: TestPKI) -> None:
    dovecot.set_nologin("alice", "Account disabled by the administrator")
    ev = await evidence(imap_account(dovecot, "alice", "alice-pw", ca_file=pki.ca))
    assert ev.stage == "auth"
    assert ev.code is not None and ev.code >= 500


async def test_server_down_is_server_unavailable(dovecot: Dovecot, pki: TestPKI) -> None:
    acct = imap_account(dovecot, "alice", "alice-pw", ca_file=pki.ca)
    dovecot.stop()
    ev = await evidence(acct)
    assert (ev.stage, ev.network) == ("connect", "refused")
    result = await run(acct)
    assert result.failure is not None
    assert result.failure.cause is Cause.SERVER_UNAVAILABLE


async def test_self_signed_certificate_is_tls_error(pki: TestPKI) -> None:
    with running_dovecot(pki.self_signed) as d:
        acct = imap_account(d, "alice", "alice-pw")
        ev = await evidence(acct)
        assert (ev.stage, ev.network) == ("tls", "tls_cert")
        result = await run(acct)
        assert result.failure is not None
        assert result.failure.cause is Cause.TLS_ERROR
        ok = await run(imap_account(d, "alice", "alice-pw", verify=False))
        assert ok.ok, ok.failure


EHLO = ["250-fake", "250-AUTH PLAIN LOGIN XOAUTH2", "250 ENHANCEDSTATUSCODES"]


async def test_xoauth2_error_challenge_is_answered_and_decoded(
    scripted: Callable[[Handler], ScriptedServer],  # noqa: F811
) -> None:
    error = {"status": "401", "schemes": "Bearer", "scope": "https://mail.google.com/"}
    challenge = base64.b64encode(json.dumps(error).encode()).decode()
    srv = scripted(
        smtp_script(
            {
                "EHLO": EHLO,
                "AUTH": [
                    "334 " + challenge,
                    "<wait-empty-line>",
                    "535 5.7.8 Username and Password not accepted.",
                ],
                "QUIT": ["221 bye", "<close>"],
            }
        )
    )
    acct = account_at(srv.port, password=None, auth=AuthKind.XOAUTH2)
    tokens = FakeTokens()
    ev = await evidence(acct, tokens=tokens)
    assert (ev.stage, ev.code) == ("auth", 535)
    assert ev.text.startswith("5.7.8 Username and Password not accepted.")
    assert json.dumps(error) in ev.text
    assert tokens.calls == [False, True]
    assert srv.connections == 2
    tokens = FakeTokens()
    result = await run(acct, tokens=tokens)
    assert result.failure is not None
    assert result.failure.cause in (Cause.AUTH_FAILED, Cause.ACCESS_REVOKED)
    for i in (1, 2):
        assert_no_secret(result, f"ya29.token-{i}-secret")


async def test_xoauth2_good_token(
    scripted: Callable[[Handler], ScriptedServer],  # noqa: F811
) -> None:
    srv = scripted(
        smtp_script(
            {
                "EHLO": EHLO,
                "AUTH": ["235 2.7.0 Accepted"],
                "MAIL": ["250 2.1.0 OK"],
                "RSET": ["250 2.0.0 OK"],
                "QUIT": ["221 bye", "<close>"],
            }
        )
    )
    tokens = FakeTokens()
    result = await run(account_at(srv.port, password=None, auth=AuthKind.XOAUTH2), tokens=tokens)
    assert result.ok, result.failure
    assert tokens.calls == [False]


async def test_sender_refused_is_reported(
    scripted: Callable[[Handler], ScriptedServer],  # noqa: F811
) -> None:
    srv = scripted(
        smtp_script(
            {
                "EHLO": EHLO,
                "AUTH": ["235 2.7.0 Accepted"],
                "MAIL": ["550 5.7.1 Sending is disabled for this account"],
                "QUIT": ["221 bye", "<close>"],
            }
        )
    )
    ev = await evidence(account_at(srv.port))
    assert (ev.stage, ev.code) == ("mail_from", 550)
    assert ev.text == "5.7.1 Sending is disabled for this account"
    result = await run(account_at(srv.port))
    assert "S: 550 5.7.1 Sending is disabled for this account" in result.transcript


async def test_greeting_refusal(
    scripted: Callable[[Handler], ScriptedServer],  # noqa: F811
) -> None:
    srv = scripted(smtp_script({}, greeting="554 5.3.2 Too busy, try later"))
    ev = await evidence(account_at(srv.port))
    assert (ev.stage, ev.code) == ("greeting", 554)


async def test_silent_server_times_out_by_the_deadline(
    scripted: Callable[[Handler], ScriptedServer],  # noqa: F811
) -> None:
    def silent(rfile: BinaryIO, wfile: BinaryIO) -> None:
        time.sleep(30)

    srv = scripted(silent)
    acct = account_at(srv.port, timeout=2.0)
    t0 = time.perf_counter()
    result = await run(acct)
    assert time.perf_counter() - t0 < 2.0 + GRACE
    assert result.failure is not None
    assert result.failure.cause is Cause.TIMEOUT


async def test_implicit_tls_against_starttls_port_fails_cleanly(
    dovecot: Dovecot, pki: TestPKI
) -> None:
    acct = imap_account(dovecot, "alice", "alice-pw", ca_file=pki.ca, smtp_security="tls")
    result = await run(acct)
    assert result.failure is not None
    assert result.failure.cause is not None
    assert acct.smtp is not None and acct.smtp.security is Security.TLS


async def test_concurrent_imap_and_smtp_probes_never_reuse_a_live_descriptor(
    dovecot: Dovecot, pki: TestPKI
) -> None:
    """IMAP and SMTP of one account run together; after a STARTTLS session ends, its
    descriptor must be free for the next connection (a socket closed under a live transport
    broke every later probe with 'File descriptor N is used by transport')."""
    good = imap_account(dovecot, "alice", "alice-pw", ca_file=pki.ca)
    bad = imap_account(dovecot, "alice", "wrong", ca_file=pki.ca)
    for account, ok in [(good, True), (bad, False), (good, True), (bad, False), (good, True)]:
        results = await probe_account(account)
        for r in results:
            assert r.ok is ok, r.failure
            if not ok:
                assert r.failure is not None and r.failure.cause is Cause.AUTH_FAILED
