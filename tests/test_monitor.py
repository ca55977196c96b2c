"""The monitor: probe results through the state machine into a real SQLite store, with what
a restart must not lose written at once and routine updates batched."""

from __future__ import annotations

from pathlib import Path

from agent.config.types import Account, MailServer, Owner, Security
from agent.model import Cause, Failure, ProbeResult, Service, State
from agent.monitor import Monitor
from agent.secret import Secret
from agent.state import Policy
from agent.store.sqlite import SqliteStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _account(password: str = "pw") -> Account:
    server = MailServer("mail.example", 993, Security.TLS, "alice", password=Secret(password))
    return Account(id="acc-1", owner=Owner("u-1", "alice@example.com"), imap=server, smtp=server)


def _result(account: Account, service: Service, at: float, cause: Cause | None) -> ProbeResult:
    return ProbeResult(
        account_id=account.id,
        service=service,
        started_at=at,
        duration_seconds=0.01,
        failure=Failure(cause) if cause else None,
        credential=account.credential_fingerprint(service),
    )


def _monitor(tmp_path: Path, clock: Clock) -> tuple[Monitor, SqliteStore]:
    store = SqliteStore.open(tmp_path / "s.sqlite3")
    m = Monitor(store, Policy(confirm_interval=60), clock=clock)
    m.load()
    return m, store


def test_state_changes_are_written_at_once_routine_updates_at_flush(tmp_path: Path) -> None:
    clock = Clock()
    m, store = _monitor(tmp_path, clock)
    acc = _account()
    m.set_accounts([acc])
    m.apply(acc, _result(acc, Service.IMAP, clock.now, None))
    first = store.get_health("acc-1", Service.IMAP)
    assert first is not None and first.last_success_at == clock.now  # first verdict: at once

    clock.now += 300
    m.apply(acc, _result(acc, Service.IMAP, clock.now, None))  # same verdict: routine
    stored = store.get_health("acc-1", Service.IMAP)
    assert stored is not None and stored.last_success_at == clock.now - 300
    assert m.healths("acc-1")[Service.IMAP].last_success_at == clock.now
    assert m.flush() == 1
    stored = store.get_health("acc-1", Service.IMAP)
    assert stored is not None and stored.last_success_at == clock.now
    assert m.flush() == 0

    clock.now += 300
    m.apply(acc, _result(acc, Service.IMAP, clock.now, Cause.AUTH_FAILED))  # ok -> degraded
    stored = store.get_health("acc-1", Service.IMAP)
    assert stored is not None and stored.state is State.DEGRADED  # without a flush


def test_a_restart_finds_every_banner_and_streak_without_a_flush(tmp_path: Path) -> None:
    clock = Clock()
    m, store = _monitor(tmp_path, clock)
    acc = _account()
    m.set_accounts([acc])
    for step in range(3):
        clock.now += 61
        for service in (Service.IMAP, Service.SMTP):
            m.apply(acc, _result(acc, service, clock.now, Cause.AUTH_FAILED))
        assert step or m.healths("acc-1")[Service.IMAP].state is State.DEGRADED
    assert m.healths("acc-1")[Service.IMAP].state is State.DISCONNECTED
    store.close()  # "kill -9": no flush

    m2, store2 = _monitor(tmp_path, clock)
    m2.set_accounts([acc])
    for service in (Service.IMAP, Service.SMTP):
        h = m2.healths("acc-1")[service]
        assert (h.state, h.cause) == (State.DISCONNECTED, Cause.AUTH_FAILED)
        assert h.breaker_until is not None
    assert [i.cause for i in store2.incidents("acc-1", open_only=True)] == [
        Cause.AUTH_FAILED,
        Cause.AUTH_FAILED,
    ]
    store2.close()


def test_new_credentials_are_applied_and_old_results_dropped(tmp_path: Path) -> None:
    clock = Clock()
    m, store = _monitor(tmp_path, clock)
    old = _account("old-pw")
    m.set_accounts([old])
    new = _account("new-pw")
    changed, removed = m.set_accounts([new])
    assert [a.id for a in changed] == ["acc-1"] and removed == []
    # a probe that started with the old password ends after the reconnect: ignored
    assert m.apply(old, _result(old, Service.IMAP, clock.now, Cause.AUTH_FAILED)) is None
    assert m.healths("acc-1")[Service.IMAP].last_probe_at is None
    store.close()


def test_reinstalling_an_account_counts_its_services_once(tmp_path: Path) -> None:
    """A reload installs every account again: the fleet gauge must not grow with it."""
    from dataclasses import replace

    from agent.metrics import Metrics

    clock = Clock()
    store = SqliteStore.open(tmp_path / "s.sqlite3")
    metrics = Metrics()
    m = Monitor(store, Policy(), clock=clock, listeners=[metrics])
    acc = _account()
    m.set_accounts([acc])
    m.apply(acc, _result(acc, Service.IMAP, clock.now, Cause.TIMEOUT))
    m.apply(acc, _result(acc, Service.SMTP, clock.now, None))
    expected = {
        ("imap", "generic", "degraded", "timeout"): 1,
        ("smtp", "generic", "ok", ""): 1,
    }
    assert metrics.fleet() == expected
    for _ in range(3):
        m.set_accounts([_account()])  # a reload: the same account, a new object
    assert metrics.fleet() == expected
    moved = replace(_account(), provider="gmail")  # the provider changed
    m.set_accounts([moved])
    assert metrics.fleet() == {
        ("imap", "gmail", "degraded", "timeout"): 1,
        ("smtp", "gmail", "ok", ""): 1,
    }
    m.set_accounts([])
    assert metrics.fleet() == {}
    store.close()
