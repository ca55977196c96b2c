"""What the demo shows: its accounts, the daemon's settings, the scripted timeline and the
checks that say whether the lifecycle happened. Pure data and arithmetic, no I/O.

Times are in seconds at speed 1; `--speed N` divides every one of them (the daemon's
intervals too), so the same story runs N times faster.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Fault(StrEnum):
    """How an account breaks (and, reversed, how it is fixed)."""

    PASSWORD = "password"  # noqa: S105 - the password changed at the provider
    READ_ONLY = "read_only"  # the synced calendar became read-only
    NOLOGIN = "nologin"  # the provider disabled the account: NO [CONTACTADMIN]
    DOWN = "down"  # the IMAP server does not answer (connection refused)


@dataclass(frozen=True)
class DemoAccount:
    name: str  # the Dovecot/Radicale user, and the word typed at the prompt
    fault: Fault
    broken_at_start: bool
    imap: bool = True
    smtp: bool = True
    caldav: bool = True
    story: str = ""

    @property
    def id(self) -> str:
        return f"acc-{self.name}"

    @property
    def owner_id(self) -> str:
        return f"u-{self.name}"

    @property
    def address(self) -> str:
        return f"{self.name}@example.com"

    @property
    def password(self) -> str:
        # throwaway demo values, only ever used against the demo's own local servers
        return f"{self.name}-demo-pw"


ACCOUNTS: tuple[DemoAccount, ...] = (
    DemoAccount(
        "alice",
        Fault.PASSWORD,
        False,
        story="healthy; changes her password at the provider, then reconnects (timeline below)",
    ),
    DemoAccount("bob", Fault.PASSWORD, False, story="healthy all along"),
    DemoAccount(
        "carol",
        Fault.READ_ONLY,
        True,
        imap=False,
        smtp=False,
        story="her synced calendar is read-only (CalDAV permission_denied)",
    ),
    DemoAccount(
        "dave",
        Fault.NOLOGIN,
        True,
        smtp=False,
        caldav=False,
        story="the provider disabled the account (IMAP NO [CONTACTADMIN])",
    ),
    DemoAccount(
        "erin",
        Fault.DOWN,
        True,
        smtp=False,
        caldav=False,
        story="her IMAP server is down (connection refused): a warning after the grace",
    ),
)


def account(name: str) -> DemoAccount | None:
    for a in ACCOUNTS:
        if name in (a.name, a.id, a.owner_id):
            return a
    return None


# ------------------------------------------------------------------ timing


@dataclass(frozen=True)
class Timing:
    """The daemon's schedule, scaled by the demo's speed."""

    interval: float
    confirm_interval: float
    transient_grace: float
    coalesce: float
    recheck_min_interval: float
    poll: float  # how often the demo polls the status API and the portal page its banner

    @classmethod
    def for_speed(cls, speed: float) -> Timing:
        def s(seconds: float, floor: float) -> float:
            return round(max(seconds / speed, floor), 3)

        return cls(
            interval=s(5, 0.5),
            confirm_interval=s(5, 0.5),
            # long enough that erin's outage first shows as "degraded" (no banner), short
            # enough that the warning banner appears while you watch
            transient_grace=s(20, 1.0),
            coalesce=s(5, 0.5),
            recheck_min_interval=s(2, 0.5),
            poll=s(1, 0.25),
        )


# ------------------------------------------------------------------ timeline


class Action(StrEnum):
    BREAK = "break"
    FIX = "fix"
    RECHECK = "recheck"


@dataclass(frozen=True)
class Step:
    at: float  # seconds after the start, at speed 1
    action: Action
    account: str
    says: str


TIMELINE: tuple[Step, ...] = (
    Step(
        30,
        Action.BREAK,
        "alice",
        "alice changes her mailbox password at the provider; the agent still has the old one",
    ),
    Step(
        90,
        Action.FIX,
        "alice",
        "alice reconnects in the portal (here: her old password works again)",
    ),
    Step(
        90,
        Action.RECHECK,
        "alice",
        "the portal asks the agent to check alice now: POST /api/v1/accounts/acc-alice/recheck",
    ),
)
TIMELINE_END = 110.0  # the last step and the time the agent needs to show its effect


def default_duration(speed: float) -> float:
    return (TIMELINE_END + 10.0) / speed


# ------------------------------------------------------------------ checks


@dataclass(frozen=True)
class Check:
    what: str
    ok: bool


@dataclass
class Observed:
    """What the demo saw while it ran (filled in by the watcher)."""

    banners: dict[str, set[str]]  # account id -> banner causes seen
    states: dict[str, set[str]]  # account id -> states seen
    emailed: set[str]  # addresses the sink received mail for
    fixed_ok: bool  # alice was ok and without banner after her fix and recheck

    @classmethod
    def empty(cls) -> Observed:
        return cls(banners={}, states={}, emailed=set(), fixed_ok=False)


def checks(seen: Observed) -> list[Check]:
    """The lifecycle the scripted demo must show; every one must hold for exit 0."""

    def banner(name: str, cause: str) -> bool:
        return cause in seen.banners.get(f"acc-{name}", set())

    return [
        Check(
            "alice: banner 'auth_failed' after her password changed", banner("alice", "auth_failed")
        ),
        Check(
            "alice: reconnect email caught by the SMTP sink", "alice@example.com" in seen.emailed
        ),
        Check("alice: banner gone after the fix and the recheck", seen.fixed_ok),
        Check("bob: ok all along", seen.states.get("acc-bob", set()) <= {"ok"}),
        Check(
            "carol: banner 'permission_denied' (read-only calendar)",
            banner("carol", "permission_denied"),
        ),
        Check(
            "dave: banner 'account_suspended' (CONTACTADMIN)", banner("dave", "account_suspended")
        ),
        Check(
            "erin: warning banner 'server_unavailable' after the grace",
            banner("erin", "server_unavailable"),
        ),
    ]


# ------------------------------------------------------------------ daemon config


def daemon_config(
    *,
    timing: Timing,
    daemon_listen: str,
    token: str,
    store_path: str,
    portal_base: str,
    mail_relay_url: str,
    ca_file: str,
    imaps_port: int,
    submission_port: int,
    erin_imap_port: int,
    caldav_url: str,
) -> dict[str, Any]:
    """The YAML document `syncwatch run --config` reads."""

    def acc(a: DemoAccount) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": a.id,
            "owner": {"id": a.owner_id, "email": a.address, "name": a.name.title()},
            "provider": "demo-mail",
            "address": a.address,
        }
        login = {"username": a.name, "password": a.password, "timeout": "5s"}
        if a.imap:
            port = erin_imap_port if a.fault is Fault.DOWN else imaps_port
            doc["imap"] = {
                "host": "127.0.0.1",
                "port": port,
                "security": "tls",
                "tls_ca_file": ca_file,
                **login,
            }
        if a.smtp:
            doc["smtp"] = {
                "host": "127.0.0.1",
                "port": submission_port,
                "security": "starttls",
                "tls_ca_file": ca_file,
                **login,
            }
        if a.caldav:
            doc["caldav"] = {
                "url": f"{caldav_url}{a.name}/",
                "calendar_url": f"{caldav_url}{a.name}/work/",
                **login,
            }
        return doc

    return {
        "schedule": {
            "interval": timing.interval,
            "confirm_interval": timing.confirm_interval,
            "transient_grace": timing.transient_grace,
            "recheck_min_interval": timing.recheck_min_interval,
            "jitter": False,
        },
        "store": {"path": store_path},
        "http": {"listen": daemon_listen},
        "api": {"tokens": [token]},
        "portal": {
            "reconnect_url": f"{portal_base}/portal/reconnect?account={{account_id}}",
            "unsubscribe_url": f"{portal_base}/portal/?owner={{owner_id}}",
        },
        "notify": {
            "email": mail_relay_url,
            "on_recovery": True,
            "coalesce": timing.coalesce,
            # provider outages are not worth an email in a demo of a few minutes
            "transient_after": "1h",
        },
        "accounts": [acc(a) for a in ACCOUNTS],
    }
