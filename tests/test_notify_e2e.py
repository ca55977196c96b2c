"""Owner notifications end to end: `syncwatch run` as a subprocess, real Dovecot, a real
SMTP sink as the relay. Password changes, restarts, recovery, a relay outage, a burst and
bad notify config, each checked by what arrives at the sink and what the store lists.
The last test drives the Notifier in process (injected clock) for the lease rule.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from email.message import EmailMessage
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from agent.localservers.dovecot import Dovecot
from agent.localservers.smtp_sink import SmtpSink
from tests.conftest import free_port
from tests.daemon import Daemon
from tests.servers.tls import TestPKI

pytestmark = pytest.mark.slow

SUBJECT = "Your Mailbox and Calendar integration needs attention"
RECONNECT = "https://portal.example.com/reconnect?account={account_id}"
UNSUBSCRIBE = "https://portal.example.com/notifications?owner={owner_id}"
NEW_PASSWORD = "changed-by-owner-7Q"


def _account(dovecot: Dovecot, pki: TestPKI, user: str, *, smtp: bool = False) -> dict[str, Any]:
    server = {
        "host": "127.0.0.1",
        "username": user,
        "password": f"{user}-pw",
        "tls_ca_file": str(pki.ca),
        "timeout": "5s",
    }
    account: dict[str, Any] = {
        "id": f"acc-{user}",
        "owner": {"id": f"u-{user}", "email": f"{user}@example.com", "name": user.title()},
        "provider": "dovecot",
        "address": f"{user}@example.com",
        "imap": {**server, "port": dovecot.imaps_port, "security": "tls"},
    }
    if smtp:
        account["smtp"] = {**server, "port": dovecot.submission_port, "security": "starttls"}
    return account


def _config(
    dovecot: Dovecot, pki: TestPKI, sink: SmtpSink, users: list[str], **notify: Any
) -> dict[str, Any]:
    return {
        "schedule": {
            "interval": "1s",
            "confirm_interval": "1s",
            "transient_grace": "1h",
            "recheck_min_interval": "1s",
            "jitter": False,
        },
        "portal": {"reconnect_url": RECONNECT, "unsubscribe_url": UNSUBSCRIBE},
        "notify": {
            "email": sink.apprise_url("syncwatch@example.com"),
            "coalesce": "1s",
            "transient_after": "1h",
            "retry_base": "1s",
            **notify,
        },
        "accounts": [_account(dovecot, pki, u, smtp=(u == "alice")) for u in users],
    }


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[list[Daemon]]:
    made: list[Daemon] = []
    try:
        yield made
    finally:
        for d in made:
            d.stop()


def _daemon(made: list[Daemon], tmp_path: Path, config: dict[str, Any]) -> Daemon:
    d = Daemon(tmp_path, config)
    made.append(d)
    return d


def _state(d: Daemon, account: str) -> str:
    return str(d.status(account)["state"])


def _probed_ok(d: Daemon, account: str) -> bool:
    doc = d.status(account)
    return doc["state"] == "ok" and all(s["last_probe_at"] for s in doc["services"])


def _notifications(d: Daemon) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "agent", "notifications", "--config", str(d.path), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows: list[dict[str, Any]] = json.loads(out.stdout)
    return rows


def _addr(msg: EmailMessage) -> str:
    [addr] = msg["To"].addresses
    return str(addr.addr_spec)


def _text(msg: EmailMessage) -> str:
    """Every part's decoded text plus the raw headers."""
    parts = [str(k) + ": " + str(v) for k, v in msg.items()]
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            parts.append(str(part.get_content()))
    return "\n".join(parts)


