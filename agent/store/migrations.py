"""Schema of the SQLite store, as an ordered list of migrations.

A database records every version applied in `schema_migrations`. Opening a store applies
the missing ones in one `BEGIN IMMEDIATE` transaction, so two processes opening the same
new file do not both create it. To change the schema, append a Migration with the next
version (for example `ALTER TABLE health ADD COLUMN ...`); never edit an applied one.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    statements: tuple[str, ...]


class SchemaTooNew(Exception):
    """The file was written by a newer syncwatch than this one."""


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        (
            """CREATE TABLE health (
                account_id TEXT NOT NULL,
                service TEXT NOT NULL,
                state TEXT NOT NULL,
                cause TEXT,
                hint TEXT,
                definitive INTEGER NOT NULL DEFAULT 0,
                detail TEXT NOT NULL DEFAULT '',
                since REAL,
                first_failure_at REAL,
                last_probe_at REAL,
                last_success_at REAL,
                consecutive_failures INTEGER NOT NULL DEFAULT 0,
                consecutive_successes INTEGER NOT NULL DEFAULT 0,
                credential TEXT NOT NULL DEFAULT '',
                breaker_until REAL,
                breaker_backoff REAL NOT NULL DEFAULT 0,
                retry_after_until REAL,
                version INTEGER NOT NULL,
                PRIMARY KEY (account_id, service)
            ) WITHOUT ROWID""",
            """CREATE TABLE incidents (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                account_id TEXT NOT NULL,
                service TEXT NOT NULL,
                cause TEXT NOT NULL,
                hint TEXT,
                opened_at REAL NOT NULL,
                closed_at REAL
            )""",
            """CREATE UNIQUE INDEX incidents_one_open
                ON incidents (account_id, service) WHERE closed_at IS NULL""",
            "CREATE INDEX incidents_by_account ON incidents (account_id, opened_at)",
            """CREATE TABLE records (
                namespace TEXT NOT NULL,
                key TEXT NOT NULL,
                value TEXT NOT NULL,
                version INTEGER NOT NULL,
                PRIMARY KEY (namespace, key)
            ) WITHOUT ROWID""",
            """CREATE TABLE outbox (
                key TEXT PRIMARY KEY,
                kind TEXT NOT NULL,
                owner_id TEXT NOT NULL,
                account_ids TEXT NOT NULL,
                payload TEXT NOT NULL,
                status TEXT NOT NULL,
                created_at REAL NOT NULL,
                not_before REAL NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at REAL,
                last_error TEXT,
                sent_at REAL,
                lease_owner TEXT,
                lease_until REAL,
                updated_at REAL
            )""",
            "CREATE INDEX outbox_due ON outbox (status, not_before)",
            "CREATE INDEX outbox_by_owner ON outbox (owner_id, created_at)",
            """CREATE TABLE shards (
                shard INTEGER PRIMARY KEY,
                owner TEXT,
                lease_until REAL
            )""",
            """CREATE TABLE workers (
                worker TEXT PRIMARY KEY,
                lease_until REAL NOT NULL
            )""",
        ),
    ),
    Migration(2, ("ALTER TABLE health ADD COLUMN strike_since REAL",)),
)

LATEST = MIGRATIONS[-1].version


def current_version(conn: sqlite3.Connection) -> int:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    if row is None:
        return 0
    (version,) = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    return int(version)


def migrate(conn: sqlite3.Connection, migrations: tuple[Migration, ...] = MIGRATIONS) -> int:
    """Bring the schema to the last version of `migrations`; returns that version.

    `conn` must be in autocommit mode (isolation_level=None)."""
    latest = migrations[-1].version
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                version INTEGER PRIMARY KEY,
                applied_at REAL NOT NULL
            )"""
        )
        version = current_version(conn)
        if version > latest:
            raise SchemaTooNew(
                f"database schema version {version} is newer than this syncwatch "
                f"supports ({latest}); upgrade syncwatch"
            )
        for migration in migrations:
            if migration.version <= version:
                continue
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                (migration.version, time.time()),
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return latest
