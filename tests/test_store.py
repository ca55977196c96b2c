"""Behaviour of the SQLite store, against real database files in tmp_path."""

from __future__ import annotations

import multiprocessing
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import fields, replace
from pathlib import Path

import pytest

from agent.model import Cause, Service, ServiceHealth, State
from agent.store import migrations
from agent.store.base import Conflict, OutboxItem, Record
from agent.store.sqlite import SqliteStore

T0 = 1_700_000_000.0


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "syncwatch.db"


@pytest.fixture
def store(db: Path) -> Iterator[SqliteStore]:
    s = SqliteStore.open(db)
    yield s
    s.close()


def item(key: str, *, accounts: tuple[str, ...] = ("u-1",), not_before: float = T0) -> OutboxItem:
    return OutboxItem(
        key=key,
        kind="first",
        owner_id="owner-1",
        account_ids=accounts,
        payload={"to": ["owner@example.test"], "subject": "Reconnect", "n": 1},
        status="pending",
        created_at=T0,
        not_before=not_before,
    )


def full_health() -> ServiceHealth:
    return ServiceHealth(
        account_id="u-42",
        service=Service.CALDAV,
        state=State.DISCONNECTED,
        cause=Cause.ACCESS_REVOKED,
        hint="oauth_invalid_grant",
        definitive=True,
        detail="token endpoint said invalid_grant",
        since=T0 + 1.5,
        first_failure_at=T0 + 0.25,
        strike_since=T0 + 0.75,
        last_probe_at=T0 + 9.125,
        last_success_at=T0 - 100.0,
        consecutive_failures=7,
        consecutive_successes=0,
        credential="sha256:abcd",
        breaker_until=T0 + 600.0,
        breaker_backoff=300.0,
        retry_after_until=T0 + 30.0,
    )


# --- schema -------------------------------------------------------------------------------


def test_open_creates_folder_schema_and_wal(db: Path) -> None:
    assert not db.parent.exists()
    s = SqliteStore.open(db)
    try:
        assert db.exists()
        assert s.schema_version() == migrations.LATEST
        with sqlite3.connect(db) as raw:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master")}
        assert {"health", "incidents", "records", "outbox", "shards", "schema_migrations"} <= (
            tables
        )
    finally:
        s.close()


def test_reopening_keeps_data_and_applies_no_migration_twice(db: Path) -> None:
    s = SqliteStore.open(db)
    s.put_health(full_health())
    s.close()
    s = SqliteStore.open(db)
    try:
        assert s.get_health("u-42", Service.CALDAV) == replace(full_health(), version=1)
        with sqlite3.connect(db) as raw:
            assert raw.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(
                migrations.MIGRATIONS
            )
    finally:
        s.close()


def test_a_later_migration_adds_a_column_to_an_existing_file(db: Path) -> None:
    SqliteStore.open(db).close()
    later = (
        *migrations.MIGRATIONS,
        migrations.Migration(migrations.LATEST + 1, ("ALTER TABLE health ADD COLUMN region TEXT",)),
    )
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        assert migrations.migrate(conn, later) == migrations.LATEST + 1
        cols = {r[1] for r in conn.execute("PRAGMA table_info(health)")}
        assert "region" in cols
        assert migrations.current_version(conn) == migrations.LATEST + 1
    finally:
        conn.close()


def test_a_schema_missing_a_model_field_is_refused(db: Path) -> None:
    SqliteStore.open(db).close()
    with sqlite3.connect(db) as raw:
        raw.execute("ALTER TABLE health DROP COLUMN strike_since")
    with pytest.raises(RuntimeError, match="strike_since"):
        SqliteStore.open(db)


def test_a_file_from_a_newer_version_is_refused(db: Path) -> None:
    SqliteStore.open(db).close()
    with sqlite3.connect(db) as raw:
        raw.execute("INSERT INTO schema_migrations VALUES (?, 0)", (migrations.LATEST + 5,))
    with pytest.raises(migrations.SchemaTooNew, match="newer"):
        SqliteStore.open(db)


# --- health ---------------------------------------------------------------------------------


