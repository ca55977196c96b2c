"""IMAP probe: connect, TLS, greeting, CAPABILITY, STARTTLS, LOGIN or XOAUTH2, SELECT INBOX
(must be read-write), GETQUOTAROOT (when offered), NOOP, LOGOUT.

Round trips are what a probe costs, on both ends: capabilities announced in the greeting
are used instead of asking (not across STARTTLS), and everything after LOGIN goes out in
one write, its replies read in order. LOGIN itself is never pipelined: a refused login must
not be followed by commands a provider would count against the account.

The client is aioimaplib behind `imap_transport.SafeImapProtocol`, which caps what a server
may send. Every failure is raised as ProbeError(Evidence(protocol="imap", stage=<step>,
status=OK|NO|BAD|BYE, text=<tagged reply text>, untagged=<untagged lines of the exchange>)).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import re

from aioimaplib import aioimaplib as _imap

from agent.config.types import Account, AuthKind, MailServer, Security
from agent.model import Evidence, Service
from agent.probes.base import ProbeContext, ProbeError
from agent.probes.errors import evidence_from_exception
from agent.probes.imap_transport import (
    Broken,
    PipedCommand,
    SafeImapProtocol,
    finish_command,
    open_socket,
    ssl_context,
    start_command,
)

PROTOCOL = "imap"
LOGOUT_WAIT = 2.0  # seconds a polite LOGOUT may take; the account works either way
AFTER_NO_WAIT = 0.25  # seconds to catch a `* BYE` that follows a refused login
_QUOTA_RE = re.compile(r"([A-Za-z-]+) (\d+) (\d+)")


async def probe(account: Account, ctx: ProbeContext) -> None:
    server = account.imap
    if server is None:
        raise ProbeError(Evidence(PROTOCOL, "connect", text="account has no IMAP server"))
    if server.password is not None:
        ctx.redact.add(server.password)
    oauth = server.auth is AuthKind.XOAUTH2
    try:
        await _session(account, server, ctx, refresh=False)
    except ProbeError as e:
        ev = e.evidence
        refused = oauth and ev.stage == "login" and ev.status in ("NO", "BAD")
        # A BYE after a good login ends one session, not the account: the server may have
        # restarted, the selected mailbox may have gone, or (OAuth) the access token expired
        # mid-session. One more session settles it; a server that is really down, or an
        # account that is really broken, answers the same way again.
        dropped = ev.status == "BYE" and ev.stage in ("select", "quota", "noop")
        if ev.protocol != PROTOCOL or not (refused or dropped):
            raise
        ctx.log("*", f"{ev.stage}: {ev.status} {ev.text[:200]}; retrying once on a new session")
        await _session(account, server, ctx, refresh=oauth)


async def _session(account: Account, server: MailServer, ctx: ProbeContext, refresh: bool) -> None:
    loop = asyncio.get_running_loop()
    proto = SafeImapProtocol(loop, max_line=ctx.max_line, max_literal=ctx.max_body, log=ctx.log)
    ctx.on_abort(proto.abort)
    try:
        await _connect(proto, server, ctx)
        await _converse(proto, account, server, ctx, refresh)
    finally:
        proto.abort()


async def _connect(proto: SafeImapProtocol, server: MailServer, ctx: ProbeContext) -> None:
    loop = asyncio.get_running_loop()
    with ctx.step("connect"):
        try:
            sock = await open_socket(ctx, server.host, server.port)
        except OSError as e:
            raise ProbeError(evidence_from_exception(PROTOCOL, "connect", e)) from None
    if server.security is Security.TLS:
        with ctx.step("tls"):
            try:
                await loop.create_connection(
                    lambda: proto,
                    sock=sock,
                    ssl=ssl_context(server.tls),
                    server_hostname=server.host,
                )
            except (OSError, EOFError) as e:
                sock.close()
                raise ProbeError(evidence_from_exception(PROTOCOL, "tls", e)) from None
    else:
        await loop.create_connection(lambda: proto, sock=sock)


async def _converse(
    proto: SafeImapProtocol,
    account: Account,
    server: MailServer,
    ctx: ProbeContext,
    refresh: bool,
) -> None:
    with ctx.step("greeting"):
        greeting = await _greeting(proto)
    preauth = proto.state == _imap.AUTH
    with ctx.step("capability"):
        # A server may announce its capabilities in the greeting (RFC 9051 7.1): one round
        # trip saved. Before STARTTLS they only tell whether STARTTLS is offered.
        caps = _caps_from((), greeting) or await _capability(proto, ctx)
    if server.security is Security.STARTTLS:
        with ctx.step("starttls"):
            await _starttls(proto, server, ctx, caps)
        with ctx.step("capability"):
            caps = await _capability(proto, ctx)
    if not preauth:
        with ctx.step("login"):
            caps = await _login(proto, account, server, ctx, caps, refresh)
        if not caps:
            # Capabilities change with login (QUOTA is often offered only then); a server
            # that did not announce them with its OK is asked.
            with ctx.step("capability"):
                caps = await _capability(proto, ctx)
    else:
        ctx.log("*", f"PREAUTH greeting: {greeting}")
    await _select_and_close(proto, ctx, quota="QUOTA" in caps)


async def _select_and_close(proto: SafeImapProtocol, ctx: ProbeContext, quota: bool) -> None:
    """SELECT INBOX, GETQUOTAROOT (when offered), NOOP and LOGOUT, pipelined in one write
    (RFC 9051 5.5): none needs another's reply to be sent, and the server answers them in
    order. The first reply that fails decides; LOGOUT goes out either way."""
    if proto.bye is not None:
        raise ProbeError(_ev("select", "BYE", proto.bye))
    select = proto.command("SELECT", "INBOX")
    getquota = proto.command("GETQUOTAROOT", "INBOX") if quota else None
    noop, logout = proto.command("NOOP"), proto.command("LOGOUT")
    cmds = [c for c in (select, getquota, noop, logout) if c is not None]
    try:
        with proto.corked():
            for cmd in cmds:
                start_command(proto, cmd)
    except Broken as b:
        raise ProbeError(_broken("select", proto, b)) from None
    except _imap.AioImapException as e:
        raise ProbeError(_ev("select", None, f"{type(e).__name__}: {e}"[:1000])) from None
    with ctx.step("select"):
        status, text, untagged = await _finish(proto, "select", select)
        if status != "OK":
            raise ProbeError(_ev("select", status, text, untagged))
        if "[READ-ONLY]" in text.upper() or "[READ-WRITE]" not in text.upper():
            raise ProbeError(
                _ev("select", status, f"INBOX is not writable (read-only): {text}", untagged)
            )
        proto.state = _imap.SELECTED
    if getquota is not None:
        with ctx.step("quota"):
            if select.bye is not None:
                raise ProbeError(_ev("quota", "BYE", select.bye))
            await _quota(proto, ctx, getquota)
    with ctx.step("noop"):
        status, text, untagged = await _finish(proto, "noop", noop)
        bye = next((c.bye for c in cmds[:-1] if c.bye is not None), None)
        if bye is not None:
            raise ProbeError(_ev("noop", "BYE", bye, untagged))
        if status != "OK":
            raise ProbeError(_ev("noop", status, text, untagged))
    with ctx.step("logout"), contextlib.suppress(ProbeError, TimeoutError):
        await asyncio.wait_for(_finish(proto, "logout", logout), LOGOUT_WAIT)


async def _greeting(proto: SafeImapProtocol) -> str:
    waiters: set[asyncio.Future[object]] = {proto.greeting, proto.failed}  # type: ignore[arg-type]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    if not proto.greeting.done() or proto.greeting.cancelled():
        raise ProbeError(_broken("greeting", proto, proto.failed.result()))
    raw = proto.greeting.result()
    line = raw.decode("utf-8", errors="replace")
    word, _, rest = line[2:].partition(" ") if line.startswith("* ") else ("", "", line)
    word = word.upper()
    if word in ("OK", "PREAUTH"):
        return rest
    if word == "BYE":
        raise ProbeError(_ev("greeting", "BYE", rest))
    raise ProbeError(_ev("greeting", word or None, f"unexpected greeting: {line}"[:1000]))


async def _capability(proto: SafeImapProtocol, ctx: ProbeContext) -> set[str]:
    status, text, untagged = await _exchange(proto, "capability", proto.command("CAPABILITY"))
    if status != "OK":
        raise ProbeError(_ev("capability", status, text, untagged))
    return _caps_from(untagged, text)


def _caps_from(untagged: tuple[str, ...], text: str) -> set[str]:
    """Capabilities from `* CAPABILITY ...` lines or a `[CAPABILITY ...]` response code."""
    caps: set[str] = set()
    for line in untagged:
        if line.upper().startswith("* CAPABILITY "):
            caps.update(c.upper() for c in line.split()[2:])
    m = re.match(r"\[CAPABILITY ([^\]]*)\]", text, re.IGNORECASE)
    if m:
        caps.update(c.upper() for c in m.group(1).split())
    return caps


async def _starttls(
    proto: SafeImapProtocol, server: MailServer, ctx: ProbeContext, caps: set[str]
) -> None:
    if "STARTTLS" not in caps:
        raise ProbeError(_ev("starttls", None, "server does not offer STARTTLS"))
    status, text, untagged = await _exchange(proto, "starttls", proto.command("STARTTLS"))
    if status != "OK":
        raise ProbeError(_ev("starttls", status, text, untagged))
    loop = asyncio.get_running_loop()
    try:
        transport = await loop.start_tls(
            proto.current_transport, proto, ssl_context(server.tls), server_hostname=server.host
        )
    except (OSError, EOFError) as e:
        raise ProbeError(evidence_from_exception(PROTOCOL, "tls", e)) from None
    if transport is None:
        raise ProbeError(_ev("tls", None, "TLS upgrade failed"))
    proto.set_transport(transport)


async def _login(
    proto: SafeImapProtocol,
    account: Account,
    server: MailServer,
    ctx: ProbeContext,
    caps: set[str],
    refresh: bool,
) -> set[str]:
    """Log in; returns the capabilities announced with the login's reply (often none)."""
    if server.auth is AuthKind.XOAUTH2:
        if ctx.tokens is None:
            raise ProbeError(_ev("login", None, "no OAuth token source configured"))
        token = await ctx.tokens.access_token(account, Service.IMAP, refresh=refresh)
        ctx.redact.add(token)
        sasl = base64.b64encode(
            f"user={server.username}\x01auth=Bearer {token}\x01\x01".encode()
        ).decode("ascii")
        ctx.redact.add(sasl)
        if "SASL-IR" in caps:
            cmd = proto.command("AUTHENTICATE", "XOAUTH2", sasl)
            scrub = sasl
        else:
            proto.auth_replies = [sasl]
            cmd = proto.command("AUTHENTICATE", "XOAUTH2")
            scrub = None
    else:
        password = server.password.reveal() if server.password is not None else ""
        cmd = proto.command("LOGIN", _imap.quoted(server.username), _imap.quoted(password))
        scrub = _imap.quoted(password)
    mark = len(proto.untagged)
    status, text, untagged = await _exchange(proto, "login", cmd, scrub=scrub)
    if status == "OK":
        proto.state = _imap.AUTH
        return _caps_from(untagged, text)
    # A refused login is often followed by `* BYE`: give it a moment to arrive.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(proto.failed), AFTER_NO_WAIT)
    untagged = tuple(proto.untagged[mark:])
    if proto.challenges:
        text = f"{text} {_decode_challenge(proto.challenges[-1])}".strip()
    raise ProbeError(_ev("login", status, text, untagged))


