# ruff: noqa: S608  (SQL text is built only from constants here; every value is bound)
"""The Store contract on one SQLite file.

Durability: WAL journal with `synchronous=NORMAL` by default. A transaction is in the WAL
file (the OS page cache) when COMMIT returns, so killing the process, even with SIGKILL,
loses nothing that was committed; only a power loss or kernel crash can drop the last
transactions before the next checkpoint. Pass `synchronous="FULL"` to `SqliteStore.open`
to fsync the WAL on every commit and survive power loss too, at the cost of one fsync per
write.

Several processes may share the file (replicas on one host, the CLI reading while the
daemon writes): every write is one statement or one `BEGIN IMMEDIATE` transaction, and
`busy_timeout` makes a writer wait for the lock instead of failing. Within one process a
SqliteStore may be used from several threads; a lock serialises its one connection.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields, replace
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from agent.model import Cause, Service, ServiceHealth, State
from agent.store.base import Conflict, Incident, OutboxItem, Record, Store
from agent.store.migrations import migrate

log = logging.getLogger(__name__)

_SERVICES: dict[str, Service] = {s.value: s for s in Service}
_STATES: dict[str, State] = {s.value: s for s in State}
_CAUSES: dict[str | None, Cause | None] = {c.value: c for c in Cause}
_CAUSES[None] = None

# Health columns follow the ServiceHealth fields by name, so a field added to the model
# needs only a migration adding its column (SqliteStore.open refuses a schema without it).
_HEALTH_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ServiceHealth))
_HEALTH_DATA = tuple(n for n in _HEALTH_FIELDS if n not in ("account_id", "service", "version"))
_HEALTH_COLS = ", ".join(_HEALTH_FIELDS)
_HEALTH_INSERT = (
    f"INSERT INTO health ({_HEALTH_COLS}) VALUES ({', '.join('?' * len(_HEALTH_FIELDS))}) "
    "ON CONFLICT (account_id, service) DO NOTHING"
)
_HEALTH_UPDATE = (
    f"UPDATE health SET {', '.join(f'{n} = ?' for n in _HEALTH_DATA)}, version = ? "
    "WHERE account_id = ? AND service = ? AND version = ?"
)
_I_SERVICE, _I_STATE, _I_CAUSE, _I_DEFINITIVE = (
    _HEALTH_FIELDS.index(n) for n in ("service", "state", "cause", "definitive")
)
_INCIDENT_COLS = "id, account_id, service, cause, hint, opened_at, closed_at"
_OUTBOX_COLS = (
    "key, kind, owner_id, account_ids, payload, status, created_at, not_before, attempts, "
    "next_attempt_at, last_error, sent_at, lease_owner, lease_until"
)
_CHUNK = 500  # keys per statement in cancel(), well under SQLite's variable limit


def _column(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bool):
        return int(value)
    return value


def _health_data(h: ServiceHealth) -> list[Any]:
    """The columns of _HEALTH_DATA, in order."""
    return [_column(getattr(h, n)) for n in _HEALTH_DATA]


def _health(row: tuple[Any, ...]) -> ServiceHealth:
    r = list(row)
    r[_I_SERVICE] = _SERVICES[r[_I_SERVICE]]
    r[_I_STATE] = _STATES[r[_I_STATE]]
    r[_I_CAUSE] = _CAUSES[r[_I_CAUSE]]
    r[_I_DEFINITIVE] = bool(r[_I_DEFINITIVE])
    return ServiceHealth(*r)


def _incident(row: tuple[Any, ...]) -> Incident:
    cause = _CAUSES[row[3]]
    assert cause is not None
    return Incident(row[0], row[1], _SERVICES[row[2]], cause, row[4], row[5], row[6])


def _outbox(row: tuple[Any, ...]) -> OutboxItem:
    return OutboxItem(
        key=row[0],
        kind=row[1],
        owner_id=row[2],
        account_ids=tuple(json.loads(row[3])),
        payload=json.loads(row[4]),
        status=row[5],
        created_at=row[6],
        not_before=row[7],
        attempts=row[8],
        next_attempt_at=row[9],
        last_error=row[10],
        sent_at=row[11],
        lease_owner=row[12],
        lease_until=row[13],
    )


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _check_health_columns(conn: sqlite3.Connection, path: Path) -> None:
    have = {r[1] for r in conn.execute("PRAGMA table_info(health)")}
    missing = [n for n in _HEALTH_FIELDS if n not in have]
    if missing:
        raise RuntimeError(
            f"{path}: table health lacks columns {missing} of ServiceHealth; "
            "add a migration in agent/store/migrations.py"
        )


class SqliteStore:
    """agent.store.base.Store on SQLite. Create with `SqliteStore.open(path)`."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self._lock = threading.RLock()
        self.path = path

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        busy_timeout: float = 10.0,
    ) -> SqliteStore:
        """Open (or create) the database at `path`, creating its folder and bringing the
        schema to the latest version. `busy_timeout` is in seconds."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=busy_timeout
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"{path}: cannot use WAL journal (got {mode})")
            conn.execute(f"PRAGMA synchronous = {'FULL' if synchronous == 'FULL' else 'NORMAL'}")
            conn.execute("PRAGMA foreign_keys = ON")
            version = migrate(conn)
            _check_health_columns(conn, path)
        except BaseException:
            conn.close()
            raise
        log.debug("store opened path=%s schema_version=%d", path, version)
        return cls(conn, path)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taking the write lock at once (no upgrade deadlock)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        with self._lock:
            return self._conn.execute(sql, params).fetchone()

    def schema_version(self) -> int:
        (version,) = self._one("SELECT max(version) FROM schema_migrations")
        return int(version)

    # --- health ------------------------------------------------------------------------
    def load_health(self) -> list[ServiceHealth]:
        rows = self._all(f"SELECT {_HEALTH_COLS} FROM health")
        return [_health(r) for r in rows]

    def health_counts(self) -> dict[tuple[Service, State, Cause | None], int]:
        """How many services are in each (service, state, cause), counted by SQLite: a
        cheap snapshot for /metrics without loading every row."""
        rows = self._all(
            "SELECT service, state, cause, count(*) FROM health GROUP BY service, state, cause"
        )
        return {(_SERVICES[s], _STATES[st], _CAUSES[c]): n for s, st, c, n in rows}

    def get_health(self, account_id: str, service: Service) -> ServiceHealth | None:
        row = self._one(
            f"SELECT {_HEALTH_COLS} FROM health WHERE account_id = ? AND service = ?",
            (account_id, service.value),
        )
        return _health(row) if row is not None else None

    def put_health(self, health: ServiceHealth) -> ServiceHealth:
        new_version = health.version + 1
        with self._lock:
            if health.version == 0:
                cur = self._conn.execute(
                    _HEALTH_INSERT,
                    (health.account_id, health.service.value, *_health_data(health), new_version),
                )
            else:
                cur = self._conn.execute(
                    _HEALTH_UPDATE,
                    (
                        *_health_data(health),
                        new_version,
                        health.account_id,
                        health.service.value,
                        health.version,
                    ),
                )
            if cur.rowcount != 1:
                raise Conflict(
                    f"health {health.account_id}/{health.service.value}: "
                    f"version {health.version} is not the stored one"
                )
        return replace(health, version=new_version)

    def put_health_many(self, healths: Sequence[ServiceHealth]) -> list[ServiceHealth | None]:
        out: list[ServiceHealth | None] = []
        with self._tx() as c:
            for h in healths:
                new_version = h.version + 1
                if h.version == 0:
                    cur = c.execute(
                        _HEALTH_INSERT,
                        (h.account_id, h.service.value, *_health_data(h), new_version),
                    )
                else:
                    cur = c.execute(
                        _HEALTH_UPDATE,
                        (*_health_data(h), new_version, h.account_id, h.service.value, h.version),
                    )
                out.append(replace(h, version=new_version) if cur.rowcount == 1 else None)
        return out

    def delete_account(self, account_id: str, at: float) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM health WHERE account_id = ?", (account_id,))
            c.execute(
                "UPDATE incidents SET closed_at = ? WHERE account_id = ? AND closed_at IS NULL",
                (at, account_id),
            )

    # --- incidents ---------------------------------------------------------------------
    def open_incident(
        self, account_id: str, service: Service, cause: Cause, hint: str | None, at: float
    ) -> Incident:
        with self._tx() as c:
            # fetchall(): a RETURNING statement must run to its end before COMMIT.
            rows = c.execute(
                "INSERT INTO incidents (account_id, service, cause, hint, opened_at) "
                "VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (account_id, service) WHERE closed_at IS NULL DO NOTHING "
                f"RETURNING {_INCIDENT_COLS}",
                (account_id, service.value, cause.value, hint, at),
            ).fetchall()
            row = rows[0] if rows else None
            if row is None:
                row = c.execute(
                    f"SELECT {_INCIDENT_COLS} FROM incidents "
                    "WHERE account_id = ? AND service = ? AND closed_at IS NULL",
                    (account_id, service.value),
                ).fetchone()
        return _incident(row)

    def close_incident(self, account_id: str, service: Service, at: float) -> Incident | None:
        # fetchall(): in autocommit mode the write commits when the statement ends.
        rows = self._all(
            "UPDATE incidents SET closed_at = ? "
            "WHERE account_id = ? AND service = ? AND closed_at IS NULL "
            f"RETURNING {_INCIDENT_COLS}",
            (at, account_id, service.value),
        )
        return _incident(rows[0]) if rows else None

    def incidents(
        self, account_id: str | None = None, *, open_only: bool = False, limit: int = 100
    ) -> list[Incident]:
        where, params = [], []
        if account_id is not None:
            where.append("account_id = ?")
            params.append(account_id)
        if open_only:
            where.append("closed_at IS NULL")
        sql = f"SELECT {_INCIDENT_COLS} FROM incidents"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY opened_at DESC, id DESC LIMIT ?"
        return [_incident(r) for r in self._all(sql, (*params, limit))]

    # --- records -----------------------------------------------------------------------
    def get_record(self, namespace: str, key: str) -> Record:
        row = self._one(
            "SELECT value, version FROM records WHERE namespace = ? AND key = ?",
            (namespace, key),
        )
        if row is None:
            return Record(namespace, key)
        return Record(namespace, key, json.loads(row[0]), row[1])

    def put_record(self, record: Record) -> Record:
        value = _json(dict(record.value))
        new_version = record.version + 1
        with self._lock:
            if record.version == 0:
                cur = self._conn.execute(
                    "INSERT INTO records (namespace, key, value, version) VALUES (?, ?, ?, 1) "
                    "ON CONFLICT (namespace, key) DO NOTHING",
                    (record.namespace, record.key, value),
                )
            else:
                cur = self._conn.execute(
                    "UPDATE records SET value = ?, version = ? "
                    "WHERE namespace = ? AND key = ? AND version = ?",
                    (value, new_version, record.namespace, record.key, record.version),
                )
            if cur.rowcount != 1:
                raise Conflict(
                    f"record {record.namespace}/{record.key}: "
                    f"version {record.version} is not the stored one"
                )
        return Record(record.namespace, record.key, json.loads(value), new_version)

    def delete_record(self, namespace: str, key: str) -> None:
        with self._lock:
            self._conn.execute(
                "DELETE FROM records WHERE namespace = ? AND key = ?", (namespace, key)
            )

    def records(self, namespace: str) -> list[Record]:
        rows = self._all(
            "SELECT key, value, version FROM records WHERE namespace = ? ORDER BY key",
            (namespace,),
        )
        return [Record(namespace, k, json.loads(v), ver) for k, v, ver in rows]

    # --- outbox ------------------------------------------------------------------------
    def enqueue(self, item: OutboxItem) -> bool:
        """Insert `item` as pending (its status and lease are ignored)."""
        with self._lock:
            cur = self._conn.execute(
                "INSERT INTO outbox (key, kind, owner_id, account_ids, payload, status, "
                "created_at, not_before, attempts, next_attempt_at, last_error, updated_at) "
                "VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (key) DO NOTHING",
                (
                    item.key,
                    item.kind,
                    item.owner_id,
                    _json(list(item.account_ids)),
                    _json(dict(item.payload)),
                    item.created_at,
                    item.not_before,
                    item.attempts,
                    item.next_attempt_at,
                    item.last_error,
                    item.created_at,
                ),
            )
            return cur.rowcount == 1

    def claim_due(self, now: float, worker: str, lease: float, limit: int = 50) -> list[OutboxItem]:
        # One UPDATE: SQLite holds the write lock for the whole statement, so the rows the
        # subquery picks cannot be claimed by another connection in between.
        rows = self._all(
            "UPDATE outbox SET lease_owner = ?, lease_until = ? WHERE key IN ("
            "  SELECT key FROM outbox WHERE status = 'pending' AND not_before <= ?"
            "  AND (next_attempt_at IS NULL OR next_attempt_at <= ?)"
            "  AND (lease_until IS NULL OR lease_until <= ?)"
            "  ORDER BY not_before, created_at, key LIMIT ?"
            f") RETURNING {_OUTBOX_COLS}",
            (worker, now + lease, now, now, now, limit),
        )
        items = [_outbox(r) for r in rows]
        items.sort(key=lambda i: (i.not_before, i.created_at, i.key))
        return items

    def mark_sent(self, key: str, worker: str, at: float) -> None:
        with self._lock:
            cur = self._conn.execute(
                "UPDATE outbox SET status = 'sent', sent_at = ?, attempts = attempts + 1, "
                "last_error = NULL, lease_owner = NULL, lease_until = NULL, updated_at = ? "
                "WHERE key = ? AND lease_owner = ? AND status = 'pending'",
                (at, at, key, worker),
            )
        if cur.rowcount != 1:
            log.warning("outbox mark ignored key=%s worker=%s outcome=sent", key, worker)

    def mark_failed(
        self, key: str, worker: str, error: str, at: float, retry_at: float | None
    ) -> None:
        with self._lock:
            cur = self._conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, "
                "next_attempt_at = ?, status = CASE WHEN ? IS NULL THEN 'failed' "
                "ELSE 'pending' END, lease_owner = NULL, lease_until = NULL, updated_at = ? "
                "WHERE key = ? AND lease_owner = ? AND status = 'pending'",
                (error, retry_at, retry_at, at, key, worker),
            )
        if cur.rowcount != 1:
            log.warning("outbox mark ignored key=%s worker=%s outcome=failed", key, worker)

    def cancel(self, keys: Sequence[str], reason: str, at: float) -> int:
        """Cancel pending items (leased ones too: their sender's mark is then ignored);
        `reason` is kept in last_error."""
        keys = list(keys)
        count = 0
        with self._tx() as c:
            for i in range(0, len(keys), _CHUNK):
                chunk = keys[i : i + _CHUNK]
                cur = c.execute(
                    "UPDATE outbox SET status = 'cancelled', last_error = ?, updated_at = ?, "
                    "lease_owner = NULL, lease_until = NULL "
                    f"WHERE status = 'pending' AND key IN ({', '.join('?' * len(chunk))})",
                    (reason, at, *chunk),
                )
                count += cur.rowcount
        return count

    def outbox(
        self,
        *,
        owner_id: str | None = None,
        account_id: str | None = None,
        status: str | None = None,
        limit: int = 200,
    ) -> list[OutboxItem]:
        """Newest first."""
        where: list[str] = []
        params: list[Any] = []
        if owner_id is not None:
            where.append("owner_id = ?")
            params.append(owner_id)
        if account_id is not None:
            where.append("EXISTS (SELECT 1 FROM json_each(outbox.account_ids) WHERE value = ?)")
            params.append(account_id)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        sql = f"SELECT {_OUTBOX_COLS} FROM outbox"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, key DESC LIMIT ?"
        return [_outbox(r) for r in self._all(sql, (*params, limit))]

    def outbox_pending(self) -> int:
        (n,) = self._one("SELECT count(*) FROM outbox WHERE status = 'pending'")
        return int(n)

    # --- shards ------------------------------------------------------------------------
    def claim_shards(self, worker: str, shards: int, now: float, lease: float) -> set[int]:
        until = now + lease
        with self._tx() as c:
            c.execute(
                "INSERT INTO workers (worker, lease_until) VALUES (?, ?) "
                "ON CONFLICT (worker) DO UPDATE SET lease_until = excluded.lease_until",
                (worker, until),
            )
            c.execute("DELETE FROM workers WHERE lease_until <= ?", (now,))
            (live,) = c.execute("SELECT count(*) FROM workers").fetchone()
            share = math.ceil(shards / max(1, live))
            c.execute("DELETE FROM shards WHERE shard >= ?", (shards,))
            c.executemany(
                "INSERT INTO shards (shard) VALUES (?) ON CONFLICT (shard) DO NOTHING",
                ((s,) for s in range(shards)),
            )
            mine = [
                s
                for (s,) in c.execute(
                    "SELECT shard FROM shards WHERE owner = ? ORDER BY shard", (worker,)
                )
            ]
            keep, release = mine[:share], mine[share:]
            if release:
                # More than a fair share: hand the surplus back for newcomers to take.
                c.executemany(
                    "UPDATE shards SET owner = NULL, lease_until = NULL WHERE shard = ?",
                    ((s,) for s in release),
                )
            free = [
                s
                for (s,) in c.execute(
                    "SELECT shard FROM shards WHERE owner IS NULL OR "
                    "(owner != ? AND lease_until <= ?) ORDER BY shard LIMIT ?",
                    (worker, now, share - len(keep)),
                )
            ]
            claimed = keep + free
            c.executemany(
                "UPDATE shards SET owner = ?, lease_until = ? WHERE shard = ?",
                ((worker, until, s) for s in claimed),
            )
        return set(claimed)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _conforms(store: SqliteStore) -> Store:
    """mypy checks here that SqliteStore implements the whole Store protocol."""
    return store