def test_every_health_field_round_trips(store: SqliteStore) -> None:
    h = full_health()
    default = ServiceHealth("u-42", Service.CALDAV)
    not_set = [
        f.name
        for f in fields(ServiceHealth)
        if f.name not in ("account_id", "service", "version", "consecutive_successes")
        and getattr(h, f.name) == getattr(default, f.name)
    ]
    assert not_set == [], "give every new ServiceHealth field a value in full_health()"
    stored = store.put_health(h)
    assert stored.version == 1
    got = store.get_health("u-42", Service.CALDAV)
    assert got == stored
    assert got is not None
    for name in h.__dataclass_fields__:
        if name != "version":
            assert getattr(got, name) == getattr(h, name), name
    assert type(got.service) is Service
    assert type(got.state) is State
    assert type(got.cause) is Cause
    assert got.definitive is True
    assert store.load_health() == [stored]


def test_default_health_round_trips_with_nones(store: SqliteStore) -> None:
    h = ServiceHealth("u-1", Service.IMAP)
    stored = store.put_health(h)
    assert store.get_health("u-1", Service.IMAP) == stored
    assert stored.cause is None and stored.definitive is False
    assert store.get_health("u-1", Service.SMTP) is None


def test_put_health_is_compare_and_set(store: SqliteStore) -> None:
    v1 = store.put_health(ServiceHealth("u-1", Service.IMAP))
    with pytest.raises(Conflict):
        store.put_health(ServiceHealth("u-1", Service.IMAP))  # version 0: must not exist
    v2 = store.put_health(ServiceHealth("u-1", Service.IMAP, state=State.DEGRADED, version=1))
    assert v2.version == 2
    with pytest.raises(Conflict):
        store.put_health(v1)  # stale
    with pytest.raises(Conflict):
        store.put_health(ServiceHealth("u-9", Service.IMAP, version=3))  # no row
    got = store.get_health("u-1", Service.IMAP)
    assert got is not None and got.state is State.DEGRADED and got.version == 2


def test_health_counts_groups_by_service_state_cause(store: SqliteStore) -> None:
    store.put_health(ServiceHealth("u-1", Service.IMAP))
    store.put_health(ServiceHealth("u-2", Service.IMAP))
    store.put_health(
        ServiceHealth("u-3", Service.IMAP, state=State.DISCONNECTED, cause=Cause.AUTH_FAILED)
    )
    assert store.health_counts() == {
        (Service.IMAP, State.OK, None): 2,
        (Service.IMAP, State.DISCONNECTED, Cause.AUTH_FAILED): 1,
    }


def _race_put(db: Path, version: int, n: int) -> list[bool]:
    """n threads over two SqliteStore instances (two replicas) write the same version."""
    stores = [SqliteStore.open(db), SqliteStore.open(db)]
    barrier = threading.Barrier(n)
    wins: list[bool] = [False] * n

    def run(i: int) -> None:
        h = ServiceHealth("u-1", Service.SMTP, consecutive_failures=i, version=version)
        barrier.wait()
        try:
            stores[i % 2].put_health(h)
            wins[i] = True
        except Conflict:
            pass

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    return wins


def test_two_replicas_racing_on_put_health_exactly_one_wins(db: Path) -> None:
    assert sum(_race_put(db, 0, 8)) == 1  # insert race
    assert sum(_race_put(db, 1, 8)) == 1  # update race
    s = SqliteStore.open(db)
    got = s.get_health("u-1", Service.SMTP)
    s.close()
    assert got is not None and got.version == 2


def _proc_put(db: str, i: int, start: object, out: object) -> None:
    s = SqliteStore.open(Path(db))
    start.wait()  # type: ignore[attr-defined]
    try:
        s.put_health(ServiceHealth("u-7", Service.IMAP, consecutive_failures=i, version=1))
        out.put(i)  # type: ignore[attr-defined]
    except Conflict:
        out.put(-1)  # type: ignore[attr-defined]
    finally:
        s.close()