def _samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def _settle(d: Daemon, seconds: float) -> None:
    """Let the daemon run a few notifier ticks (nothing to poll for: we expect silence)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert d.proc is not None and d.proc.poll() is None, d.log_text()
        time.sleep(0.1)


def _is_broken(d: Daemon, user: str) -> bool:
    return _state(d, f"acc-{user}") == "disconnected"


def _break(d: Daemon, dovecot: Dovecot, user: str) -> None:
    """Change the password; wait for the daemon to confirm the break (Dovecot notices the
    passwd-file change within a second, the daemon confirms at the next probe)."""
    dovecot.set_password(user, NEW_PASSWORD)
    d.wait_for(partial(_is_broken, d, user), timeout=30, what=f"{user} broken")


def _start_ok(d: Daemon, *users: str) -> None:
    d.start()
    for u in users:
        d.wait_for(partial(_probed_ok, d, f"acc-{u}"), timeout=30, what=f"{u} ok")


# --- 1-3: one break, a restart, recovery -------------------------------------------------


def test_password_change_emails_the_owner_once_and_survives_a_restart_and_recovery(
    tmp_path: Path,
    daemons: list[Daemon],
    dovecot: Dovecot,
    pki: TestPKI,
    smtp_sink: SmtpSink,
) -> None:
    d = _daemon(
        daemons,
        tmp_path,
        _config(dovecot, pki, smtp_sink, ["alice", "bob"], reminders=["1h"], on_recovery=True),
    )
    _start_ok(d, "alice", "bob")
    assert smtp_sink.messages == []

    # 1. the password changes: exactly one email, plain words, a reconnect link
    _break(d, dovecot, "alice")
    d.wait_for(lambda: len(smtp_sink.messages) >= 1, timeout=30, what="the first email")
    _settle(d, 2.0)
    assert len(smtp_sink.messages) == 1, [m["Subject"] for m in smtp_sink.messages]
    [msg] = smtp_sink.messages
    assert msg["Subject"] == SUBJECT
    assert _addr(msg) == "alice@example.com"
    assert smtp_sink.envelopes == [("syncwatch@example.com", ["alice@example.com"])]
    text = _text(msg)
    assert "Your email password may have changed, so we can no longer sign in." in text
    assert "https://portal.example.com/reconnect?account=acc-alice" in text
    assert msg["List-Unsubscribe"] == "<https://portal.example.com/notifications?owner=u-alice>"
    raw = msg.as_string()
    assert "alice-pw" not in raw and NEW_PASSWORD not in raw
    assert "acc-bob" not in raw  # bob works: not named

    rows = _notifications(d)
    [first] = [r for r in rows if r["kind"] == "first"]
    assert first["status"] == "sent" and first["account_ids"] == ["acc-alice"]
    assert first["to"] == "alice@example.com" and first["subject"] == SUBJECT
    # reminders are enqueued when due (1h away), not ahead of time
    assert [r for r in rows if r["status"] == "pending"] == []

    # 2. kill -9 and start again while still broken: no second email
    d.kill()
    d.start()
    assert _state(d, "acc-alice") == "disconnected"
    _settle(d, 3.0)  # a dozen notifier ticks at coalesce 1s
    assert len(smtp_sink.messages) == 1
    assert [r["key"] for r in _notifications(d)] == [first["key"]]

    # 3. the owner reconnects: a recheck sees it at once, one recovery email
    dovecot.set_password("alice", "alice-pw")
    d.wait_for(
        lambda: d.json("POST", "/api/v1/accounts/acc-alice/recheck")[1]["state"] == "ok",
        timeout=30,
        what="alice ok after recheck",
    )
    d.wait_for(lambda: len(smtp_sink.messages) >= 2, timeout=30, what="the recovery email")
    _settle(d, 2.0)
    assert len(smtp_sink.messages) == 2
    recovery = smtp_sink.messages[1]
    assert _addr(recovery) == "alice@example.com"
    assert recovery["Subject"] != SUBJECT
    assert "alice-pw" not in recovery.as_string()
    rows = _notifications(d)
    assert sorted(r["kind"] for r in rows) == ["first", "recovery"]
    assert all(r["status"] == "sent" for r in rows)
    log = d.log_text()
    assert "alice-pw" not in log and NEW_PASSWORD not in log
    assert "alice@example.com" not in log  # Apprise names its recipients; the log shortens them
    assert d.terminate() == 0


def test_recovery_cancels_a_pending_reminder(
    tmp_path: Path,
    daemons: list[Daemon],
    dovecot: Dovecot,
    pki: TestPKI,
    smtp_sink: SmtpSink,
) -> None:
    """A reminder that could not be delivered yet is cancelled when the account recovers;
    the owner then hears of the recovery, not of the outdated reminder."""
    d = _daemon(
        daemons,
        tmp_path,
        _config(
            dovecot, pki, smtp_sink, ["bob"], reminders=["2s"], on_recovery=True, retry_base="1h"
        ),
    )
    _start_ok(d, "bob")
    _break(d, dovecot, "bob")
    d.wait_for(lambda: len(smtp_sink.messages) == 1, timeout=30, what="the first email")
    smtp_sink.stop()  # the relay is down when the reminder is due
    d.wait_for(
        lambda: any(
            r["kind"] == "reminder" and r["status"] == "pending" and r["attempts"] >= 1
            for r in _notifications(d)
        ),
        timeout=30,
        what="a pending reminder that failed once",
    )
    smtp_sink.start()
    dovecot.set_password("bob", "bob-pw")
    d.wait_for(
        lambda: d.json("POST", "/api/v1/accounts/acc-bob/recheck")[1]["state"] == "ok",
        timeout=30,
        what="bob ok after recheck",
    )
    d.wait_for(lambda: len(smtp_sink.messages) >= 2, timeout=30, what="the recovery email")
    _settle(d, 2.0)
    assert len(smtp_sink.messages) == 2
    rows = {r["kind"]: r for r in _notifications(d)}
    assert rows["reminder"]["status"] == "cancelled"
    assert rows["recovery"]["status"] == "sent"
    assert rows["first"]["status"] == "sent"
    assert smtp_sink.messages[1]["Subject"] != SUBJECT


# --- 4: the relay is down when the email is due -------------------------------------------


def test_relay_down_when_due_the_email_arrives_once_it_is_back(
    tmp_path: Path,
    daemons: list[Daemon],
    dovecot: Dovecot,
    pki: TestPKI,
    smtp_sink: SmtpSink,
) -> None:
    d = _daemon(daemons, tmp_path, _config(dovecot, pki, smtp_sink, ["bob"]))
    _start_ok(d, "bob")
    smtp_sink.stop()
    _break(d, dovecot, "bob")
    d.wait_for(
        lambda: any(r["attempts"] >= 2 for r in _notifications(d)),
        timeout=30,
        what="two failed attempts",
    )
    [row] = _notifications(d)
    assert row["status"] == "pending" and row["kind"] == "first"
    assert row["next_attempt_at"] is not None and row["last_error"]
    assert "bob-pw" not in json.dumps(row)
    smtp_sink.start()
    d.wait_for(lambda: len(smtp_sink.messages) >= 1, timeout=30, what="the email after the outage")
    _settle(d, 3.0)
    assert len(smtp_sink.messages) == 1
    assert smtp_sink.messages[0]["Subject"] == SUBJECT
    [row] = _notifications(d)
    assert row["status"] == "sent" and row["attempts"] >= 3
    metrics = _samples(d.metrics())
    assert metrics['syncwatch_notifications_total{kind="first",result="sent"}'] == 1
    assert metrics['syncwatch_notifications_total{kind="first",result="failed"}'] >= 2
    assert metrics["syncwatch_outbox_pending"] == 0


# --- 5: a burst on one provider -----------------------------------------------------------


def test_burst_holds_owner_emails_tells_sre_once_and_release_sends_them(
    tmp_path: Path,
    daemons: list[Daemon],
    dovecot: Dovecot,
    pki: TestPKI,
    smtp_sink: SmtpSink,
) -> None:
    users = ["alice", "bob", "carol", "dave"]
    for u in ("carol", "dave"):
        dovecot.add_user(u, f"{u}-pw")
    with SmtpSink() as sre:
        d = _daemon(
            daemons,
            tmp_path,
            _config(
                dovecot,
                pki,
                smtp_sink,
                users,
                coalesce="5s",  # all four break within it, before any owner email is due
                sre=[sre.apprise_url("syncwatch@example.com", to="sre@example.com")],
                burst={"count": 3, "share": 0.5},
            ),
        )
        _start_ok(d, *users)
        for u in users:
            dovecot.set_password(u, NEW_PASSWORD)
        for u in users:
            d.wait_for(partial(_is_broken, d, u), timeout=30, what=f"{u} broken")
        d.wait_for(lambda: len(sre.messages) >= 1, timeout=30, what="the SRE message")
        _settle(d, 7.0)  # past coalesce: owner emails would be due now without the hold
        assert smtp_sink.messages == []
        assert len(sre.messages) == 1
        assert _addr(sre.messages[0]) == "sre@example.com"
        assert "dovecot" in _text(sre.messages[0])
        assert 'syncwatch_notify_burst_active{provider="dovecot"} 1.0' in d.metrics()

        code, doc = d.json("POST", "/api/v1/bursts/dovecot/release")
        assert code == 200, doc
        d.wait_for(lambda: len(smtp_sink.messages) >= 4, timeout=30, what="the owner emails")
        _settle(d, 3.0)
        assert sorted(_addr(m) for m in smtp_sink.messages) == [f"{u}@example.com" for u in users]
        assert all(m["Subject"] == SUBJECT for m in smtp_sink.messages)
        assert len(sre.messages) == 1
        assert "syncwatch_notify_burst_active{" not in d.metrics()


# --- 6: bad notify config stops the agent at start -------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=60
    )


def _write(tmp_path: Path, notify: dict[str, Any]) -> Path:
    import yaml

    path = tmp_path / "agent.yaml"
    config = {
        "store": {"path": str(tmp_path / "state.sqlite3")},
        "http": {"listen": f"127.0.0.1:{free_port()}"},
        "notify": notify,
        "accounts": [
            {
                "id": "acc-1",
                "owner": {"id": "u-1", "email": "one@example.com"},
                "imap": {"host": "127.0.0.1", "username": "one", "password": "one-secret-pw"},
            }
        ],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_invalid_apprise_url_stops_check_config_and_run(tmp_path: Path) -> None:
    path = _write(tmp_path, {"email": "nosuchscheme://user:relay-secret@relay.example.com"})
    for cmd in ("check-config", "run"):
        out = _cli(cmd, "--config", str(path))
        assert out.returncode == 2, (cmd, out.stdout, out.stderr)
        assert "notify.email" in out.stderr, (cmd, out.stderr)
        assert "relay-secret" not in out.stderr + out.stdout


def test_broken_template_stops_run(tmp_path: Path) -> None:
    templates = tmp_path / "templates-broken"
    templates.mkdir()
    (templates / "first.txt").write_text("Hello {% if owner.name %}{{ owner.name }\n")
    path = _write(tmp_path, {"templates_dir": str(templates)})
    out = _cli("run", "--config", str(path))
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "first.txt" in out.stderr


def test_broken_template_stops_check_config(tmp_path: Path) -> None:
    templates = tmp_path / "templates-broken"
    templates.mkdir()
    (templates / "first.txt").write_text("Hello {% if owner.name %}{{ owner.name }\n")
    path = _write(tmp_path, {"templates_dir": str(templates)})
    out = _cli("check-config", "--config", str(path))
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "first.txt" in out.stderr


def test_reload_with_a_broken_template_keeps_the_running_templates(
    tmp_path: Path,
    daemons: list[Daemon],
    dovecot: Dovecot,
    pki: TestPKI,
    smtp_sink: SmtpSink,
) -> None:
    d = _daemon(daemons, tmp_path, _config(dovecot, pki, smtp_sink, ["bob"]))
    _start_ok(d, "bob")
    templates = tmp_path / "templates-broken"
    templates.mkdir()
    (templates / "first.txt").write_text("Hello {% if owner.name %}{{ owner.name }\n")
    d.config["notify"]["templates_dir"] = str(templates)
    d.write()
    code, doc = d.json("POST", "/-/reload", token=None)
    assert code == 500, doc
    assert "first.txt" in doc["message"]
    assert "syncwatch_config_last_reload_successful 0.0" in d.metrics()
    # the running templates still work
    _break(d, dovecot, "bob")
    d.wait_for(lambda: len(smtp_sink.messages) >= 1, timeout=30, what="the first email")
    assert smtp_sink.messages[0]["Subject"] == SUBJECT
    assert "notifier tick failed" not in d.log_text()


# --- the lease: a slow relay must not make two workers send one message --------------------


class SlowRelay:
    """Each send takes `seconds` of the injected clock; before send number `meanwhile_at`
    another worker runs a delivery pass (as it would, concurrently, in production)."""

    def __init__(self, clock: Any, seconds: float, sent: list[str]) -> None:
        self.clock, self.seconds, self.sent = clock, seconds, sent
        self.calls = 0
        self.meanwhile: Any = None
        self.meanwhile_at = 3

    async def send(self, message: Any) -> None:
        self.calls += 1
        if self.calls == self.meanwhile_at and self.meanwhile is not None:
            await self.meanwhile()
        self.sent.append(message.key)
        self.clock.now += self.seconds


class Instant:
    def __init__(self, sent: list[str]) -> None:
        self.sent = sent

    async def send(self, message: Any) -> None:
        self.sent.append(message.key)


async def test_a_row_whose_lease_ran_out_is_left_to_the_next_claim(
    tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    from agent.store.sqlite import SqliteStore
    from tests.test_notify_delivery import Clock, make
    from tests.test_notify_support import T0, account, broken

    store = SqliteStore.open(tmp_path / "s.sqlite3")
    try:
        clock = Clock()
        accounts = [account(f"a{i}", owner=f"o{i}") for i in range(3)]
        healths = {a.id: broken(a.id) for a in accounts}
        sent: list[str] = []
        slow = SlowRelay(clock, 160.0, sent)  # the lease is 300 s: the third row outlives it
        w1 = make(store, smtp_sink, clock, worker="w1", transport=slow)
        w2 = make(store, smtp_sink, clock, worker="w2", transport=Instant(sent))
        clock.now = T0 + 200
        w1.plan(clock.now, accounts, healths)

        async def other_worker() -> None:
            await w2.deliver(clock.now)

        slow.meanwhile = other_worker
        await w1.deliver(clock.now)
        await w2.deliver(clock.now)
        assert sorted(sent) == ["o0/1/first", "o1/1/first", "o2/1/first"]
        assert {r.status for r in store.outbox(limit=10)} == {"sent"}
    finally:
        store.close()
