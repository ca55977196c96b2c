"""The Notifier end to end: real SqliteStore, real Apprise, real SMTP sink, injected clock."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from agent.config.types import Account, BurstSettings, NotifySettings, PortalSettings
from agent.localservers.smtp_sink import SmtpSink
from agent.model import Cause, Service, ServiceHealth
from agent.notify.service import Notifier
from agent.notify.transport import AppriseTransport, Message, Transport
from agent.store.sqlite import SqliteStore
from agent.wording import CAUSE_TEXT
from tests.test_notify_support import DAY, T0, account, broken


def body(msg: EmailMessage, kind: str) -> str:
    part = msg.get_body((kind,))
    assert part is not None
    return str(part.get_content())


SUBJECT = "Your Mailbox and Calendar integration needs attention"


@dataclass
class Clock:
    now: float = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore.open(tmp_path / "syncwatch.sqlite3")
    yield s
    s.close()


def make(
    store: SqliteStore,
    sink: SmtpSink,
    clock: Clock,
    worker: str = "w1",
    transport: Transport | None = None,
    **kw: Any,
) -> Notifier:
    settings = NotifySettings(email=sink.apprise_url("agent@example.com"), **kw)
    return Notifier(
        settings,
        PortalSettings(),
        {},
        store,
        transport or AppriseTransport(),
        clock=clock,
        rand=lambda: 0.5,
        worker_id=worker,
    )


async def step(
    n: Notifier,
    clock: Clock,
    at: float,
    accounts: Sequence[Account],
    healths: Mapping[str, Mapping[Service, ServiceHealth]],
) -> int:
    clock.now = at
    n.plan(at, accounts, healths)
    return await n.deliver(at)


async def test_it_emails_the_owner_once_with_cause_and_reconnect_link(
    store: SqliteStore, smtp_sink: SmtpSink
) -> None:
    clock = Clock()
    n = make(store, smtp_sink, clock)
    a = account("acct-42")
    h = {"acct-42": broken("acct-42", Cause.AUTH_FAILED)}
    assert await step(n, clock, T0, [a], h) == 0
    assert await step(n, clock, T0 + 120, [a], h) == 1
    for t in range(180, 3600, 300):
        await step(n, clock, T0 + t, [a], h)
    [msg] = smtp_sink.messages
    assert msg["Subject"] == SUBJECT
    assert smtp_sink.envelopes == [("agent@example.com", ["o1@example.com"])]
    text = body(msg, "plain")
    html = body(msg, "html")
    for content in (text, html):
        assert "acct-42@example.com" in content
        assert "settings/connected-apps?account=acct-42" in content
    assert CAUSE_TEXT[Cause.AUTH_FAILED] in " ".join(text.split())
    assert "Receiving new mail" in html
    assert msg["X-Syncwatch-Key"] == "o1/1/first"
    assert msg["List-Unsubscribe"] == "<https://portal.example.com/settings/notifications?owner=o1>"
    assert n.stats.counts[("first", "sent")] == 1
    assert n.stats.outbox_pending == 0


async def test_a_restart_sends_nothing_new_until_the_first_reminder(
    store: SqliteStore, smtp_sink: SmtpSink
) -> None:
    clock = Clock()
    a = account("a1")
    h = {"a1": broken("a1")}
    first = make(store, smtp_sink, clock)
    await step(first, clock, T0, [a], h)
    await step(first, clock, T0 + 120, [a], h)
    assert len(smtp_sink.messages) == 1
    again = make(store, smtp_sink, clock, worker="w2")  # a new process on the same store
    for t in (T0 + 130, T0 + 3600, T0 + DAY + 119):
        assert await step(again, clock, t, [a], h) == 0
    assert await step(again, clock, T0 + 120 + DAY, [a], h) == 1
    assert [m["X-Syncwatch-Key"] for m in smtp_sink.messages] == ["o1/1/first", "o1/1/reminder-1"]


async def test_it_retries_with_backoff_while_the_relay_is_down(
    store: SqliteStore, smtp_sink: SmtpSink
) -> None:
    clock = Clock()
    n = make(store, smtp_sink, clock)
    a = account("a1")
    h = {"a1": broken("a1")}
    await step(n, clock, T0, [a], h)
    smtp_sink.stop()
    assert await step(n, clock, T0 + 120, [a], h) == 0
    [row] = store.outbox()
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.next_attempt_at == T0 + 120 + 45  # 60 s, equal jitter with rand 0.5
    assert "Connection" in (row.last_error or "")
    assert await step(n, clock, T0 + 150, [a], h) == 0  # not due yet: not even tried
    assert store.outbox()[0].attempts == 1
    assert await step(n, clock, T0 + 165, [a], h) == 0  # due, still down
    row = store.outbox()[0]
    assert (row.attempts, row.next_attempt_at) == (2, T0 + 165 + 90)
    smtp_sink.start()
    assert await step(n, clock, T0 + 255, [a], h) == 1
    assert await step(n, clock, T0 + 600, [a], h) == 0
    assert len(smtp_sink.messages) == 1
    assert n.stats.counts[("first", "failed")] == 2
    assert n.stats.counts[("first", "sent")] == 1


async def test_it_gives_up_after_max_attempts_without_leaking_the_relay_password(
    store: SqliteStore, smtp_sink: SmtpSink
) -> None:
    clock = Clock()
    n = make(store, smtp_sink, clock, max_attempts=2)
    relay = f"mailto://agent:hunter2-secret@127.0.0.1:{smtp_sink.port}?from=agent@example.com"
    n.settings = replace(n.settings, email=relay)
    smtp_sink.stop()
    a = account("a1")
    h = {"a1": broken("a1")}
    await step(n, clock, T0 + 120, [a], h)
    await step(n, clock, T0 + 120 + 3600, [a], h)
    [row] = store.outbox()
    assert (row.status, row.attempts) == ("failed", 2)
    assert "hunter2" not in (row.last_error or "")
    assert n.stats.counts[("first", "gave_up")] == 1
    assert await step(n, clock, T0 + 2 * 3600, [a], h) == 0  # no new first for the same incident


class DiesAfterSending:
    """Sends for real, then the process "dies" before the acceptance is recorded."""

    def __init__(self) -> None:
        self.inner = AppriseTransport()

    async def send(self, message: Message) -> None:
        await self.inner.send(message)
        raise asyncio.CancelledError


async def test_a_kill_between_send_and_mark_repeats_only_that_message(
    store: SqliteStore, smtp_sink: SmtpSink
) -> None:
    clock = Clock()
    a = account("a1")
    h = {"a1": broken("a1")}
    dying = make(store, smtp_sink, clock, transport=DiesAfterSending())
    dying.plan(T0 + 120, [a], h)
    with pytest.raises(asyncio.CancelledError):
        await dying.deliver(T0 + 120)
    assert len(smtp_sink.messages) == 1
    survivor = make(store, smtp_sink, clock, worker="w2")
    assert await step(survivor, clock, T0 + 200, [a], h) == 0  # the lease still holds
    assert await step(survivor, clock, T0 + 120 + 301, [a], h) == 1  # lease expired
    assert await step(survivor, clock, T0 + 3600, [a], h) == 0
    keys = [m["X-Syncwatch-Key"] for m in smtp_sink.messages]
    assert keys == ["o1/1/first", "o1/1/first"]  # the receiver can tell it is a repeat


async def test_recovery_cancels_the_pending_message(
    store: SqliteStore, smtp_sink: SmtpSink
) -> None:
    clock = Clock()
    n = make(store, smtp_sink, clock, on_recovery=True)
    a = account("a1")
    smtp_sink.stop()
    await step(n, clock, T0 + 120, [a], {"a1": broken("a1")})
    smtp_sink.start()
    await step(n, clock, T0 + 130, [a], {})
    [row] = store.outbox()
    assert (row.status, row.last_error) == ("cancelled", "recovered")
    assert n.stats.counts[("first", "cancelled")] == 1
    await step(n, clock, T0 + 3 * DAY, [a], {})
    assert smtp_sink.messages == []  # the first never went out: no "all good" either


async def test_recovery_message_when_asked_for(store: SqliteStore, smtp_sink: SmtpSink) -> None:
    clock = Clock()
    n = make(store, smtp_sink, clock, on_recovery=True)
    a = account("a1")
    await step(n, clock, T0 + 120, [a], {"a1": broken("a1")})
    await step(n, clock, T0 + 600, [a], {})
    subjects = [m["Subject"] for m in smtp_sink.messages]
    assert subjects == [SUBJECT, "Your Mailbox and Calendar integration works again"]


async def test_removed_account_drops_its_pending_message(
    store: SqliteStore, smtp_sink: SmtpSink
) -> None:
    clock = Clock()
    n = make(store, smtp_sink, clock)
    a = account("a1")
    smtp_sink.stop()
    await step(n, clock, T0 + 120, [a], {"a1": broken("a1")})
    assert n.account_removed("a1") == 1
    assert store.outbox()[0].status == "cancelled"


async def test_a_burst_goes_to_sre_once_and_release_lets_owner_emails_out(
    store: SqliteStore, smtp_sink: SmtpSink
) -> None:
    clock = Clock()
    sre = smtp_sink.apprise_url("agent@example.com", to="sre@example.com")
    n = make(
        store,
        smtp_sink,
        clock,
        sre=(sre,),
        burst=BurstSettings(count=5, share=0.2),
    )
    fleet = [
        account(f"g{i}", owner=f"o{i}", provider="gmail", host="imap.gmail.com") for i in range(10)
    ]
    h = {a.id: broken(a.id) for a in fleet[:5]}
    for t in (T0, T0 + 300, T0 + 900):
        await step(n, clock, t, fleet, h)
    assert [m["To"] for m in smtp_sink.messages] == ["sre@example.com"]
    assert "gmail" in smtp_sink.messages[0]["Subject"]
    assert n.burst_providers() == ["gmail"]
    assert n.release_burst("gmail") == 5
    assert n.burst_providers() == []
    assert await step(n, clock, T0 + 960, fleet, h) == 5
    assert await step(n, clock, T0 + 1200, fleet, h) == 0
    assert sorted(m["To"] for m in smtp_sink.messages[1:]) == [
        f"o{i}@example.com" for i in range(5)
    ]
    assert n.stats.counts[("burst", "sent")] == 1
