"""Rotated OAuth refresh tokens, kept in the store (agent.probes.oauth.RefreshTokenStore)."""

from __future__ import annotations

from agent.store.base import Conflict, Record, Store


class StoreTokens:
    """Rotated OAuth refresh tokens, kept in the store so a rotation is never lost."""

    NAMESPACE = "oauth_refresh"

    def __init__(self, store: Store) -> None:
        self._store = store

    def get(self, account_id: str) -> str | None:
        value = self._store.get_record(self.NAMESPACE, account_id).value
        token = value.get("token")
        return str(token) if token else None

    def put(self, account_id: str, token: str) -> None:
        for _ in range(3):
            current = self._store.get_record(self.NAMESPACE, account_id)
            try:
                self._store.put_record(
                    Record(self.NAMESPACE, account_id, {"token": token}, current.version)
                )
                return
            except Conflict:  # a concurrent rotation: read again and retry
                continue
