"""Servers that replay one provider-corpus entry over a real socket on 127.0.0.1, exactly as
/work/shared/corpus/README.md ("Replay") says.

`replay` fixture (function scope): an async context-manager factory.

    async with replay(entry) as target:        # entry: one dict of provider-failures.yaml
        account = account_for(entry, target)   # an Account pointing at the replay servers
        result = await probe_service(account, target.service, resolver=target.resolver,
                                     tokens=target.tokens())

`ReplayTarget` says where the entry is served: host/port (IMAP, SMTP), url (CalDAV), the
token endpoint (`token_url`, always running: xoauth2 accounts refresh there), the resolver
(StaticResolver: the host name resolves to 127.0.0.1, or "nxdomain"/"temporary"), the TLS
settings (the `pki` CA is trusted), and `unreachable`: the probe must run where connecting
fails with ENETUNREACH (`run_unreachable(...)` runs it in `unshare -n`, whose loopback is
down, so nothing leaves the machine).

Servers: `ImapReplay` (greeting, CAPABILITY, LOGIN/AUTHENTICATE with `+` challenges, SELECT,
NOOP, LOGOUT, STARTTLS -> BAD), `SmtpReplay` (220, EHLO with AUTH PLAIN LOGIN XOAUTH2, AUTH
with 334 challenges, MAIL FROM, RSET, QUIT), `DavReplay` (aiohttp: a minimal working CalDAV
server that answers credentialed requests with the entry's `http`), `TokenReplay` (aiohttp:
the refresh grant, answered with the entry's `http` or a good token). Entries whose cause is
`ok` are served once; the retry gets the working answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from agent.config.types import (
    Account,
    AuthKind,
    CalDavServer,
    MailServer,
    OAuth2,
    Owner,
    Security,
    TlsSettings,
)
from agent.model import Service
from agent.net import StaticResolver
from agent.secret import Secret
from tests.servers.tls import CertPair, TestPKI

Entry = Mapping[str, Any]
HOST = "localhost"  # the name accounts use; StaticResolver maps it to 127.0.0.1
USER = "user@example.com"
PASSWORD = "replay-pw-3c9f"
REFRESH_TOKEN = "replay-refresh-77d1"
CLIENT_SECRET = "replay-client-secret-5e2a"
PROBE_TIMEOUT = 2.0  # seconds: conditions that hang (no greeting) end here

DEFAULT_CAPS = "* CAPABILITY IMAP4rev1 LITERAL+ SASL-IR AUTH=PLAIN AUTH=XOAUTH2"
SMTP_EHLO = ["250-localhost", "250-PIPELINING", "250-AUTH PLAIN LOGIN XOAUTH2", "250 8BITMIME"]
SERVICE_OF = {"imap": Service.IMAP, "smtp": Service.SMTP, "caldav": Service.CALDAV}


def passing(entry: Entry) -> bool:
    return bool(entry["expect"]["cause"] == "ok")


class _Once:
    """Serves an `ok` entry's reply once; a failing entry's every time."""

    def __init__(self, entry: Entry) -> None:
        self.passing = passing(entry)
        self.served = 0

    def take(self) -> bool:
        if self.passing and self.served:
            return False
        self.served += 1
        return True


# -- line servers ------------------------------------------------------------------------


class LineServer:
    """An asyncio TCP server on 127.0.0.1 (plain or TLS) running `handle` per connection."""

    def __init__(self, tls: CertPair | None = None) -> None:
        self.tls = tls
        self.server: asyncio.Server | None = None
        self.port = 0
        self.connections = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        ctx = self.tls.server_context() if self.tls else None
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0, ssl=ctx)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for t in list(self._tasks):
                t.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 1.0)

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            await self.handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, OSError):
            pass
        finally:
            self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


async def _send(writer: asyncio.StreamWriter, *lines: str) -> None:
    writer.write(b"".join(line.encode("utf-8") + b"\r\n" for line in lines))
    await writer.drain()


async def _readline(reader: asyncio.StreamReader) -> str | None:
    raw = await reader.readline()
    if not raw:
        return None
    return raw.decode("utf-8", "replace").rstrip("\r\n")


class ImapReplay(LineServer):
    def __init__(self, entry: Entry, tls: CertPair | None = None) -> None:
        super().__init__(tls)
        self.entry = entry
        self.once = _Once(entry)
        self.commands: list[str] = []

    def _caps(self) -> str:
        for line in self.entry.get("server_lines") or ():
            if line.upper().startswith("* CAPABILITY"):
                return str(line)
        return DEFAULT_CAPS

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        entry = self.entry
        stage = entry.get("stage")
        lines = list(entry.get("server_lines") or ())
        replay = bool(lines) and self.once.take()
        if stage == "greeting" and replay:
            await _send(writer, *lines)
            return
        await _send(writer, entry.get("greeting") or "* OK IMAP4rev1 ready")
        cursor = 0  # next server line to replay on this connection
        while True:
            line = await _readline(reader)
            if line is None:
                return
            tag, _, rest = line.partition(" ")
            cmd = rest.split(" ", 1)[0].upper()
            self.commands.append(cmd)
            if cmd == "CAPABILITY":
                await _send(writer, self._caps(), f"{tag} OK CAPABILITY completed")
            elif cmd == "STARTTLS":
                await _send(writer, f"{tag} BAD STARTTLS not available on this connection")
            elif cmd in ("LOGIN", "AUTHENTICATE") and replay and stage == "login":
                cursor, closed = await self._replay(reader, writer, tag, lines, cursor)
                if closed:
                    return
            elif cmd in ("LOGIN", "AUTHENTICATE"):
                if cmd == "AUTHENTICATE" and len(rest.split()) < 3:  # no initial response
                    await _send(writer, "+ ")
                    if await _readline(reader) is None:
                        return
                await _send(writer, f"{tag} OK [CAPABILITY IMAP4rev1] Logged in")
            elif cmd in ("SELECT", "EXAMINE") and replay and stage == "select":
                cursor, closed = await self._replay(reader, writer, tag, lines, cursor)
                if closed:
                    return
            elif cmd in ("SELECT", "EXAMINE"):
                await _send(
                    writer,
                    "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)",
                    "* 0 EXISTS",
                    "* OK [UIDVALIDITY 1] UIDs valid",
                    f"{tag} OK [READ-WRITE] SELECT completed",
                )
            elif cmd == "NOOP" and replay and stage == "noop":
                cursor, closed = await self._replay(reader, writer, tag, lines, cursor)
                if closed:
                    return
            elif cmd == "LOGOUT":
                await _send(writer, "* BYE Logging out", f"{tag} OK LOGOUT completed")
                return
            else:
                await _send(writer, f"{tag} OK {cmd} completed")

    async def _replay(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        tag: str,
        lines: list[str],
        cursor: int,
    ) -> tuple[int, bool]:
        """Send the entry's lines from `cursor` up to and including the next tagged line (and
        the untagged lines right after it). `+` lines wait for the client's answer. Returns
        the new cursor and whether the connection was closed (after a `* BYE`)."""
        sent_tagged = False
        while cursor < len(lines):
            line = lines[cursor]
            if line.startswith("+"):
                if sent_tagged:
                    break
                await _send(writer, line)
                cursor += 1
                if await _readline(reader) is None:
                    return cursor, True
            elif line.startswith("*"):
                if line.upper().startswith("* CAPABILITY") and self.entry.get("stage") != "login":
                    cursor += 1
                    continue
                await _send(writer, line)
                cursor += 1
                if line.upper().startswith("* BYE"):
                    await asyncio.sleep(0)
                    return cursor, True
            else:
                if sent_tagged:
                    break
                _, _, rest = line.partition(" ")
                await _send(writer, f"{tag} {rest}")
                sent_tagged = True
                cursor += 1
        if not sent_tagged:
            # Only untagged lines for this command: they were sent unasked; close like the
            # server did, or answer the command when no BYE came.
            await _send(writer, f"{tag} OK completed")
        return cursor, False


class SmtpReplay(LineServer):
    def __init__(self, entry: Entry) -> None:
        super().__init__(None)
        self.entry = entry
        self.once = _Once(entry)
        self.commands: list[str] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stage = self.entry.get("stage")
        lines = list(self.entry.get("server_lines") or ())
        replay = bool(lines) and self.once.take()
        await _send(writer, "220 localhost ESMTP replay ready")
        while True:
            line = await _readline(reader)
            if line is None:
                return
            parts = line.split()
            cmd = parts[0].upper() if parts else ""
            self.commands.append(cmd)
            if cmd in ("EHLO", "HELO"):
                await _send(writer, *SMTP_EHLO)
            elif cmd == "AUTH" and replay and stage == "login":
                if not await self._replay(reader, writer, lines):
                    return
            elif cmd == "AUTH":
                mech = parts[1].upper() if len(parts) > 1 else ""
                if mech == "LOGIN":
                    for prompt in ("334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6")[len(parts) - 2 :]:
                        await _send(writer, prompt)
                        if await _readline(reader) is None:
                            return
                elif len(parts) < 3:
                    await _send(writer, "334 ")
                    if await _readline(reader) is None:
                        return
                await _send(writer, "235 2.7.0 Authentication successful")
            elif cmd == "MAIL" and replay and stage == "request":
                if not await self._replay(reader, writer, lines):
                    return
            elif cmd == "MAIL":
                await _send(writer, "250 2.1.0 Ok")
            elif cmd == "RCPT":
                await _send(writer, "250 2.1.5 Ok")
            elif cmd == "QUIT":
                await _send(writer, "221 2.0.0 Bye")
                return
            elif cmd == "STARTTLS":
                await _send(writer, "454 4.7.0 TLS not available")
            else:  # RSET, NOOP, ...
                await _send(writer, "250 2.0.0 Ok")

    async def _replay(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, lines: list[str]
    ) -> bool:
        """Send the entry's replies; a `334` reply waits for the client's answer. A `421`
        closes the connection. Returns False when the connection is done."""
        reply: list[str] = []
        for line in lines:
            reply.append(line)
            if len(line) > 3 and line[3] == "-":
                continue
            await _send(writer, *reply)
            code = line[:3]
            reply = []
            if code == "334" and await _readline(reader) is None:
                return False
            if code == "421":
                return False
        if reply:
            await _send(writer, *reply)
        return True


# -- HTTP servers ------------------------------------------------------------------------


def _multistatus(*responses: str) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<d:multistatus xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">'
        + "".join(responses)
        + "</d:multistatus>"
    )


def _response(href: str, props: str) -> str:
    return (
        f"<d:response><d:href>{href}</d:href><d:propstat><d:prop>{props}</d:prop>"
        "<d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>"
    )


_PRINCIPAL = "/principals/user/"
_HOME = "/calendars/user/"
_CAL = "/calendars/user/work/"
_LINKS = (
    f"<d:current-user-principal><d:href>{_PRINCIPAL}</d:href></d:current-user-principal>"
    f"<c:calendar-home-set><d:href>{_HOME}</d:href></c:calendar-home-set>"
)
_WRITABLE = (
    "<d:current-user-privilege-set>"
    + "".join(
        f"<d:privilege><d:{p}/></d:privilege>"
        for p in ("read", "write", "write-properties", "write-content", "all")
    )
    + "</d:current-user-privilege-set>"
)
_CAL_PROPS = (
    "<d:resourcetype><d:collection/><c:calendar/></d:resourcetype>"
    f"<d:displayname>Work</d:displayname>{_WRITABLE}"
)


def http_reply(spec: Mapping[str, Any], *, challenge: bool = True) -> web.Response:
    """The entry's `http` as an aiohttp response, with README's defaults filled in (a 401
    without WWW-Authenticate gets a Basic challenge when `challenge`: CalDAV, not OAuth)."""
    status = int(spec["status"])
    headers = {str(k): str(v) for k, v in (spec.get("headers") or {}).items()}
    lower = {k.lower() for k in headers}
    body = spec.get("body")
    text = body if isinstance(body, str) else ""
    if text and "content-type" not in lower:
        stripped = text.lstrip()
        if stripped.startswith(("{", "[")):
            headers["Content-Type"] = "application/json"
        elif stripped.startswith("<"):
            headers["Content-Type"] = "application/xml"
        else:
            headers["Content-Type"] = "text/plain"
    if challenge and status == 401 and "www-authenticate" not in lower:
        headers["WWW-Authenticate"] = 'Basic realm="replay"'
    return web.Response(status=status, headers=headers, body=text.encode("utf-8"))


class HttpServer:
    """An aiohttp server on 127.0.0.1 (plain or TLS) with one catch-all handler."""

    def __init__(self, tls: CertPair | None = None) -> None:
        self.tls = tls
        self.port = 0
        self.requests: list[tuple[str, str, bool]] = []  # (method, path, had credentials)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        ctx = self.tls.server_context() if self.tls else None
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        server = site._server  # aiohttp keeps the bound socket here
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        authed = "Authorization" in request.headers
        self.requests.append((request.method, request.path, authed))
        return await self.handle(request, authed)

    async def handle(self, request: web.Request, authed: bool) -> web.StreamResponse:
        raise NotImplementedError


class DavReplay(HttpServer):
    """A minimal working CalDAV server, except that requests carrying credentials get the
    entry's `http` (once for an `ok` entry; a 401 `ok` entry only challenges requests that
    come without credentials)."""

    def __init__(self, entry: Entry | None, tls: CertPair | None = None) -> None:
        super().__init__(tls)
        self.entry = entry
        self.once = _Once(entry) if entry is not None else None

    async def handle(self, request: web.Request, authed: bool) -> web.StreamResponse:
        spec = self.entry.get("http") if self.entry is not None else None
        if spec is not None and self.once is not None:
            challenge_only = (
                self.once.passing
                and int(spec["status"]) == 401
                and (self.entry is not None and self.entry.get("auth") == "password")
            )
            if challenge_only:
                if not authed:
                    return http_reply(spec)
            elif authed and self.once.take():
                return http_reply(spec)
        if not authed:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="dav"'})
        if request.method == "OPTIONS":
            return web.Response(headers={"DAV": "1, 2, calendar-access", "Allow": "PROPFIND"})
        if request.method != "PROPFIND":
            return web.Response(status=405)
        await request.read()
        path = request.path if request.path.endswith("/") else request.path + "/"
        depth = request.headers.get("Depth", "0")
        coll = "<d:resourcetype><d:collection/></d:resourcetype>"
        if path == _HOME:
            parts = [_response(_HOME, coll + _LINKS)]
            if depth != "0":
                parts.append(_response(_CAL, _CAL_PROPS))
            body = _multistatus(*parts)
        elif path == _CAL:
            body = _multistatus(_response(_CAL, _CAL_PROPS))
        elif path == _PRINCIPAL or path == "/" or path.startswith("/dav"):
            props = "<d:resourcetype><d:collection/><d:principal/></d:resourcetype>" + _LINKS
            body = _multistatus(_response(path, props))
        else:
            return web.Response(status=404)
        return web.Response(
            status=207, body=body.encode(), content_type="application/xml", charset="utf-8"
        )


class TokenReplay(HttpServer):
    """An OAuth2 token endpoint: the refresh grant gets the entry's `http` (an `oauth` entry;
    once for an `ok` one), otherwise a fresh access token."""

    def __init__(self, entry: Entry | None, tls: CertPair | None = None) -> None:
        super().__init__(tls)
        self.entry = entry if entry is not None and entry.get("protocol") == "oauth" else None
        self.once = _Once(entry) if entry is not None else None
        self.issued: list[str] = []
        self.forms: list[dict[str, str]] = []

    async def handle(self, request: web.Request, authed: bool) -> web.StreamResponse:
        if request.method != "POST" or request.path != "/token":
            return web.Response(status=404)
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.forms.append(form)
        if form.get("grant_type") != "refresh_token":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        if self.entry is not None and self.once is not None and self.once.take():
            return http_reply(self.entry["http"], challenge=False)
        token = f"replay-access-{len(self.issued) + 1}"
        self.issued.append(token)
        return web.json_response(
            {"access_token": token, "token_type": "Bearer", "expires_in": 3600}
        )


# -- network conditions ------------------------------------------------------------------


class ResetServer(LineServer):
    """Accepts, then resets the connection (SO_LINGER 0)."""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()


class SilentServer(LineServer):
    """Accepts and never says anything."""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up


class NotTlsServer(LineServer):
    """Answers a TLS ClientHello with plain text: the handshake fails."""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        await _send(writer, "* OK this is not TLS")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_TLS_CERT = {
    "tls_self_signed": "self_signed",
    "tls_expired": "expired",
    "tls_wrong_host": "wrong_host",
}


@dataclass
class ReplayTarget:
    entry: Entry
    service: Service
    host: str
    port: int
    security: Security
    resolver: StaticResolver
    tls: TlsSettings
    token_url: str
    token_server: TokenReplay
    url: str = ""
    timeout: float = PROBE_TIMEOUT
    unreachable: bool = False
    servers: list[Any] = field(default_factory=list)

    def tokens(self) -> Any:
        """An OAuthTokens against the replay token endpoint (None when not importable)."""
        try:
            from agent.probes.oauth import OAuthTokens
        except ImportError:  # pragma: no cover - the module lands with another engineer
            return None
        return OAuthTokens(resolver=self.resolver, timeout=self.timeout, tls=self.tls)


def service_of(entry: Entry) -> Service:
    """The service a test probes: an `oauth` entry is met while an IMAP account refreshes."""
    return SERVICE_OF.get(str(entry["protocol"]), Service.IMAP)


def auth_of(entry: Entry) -> AuthKind:
    if entry["protocol"] == "oauth" or entry.get("auth") == "xoauth2":
        return AuthKind.XOAUTH2
    return AuthKind.PASSWORD


@contextlib.asynccontextmanager
async def serve_entry(entry: Entry, pki: TestPKI) -> AsyncIterator[ReplayTarget]:
    """Start what `entry` needs and yield where it is served."""
    service = service_of(entry)
    network = entry.get("network")
    table: dict[str, list[str] | str] = {HOST: ["127.0.0.1"]}
    tls = TlsSettings(ca_file=pki.ca)
    token = TokenReplay(entry)
    servers: list[Any] = [token]
    await token.start()
    token_url = f"http://127.0.0.1:{token.port}/token"
    security = Security.PLAIN
    port = 0
    unreachable = False
    main: Any = None
    if network in ("dns_nxdomain", "dns_temporary"):
        table[HOST] = "nxdomain" if network == "dns_nxdomain" else "temporary"
        port = closed_port()
    elif network == "refused":
        port = closed_port()
    elif network == "unreachable":
        port = closed_port()
        unreachable = True
    elif network == "reset":
        main = ResetServer()
    elif network == "no_greeting":
        main = SilentServer()
    elif network == "tls_handshake":
        main, security = NotTlsServer(), Security.TLS
    elif network in _TLS_CERT:
        cert = getattr(pki, _TLS_CERT[network])
        security = Security.TLS
        if service is Service.CALDAV:
            main = DavReplay(None, tls=cert)
        elif service is Service.SMTP:
            main = SmtpReplay({**entry, "server_lines": []})
            main.tls = cert
        else:
            main = ImapReplay({**entry, "server_lines": []}, tls=cert)
    elif network == "connect_timeout":
        pytest.skip("connect_timeout needs a black-holed address; none on loopback")
    elif network is not None:
        raise ValueError(f"unknown network condition {network!r}")
    elif service is Service.CALDAV:
        main = DavReplay(entry)
    elif service is Service.SMTP:
        main = SmtpReplay(entry)
    elif entry["protocol"] == "oauth":
        main = ImapReplay({**entry, "server_lines": []})
    else:
        main = ImapReplay(entry)
    if main is not None:
        await main.start()
        servers.append(main)
        port = main.port
    scheme = "https" if security is Security.TLS else "http"
    target = ReplayTarget(
        entry=entry,
        service=service,
        host=HOST,
        port=port,
        security=security,
        resolver=StaticResolver(table),
        tls=tls,
        token_url=token_url,
        token_server=token,
        url=f"{scheme}://{HOST}:{port}/dav/",
        unreachable=unreachable,
        servers=servers,
    )
    try:
        yield target
    finally:
        for s in reversed(servers):
            await s.stop()


def account_for(entry: Entry, target: ReplayTarget) -> Account:
    """An Account whose `target.service` points at the replay servers."""
    auth = auth_of(entry)
    password = Secret(PASSWORD) if auth is AuthKind.PASSWORD else None
    oauth2 = None
    if auth is AuthKind.XOAUTH2:
        oauth2 = OAuth2(
            token_url=target.token_url,
            client_id="replay-client",
            refresh_token=Secret(REFRESH_TOKEN),
            client_secret=Secret(CLIENT_SECRET),
            scopes=("https://mail.example/",),
        )
    owner = Owner(id="owner-1", email="owner@example.com")
    common: dict[str, Any] = {
        "id": f"acct-{entry['id']}",
        "owner": owner,
        "provider": str(entry.get("provider", "generic")),
        "address": USER,
        "oauth2": oauth2,
    }
    if target.service is Service.CALDAV:
        dav = CalDavServer(
            url=target.url,
            username=USER,
            auth=auth,
            password=password,
            tls=target.tls,
            timeout=target.timeout,
        )
        return Account(caldav=dav, **common)
    server = MailServer(
        host=target.host,
        port=target.port,
        security=target.security,
        username=USER,
        auth=auth,
        password=password,
        tls=target.tls,
        timeout=target.timeout,
    )
    if target.service is Service.SMTP:
        return Account(smtp=server, **common)
    return Account(imap=server, **common)


@pytest.fixture
def replay(pki: TestPKI) -> Callable[[Entry], contextlib.AbstractAsyncContextManager[ReplayTarget]]:
    """`async with replay(entry) as target:` serves one corpus entry on 127.0.0.1."""

    def start(entry: Entry) -> contextlib.AbstractAsyncContextManager[ReplayTarget]:
        return serve_entry(entry, pki)

    return start


# -- unreachable: the probe runs in a network namespace whose loopback is down ------------


def run_unreachable(service: Service, port: int, timeout: float = 10.0) -> dict[str, Any]:
    """Probe 127.0.0.1:`port` from `unshare -n` (connect fails with ENETUNREACH there; no
    packet leaves the machine). Returns the ProbeResult as JSON."""
    cmd = ["unshare", "-n", sys.executable, "-m", "tests.servers.replay", service.value, str(port)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        pytest.skip("unshare is not installed")
    if out.returncode != 0:
        if "Operation not permitted" in out.stderr:
            pytest.skip("unshare -n is not permitted here")
        raise AssertionError(f"namespace probe failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


async def _probe_here(service: Service, port: int) -> dict[str, Any]:
    from agent.probes import probe_service

    entry: dict[str, Any] = {"id": "netns", "protocol": service.value, "auth": "password"}
    server = MailServer(
        host="127.0.0.1",
        port=port,
        security=Security.PLAIN,
        username=USER,
        password=Secret(PASSWORD),
        timeout=PROBE_TIMEOUT,
    )
    owner = Owner(id="owner-1", email="owner@example.com")
    if service is Service.CALDAV:
        dav = CalDavServer(
            url=f"http://127.0.0.1:{port}/dav/",
            username=USER,
            password=Secret(PASSWORD),
            timeout=PROBE_TIMEOUT,
        )
        account = Account(id=f"acct-{entry['id']}", owner=owner, caldav=dav)
    elif service is Service.SMTP:
        account = Account(id="acct-netns", owner=owner, smtp=server)
    else:
        account = Account(id="acct-netns", owner=owner, imap=server)
    result = await probe_service(account, service, resolver=StaticResolver({}))
    return result.to_json()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_probe_here(Service(sys.argv[1]), int(sys.argv[2])))))
