"""OAuth2 access tokens for probes: the RFC 6749 refresh_token grant, cached.

`OAuthTokens` implements agent.probes.base.TokenSource:
- POSTs `grant_type=refresh_token` (client_id, client_secret when set, refresh_token,
  scope) to `account.oauth2.token_url` through the guarded HTTP layer (timeout, capped
  body, TLS verified, injected resolver, no redirects);
- caches the access token per (account, credential, scopes) until `margin` seconds
  before `expires_in` (by the injected clock): IMAP, SMTP and CalDAV of one account
  share one refresh per cycle, and concurrent callers wait for the one in flight;
- keeps a failure for `failure_ttl` seconds, so every service depending on the grant
  reports the same token-endpoint answer without asking again;
- persists a rotated refresh token (a new `refresh_token` in the answer) through a
  `RefreshTokenStore`, and prefers it to the configured one from then on, unless the
  configured token changed since (the stored value carries a fingerprint of the
  configured token it replaced).

Failures raise ProbeError(Evidence(protocol="oauth", stage="token", code=HTTP status,
text=the endpoint's JSON body, redacted, headers)).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from agent.config.types import Account, AuthKind, OAuth2, TlsSettings
from agent.model import Evidence, Service
from agent.net import Resolver, SystemResolver
from agent.probes.base import ProbeError
from agent.probes.http_guard import GuardedHttp, HttpLimits
from agent.secret import Redactor

log = logging.getLogger(__name__)

DEFAULT_EXPIRES_IN = 3600.0


class RefreshTokenStore(Protocol):
    """Where rotated refresh tokens live (the daemon: agent.store records, namespace
    "oauth_refresh"). The value is opaque to the store and secret: keep it like one."""

    def get(self, account_id: str) -> str | None: ...

    def put(self, account_id: str, token: str) -> None: ...


class MemoryRefreshTokenStore:
    """A RefreshTokenStore in a dict (tests, one-shot runs)."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, account_id: str) -> str | None:
        return self.values.get(account_id)

    def put(self, account_id: str, token: str) -> None:
        self.values[account_id] = token


def fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def encode_stored(token: str, replaces: str) -> str:
    """The stored value: the rotated token and the fingerprint of the config token."""
    return json.dumps({"v": 1, "replaces": replaces, "refresh_token": token})


def decode_stored(value: str | None, config_token: str) -> str | None:
    """The stored rotated token, if it still belongs to the configured token."""
    if not value:
        return None
    try:
        data = json.loads(value)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("replaces") != fingerprint(config_token):
        return None
    token = data.get("refresh_token")
    return token if isinstance(token, str) and token else None


@dataclass(frozen=True)
class _Token:
    value: str
    valid_until: float


@dataclass(frozen=True)
class _Failed:
    evidence: Evidence
    until: float


CacheKey = tuple[str, str, tuple[str, ...]]