async def _quota(proto: SafeImapProtocol, ctx: ProbeContext, cmd: PipedCommand) -> None:
    status, text, untagged = await _finish(proto, "quota", cmd)
    if status != "OK":
        ctx.log("*", f"GETQUOTAROOT refused ({status} {text}); quota not checked")
        return
    for line in untagged:
        if not line.upper().startswith("* QUOTA "):
            continue
        for resource, used, limit in _QUOTA_RE.findall(line):
            if int(limit) > 0 and int(used) >= int(limit):
                raise ProbeError(
                    _ev(
                        "quota",
                        "OK",
                        f"[OVERQUOTA] quota full: {resource.upper()} {used} of {limit}",
                        untagged,
                    )
                )


async def _exchange(
    proto: SafeImapProtocol, stage: str, cmd: PipedCommand, scrub: str | None = None
) -> tuple[str, str, tuple[str, ...]]:
    """Run one command: (status, tagged text, untagged lines), or raise ProbeError."""
    if proto.bye is not None:
        raise ProbeError(_ev(stage, "BYE", proto.bye))
    proto.scrub = scrub
    try:
        start_command(proto, cmd)
    except Broken as b:
        raise ProbeError(_broken(stage, proto, b)) from None
    except _imap.AioImapException as e:
        raise ProbeError(_ev(stage, None, f"{type(e).__name__}: {e}"[:1000])) from None
    finally:
        proto.scrub = None
    return await _finish(proto, stage, cmd)


