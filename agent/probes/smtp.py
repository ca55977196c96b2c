"""SMTP probe (aiosmtplib): connect, TLS or greeting, EHLO, STARTTLS, AUTH (PLAIN/LOGIN or
XOAUTH2), `MAIL FROM` then RSET, QUIT. Never sends DATA, so nothing is ever delivered.

Failures are raised as ProbeError(Evidence(protocol="smtp", stage=<step>, code=<reply
code>, text=<reply text with its enhanced status code, e.g. "5.7.8 Authentication failed.">)).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ssl
from collections.abc import Callable

import aiosmtplib

from agent.config.types import Account, AuthKind, MailServer, Security
from agent.model import Evidence, Service
from agent.probes.base import ProbeContext, ProbeError
from agent.probes.errors import evidence_from_exception
from agent.probes.imap_transport import open_socket, ssl_context

PROTOCOL = "smtp"
EHLO_NAME = "localhost"  # never socket.getfqdn(): that would ask outside DNS
QUIT_WAIT = 2.0


async def probe(account: Account, ctx: ProbeContext) -> None:
    server = account.smtp
    if server is None:
        raise ProbeError(Evidence(PROTOCOL, "connect", text="account has no SMTP server"))
    if server.password is not None:
        ctx.redact.add(server.password)
    if server.auth is not AuthKind.XOAUTH2:
        await _session(account, server, ctx, refresh=False)
        return
    try:
        await _session(account, server, ctx, refresh=False)
    except ProbeError as e:
        ev = e.evidence
        if not (ev.protocol == PROTOCOL and ev.stage == "auth" and ev.code is not None):
            raise
        ctx.log("*", "token refused; retrying once with a refreshed token")
        await _session(account, server, ctx, refresh=True)


async def _session(account: Account, server: MailServer, ctx: ProbeContext, refresh: bool) -> None:
    with ctx.step("connect"):
        try:
            sock = await open_socket(ctx, server.host, server.port)
        except OSError as e:
            raise ProbeError(evidence_from_exception(PROTOCOL, "connect", e)) from None
    tls = ssl_context(server.tls)
    implicit = server.security is Security.TLS
    smtp = aiosmtplib.SMTP(
        hostname=server.host,
        sock=sock,
        use_tls=implicit,
        start_tls=False,
        tls_context=tls if implicit else None,
        local_hostname=EHLO_NAME,
        timeout=ctx.timeout,
    )

    # Every transport built on `sock` (the TCP one, and the TLS one STARTTLS puts on top)
    # must be aborted, never the socket closed under them: a transport still registered for
    # a closed file descriptor breaks the next connection that gets the same number.
    transports: list[asyncio.BaseTransport] = []

    def abort() -> None:
        if smtp.transport is not None and smtp.transport not in transports:
            transports.append(smtp.transport)
        for t in transports:
            t.abort()  # type: ignore[attr-defined]
        if not transports:
            sock.close()  # no transport ever took the socket over

    def keep_transport() -> None:
        if smtp.transport is not None and smtp.transport not in transports:
            transports.append(smtp.transport)

    ctx.on_abort(abort)
    try:
        await _converse(smtp, account, server, ctx, tls, refresh, keep_transport)
    finally:
        keep_transport()
        abort()


async def _converse(
    smtp: aiosmtplib.SMTP,
    account: Account,
    server: MailServer,
    ctx: ProbeContext,
    tls: ssl.SSLContext,
    refresh: bool,
    keep_transport: Callable[[], None],
) -> None:
    implicit = server.security is Security.TLS
    with ctx.step("tls" if implicit else "greeting"):
        try:
            greeting = await smtp.connect()
        except aiosmtplib.SMTPResponseException as e:
            raise ProbeError(_refused(ctx, "greeting", e)) from None
        except (aiosmtplib.SMTPException, OSError) as e:
            raise ProbeError(_from_exception("tls" if implicit else "greeting", e)) from None
        finally:
            keep_transport()
        ctx.log("S", str(greeting))
    with ctx.step("ehlo"):
        await _ehlo(smtp, ctx)
    if server.security is Security.STARTTLS:
        with ctx.step("starttls"):
            if not smtp.supports_extension("starttls"):
                raise ProbeError(
                    Evidence(PROTOCOL, "starttls", text="server does not offer STARTTLS")
                )
            ctx.log("C", "STARTTLS")
            try:
                keep_transport()
                resp = await smtp.starttls(server_hostname=server.host, tls_context=tls)
            except aiosmtplib.SMTPResponseException as e:
                raise ProbeError(_refused(ctx, "starttls", e)) from None
            except (aiosmtplib.SMTPException, OSError) as e:
                raise ProbeError(_from_exception("tls", e)) from None
            ctx.log("S", str(resp))
        with ctx.step("ehlo"):
            await _ehlo(smtp, ctx)
    with ctx.step("auth"):
        await _auth(smtp, account, server, ctx, refresh)
    sender = account.address or server.username
    with ctx.step("mail_from"):
        ctx.log("C", f"MAIL FROM:<{sender}>")
        try:
            resp = await smtp.mail(sender)
        except aiosmtplib.SMTPResponseException as e:
            raise ProbeError(_refused(ctx, "mail_from", e)) from None
        except (aiosmtplib.SMTPException, OSError) as e:
            raise ProbeError(_from_exception("mail_from", e)) from None
        ctx.log("S", str(resp))
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            ctx.log("C", "RSET")
            ctx.log("S", str(await smtp.rset()))
    with ctx.step("quit"), contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
        ctx.log("C", "QUIT")
        ctx.log("S", str(await asyncio.wait_for(smtp.quit(), QUIT_WAIT)))


async def _ehlo(smtp: aiosmtplib.SMTP, ctx: ProbeContext) -> None:
    ctx.log("C", f"EHLO {EHLO_NAME}")
    try:
        resp = await smtp.ehlo()
    except aiosmtplib.SMTPResponseException as e:
        raise ProbeError(_refused(ctx, "ehlo", e)) from None
    except (aiosmtplib.SMTPException, OSError) as e:
        raise ProbeError(_from_exception("ehlo", e)) from None
    ctx.log("S", str(resp).replace("\n", " | "))


async def _auth(
    smtp: aiosmtplib.SMTP, account: Account, server: MailServer, ctx: ProbeContext, refresh: bool
) -> None:
    mechanisms = {m.upper() for m in smtp.server_auth_methods}
    try:
        if server.auth is AuthKind.XOAUTH2:
            await _xoauth2(smtp, account, server, ctx, refresh)
            return
        password = server.password.reveal() if server.password is not None else ""
        if "PLAIN" in mechanisms:
            ctx.log("C", "AUTH PLAIN <redacted>")
            resp = await smtp.auth_plain(server.username, password)
        elif "LOGIN" in mechanisms:
            ctx.log("C", "AUTH LOGIN <redacted>")
            resp = await smtp.auth_login(server.username, password)
        else:
            offered = " ".join(sorted(mechanisms)) or "none"
            raise ProbeError(
                Evidence(
                    PROTOCOL,
                    "auth",
                    text=f"server offers no password mechanism (AUTH {offered})",
                )
            )
        ctx.log("S", str(resp))
    except aiosmtplib.SMTPResponseException as e:
        raise ProbeError(_refused(ctx, "auth", e)) from None
    except (aiosmtplib.SMTPException, OSError) as e:
        raise ProbeError(_from_exception("auth", e)) from None


async def _xoauth2(
    smtp: aiosmtplib.SMTP, account: Account, server: MailServer, ctx: ProbeContext, refresh: bool
) -> None:
    if ctx.tokens is None:
        raise ProbeError(Evidence(PROTOCOL, "auth", text="no OAuth token source configured"))
    token = await ctx.tokens.access_token(account, Service.SMTP, refresh=refresh)
    ctx.redact.add(token)
    blob = base64.b64encode(
        f"user={server.username}\x01auth=Bearer {token}\x01\x01".encode()
    ).decode("ascii")
    ctx.redact.add(blob)
    ctx.log("C", "AUTH XOAUTH2 <redacted>")
    resp = await smtp.execute_command(b"AUTH", b"XOAUTH2", blob.encode("ascii"))
    challenge = ""
    if resp.code == 334:
        # The error challenge: base64 JSON saying why; the server waits for an empty line.
        challenge = _decode_challenge(resp.message)
        ctx.log("S", f"334 {challenge}")
        ctx.log("C", "")
        resp = await smtp.execute_command(b"")
    ctx.log("S", str(resp))
    if resp.code != 235:
        text = f"{resp.message} {challenge}".strip()
        raise ProbeError(_reply("auth", resp.code, text))


def _refused(ctx: ProbeContext, stage: str, e: aiosmtplib.SMTPResponseException) -> Evidence:
    """The server's refusal, into the transcript (aiosmtplib raised it) and the evidence."""
    ctx.log("S", f"{e.code} {e.message}".replace("\n", " | "))
    return _reply(stage, e.code, e.message)


def _reply(stage: str, code: int, text: str) -> Evidence:
    return Evidence(PROTOCOL, stage, code=code, text=text.replace("\n", " ")[:1000])


def _from_exception(stage: str, exc: BaseException) -> Evidence:
    """aiosmtplib wraps socket and TLS errors: classify by the cause it wraps."""
    inner: BaseException = exc
    while inner.__cause__ is not None and not isinstance(inner, ssl.SSLError):
        inner = inner.__cause__
    if isinstance(inner, ssl.SSLError):
        return evidence_from_exception(PROTOCOL, "tls", inner)
    ev = evidence_from_exception(PROTOCOL, stage, inner)
    if ev.network is None and isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return Evidence(PROTOCOL, stage, network="eof", exception=ev.exception)
    if isinstance(exc, aiosmtplib.SMTPTimeoutError):
        return Evidence(PROTOCOL, stage, network="timeout", exception=ev.exception)
    return ev


def _decode_challenge(raw: str) -> str:
    try:
        return base64.b64decode(raw.strip(), validate=True).decode("utf-8", errors="replace")[:1000]
    except (binascii.Error, ValueError):
        return raw[:200]
