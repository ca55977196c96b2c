"""Typed, frozen settings. `agent.config.load` builds these from YAML and validates them."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from agent.model import Service
from agent.secret import Secret


class Security(StrEnum):
    TLS = "tls"  # implicit TLS
    STARTTLS = "starttls"
    PLAIN = "plain"


class AuthKind(StrEnum):
    PASSWORD = "password"  # noqa: S105
    XOAUTH2 = "xoauth2"


@dataclass(frozen=True, slots=True)
class TlsSettings:
    verify: bool = True
    ca_file: Path | None = None


@dataclass(frozen=True, slots=True)
class MailServer:
    """An IMAP or SMTP endpoint of one account."""

    host: str
    port: int
    security: Security
    username: str
    auth: AuthKind = AuthKind.PASSWORD
    password: Secret | None = None  # None exactly when auth is xoauth2
    tls: TlsSettings = TlsSettings()
    timeout: float = 20.0
    scopes: tuple[str, ...] = ()  # OAuth scopes for this service, when they differ


@dataclass(frozen=True, slots=True)
class CalDavServer:
    url: str
    username: str
    auth: AuthKind = AuthKind.PASSWORD
    password: Secret | None = None
    tls: TlsSettings = TlsSettings()
    timeout: float = 20.0
    calendar_url: str | None = None  # the synced calendar; else every writable one counts
    scopes: tuple[str, ...] = ()

    @property
    def host(self) -> str:
        from urllib.parse import urlsplit

        return urlsplit(self.url).hostname or ""


@dataclass(frozen=True, slots=True)
class OAuth2:
    token_url: str
    client_id: str
    refresh_token: Secret
    client_secret: Secret | None = None
    scopes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Owner:
    id: str
    email: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class OwnerSettings:
    notify_urls: tuple[str, ...] = ()
    locale: str = "en"
    mute: bool = False
    email: str | None = None  # contact details, when accounts name the owner by id only
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    owner: Owner
    provider: str = "generic"
    address: str = ""  # the mailbox address as the owner knows it
    imap: MailServer | None = None
    smtp: MailServer | None = None
    caldav: CalDavServer | None = None
    oauth2: OAuth2 | None = None
    interval: float | None = None  # overrides schedule.interval
    version: str = ""  # inventory version (HTTP source); "" for YAML

    def services(self) -> dict[Service, MailServer | CalDavServer]:
        out: dict[Service, MailServer | CalDavServer] = {}
        if self.imap is not None:
            out[Service.IMAP] = self.imap
        if self.smtp is not None:
            out[Service.SMTP] = self.smtp
        if self.caldav is not None:
            out[Service.CALDAV] = self.caldav
        return out

    def credential_key(self, service: Service) -> str:
        """Who logs in: the user name, or the OAuth grant. IMAP and SMTP often share one
        password (at different hosts); services with one key share the auth breaker."""
        server = self.services()[service]
        if server.auth is AuthKind.XOAUTH2 and self.oauth2 is not None:
            return "oauth:" + _digest(self.oauth2.token_url, self.oauth2.client_id, self.id)
        return "login:" + _digest(self.id, server.username)

    def credential_fingerprint(self, service: Service) -> str:
        """Changes whenever the credential a service uses changes. Safe to store and log.
        Services sharing a user name and password share the fingerprint."""
        server = self.services()[service]
        parts = [self.id, server.username, server.auth.value]
        if server.password is not None:
            parts.append(server.password.reveal())
        if server.auth is AuthKind.XOAUTH2 and self.oauth2 is not None:
            parts += [self.oauth2.client_id, self.oauth2.refresh_token.reveal()]
        return _digest(*parts)

    def secrets(self) -> list[Secret]:
        out: list[Secret] = []
        for server in self.services().values():
            if server.password is not None:
                out.append(server.password)
        if self.oauth2 is not None:
            out.append(self.oauth2.refresh_token)
            if self.oauth2.client_secret is not None:
                out.append(self.oauth2.client_secret)
        return out


def _digest(*parts: str) -> str:
    h = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return h[:16]


@dataclass(frozen=True, slots=True)
class ScheduleSettings:
    interval: float = 300.0
    confirm_interval: float = 120.0
    transient_grace: float = 1800.0
    concurrency: int = 64
    per_host_concurrency: int = 8
    jitter: bool = True
    recover_after: int = 1  # successes needed to recover
    breaker_min: float = 3600.0
    breaker_max: float = 86400.0
    recheck_min_interval: float = 60.0


@dataclass(frozen=True, slots=True)
class StoreSettings:
    path: Path = Path("var/syncwatch.sqlite3")


@dataclass(frozen=True, slots=True)
class HttpSettings:
    listen: str = "127.0.0.1:9477"


@dataclass(frozen=True, slots=True)
class ApiSettings:
    listen: str | None = None  # None: same listener as /metrics
    tokens: tuple[Secret, ...] = ()


@dataclass(frozen=True, slots=True)
class HttpInventory:
    url: str
    token: Secret | None = None
    poll_interval: float = 60.0
    tls: TlsSettings = TlsSettings()


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    per_account: str = "all"  # all | failing | none


@dataclass(frozen=True, slots=True)
class PortalSettings:
    reconnect_url: str = "https://portal.example.com/settings/connected-apps?account={account_id}"
    unsubscribe_url: str = "https://portal.example.com/settings/notifications?owner={owner_id}"


@dataclass(frozen=True, slots=True)
class BurstSettings:
    count: int = 20  # at least this many accounts of one provider or host break ...
    share: float = 0.2  # ... and at least this share of that provider's accounts
    window: float = 900.0  # within this many seconds


@dataclass(frozen=True, slots=True)
class NotifySettings:
    email: str | None = None  # Apprise mailto:// or mailtos:// URL of the relay, with from=
    sre: tuple[str, ...] = ()
    reminders: tuple[float, ...] = (86400.0, 3 * 86400.0, 7 * 86400.0, 14 * 86400.0)
    on_recovery: bool = False
    transient_after: float = 86400.0
    coalesce: float = 120.0
    burst: BurstSettings = BurstSettings()
    max_attempts: int = 10
    max_age: float = 2 * 86400.0
    templates_dir: Path | None = None  # None: the templates shipped with the agent
    retry_base: float = 60.0  # first delivery retry after about this long, doubling to 1 h


@dataclass(frozen=True, slots=True)
class Config:
    path: Path
    schedule: ScheduleSettings = ScheduleSettings()
    store: StoreSettings = StoreSettings()
    http: HttpSettings = HttpSettings()
    api: ApiSettings = ApiSettings()
    metrics: MetricsSettings = MetricsSettings()
    portal: PortalSettings = PortalSettings()
    notify: NotifySettings = NotifySettings()
    inventory_http: HttpInventory | None = None
    accounts_file: Path | None = None
    owners: Mapping[str, OwnerSettings] = field(default_factory=dict)
    accounts: tuple[Account, ...] = ()
    sources: tuple[Path, ...] = ()  # every file it was read from (config, accounts, secrets)

    def account(self, account_id: str) -> Account | None:
        for a in self.accounts:
            if a.id == account_id:
                return a
        return None