def test_two_processes_racing_on_put_health_exactly_one_wins(store: SqliteStore, db: Path) -> None:
    store.put_health(ServiceHealth("u-7", Service.IMAP))
    ctx = multiprocessing.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_proc_put, args=(str(db), i, start, out)) for i in range(4)]
    for p in procs:
        p.start()
    start.set()
    results = [out.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    winners = [r for r in results if r >= 0]
    assert len(winners) == 1
    got = store.get_health("u-7", Service.IMAP)
    assert got is not None and got.version == 2 and got.consecutive_failures == winners[0]


def test_delete_account_drops_health_and_closes_incidents(store: SqliteStore) -> None:
    store.put_health(ServiceHealth("u-1", Service.IMAP))
    store.put_health(ServiceHealth("u-1", Service.SMTP))
    store.put_health(ServiceHealth("u-2", Service.IMAP))
    store.open_incident("u-1", Service.IMAP, Cause.AUTH_FAILED, None, T0)
    store.open_incident("u-2", Service.IMAP, Cause.AUTH_FAILED, None, T0)
    store.delete_account("u-1", T0 + 5)
    assert [(h.account_id, h.service) for h in store.load_health()] == [("u-2", Service.IMAP)]
    assert store.incidents("u-1", open_only=True) == []
    assert [i.closed_at for i in store.incidents("u-1")] == [T0 + 5]
    assert len(store.incidents("u-2", open_only=True)) == 1


# --- incidents ------------------------------------------------------------------------------


def test_open_incident_returns_the_one_already_open(store: SqliteStore) -> None:
    a = store.open_incident("u-1", Service.IMAP, Cause.AUTH_FAILED, "app_password", T0)
    b = store.open_incident("u-1", Service.IMAP, Cause.OVER_QUOTA, None, T0 + 10)
    assert a == b
    assert a.cause is Cause.AUTH_FAILED and a.hint == "app_password" and a.closed_at is None
    other = store.open_incident("u-1", Service.SMTP, Cause.TIMEOUT, None, T0 + 1)
    assert other.id != a.id
    assert {i.service for i in store.incidents("u-1", open_only=True)} == {
        Service.IMAP,
        Service.SMTP,
    }


def test_close_then_reopen_makes_a_new_incident(store: SqliteStore) -> None:
    a = store.open_incident("u-1", Service.IMAP, Cause.AUTH_FAILED, None, T0)
    closed = store.close_incident("u-1", Service.IMAP, T0 + 60)
    assert closed is not None and closed.id == a.id and closed.closed_at == T0 + 60
    assert store.close_incident("u-1", Service.IMAP, T0 + 61) is None
    b = store.open_incident("u-1", Service.IMAP, Cause.ACCESS_REVOKED, None, T0 + 100)
    assert b.id != a.id
    assert [i.id for i in store.incidents("u-1")] == [b.id, a.id]  # newest first
    assert [i.id for i in store.incidents("u-1", open_only=True)] == [b.id]
    assert [i.id for i in store.incidents(limit=1)] == [b.id]


def test_replicas_see_each_others_incidents_at_once(store: SqliteStore, db: Path) -> None:
    other = SqliteStore.open(db)
    try:
        a = store.open_incident("u-1", Service.IMAP, Cause.AUTH_FAILED, None, T0)
        assert other.open_incident("u-1", Service.IMAP, Cause.TIMEOUT, None, T0 + 1) == a
        assert other.close_incident("u-1", Service.IMAP, T0 + 2) is not None
        assert store.incidents(open_only=True) == []
        b = store.open_incident("u-1", Service.IMAP, Cause.TIMEOUT, None, T0 + 3)
        assert other.incidents(open_only=True) == [b]
    finally:
        other.close()


def test_the_database_itself_refuses_a_second_open_incident(store: SqliteStore, db: Path) -> None:
    store.open_incident("u-1", Service.IMAP, Cause.AUTH_FAILED, None, T0)
    with sqlite3.connect(db) as raw, pytest.raises(sqlite3.IntegrityError):
        raw.execute(
            "INSERT INTO incidents (account_id, service, cause, opened_at) "
            "VALUES ('u-1', 'imap', 'timeout', 1)"
        )


# --- records --------------------------------------------------------------------------------


def test_records_compare_and_set(store: SqliteStore) -> None:
    missing = store.get_record("burst", "owner-1")
    assert missing == Record("burst", "owner-1", {}, 0)
    r1 = store.put_record(Record("burst", "owner-1", {"held": ["u-1"], "until": T0}))
    assert r1.version == 1
    with pytest.raises(Conflict):
        store.put_record(Record("burst", "owner-1", {"x": 1}))  # exists already
    r2 = store.put_record(Record("burst", "owner-1", {"held": [], "n": 2}, r1.version))
    with pytest.raises(Conflict):
        store.put_record(Record("burst", "owner-1", {"stale": True}, r1.version))
    assert (
        store.get_record("burst", "owner-1")
        == r2
        == Record("burst", "owner-1", {"held": [], "n": 2}, 2)
    )
    store.put_record(Record("burst", "owner-0", {"a": "é"}))
    store.put_record(Record("other", "owner-0", {}))
    assert [r.key for r in store.records("burst")] == ["owner-0", "owner-1"]
    store.delete_record("burst", "owner-1")
    assert store.get_record("burst", "owner-1").version == 0
    assert store.put_record(Record("burst", "owner-1", {"again": 1})).version == 1


# --- outbox ---------------------------------------------------------------------------------


def test_enqueue_is_idempotent_by_key(store: SqliteStore) -> None:
    assert store.enqueue(item("u-1/1/first")) is True
    changed = OutboxItem(**{**item("u-1/1/first").__dict__, "kind": "reminder"})
    assert store.enqueue(changed) is False
    (got,) = store.outbox()
    assert got == item("u-1/1/first")
    assert store.outbox_pending() == 1


def test_claim_due_respects_not_before_retry_time_and_leases(store: SqliteStore) -> None:
    store.enqueue(item("now"))
    store.enqueue(item("later", not_before=T0 + 100))
    claimed = store.claim_due(T0, "w1", lease=30)
    assert [(i.key, i.lease_owner, i.lease_until) for i in claimed] == [("now", "w1", T0 + 30)]
    assert store.claim_due(T0 + 10, "w2", lease=30) == []  # leased by w1
    store.mark_failed("now", "w1", "smtp 451", T0 + 11, retry_at=T0 + 60)
    assert [i.key for i in store.claim_due(T0 + 59, "w2", lease=30)] == []
    assert [i.key for i in store.claim_due(T0 + 100, "w2", lease=30)] == ["now", "later"]
    assert store.claim_due(T0 + 100, "w1", lease=30, limit=5) == []


def test_mark_failed_retries_then_gives_up(store: SqliteStore) -> None:
    store.enqueue(item("k"))
    store.claim_due(T0, "w1", lease=30)
    store.mark_failed("k", "w1", "connection refused", T0 + 1, retry_at=T0 + 10)
    (i,) = store.outbox()
    assert (i.status, i.attempts, i.last_error, i.next_attempt_at, i.lease_owner) == (
        "pending",
        1,
        "connection refused",
        T0 + 10,
        None,
    )
    store.claim_due(T0 + 10, "w1", lease=30)
    store.mark_failed("k", "w1", "550 rejected", T0 + 11, retry_at=None)
    (i,) = store.outbox()
    assert (i.status, i.attempts, i.last_error) == ("failed", 2, "550 rejected")
    assert store.outbox_pending() == 0
    assert store.claim_due(T0 + 1000, "w1", lease=30) == []


def test_expired_lease_is_taken_over_and_the_old_workers_marks_are_ignored(
    store: SqliteStore,
) -> None:
    store.enqueue(item("k"))
    assert [i.key for i in store.claim_due(T0, "old", lease=30)] == ["k"]
    assert store.claim_due(T0 + 29, "new", lease=30) == []
    (taken,) = store.claim_due(T0 + 30, "new", lease=30)
    assert taken.lease_owner == "new"
    store.mark_sent("k", "old", T0 + 31)
    store.mark_failed("k", "old", "late failure", T0 + 31, retry_at=None)
    (i,) = store.outbox()
    assert (i.status, i.lease_owner, i.attempts, i.sent_at) == ("pending", "new", 0, None)
    store.mark_sent("k", "new", T0 + 32)
    (i,) = store.outbox()
    assert (i.status, i.sent_at, i.attempts, i.lease_owner) == ("sent", T0 + 32, 1, None)
    store.mark_failed("k", "new", "after sent", T0 + 33, retry_at=T0 + 40)
    assert store.outbox()[0].status == "sent"


def test_an_expired_lease_nobody_took_still_lets_its_worker_finish(store: SqliteStore) -> None:
    store.enqueue(item("k"))
    store.claim_due(T0, "w1", lease=30)
    store.mark_sent("k", "w1", T0 + 100)
    assert store.outbox()[0].status == "sent"


def test_cancel_only_touches_pending_items(store: SqliteStore) -> None:
    for k in ("a", "b", "c"):
        store.enqueue(item(k))
    store.claim_due(T0, "w1", lease=30, limit=1)  # a is leased, still pending
    store.mark_sent("a", "w1", T0 + 1)
    assert store.cancel(["a", "b", "c", "missing"], "recovered", T0 + 2) == 2
    status = {i.key: (i.status, i.last_error) for i in store.outbox()}
    assert status == {
        "a": ("sent", None),
        "b": ("cancelled", "recovered"),
        "c": ("cancelled", "recovered"),
    }
    assert store.cancel(["b"], "again", T0 + 3) == 0
    assert store.claim_due(T0 + 10, "w1", lease=30) == []


def test_cancelling_a_leased_item_ignores_its_senders_mark(store: SqliteStore) -> None:
    store.enqueue(item("k"))
    store.claim_due(T0, "w1", lease=30)
    assert store.cancel(["k"], "recovered", T0 + 1) == 1
    store.mark_sent("k", "w1", T0 + 2)
    assert store.outbox()[0].status == "cancelled"


def test_cancel_many_keys(store: SqliteStore) -> None:
    keys = [f"k{i}" for i in range(1200)]
    for k in keys:
        store.enqueue(item(k))
    assert store.cancel(keys, "bulk", T0) == 1200
    assert store.outbox_pending() == 0


def test_outbox_filters_by_account_membership_owner_and_status(store: SqliteStore) -> None:
    store.enqueue(item("one", accounts=("u-1",)))
    store.enqueue(item("ten", accounts=("u-10",)))
    store.enqueue(item("both", accounts=("u-10", "u-1")))
    other = OutboxItem(**{**item("other", accounts=("u-1",)).__dict__, "owner_id": "owner-2"})
    store.enqueue(other)
    assert {i.key for i in store.outbox(account_id="u-1")} == {"one", "both", "other"}
    assert {i.key for i in store.outbox(account_id="u-10")} == {"ten", "both"}
    assert {i.key for i in store.outbox(account_id="u-")} == set()
    assert {i.key for i in store.outbox(owner_id="owner-2")} == {"other"}
    store.cancel(["one"], "x", T0)
    assert {i.key for i in store.outbox(account_id="u-1", status="pending")} == {"both", "other"}
    assert len(store.outbox(limit=2)) == 2
    (both,) = store.outbox(account_id="u-10", owner_id="owner-1", status="pending", limit=1)
    assert both.account_ids in (("u-10", "u-1"), ("u-10",))


def _claim_all(stores: list[SqliteStore], workers: int) -> list[list[str]]:
    barrier = threading.Barrier(workers)
    claimed: list[list[str]] = [[] for _ in range(workers)]

    def run(i: int) -> None:
        barrier.wait()
        while batch := stores[i % len(stores)].claim_due(T0, f"w{i}", lease=60, limit=3):
            claimed[i].extend(x.key for x in batch)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return claimed


def test_two_replicas_racing_on_claim_due_never_share_an_item(db: Path) -> None:
    a, b = SqliteStore.open(db), SqliteStore.open(db)
    try:
        keys = {f"k{i:03}" for i in range(150)}
        for k in keys:
            a.enqueue(item(k))
        claimed = _claim_all([a, b], 6)
        flat = [k for c in claimed for k in c]
        assert len(flat) == len(set(flat)) == 150
        assert set(flat) == keys
        by_owner = {i.key: i.lease_owner for i in b.outbox(limit=1000)}
        for n, keys_of_worker in enumerate(claimed):
            assert all(by_owner[k] == f"w{n}" for k in keys_of_worker)
    finally:
        a.close()
        b.close()


def _proc_claim(db: str, worker: str, start: object, out: object) -> None:
    s = SqliteStore.open(Path(db))
    start.wait()  # type: ignore[attr-defined]
    got: list[str] = []
    while batch := s.claim_due(T0, worker, lease=60, limit=2):
        got.extend(x.key for x in batch)
    s.close()
    out.put(got)  # type: ignore[attr-defined]


def test_processes_racing_on_claim_due_never_share_an_item(store: SqliteStore, db: Path) -> None:
    for i in range(100):
        store.enqueue(item(f"k{i:03}"))
    ctx = multiprocessing.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_proc_claim, args=(str(db), f"p{i}", start, out)) for i in range(3)]
    for p in procs:
        p.start()
    start.set()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    flat = [k for r in results for k in r]
    assert len(flat) == len(set(flat)) == 100


