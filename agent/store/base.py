"""The storage contract. SQLite implements it now (agent.store.sqlite); a PostgreSQL backend
implements the same later, so every write that replicas could race on is a versioned
compare-and-set, outbox rows are claimed with a lease, and scheduling is sharded.

All methods are synchronous and short (one statement or one small transaction); callers
on the event loop may run them directly against SQLite.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.model import Cause, Service, ServiceHealth


class Conflict(Exception):
    """A compare-and-set lost: somebody else wrote a newer version first."""


@dataclass(frozen=True)
class Incident:
    id: int
    account_id: str
    service: Service
    cause: Cause
    hint: str | None
    opened_at: float
    closed_at: float | None = None


@dataclass(frozen=True)
class OutboxItem:
    key: str  # unique: (owner incident, step), e.g. "u-42/7/first"
    kind: str  # first | reminder | recovery | transient | sre | burst ...
    owner_id: str
    account_ids: tuple[str, ...]
    payload: Mapping[str, Any]  # what the sender needs: recipients, subject, bodies, headers
    status: str  # pending | sent | failed (gave up) | cancelled
    created_at: float
    not_before: float  # not sent before this time
    attempts: int = 0
    next_attempt_at: float | None = None
    last_error: str | None = None
    sent_at: float | None = None
    lease_owner: str | None = None
    lease_until: float | None = None


@dataclass(frozen=True)
class Record:
    """A small JSON document with a version, for state that has no table of its own
    (owner incidents of the notifier, burst holds, rotated OAuth refresh tokens...)."""

    namespace: str
    key: str
    value: Mapping[str, Any] = field(default_factory=dict)
    version: int = 0  # 0: does not exist yet


class Store(Protocol):
    # --- health: one row per (account, service) --------------------------------------
    def load_health(self) -> list[ServiceHealth]: ...

    def get_health(self, account_id: str, service: Service) -> ServiceHealth | None: ...

    def put_health(self, health: ServiceHealth) -> ServiceHealth:
        """Write if the stored version equals `health.version` (0: no row yet); returns the
        row as stored, with version + 1. Raises Conflict otherwise."""
        ...

    def put_health_many(self, healths: Sequence[ServiceHealth]) -> list[ServiceHealth | None]:
        """put_health for many rows in one transaction; a row that loses its
        compare-and-set is None in the answer (the others are written)."""
        ...

    def delete_account(self, account_id: str, at: float) -> None:
        """The account left the inventory: drop its health, close its open incidents."""
        ...

    # --- incidents: one per confirmed break of one service -----------------------------
    def open_incident(
        self, account_id: str, service: Service, cause: Cause, hint: str | None, at: float
    ) -> Incident:
        """Open one, or return the one already open for (account, service)."""
        ...

    def close_incident(self, account_id: str, service: Service, at: float) -> Incident | None: ...

    def incidents(
        self, account_id: str | None = None, *, open_only: bool = False, limit: int = 100
    ) -> list[Incident]: ...

    # --- records: small versioned JSON documents -----------------------------------------
    def get_record(self, namespace: str, key: str) -> Record: ...

    def put_record(self, record: Record) -> Record:
        """Compare-and-set on `record.version` (0: must not exist). Raises Conflict."""
        ...

    def delete_record(self, namespace: str, key: str) -> None: ...

    def records(self, namespace: str) -> list[Record]: ...

    # --- outbox: notifications recorded before they are sent ----------------------------
    def enqueue(self, item: OutboxItem) -> bool:
        """Insert a pending item; False (and nothing changes) if the key exists already."""
        ...

    def claim_due(self, now: float, worker: str, lease: float, limit: int = 50) -> list[OutboxItem]:
        """Lease pending items whose not_before and next_attempt_at have passed and whose
        lease is free or expired; returns them with the lease set to `worker`."""
        ...

    def mark_sent(self, key: str, worker: str, at: float) -> None: ...

    def mark_failed(
        self, key: str, worker: str, error: str, at: float, retry_at: float | None
    ) -> None:
        """Count an attempt; retry at `retry_at`, or give up (status failed) when None."""
        ...

    def cancel(self, keys: Sequence[str], reason: str, at: float) -> int:
        """Cancel pending items; returns how many were pending."""
        ...

    def outbox(
        self,
        *,
        owner_id: str | None = None,
        account_id: str | None = None,
        status: str | None = None,
        limit: int = 200,
    ) -> list[OutboxItem]: ...

    def outbox_pending(self) -> int: ...

    # --- scheduling shards (several replicas) ------------------------------------------
    def claim_shards(self, worker: str, shards: int, now: float, lease: float) -> set[int]:
        """Renew this worker's shards and take free or expired ones, up to a fair share
        of `shards` among the live workers. One replica gets them all."""
        ...

    def close(self) -> None: ...