class OAuthTokens:
    def __init__(
        self,
        store: RefreshTokenStore | None = None,
        *,
        resolver: Resolver | None = None,
        clock: Callable[[], float] = time.time,
        timeout: float = 20.0,
        tls: TlsSettings | None = None,
        margin: float = 60.0,
        failure_ttl: float = 60.0,
        max_body: int = 64 * 1024,
    ) -> None:
        self.store = store if store is not None else MemoryRefreshTokenStore()
        self.resolver = resolver or SystemResolver()
        self.clock = clock
        self.timeout = timeout
        self.tls = tls or TlsSettings()
        self.margin = margin
        self.failure_ttl = failure_ttl
        self.max_body = max_body
        self.requests = 0  # token requests sent (for tests and debug)
        self._tokens: dict[CacheKey, _Token] = {}
        self._failed: dict[CacheKey, _Failed] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def access_token(
        self, account: Account, service: Service, *, refresh: bool = False
    ) -> str:
        oauth = account.oauth2
        if oauth is None:
            raise ProbeError(
                Evidence(protocol="oauth", stage="token", text="no oauth2 settings for account")
            )
        scopes = _scopes(account, service, oauth)
        key: CacheKey = (account.id, _grant_id(oauth), scopes)
        seen = self._tokens.get(key)
        lock = self._locks.setdefault(account.id, asyncio.Lock())
        async with lock:  # one request per account at a time; rotation stays consistent
            now = self.clock()
            failed = self._failed.get(key)
            if failed is not None and now < failed.until:
                raise ProbeError(failed.evidence)
            cached = self._tokens.get(key)
            # A valid token is reused, unless the caller asks for a refresh of the very
            # token it saw (a token refreshed while it waited for the lock is new enough).
            if (
                cached is not None
                and now < cached.valid_until
                and (not refresh or cached is not seen)
            ):
                return cached.value
            try:
                token = await self._request(account, oauth, scopes)
            except ProbeError as exc:
                self._tokens.pop(key, None)
                self._failed[key] = _Failed(exc.evidence, self.clock() + self.failure_ttl)
                raise
            self._failed.pop(key, None)
            self._tokens[key] = token
            return token.value

    def forget(self, account_id: str) -> None:
        """Drop cached tokens and failures of an account (e.g. after a config change)."""
        for cache in (self._tokens, self._failed):
            for key in [k for k in cache if k[0] == account_id]:
                del cache[key]

    def _refresh_token(self, account: Account, oauth: OAuth2) -> str:
        configured = oauth.refresh_token.reveal()
        rotated = decode_stored(self.store.get(account.id), configured)
        return rotated or configured

    async def _request(self, account: Account, oauth: OAuth2, scopes: tuple[str, ...]) -> _Token:
        refresh_token = self._refresh_token(account, oauth)
        redact = Redactor([*account.secrets(), refresh_token])
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": oauth.client_id,
        }
        if oauth.client_secret is not None:
            form["client_secret"] = oauth.client_secret.reveal()
        if scopes:
            form["scope"] = " ".join(scopes)
        limits = HttpLimits(max_body=self.max_body, max_redirects=0)
        self.requests += 1
        started = self.clock()
        async with GuardedHttp(
            protocol="oauth",
            resolver=self.resolver,
            tls=self.tls,
            timeout=self.timeout,
            limits=limits,
            redact=redact,
        ) as http:
            resp = await http.request(
                "POST",
                oauth.token_url,
                stage="token",
                headers={"Accept": "application/json"},
                data=form,
                follow_redirects=False,
            )
            data = _json(resp.body)
            token = data.get("access_token") if data else None
            if isinstance(token, str) and token:
                redact.add(token)
            if resp.status != 200 or not isinstance(token, str) or not token:
                error = data.get("error") if data else None
                log.warning(
                    "oauth token refresh failed account=%s status=%s error=%s",
                    account.id,
                    resp.status,
                    error if isinstance(error, str) else "-",
                )
                note = "" if resp.status != 200 else "token response without an access_token"
                raise ProbeError(http.evidence(resp, "token", note=note))
        expires_in = _number(data.get("expires_in") if data else None) or DEFAULT_EXPIRES_IN
        new_refresh = data.get("refresh_token") if data else None
        if isinstance(new_refresh, str) and new_refresh and new_refresh != refresh_token:
            self.store.put(
                account.id, encode_stored(new_refresh, fingerprint(oauth.refresh_token.reveal()))
            )
            log.info("oauth refresh token rotated account=%s", account.id)
        margin = min(self.margin, expires_in / 2)
        log.info("oauth token refreshed account=%s expires_in=%d", account.id, int(expires_in))
        return _Token(token, started + expires_in - margin)


def _scopes(account: Account, service: Service, oauth: OAuth2) -> tuple[str, ...]:
    server = account.services().get(service)
    if server is not None and server.auth is AuthKind.XOAUTH2 and server.scopes:
        return tuple(server.scopes)
    return tuple(oauth.scopes)


def _grant_id(oauth: OAuth2) -> str:
    secret = oauth.client_secret.reveal() if oauth.client_secret else ""
    return fingerprint(
        "\x1f".join((oauth.token_url, oauth.client_id, secret, oauth.refresh_token.reveal()))
    )


def _json(body: bytes) -> dict[str, object] | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and value > 0:
        return float(value)
    if isinstance(value, str):
        try:
            n = float(value)
        except ValueError:
            return None
        return n if n > 0 else None
    return None