# --- shards ---------------------------------------------------------------------------------


def test_one_replica_gets_every_shard(store: SqliteStore) -> None:
    assert store.claim_shards("a", 8, T0, lease=30) == set(range(8))
    assert store.claim_shards("a", 8, T0 + 10, lease=30) == set(range(8))


def test_shards_are_shared_fairly_and_taken_over_when_a_replica_dies(store: SqliteStore) -> None:
    assert store.claim_shards("a", 8, T0, lease=30) == set(range(8))
    assert store.claim_shards("b", 8, T0 + 1, lease=30) == set()  # a still holds them
    a = store.claim_shards("a", 8, T0 + 2, lease=30)  # a sees b and gives back its surplus
    b = store.claim_shards("b", 8, T0 + 3, lease=30)
    assert len(a) == len(b) == 4 and a | b == set(range(8))
    c = store.claim_shards("c", 8, T0 + 4, lease=30)
    a = store.claim_shards("a", 8, T0 + 5, lease=30)
    b = store.claim_shards("b", 8, T0 + 6, lease=30)
    c = store.claim_shards("c", 8, T0 + 7, lease=30)
    assert len(a) <= 3 and len(b) <= 3 and len(c) <= 3
    assert a | b | c == set(range(8)) and not (a & b or a & c or b & c)
    # a and c stop renewing; b takes everything once their leases run out
    b = store.claim_shards("b", 8, T0 + 33, lease=30)  # all three still live
    assert len(b) <= 3
    b = store.claim_shards("b", 8, T0 + 40, lease=30)
    assert b == set(range(8))


