"""The banner API documents: exact shape, which services show, worst cause, owners."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

import pytest

from agent.banner import account_status, iso, owner_banner, reconnect_url
from agent.config.types import Account, CalDavServer, MailServer, Owner, Security
from agent.model import Cause, Service, ServiceHealth, State
from agent.secret import Secret

T0 = 1_714_564_800.0  # 2024-05-01T12:00:00Z
PASSWORD = "hunter2-correct-horse"
OWNER = Owner(id="u-42", email="owner@portal-user.example", name="Ada")
TEMPLATE = "https://portal.example.com/settings/connected-apps?account={account_id}&o={owner_id}"


def account(account_id: str = "acct-1", address: str = "ada@mail.example", **kw: Any) -> Account:
    mail = MailServer(
        host="mail.example",
        port=993,
        security=Security.TLS,
        username=address,
        password=Secret(PASSWORD),
    )
    return Account(
        id=account_id,
        owner=kw.pop("owner", OWNER),
        address=address,
        imap=mail,
        smtp=replace(mail, port=465),
        caldav=CalDavServer(
            url="https://dav.example/", username=address, password=Secret(PASSWORD)
        ),
        **kw,
    )


def h(
    service: Service, state: State = State.OK, cause: Cause | None = None, **kw: Any
) -> ServiceHealth:
    return ServiceHealth(
        account_id=kw.pop("account_id", "acct-1"), service=service, state=state, cause=cause, **kw
    )


def down(service: Service, cause: Cause, since: float = T0, **kw: Any) -> ServiceHealth:
    return h(service, State.DISCONNECTED, cause, since=since, consecutive_failures=3, **kw)


def healths(*hs: ServiceHealth) -> dict[Service, ServiceHealth]:
    return {x.service: x for x in hs}


def status(*hs: ServiceHealth, acct: Account | None = None) -> dict[str, Any]:
    a = acct or account()
    return account_status(
        a, healths(*hs), reconnect_url=reconnect_url(TEMPLATE, a), checked_at=T0 + 60
    )


# --- account status: shape --------------------------------------------------------


def test_all_ok_has_no_banner_and_the_exact_shape() -> None:
    doc = status(h(Service.IMAP, since=T0, last_probe_at=T0, last_success_at=T0))
    assert doc == {
        "account": "acct-1",
        "state": "ok",
        "banner": None,
        "services": [
            {
                "service": "imap",
                "state": "ok",
                "cause": None,
                "hint": None,
                "action_needed": False,
                "detail": "",
                "since": "2024-05-01T12:00:00Z",
                "last_probe_at": "2024-05-01T12:00:00Z",
                "last_success_at": "2024-05-01T12:00:00Z",
                "consecutive_failures": 0,
            },
            # not probed yet: OK, nothing known
            {
                "service": "smtp",
                "state": "ok",
                "cause": None,
                "hint": None,
                "action_needed": False,
                "detail": "",
                "since": None,
                "last_probe_at": None,
                "last_success_at": None,
                "consecutive_failures": 0,
            },
            {
                "service": "caldav",
                "state": "ok",
                "cause": None,
                "hint": None,
                "action_needed": False,
                "detail": "",
                "since": None,
                "last_probe_at": None,
                "last_success_at": None,
                "consecutive_failures": 0,
            },
        ],
        "checked_at": "2024-05-01T12:01:00Z",
    }


def test_one_broken_service() -> None:
    doc = status(down(Service.SMTP, Cause.AUTH_FAILED, hint="app_password_required"))
    assert doc["state"] == "disconnected"
    assert doc["banner"] == {
        "show": True,
        "severity": "error",
        "title": "Your Mailbox integration needs attention",
        "message": "Outgoing mail (SMTP) has stopped syncing. "
        "Your email password may have changed, so we can no longer sign in. "
        "Your provider now requires an app password for connected apps. "
        "Reconnect your account in Settings > Connected Apps.",
        "cause": "auth_failed",
        "hint": "app_password_required",
        "impacts": ["Sending, replying, forwarding and scheduled emails"],
        "services": ["smtp"],
        "reconnect_url": "https://portal.example.com/settings/connected-apps?account=acct-1&o=u-42",
        "since": "2024-05-01T12:00:00Z",
    }
    smtp = doc["services"][1]
    assert (smtp["service"], smtp["state"], smtp["cause"], smtp["action_needed"]) == (
        "smtp",
        "disconnected",
        "auth_failed",
        True,
    )
    assert smtp["consecutive_failures"] == 3


def test_several_broken_services_name_all_and_pick_the_worst_cause() -> None:
    doc = status(
        down(Service.IMAP, Cause.TIMEOUT, since=T0 - 3600),
        down(Service.SMTP, Cause.PERMISSION_DENIED, since=T0),
        down(Service.CALDAV, Cause.AUTH_FAILED, since=T0 - 60, hint="oauth_grant_invalid"),
    )
    b = doc["banner"]
    assert b["services"] == ["imap", "smtp", "caldav"]
    assert b["cause"] == "auth_failed"  # an error beats a warning; auth comes first among errors
    assert b["hint"] == "oauth_grant_invalid"  # the hint of the service with that cause
    assert b["severity"] == "error"
    assert b["title"] == "Your Mailbox and Calendar integration needs attention"
    assert b["since"] == iso(T0 - 3600)  # the earliest
    assert b["impacts"] == [
        "Sending, replying, forwarding and scheduled emails",
        "Receiving new mail",
        "Read/unread sync",
        "Two-way calendar sync",
        "The meeting scheduler",
    ]
    assert b["message"].startswith(
        "Incoming mail (IMAP), outgoing mail (SMTP) and calendar (CalDAV) have stopped syncing."
    )


@pytest.mark.parametrize(
    ("hs", "cause", "severity", "title"),
    [
        (
            [down(Service.IMAP, Cause.TIMEOUT)],
            "timeout",
            "warning",
            "Your email provider is having trouble",
        ),
        (
            [down(Service.CALDAV, Cause.SERVER_UNAVAILABLE)],
            "server_unavailable",
            "warning",
            "Your calendar provider is having trouble",
        ),
        (
            [down(Service.IMAP, Cause.OVER_QUOTA)],
            "over_quota",
            "warning",
            "Your Mailbox integration needs attention",
        ),
        (
            [down(Service.IMAP, Cause.TIMEOUT), down(Service.SMTP, Cause.OVER_QUOTA)],
            "over_quota",  # among warnings: user-action causes come first (enum order)
            "warning",
            "Your Mailbox integration needs attention",
        ),
        (
            [down(Service.IMAP, Cause.OVER_QUOTA), down(Service.SMTP, Cause.CONFIG_ERROR)],
            "config_error",  # an error beats a warning
            "error",
            "Your Mailbox integration needs attention",
        ),
        (
            [down(Service.CALDAV, Cause.PERMISSION_DENIED)],
            "permission_denied",
            "error",
            "Your Calendar integration needs attention",
        ),
    ],
)
def test_warning_vs_error(hs: list[ServiceHealth], cause: str, severity: str, title: str) -> None:
    b = status(*hs)["banner"]
    assert (b["cause"], b["severity"], b["title"]) == (cause, severity, title)


def test_a_transient_warning_says_no_action_is_needed_yet() -> None:
    b = status(down(Service.IMAP, Cause.NETWORK_ERROR))["banner"]
    assert "No action is needed yet" in b["message"]
    assert "Reconnect" not in b["message"]
    action = status(down(Service.IMAP, Cause.OVER_QUOTA))["banner"]["message"]
    assert "Free up space" in action


def test_integration_error_is_hidden() -> None:
    doc = status(down(Service.IMAP, Cause.INTEGRATION_ERROR))
    assert doc["state"] == "disconnected"  # still reported per service ...
    assert doc["banner"] is None  # ... but the owner cannot do anything: no banner
    assert doc["services"][0]["cause"] == "integration_error"
    assert doc["services"][0]["action_needed"] is False


def test_integration_error_is_left_out_of_a_banner_shown_for_another_service() -> None:
    doc = status(down(Service.IMAP, Cause.INTEGRATION_ERROR), down(Service.SMTP, Cause.AUTH_FAILED))
    assert doc["banner"]["services"] == ["smtp"]


def test_degraded_shows_no_banner() -> None:
    doc = status(h(Service.IMAP, State.DEGRADED, Cause.AUTH_FAILED, since=T0))
    assert doc["state"] == "degraded"
    assert doc["banner"] is None
    assert doc["services"][0]["action_needed"] is False  # not confirmed yet


def test_only_services_the_account_has() -> None:
    a = replace(account(), caldav=None)
    doc = status(down(Service.CALDAV, Cause.AUTH_FAILED), acct=a)
    assert [s["service"] for s in doc["services"]] == ["imap", "smtp"]
    assert doc["banner"] is None and doc["state"] == "ok"


def test_no_secret_and_no_foreign_address_in_the_document() -> None:
    detail = (
        f"NO [AUTHENTICATIONFAILED] bad password {PASSWORD} for ada@mail.example; "
        "contact postmaster@mail.example or owner@portal-user.example"
    )
    doc = status(down(Service.IMAP, Cause.AUTH_FAILED, detail=detail))
    text = json.dumps(doc)
    assert PASSWORD not in text
    addresses = set(re.findall(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", text))
    assert addresses <= {"ada@mail.example"}
    assert "<address>" in doc["services"][0]["detail"]


# --- owner banner -----------------------------------------------------------------


def owner_doc(owner_id: str, *pairs: tuple[Account, dict[Service, ServiceHealth]]) -> Any:
    return owner_banner(
        owner_id,
        list(pairs),
        reconnect_url_for=lambda a: reconnect_url(TEMPLATE, a),
        checked_at=T0,
    )


def test_owner_with_two_broken_accounts() -> None:
    work, home = account("acct-1"), account("acct-2", address="ada@home.example")
    doc = owner_doc(
        "u-42",
        (work, healths(down(Service.IMAP, Cause.TIMEOUT, since=T0 - 10))),
        (
            home,
            healths(
                down(Service.SMTP, Cause.ACCESS_REVOKED, account_id="acct-2", since=T0 - 5),
                down(Service.CALDAV, Cause.ACCESS_REVOKED, account_id="acct-2", since=T0 - 7),
            ),
        ),
    )
    assert doc == {
        "owner": "u-42",
        "show": True,
        "severity": "error",
        "title": "2 of your connected accounts need attention",
        "message": "ada@home.example and ada@mail.example have stopped syncing. "
        "Open each one below to see what happened and how to fix it.",
        "accounts": [
            {  # the worst first
                "account": "acct-2",
                "address": "ada@home.example",
                "services": ["smtp", "caldav"],
                "cause": "access_revoked",
                "hint": None,
                "impacts": [
                    "Sending, replying, forwarding and scheduled emails",
                    "Two-way calendar sync",
                    "The meeting scheduler",
                ],
                "reconnect_url": "https://portal.example.com/settings/connected-apps"
                "?account=acct-2&o=u-42",
                "since": iso(T0 - 7),
            },
            {
                "account": "acct-1",
                "address": "ada@mail.example",
                "services": ["imap"],
                "cause": "timeout",
                "hint": None,
                "impacts": ["Receiving new mail", "Read/unread sync"],
                "reconnect_url": "https://portal.example.com/settings/connected-apps"
                "?account=acct-1&o=u-42",
                "since": iso(T0 - 10),
            },
        ],
        "checked_at": "2024-05-01T12:00:00Z",
    }


def test_owner_with_one_broken_account_uses_its_banner_text() -> None:
    a, b = account("acct-1"), account("acct-2")
    doc = owner_doc(
        "u-42",
        (a, healths(down(Service.IMAP, Cause.OVER_QUOTA))),
        (b, healths(h(Service.IMAP, account_id="acct-2"))),
    )
    assert doc["show"] is True
    assert doc["severity"] == "warning"
    assert [x["account"] for x in doc["accounts"]] == ["acct-1"]
    assert doc["title"] == status(down(Service.IMAP, Cause.OVER_QUOTA))["banner"]["title"]
    assert doc["message"].startswith("Incoming mail (IMAP) has stopped syncing. Your mailbox")


def test_owner_with_only_transient_trouble() -> None:
    doc = owner_doc(
        "u-42",
        (account("acct-1"), healths(down(Service.IMAP, Cause.TIMEOUT))),
        (account("acct-2", address=""), healths(down(Service.IMAP, Cause.RATE_LIMITED))),
    )
    assert (doc["severity"], doc["title"]) == ("warning", "Your email providers are having trouble")
    assert "No action is needed yet" in doc["message"]
    assert "acct-2" in doc["message"]  # no address: the id names it


def test_owner_with_nothing_broken() -> None:
    doc = owner_doc(
        "u-42",
        (account(), healths(down(Service.IMAP, Cause.INTEGRATION_ERROR))),
    )
    assert doc == {
        "owner": "u-42",
        "show": False,
        "severity": None,
        "title": "",
        "message": "",
        "accounts": [],
        "checked_at": "2024-05-01T12:00:00Z",
    }


def test_unknown_owner() -> None:
    doc = owner_doc("nobody", (account(), healths(down(Service.IMAP, Cause.AUTH_FAILED))))
    assert (doc["owner"], doc["show"], doc["accounts"], doc["severity"]) == (
        "nobody",
        False,
        [],
        None,
    )
    assert owner_doc("nobody")["show"] is False


def test_owner_banner_has_no_owner_email() -> None:
    doc = owner_doc("u-42", (account(), healths(down(Service.IMAP, Cause.AUTH_FAILED))))
    assert OWNER.email not in json.dumps(doc)
    assert PASSWORD not in json.dumps(doc)


# --- reconnect url and times ---------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "account_id", "owner_id", "expected"),
    [
        (
            "https://p.example/r?account={account_id}",
            "acct-1",
            "u",
            "https://p.example/r?account=acct-1",
        ),
        (
            "https://p.example/{owner_id}/{account_id}",
            "a/b c",
            "u&1",
            "https://p.example/u%261/a%2Fb%20c",
        ),
        ("https://p.example/static", "a", "u", "https://p.example/static"),
    ],
)
def test_reconnect_url(template: str, account_id: str, owner_id: str, expected: str) -> None:
    a = account(account_id, owner=Owner(id=owner_id, email="x@y.example"))
    assert reconnect_url(template, a) == expected


def test_iso() -> None:
    assert iso(None) is None
    assert iso(0) == "1970-01-01T00:00:00Z"
    assert iso(T0 + 0.9) == "2024-05-01T12:00:00Z"
