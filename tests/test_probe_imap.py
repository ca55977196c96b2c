"""The IMAP probe against a real Dovecot, and against small hostile or scripted servers that
speak IMAP over a real socket where Dovecot cannot produce the case."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import shutil
import socket
import socketserver
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

import pytest

from agent.config.types import Account, AuthKind, MailServer, Owner, Security, TlsSettings
from agent.localservers.dovecot import Dovecot
from agent.model import Cause, Evidence, ProbeResult, Service
from agent.net import StaticResolver
from agent.probes import imap, probe_service
from agent.probes.base import ProbeContext, ProbeError
from agent.secret import Secret
from tests.servers.dovecot import imap_account, running_dovecot
from tests.servers.tls import TestPKI

RESOLVER = StaticResolver({"localhost": ["127.0.0.1"]})
GRACE = 1.5

# -- helpers -----------------------------------------------------------------------------

Handler = Callable[[BinaryIO, BinaryIO], None]


class ScriptedServer:
    """A threaded TCP server on 127.0.0.1 running `handler(rfile, wfile)` per connection."""

    def __init__(self, handler: Handler) -> None:
        outer = self
        self.connections = 0

        class H(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                outer.connections += 1
                with contextlib.suppress(OSError, ValueError):
                    handler(self.rfile, self.wfile)

        class S(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True
            block_on_close = False

        self._server = S(("127.0.0.1", 0), H)
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def scripted() -> Iterator[Callable[[Handler], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(handler: Handler) -> ScriptedServer:
        s = ScriptedServer(handler)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


def imap_script(replies: dict[str, list[str]], greeting: str = "* OK IMAP ready") -> Handler:
    """Answer each command by name with lines ("{tag}" is replaced); unknown: BAD."""

    def handler(rfile: BinaryIO, wfile: BinaryIO) -> None:
        wfile.write(greeting.encode() + b"\r\n")
        for raw in rfile:
            parts = raw.decode(errors="replace").strip().split(" ", 2)
            if len(parts) < 2:
                continue
            tag, name = parts[0], parts[1].upper()
            lines = replies.get(name, ["{tag} BAD unknown"])
            for line in lines:
                if line == "<close>":
                    return
                if line == "<wait-empty-line>":
                    if rfile.readline().strip() != b"":
                        return
                    continue
                wfile.write(line.replace("{tag}", tag).encode() + b"\r\n")

    return handler


CAPS = ["* CAPABILITY IMAP4rev1 AUTH=PLAIN", "{tag} OK done"]
GOOD_LOGIN = {
    "CAPABILITY": CAPS,
    "LOGIN": ["{tag} OK Logged in"],
    "SELECT": ["* 0 EXISTS", "{tag} OK [READ-WRITE] Select completed"],
    "NOOP": ["{tag} OK NOOP completed"],
    "LOGOUT": ["* BYE bye", "{tag} OK Logout completed"],
}


def account_at(
    port: int,
    *,
    user: str = "alice",
    password: str | None = "alice-pw",
    security: Security = Security.PLAIN,
    auth: AuthKind = AuthKind.PASSWORD,
    timeout: float = 3.0,
    host: str = "127.0.0.1",
    tls: TlsSettings | None = None,
) -> Account:
    server = MailServer(
        host=host,
        port=port,
        security=security,
        username=user,
        auth=auth,
        password=Secret(password) if password is not None else None,
        tls=tls or TlsSettings(),
        timeout=timeout,
    )
    return Account(
        id="acct-x",
        owner=Owner(id="o", email="owner@example.com"),
        address=f"{user}@example.com",
        imap=server,
        smtp=server,
    )


async def run(account: Account, **kw: object) -> ProbeResult:
    return await probe_service(account, Service.IMAP, resolver=RESOLVER, debug=True, **kw)  # type: ignore[arg-type]


async def evidence(account: Account, **kw: object) -> Evidence:
    ctx = ProbeContext(timeout=10, resolver=RESOLVER, debug=True, **kw)  # type: ignore[arg-type]
    with pytest.raises(ProbeError) as info:
        await asyncio.wait_for(imap.probe(account, ctx), 10)
    return info.value.evidence


def assert_no_secret(result: ProbeResult, secret: str) -> None:
    blob = json.dumps(result.to_json()) + "\n".join(result.transcript)
    if result.failure is not None:
        blob += result.failure.detail
    assert secret not in blob
    assert base64.b64encode(secret.encode()).decode() not in blob


class FakeTokens:
    """A TokenSource handing out numbered tokens and recording the calls."""

    def __init__(self) -> None:
        self.calls: list[bool] = []

    async def access_token(
        self, account: Account, service: Service, *, refresh: bool = False
    ) -> str:
        self.calls.append(refresh)
        return f"ya29.token-{len(self.calls)}-secret"


# -- a real Dovecot ----------------------------------------------------------------------


@pytest.mark.parametrize("security", ["tls", "starttls", "plain"])
async def test_good_login_works_over_each_security(
    dovecot: Dovecot, pki: TestPKI, security: str
) -> None:
    result = await run(
        imap_account(dovecot, "alice", "alice-pw", security=security, ca_file=pki.ca)
    )
    assert result.ok, result.failure
    names = [s.name for s in result.steps]
    assert names[0] == "connect"
    for step in ("greeting", "capability", "login", "select", "quota", "noop", "logout"):
        assert step in names
    assert ("starttls" in names) == (security == "starttls")
    assert_no_secret(result, "alice-pw")


async def test_wrong_password_is_auth_failed(dovecot: Dovecot, pki: TestPKI) -> None:
    acct = imap_account(dovecot, "alice", "wrong-pw", ca_file=pki.ca)
    ev = await evidence(acct)
    assert (ev.stage, ev.status) == ("login", "NO")
    assert ev.text.startswith("[AUTHENTICATIONFAILED]")
    result = await run(acct)
    assert result.failure is not None
    assert result.failure.cause is Cause.AUTH_FAILED
    assert_no_secret(result, "wrong-pw")


async def test_nologin_is_account_suspended(dovecot: Dovecot, pki: TestPKI) -> None:
    dovecot.set_nologin("alice", "Account disabled by the administrator")
    acct = imap_account(dovecot, "alice", "alice-pw", ca_file=pki.ca)
    ev = await evidence(acct)
    assert (ev.stage, ev.status) == ("login", "NO")
    assert ev.text == "[CONTACTADMIN] Account disabled by the administrator"
    result = await run(acct)
    assert result.failure is not None
    assert result.failure.cause is Cause.ACCOUNT_SUSPENDED


async def test_expired_password_is_account_suspended(dovecot: Dovecot, pki: TestPKI) -> None:
    dovecot.set_auth_result("alice", "expired")
    acct = imap_account(dovecot, "alice", "alice-pw", ca_file=pki.ca)
    ev = await evidence(acct)
    assert ev.status == "NO"
    assert ev.text.startswith("[EXPIRED]")
    result = await run(acct)
    assert result.failure is not None
    assert result.failure.cause is Cause.ACCOUNT_SUSPENDED


async def test_temporary_auth_failure_is_server_unavailable(dovecot: Dovecot, pki: TestPKI) -> None:
    dovecot.set_auth_result("alice", "unavailable")
    acct = imap_account(dovecot, "alice", "alice-pw", ca_file=pki.ca)
    ev = await evidence(acct)
    assert ev.text.startswith("[UNAVAILABLE]")
    result = await run(acct)
    assert result.failure is not None
    assert result.failure.cause is Cause.SERVER_UNAVAILABLE


async def test_password_change_takes_effect_without_restart(dovecot: Dovecot, pki: TestPKI) -> None:
    dovecot.set_password("alice", "new-pw-1")
    old = await run(imap_account(dovecot, "alice", "alice-pw", ca_file=pki.ca))
    new = await run(imap_account(dovecot, "alice", "new-pw-1", ca_file=pki.ca))
    assert not old.ok
    assert new.ok, new.failure


def _hold_session(port: int, user: str, password: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    f = s.makefile("rb")
    f.readline()
    s.sendall(f"a LOGIN {user} {password}\r\n".encode())
    while True:
        line = f.readline()
        if not line or line.startswith(b"a "):
            assert line.startswith(b"a OK"), line
            return s


async def test_too_many_sessions_is_rate_limited(dovecot: Dovecot, pki: TestPKI) -> None:
    held = [
        _hold_session(dovecot.imap_port, "alice", "alice-pw")
        for _ in range(dovecot.max_userip_connections)
    ]
    try:
        acct = imap_account(dovecot, "alice", "alice-pw", ca_file=pki.ca)
        ev = await evidence(acct)
        assert (ev.stage, ev.status) == ("login", "NO")
        assert ev.text.startswith("[LIMIT]")
        result = await run(acct)
        assert result.failure is not None
        assert result.failure.cause is Cause.RATE_LIMITED
    finally:
        for s in held:
            s.close()


async def test_full_mailbox_is_over_quota(dovecot: Dovecot, pki: TestPKI) -> None:
    dovecot.set_quota("alice", 0)
    acct = imap_account(dovecot, "alice", "alice-pw", ca_file=pki.ca)
    ev = await evidence(acct)
    assert ev.stage == "quota"
    assert ev.text.startswith("[OVERQUOTA]")
    assert any(u.startswith("* QUOTA ") for u in ev.untagged)
    result = await run(acct)
    assert result.failure is not None
    assert result.failure.cause is Cause.OVER_QUOTA


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
        # STARTTLS verifies the same way.
        ev = await evidence(imap_account(d, "alice", "alice-pw", security="starttls"))
        assert (ev.stage, ev.network) == ("tls", "tls_cert")
        # Verification off: it works.
        ok = await run(imap_account(d, "alice", "alice-pw", verify=False))
        assert ok.ok, ok.failure


async def test_dovecot_picks_other_ports_when_one_is_taken_before_it_starts(
    pki: TestPKI,
) -> None:
    """A free port is only free when asked: another process (often an outgoing connection's
    local port) may take it before Dovecot binds it. The fixture picks again."""
    folder = Path(tempfile.mkdtemp(prefix="syncwatch-dovecot-"))
    d = Dovecot(folder, pki.good.cert, pki.good.key, submission=False)
    d.add_user("alice", "alice-pw")
    taken = d.imaps_port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        try:
            d.start()
            assert d.imaps_port != taken
            result = await run(imap_account(d, "alice", "alice-pw", ca_file=pki.ca))
            assert result.ok, result.failure
        finally:
            d.stop()
            shutil.rmtree(folder, ignore_errors=True)


async def test_good_certificate_needs_the_ca_file(dovecot: Dovecot, pki: TestPKI) -> None:
    without = await run(imap_account(dovecot, "alice", "alice-pw"))
    with_ca = await run(imap_account(dovecot, "alice", "alice-pw", ca_file=pki.ca))
    assert without.failure is not None
    assert without.failure.cause is Cause.TLS_ERROR
    assert with_ca.ok, with_ca.failure


# -- scripted servers --------------------------------------------------------------------


async def test_bye_greeting_keeps_its_text(
    scripted: Callable[[Handler], ScriptedServer],
) -> None:
    srv = scripted(imap_script({}, greeting="* BYE Server is in maintenance, try later"))
    acct = account_at(srv.port)
    ev = await evidence(acct)
    assert (ev.stage, ev.status) == ("greeting", "BYE")
    assert ev.text == "Server is in maintenance, try later"
    result = await run(acct)
    assert result.failure is not None
    assert result.failure.cause is Cause.SERVER_UNAVAILABLE


async def test_non_utf8_greeting_is_seen(
    scripted: Callable[[Handler], ScriptedServer],
) -> None:
    def handler(rfile: BinaryIO, wfile: BinaryIO) -> None:
        wfile.write(b"* BYE Serveur \xe9teint\r\n")

    ev = await evidence(account_at(scripted(handler).port))
    assert (ev.stage, ev.status) == ("greeting", "BYE")
    assert ev.text.startswith("Serveur ")


async def test_webalert_before_tagged_no_is_access_revoked(
    scripted: Callable[[Handler], ScriptedServer],
) -> None:
    srv = scripted(
        imap_script(
            {
                "CAPABILITY": CAPS,
                "LOGIN": [
                    "* NO [WEBALERT https://accounts.example.com/signin?x=1] Web login required",
                    "{tag} NO [ALERT] Please log in via your web browser",
                ],
            }
        )
    )
    acct = account_at(srv.port)
    ev = await evidence(acct)
    assert (ev.stage, ev.status) == ("login", "NO")
    assert ev.text == "[ALERT] Please log in via your web browser"
    assert ev.untagged == (
        "* NO [WEBALERT https://accounts.example.com/signin?x=1] Web login required",
    )
    result = await run(acct)
    assert result.failure is not None
    assert result.failure.cause is Cause.ACCESS_REVOKED
    assert result.failure.hint == "web_login_required"


async def test_bye_after_refused_login_is_kept(
    scripted: Callable[[Handler], ScriptedServer],
) -> None:
    srv = scripted(
        imap_script(
            {
                "CAPABILITY": CAPS,
                "LOGIN": [
                    "{tag} NO [AUTHENTICATIONFAILED] Invalid credentials",
                    "* BYE Too many invalid commands",
                    "<close>",
                ],
            }
        )
    )
    ev = await evidence(account_at(srv.port))
    assert ev.status == "NO"
    assert "* BYE Too many invalid commands" in ev.untagged


async def test_read_only_inbox_is_reported(
    scripted: Callable[[Handler], ScriptedServer],
) -> None:
    replies = dict(GOOD_LOGIN)
    replies["SELECT"] = ["* 3 EXISTS", "{tag} OK [READ-ONLY] Select completed"]
    ev = await evidence(account_at(scripted(imap_script(replies)).port))
    assert (ev.stage, ev.status) == ("select", "OK")
    assert "read-only" in ev.text
    assert "[READ-ONLY]" in ev.text


async def test_bye_during_noop(scripted: Callable[[Handler], ScriptedServer]) -> None:
    replies = dict(GOOD_LOGIN)
    replies["NOOP"] = ["* BYE Server shutting down", "<close>"]
    ev = await evidence(account_at(scripted(imap_script(replies)).port))
    assert (ev.stage, ev.status) == ("noop", "BYE")
    assert ev.text == "Server shutting down"


async def test_scripted_good_server_is_ok(
    scripted: Callable[[Handler], ScriptedServer],
) -> None:
    result = await run(account_at(scripted(imap_script(GOOD_LOGIN)).port))
    assert result.ok, result.failure


def recording_server(
    caps_in_greeting: bool, chunks: list[bytes], replies: dict[str, list[str]]
) -> Handler:
    """GOOD_LOGIN-like server that records each chunk it reads, then answers every complete
    command line in it, in order, with one write per chunk (as Dovecot does)."""
    caps = "[CAPABILITY IMAP4rev1 AUTH=PLAIN QUOTA] " if caps_in_greeting else ""

    def handler(rfile: BinaryIO, wfile: BinaryIO) -> None:
        sock = rfile.raw._sock  # type: ignore[attr-defined]
        sock.sendall(f"* OK {caps}IMAP ready\r\n".encode())
        buf = b""
        while True:
            data = sock.recv(65536)
            if not data:
                return
            chunks.append(data)
            buf += data
            out: list[str] = []
            while b"\r\n" in buf:
                raw, buf = buf.split(b"\r\n", 1)
                tag, name = [*raw.decode().split(" ", 2), ""][:2]
                lines = replies.get(name.upper(), ["{tag} BAD unknown"])
                out += [line.replace("{tag}", tag) for line in lines]
            sock.sendall("".join(f"{line}\r\n" for line in out).encode())

    return handler


QUOTA_LOGIN = dict(
    GOOD_LOGIN,
    LOGIN=["{tag} OK [CAPABILITY IMAP4rev1 QUOTA] Logged in"],
    GETQUOTAROOT=['* QUOTAROOT INBOX ""', '* QUOTA "" (STORAGE 10 1000)', "{tag} OK done"],
)


async def test_capabilities_in_the_greeting_save_the_capability_command(
    scripted: Callable[[Handler], ScriptedServer],
) -> None:
    chunks: list[bytes] = []
    server = scripted(recording_server(True, chunks, QUOTA_LOGIN))
    result = await run(account_at(server.port))
    assert result.ok, result.failure
    sent = b"".join(chunks)
    assert b"CAPABILITY" not in sent
    assert "capability" in [s.name for s in result.steps]


async def test_capability_is_asked_when_the_greeting_has_none(
    scripted: Callable[[Handler], ScriptedServer],
) -> None:
    chunks: list[bytes] = []
    server = scripted(recording_server(False, chunks, QUOTA_LOGIN))
    result = await run(account_at(server.port))
    assert result.ok, result.failure
    assert chunks[0].split(b" ", 1)[1] == b"CAPABILITY\r\n"


async def test_select_quota_noop_logout_go_out_in_one_write(
    scripted: Callable[[Handler], ScriptedServer],
) -> None:
    """After LOGIN the probe pipelines the rest; the server's replies to all four arrive in
    one read (LOGOUT's `* BYE` beside NOOP's OK), and that is still a working account."""
    chunks: list[bytes] = []
    server = scripted(recording_server(True, chunks, QUOTA_LOGIN))
    result = await run(account_at(server.port))
    assert result.ok, result.failure
    names = [c.split(b" ")[1] for c in chunks[-1].strip().split(b"\r\n")]
    assert names == [b"SELECT", b"GETQUOTAROOT", b"NOOP", b"LOGOUT"]
    assert [s.name for s in result.steps][-4:] == ["select", "quota", "noop", "logout"]


async def test_pipelined_over_quota_is_seen(
    scripted: Callable[[Handler], ScriptedServer],
) -> None:
    replies = dict(QUOTA_LOGIN)
    replies["GETQUOTAROOT"] = [
        '* QUOTAROOT INBOX ""',
        '* QUOTA "" (STORAGE 1000 1000)',
        "{tag} OK done",
    ]
    ev = await evidence(account_at(scripted(recording_server(True, [], replies)).port))
    assert (ev.stage, ev.text) == ("quota", "[OVERQUOTA] quota full: STORAGE 1000 of 1000")


async def test_pipelined_select_refusal_decides(
    scripted: Callable[[Handler], ScriptedServer],
) -> None:
    replies = dict(QUOTA_LOGIN)
    replies["SELECT"] = ["{tag} NO [SERVERBUG] Internal error"]
    replies["NOOP"] = ["* BYE shutting down"]
    ev = await evidence(account_at(scripted(recording_server(True, [], replies)).port))
    assert (ev.stage, ev.status, ev.text) == ("select", "NO", "[SERVERBUG] Internal error")


async def test_quota_offered_only_after_login_is_asked_for(
    scripted: Callable[[Handler], ScriptedServer],
) -> None:
    """Capabilities change with login: a server that offers QUOTA only then, and does not
    say so in its LOGIN reply, is asked, and a full mailbox is still seen."""
    chunks: list[bytes] = []
    replies = dict(QUOTA_LOGIN)
    replies["LOGIN"] = ["{tag} OK Logged in"]
    replies["CAPABILITY"] = ["* CAPABILITY IMAP4rev1 QUOTA", "{tag} OK done"]
    replies["GETQUOTAROOT"] = ['* QUOTA "" (STORAGE 1000 1000)', "{tag} OK done"]
    server = scripted(recording_server(True, chunks, replies))
    ev = await evidence(account_at(server.port))
    assert (ev.stage, ev.text) == ("quota", "[OVERQUOTA] quota full: STORAGE 1000 of 1000")
    sent = [c.split(b" ")[1] for c in b"".join(chunks).strip().split(b"\r\n")]
    assert sent[:3] == [b"LOGIN", b"CAPABILITY", b"SELECT"]


async def test_a_good_probe_logs_nothing(
    scripted: Callable[[Handler], ScriptedServer], caplog: pytest.LogCaptureFixture
) -> None:
    """The daemon logs state changes, not probes: no library line per probe either (LOGOUT's
    `* BYE` once made aioimaplib log an "ignored untagged response" each time)."""
    caplog.set_level(logging.DEBUG, logger="aioimaplib")
    result = await run(account_at(scripted(recording_server(True, [], QUOTA_LOGIN)).port))
    assert result.ok, result.failure
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO] == []


async def test_transcript_says_who_closed_the_connection(
    scripted: Callable[[Handler], ScriptedServer],
) -> None:
    replies = dict(QUOTA_LOGIN)
    replies["LOGIN"] = ["{tag} NO [AUTHENTICATIONFAILED] Authentication failed."]
    result = await run(account_at(scripted(recording_server(True, [], replies)).port))
    assert result.failure is not None and result.failure.cause is Cause.AUTH_FAILED
    assert "*: session ended: connection closed by the probe" in result.transcript
    good = await run(account_at(scripted(imap_script(GOOD_LOGIN)).port, host="localhost"))
    assert good.ok, good.failure
    assert any(line.endswith(" (localhost)") for line in good.transcript), good.transcript


async def test_password_echoed_by_server_never_shows(
    scripted: Callable[[Handler], ScriptedServer],
) -> None:
    srv = scripted(
        imap_script(
            {
                "CAPABILITY": CAPS,
                "LOGIN": [
                    "* OK you sent alice-pw",
                    "{tag} NO [AUTHENTICATIONFAILED] password alice-pw is wrong",
                ],
            }
        )
    )
    result = await run(account_at(srv.port))
    assert result.failure is not None
    assert result.transcript
    assert_no_secret(result, "alice-pw")


def _xoauth2_server(error: dict[str, str]) -> Handler:
    challenge = base64.b64encode(json.dumps(error).encode()).decode()
    return imap_script(
        {
            "CAPABILITY": ["* CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2", "{tag} OK done"],
            "AUTHENTICATE": [
                "+ " + challenge,
                "<wait-empty-line>",
                "{tag} NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)",
            ],
        }
    )


async def test_xoauth2_error_challenge_is_answered_and_decoded(
    scripted: Callable[[Handler], ScriptedServer],
) -> None:
    error = {"status": "401", "schemes": "Bearer", "scope": "https://mail.google.com/"}
    srv = scripted(_xoauth2_server(error))
    acct = account_at(srv.port, password=None, auth=AuthKind.XOAUTH2)
    tokens = FakeTokens()
    ev = await evidence(acct, tokens=tokens)
    assert (ev.stage, ev.status) == ("login", "NO")
    assert ev.text.startswith("[AUTHENTICATIONFAILED] Invalid credentials (Failure)")
    assert json.dumps(error) in ev.text
    assert tokens.calls == [False, True]  # refreshed once, on a new connection
    assert srv.connections == 2

    tokens = FakeTokens()
    result = await probe_service(acct, Service.IMAP, resolver=RESOLVER, tokens=tokens, debug=True)
    assert result.failure is not None
    assert result.failure.cause in (Cause.AUTH_FAILED, Cause.ACCESS_REVOKED)
    for i in (1, 2):
        assert_no_secret(result, f"ya29.token-{i}-secret")


async def test_xoauth2_expired_token_is_refreshed_and_ok(
    scripted: Callable[[Handler], ScriptedServer],
) -> None:
    """The first token is refused, the refreshed one accepted: not a failure."""
    state = {"n": 0}
    good = dict(GOOD_LOGIN)
    good["CAPABILITY"] = ["* CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2", "{tag} OK done"]
    good["AUTHENTICATE"] = ["{tag} OK Success"]
    refuse = _xoauth2_server({"status": "401"})
    accept = imap_script(good)

    def handler(rfile: BinaryIO, wfile: BinaryIO) -> None:
        state["n"] += 1
        (refuse if state["n"] == 1 else accept)(rfile, wfile)

    srv = scripted(handler)
    tokens = FakeTokens()
    result = await probe_service(
        account_at(srv.port, password=None, auth=AuthKind.XOAUTH2),
        Service.IMAP,
        resolver=RESOLVER,
        tokens=tokens,
    )
    assert result.ok, result.failure
    assert tokens.calls == [False, True]


# -- hostile servers: each must end by the deadline, with the loop still running ----------


async def _with_ticker(coro: asyncio.Future[ProbeResult] | object) -> tuple[ProbeResult, float]:
    gaps: list[float] = []
    stop = asyncio.Event()

    async def tick() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    try:
        result = await coro  # type: ignore[misc]
    finally:
        stop.set()
        await ticker
    return result, max(gaps) if gaps else 0.0


def _greet_then(write: Callable[[BinaryIO], None]) -> Handler:
    def handler(rfile: BinaryIO, wfile: BinaryIO) -> None:
        write(wfile)

    return handler


def _huge_line(wfile: BinaryIO) -> None:
    chunk = b"x" * 65536
    wfile.write(b"* OK ")
    for _ in range(800):  # 50 MB, never a CRLF
        wfile.write(chunk)


def _endless_literal(wfile: BinaryIO) -> None:
    wfile.write(b"* OK {999999999}\r\n")
    chunk = b"y" * 65536
    for _ in range(2000):
        wfile.write(chunk)


def _flood(wfile: BinaryIO) -> None:
    # Well-formed lines without end. More than loopback's socket buffers hold, so the server is
    # still writing when the client gives up: had it closed first, with the client's command
    # unread, the kernel would reset the connection and the client might see the reset first.
    wfile.write(b"* OK ready\r\n")
    chunk = b"* 1 EXISTS\r\n" * 5000
    for _ in range(800):  # 48 MB
        wfile.write(chunk)


def _trickle(wfile: BinaryIO) -> None:
    for b in b"* OK this greeting takes forever\r\n":
        wfile.write(bytes([b]))
        wfile.flush()
        time.sleep(1)


def _never_greets(wfile: BinaryIO) -> None:
    time.sleep(30)


@pytest.mark.parametrize(
    ("behaviour", "network"),
    [
        (_huge_line, "too_large"),
        (_endless_literal, "too_large"),
        (_flood, "too_large"),
        (_trickle, "timeout"),
        (_never_greets, "timeout"),
    ],
)
async def test_hostile_server_ends_by_the_deadline(
    scripted: Callable[[Handler], ScriptedServer],
    behaviour: Callable[[BinaryIO], None],
    network: str,
) -> None:
    srv = scripted(_greet_then(behaviour))
    acct = account_at(srv.port, timeout=3.0)
    t0 = time.perf_counter()
    result, max_gap = await _with_ticker(run(acct))
    elapsed = time.perf_counter() - t0
    assert result.failure is not None
    assert elapsed < 3.0 + GRACE
    assert max_gap < 1.0  # the event loop kept running
    if network == "timeout":
        assert result.failure.cause is Cause.TIMEOUT
    assert_no_secret(result, "alice-pw")


@pytest.mark.parametrize("behaviour", [_huge_line, _endless_literal, _flood])
async def test_hostile_server_evidence_says_too_large(
    scripted: Callable[[Handler], ScriptedServer], behaviour: Callable[[BinaryIO], None]
) -> None:
    srv = scripted(_greet_then(behaviour))
    ev = await evidence(replace(account_at(srv.port)))
    assert ev.network == "too_large"