def test_replicas_claiming_shards_at_once_never_hold_the_same_one(db: Path) -> None:
    stores = [SqliteStore.open(db), SqliteStore.open(db)]
    barrier = threading.Barrier(4)
    last: dict[str, set[int]] = {}

    def run(i: int) -> None:
        for r in range(4):
            barrier.wait()
            last[f"w{i}"] = stores[i % 2].claim_shards(f"w{i}", 8, T0 + r, lease=30)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    held = [shard for shards in last.values() for shard in shards]
    assert len(held) == len(set(held)) == 8
    assert all(len(shards) == 2 for shards in last.values())


def test_fewer_shards_drops_the_extra_ones(store: SqliteStore) -> None:
    store.claim_shards("a", 8, T0, lease=30)
    assert store.claim_shards("a", 4, T0 + 1, lease=30) == set(range(4))


# --- durability -----------------------------------------------------------------------------

CHILD = """
import sys, time
from pathlib import Path
from agent.model import Cause, Service, ServiceHealth
from agent.store.base import OutboxItem, Record
from agent.store.sqlite import SqliteStore

s = SqliteStore.open(Path(sys.argv[1]))
i = 0
while True:
    s.put_health(ServiceHealth(f"u-{i}", Service.IMAP, consecutive_failures=i))
    s.enqueue(OutboxItem(f"k-{i}", "first", "o", (f"u-{i}",), {"i": i}, "pending", 1.0, 1.0))
    s.put_record(Record("n", f"r-{i}", {"i": i}))
    s.open_incident(f"u-{i}", Service.IMAP, Cause.AUTH_FAILED, None, 1.0)
    s.close_incident(f"u-{i}", Service.SMTP, 2.0)
    (claimed,) = s.claim_due(2.0, "w", 60.0)
    s.mark_sent(claimed.key, "w", 3.0)
    s.close_incident(f"u-{i}", Service.IMAP, 4.0)
    print(i, flush=True)
    i += 1
"""