async def _finish(
    proto: SafeImapProtocol, stage: str, cmd: PipedCommand
) -> tuple[str, str, tuple[str, ...]]:
    """Wait for a sent command's reply: (status, tagged text, its untagged lines)."""
    try:
        resp = await finish_command(proto, cmd)
    except Broken as b:
        raise ProbeError(_broken(stage, proto, b, tuple(cmd.untagged))) from None
    lines = resp.lines
    last = lines[-1] if lines else b""
    text = last.decode("utf-8", errors="replace") if isinstance(last, bytes | bytearray) else ""
    return str(resp.result), text[:1000], tuple(cmd.untagged)


def _broken(
    stage: str, proto: SafeImapProtocol, b: Broken, untagged: tuple[str, ...] = ()
) -> Evidence:
    if proto.bye is not None and b.network in ("eof", "reset"):
        return _ev(stage, "BYE", proto.bye, untagged)
    if b.exc is not None:
        ev = evidence_from_exception(PROTOCOL, stage, b.exc)
        return Evidence(
            PROTOCOL, stage, network=ev.network, exception=ev.exception, untagged=untagged
        )
    return Evidence(PROTOCOL, stage, network=b.network, text=b.text, untagged=untagged)


def _ev(stage: str, status: str | None, text: str, untagged: tuple[str, ...] = ()) -> Evidence:
    return Evidence(PROTOCOL, stage, status=status, text=text[:1000], untagged=untagged)


def _decode_challenge(raw: bytes) -> str:
    try:
        return base64.b64decode(raw, validate=True).decode("utf-8", errors="replace")[:1000]
    except (binascii.Error, ValueError):
        return raw[:200].decode("ascii", errors="replace")
