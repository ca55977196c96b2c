"""Fixture `dovecot`: a real, private Dovecot for each test (function scope, fresh start).

    async def test_x(dovecot, pki):
        account = imap_account(dovecot, "alice", "alice-pw", ca_file=pki.ca)

- Users `alice`/`alice-pw` and `bob`/`bob-pw`; more with `dovecot.add_user(...)`.
- TLS with `pki.good` (localhost + 127.0.0.1), so clients trust `pki.ca`.
- `dovecot.imap_port` (plain + STARTTLS), `dovecot.imaps_port` (implicit TLS),
  `dovecot.submission_port` (SMTP submission, STARTTLS, AUTH PLAIN LOGIN).
- Replies on demand, no restart: `set_password`, `set_nologin(user, reason)` ->
  `NO [CONTACTADMIN] reason`, `set_auth_result(user, "expired"|"unavailable"|None)`,
  `set_quota(user, 0)` (GETQUOTAROOT shows a full mailbox), `kick(user)`.
- `mail_max_userip_connections` is 10 (the `LIMIT` case needs 11 sessions).

`running_dovecot(pki.self_signed)` starts one with another certificate (a context manager).
`imap_account(dovecot, user, password, security=..., ca_file=..., with_smtp=True)` builds an
`Account` pointing at it (host "127.0.0.1"; SMTP over submission with STARTTLS).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config.types import (
    Account,
    MailServer,
    Owner,
    Security,
    TlsSettings,
)
from agent.localservers.dovecot import Dovecot
from agent.secret import Secret
from tests.servers.tls import CertPair, TestPKI


@contextlib.contextmanager
def running_dovecot(cert: CertPair, **kw: object) -> Iterator[Dovecot]:
    """A started Dovecot with alice and bob, in a fresh folder under /tmp (pytest's
    tmp_path sits below a 0700 folder that Dovecot's own users cannot enter)."""
    folder = Path(tempfile.mkdtemp(prefix="syncwatch-dovecot-"))
    d = Dovecot(folder, cert.cert, cert.key, **kw)  # type: ignore[arg-type]
    d.add_user("alice", "alice-pw")
    d.add_user("bob", "bob-pw")
    try:
        d.start()
        yield d
    finally:
        d.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def dovecot(pki: TestPKI) -> Iterator[Dovecot]:
    with running_dovecot(pki.good) as d:
        yield d


def imap_account(
    dovecot: Dovecot,
    user: str,
    password: str,
    *,
    security: str = "tls",
    ca_file: Path | None = None,
    verify: bool = True,
    with_smtp: bool = True,
    smtp_security: str = "starttls",
    timeout: float = 5.0,
    account_id: str = "acct-1",
) -> Account:
    sec = Security(security)
    port = dovecot.imaps_port if sec is Security.TLS else dovecot.imap_port
    tls = TlsSettings(verify=verify, ca_file=ca_file)
    imap = MailServer(
        host=dovecot.host,
        port=port,
        security=sec,
        username=user,
        password=Secret(password),
        tls=tls,
        timeout=timeout,
    )
    smtp = None
    if with_smtp:
        smtp = MailServer(
            host=dovecot.host,
            port=dovecot.submission_port,
            security=Security(smtp_security),
            username=user,
            password=Secret(password),
            tls=tls,
            timeout=timeout,
        )
    return Account(
        id=account_id,
        owner=Owner(id="owner-1", email="owner@example.com"),
        address=f"{user}@example.com",
        imap=imap,
        smtp=smtp,
    )