def test_every_committed_write_survives_kill_9(db: Path) -> None:
    SqliteStore.open(db).close()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    acknowledged = [int(child.stdout.readline()) for _ in range(200)]
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    acknowledged += [int(line) for line in child.stdout.read().split()]
    assert child.returncode == -signal.SIGKILL
    s = SqliteStore.open(db)
    try:
        health = {h.account_id: h for h in s.load_health()}
        sent = {i.key for i in s.outbox(status="sent", limit=1_000_000)}
        records = {r.key for r in s.records("n")}
        closed = {i.account_id for i in s.incidents(limit=1_000_000) if i.closed_at == 4.0}
        for n in acknowledged:
            assert health[f"u-{n}"].consecutive_failures == n
            assert f"k-{n}" in sent
            assert f"r-{n}" in records
            assert f"u-{n}" in closed
    finally:
        s.close()


def test_put_health_many_writes_all_and_reports_lost_cas(db: Path) -> None:
    s = SqliteStore.open(db)
    try:
        a = s.put_health(ServiceHealth("a", Service.IMAP))
        stale = replace(a, version=0)  # somebody else's view: the row exists already
        fresh = ServiceHealth("b", Service.SMTP, consecutive_failures=2)
        moved = replace(a, consecutive_failures=5)
        out = s.put_health_many([moved, stale, fresh])
        assert out[0] is not None and out[0].version == 2
        assert out[1] is None
        assert out[2] is not None and out[2].version == 1
        assert s.get_health("a", Service.IMAP) == out[0]
        assert s.get_health("b", Service.SMTP) == out[2]
    finally:
        s.close()
