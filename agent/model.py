"""Plain data shared by every layer: services, causes, probe results, health.

Nothing here does I/O or reads a clock. Times are POSIX seconds (float) given by callers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Service(StrEnum):
    IMAP = "imap"
    SMTP = "smtp"
    CALDAV = "caldav"


class Cause(StrEnum):
    """Why a service fails. The names are the contract (JSON, metric labels, API)."""

    AUTH_FAILED = "auth_failed"
    ACCESS_REVOKED = "access_revoked"
    ACCOUNT_SUSPENDED = "account_suspended"
    PERMISSION_DENIED = "permission_denied"
    OVER_QUOTA = "over_quota"
    CONFIG_ERROR = "config_error"
    INTEGRATION_ERROR = "integration_error"
    SERVER_UNAVAILABLE = "server_unavailable"
    NETWORK_ERROR = "network_error"
    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"
    TLS_ERROR = "tls_error"
    PROTOCOL_ERROR = "protocol_error"


# The account owner must do something (reconnect, re-enter settings, talk to the provider).
USER_ACTION_CAUSES: frozenset[Cause] = frozenset(
    {
        Cause.AUTH_FAILED,
        Cause.ACCESS_REVOKED,
        Cause.ACCOUNT_SUSPENDED,
        Cause.PERMISSION_DENIED,
        Cause.OVER_QUOTA,
        Cause.CONFIG_ERROR,
    }
)
# Confirmed only after lasting the transient grace; nobody has to act yet.
TRANSIENT_CAUSES: frozenset[Cause] = frozenset(
    {
        Cause.SERVER_UNAVAILABLE,
        Cause.NETWORK_ERROR,
        Cause.TIMEOUT,
        Cause.RATE_LIMITED,
        Cause.PROTOCOL_ERROR,
        Cause.TLS_ERROR,
    }
)
# Repeated logins with a refused credential risk a lockout: these open the auth breaker.
BREAKER_CAUSES: frozenset[Cause] = frozenset(
    {Cause.AUTH_FAILED, Cause.ACCESS_REVOKED, Cause.ACCOUNT_SUSPENDED}
)


def action_needed(cause: Cause | None) -> bool:
    return cause is not None and cause in USER_ACTION_CAUSES


@dataclass(frozen=True, slots=True)
class Evidence:
    """What a server (or the network) said, as raw as the probe saw it.

    Probes fill this in where they catch a failure; `classify.classify` turns it into a
    Failure. Never holds a secret: probes redact before building it.
    """

    protocol: str  # "imap" | "smtp" | "caldav" | "oauth"
    stage: str  # connect, tls, greeting, capability, starttls, login, select, quota, noop,
    # logout, ehlo, auth, mail_from, request, discovery, privileges, token
    network: str | None = None  # refused, reset, unreachable, timeout, eof, dns_nxdomain,
    # dns_temporary, tls_cert, tls_handshake, too_large
    status: str | None = None  # IMAP: OK | NO | BAD | BYE
    code: int | None = None  # SMTP reply code or HTTP status
    text: str = ""  # the reply: tagged IMAP line text, SMTP reply text, HTTP body (capped)
    untagged: tuple[str, ...] = ()  # IMAP untagged lines seen with the reply
    headers: Mapping[str, str] = field(default_factory=dict)  # HTTP headers (lower-case keys)
    exception: str | None = None  # "TypeName: message" of the exception caught, if any


@dataclass(frozen=True, slots=True)
class Failure:
    cause: Cause
    hint: str | None = None
    definitive: bool = False  # the server's answer settles the cause on its own
    detail: str = ""  # human-readable, secrets removed: what the server said
    retry_after: float | None = None  # seconds, when the server asked for a pause

    @property
    def action_needed(self) -> bool:
        return action_needed(self.cause)


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    duration_seconds: float
    ok: bool = True


@dataclass(frozen=True, slots=True)
class ProbeResult:
    account_id: str
    service: Service
    started_at: float  # wall clock, POSIX seconds
    duration_seconds: float
    failure: Failure | None = None
    steps: tuple[Step, ...] = ()
    transcript: tuple[str, ...] = ()  # redacted protocol lines, only with debug
    credential: str = ""  # fingerprint of the credential used (never the secret itself)

    @property
    def ok(self) -> bool:
        return self.failure is None

    def to_json(self) -> dict[str, object]:
        f = self.failure
        return {
            "service": self.service.value,
            "ok": f is None,
            "cause": f.cause.value if f else None,
            "hint": f.hint if f else None,
            "action_needed": f.action_needed if f else False,
            "definitive": f.definitive if f else False,
            "detail": f.detail if f else "ok",
            "duration_seconds": round(self.duration_seconds, 6),
            "steps": [
                {"name": s.name, "duration_seconds": round(s.duration_seconds, 6), "ok": s.ok}
                for s in self.steps
            ],
        }


class State(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"  # failing, not confirmed: no banner
    DISCONNECTED = "disconnected"  # confirmed: the banner shows

    @property
    def rank(self) -> int:
        return {"ok": 0, "degraded": 1, "disconnected": 2}[self.value]


@dataclass(frozen=True, slots=True)
class ServiceHealth:
    """What we believe about one service of one account. Persisted; versioned for CAS."""

    account_id: str
    service: Service
    state: State = State.OK
    cause: Cause | None = None
    hint: str | None = None
    definitive: bool = False
    detail: str = ""
    since: float | None = None  # when `state` was entered
    first_failure_at: float | None = None  # start of the current failure streak
    strike_since: float | None = None  # first failure of the streak with a non-transient cause
    last_probe_at: float | None = None
    last_success_at: float | None = None
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    credential: str = ""  # fingerprint of the credential last probed
    breaker_until: float | None = None  # no login with this credential before this time
    breaker_backoff: float = 0.0  # current breaker period, seconds
    retry_after_until: float | None = None  # server asked us to wait (rate limiting)
    version: int = 0  # bumped by the store on every write


@dataclass(frozen=True, slots=True)
class Transition:
    """A state change of one service, as the state machine decided it."""

    account_id: str
    service: Service
    old: State
    new: State
    cause: Cause | None
    hint: str | None
    at: float
