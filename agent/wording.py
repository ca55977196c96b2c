"""What we tell people, in plain words: causes, hints, services and what stopped working.
Shared by the banner API and the owner emails so they never disagree."""

from __future__ import annotations

from collections.abc import Iterable

from agent.model import Cause, Service

SERVICE_NAMES: dict[Service, str] = {
    Service.IMAP: "incoming mail (IMAP)",
    Service.SMTP: "outgoing mail (SMTP)",
    Service.CALDAV: "calendar (CalDAV)",
}

IMPACTS: dict[Service, tuple[str, ...]] = {
    Service.SMTP: ("Sending, replying, forwarding and scheduled emails",),
    Service.IMAP: ("Receiving new mail", "Read/unread sync"),
    Service.CALDAV: ("Two-way calendar sync", "The meeting scheduler"),
}

CAUSE_TEXT: dict[Cause, str] = {
    Cause.AUTH_FAILED: "Your email password may have changed, so we can no longer sign in.",
    Cause.ACCESS_REVOKED: "Access for third-party apps was removed in your email settings.",
    Cause.ACCOUNT_SUSPENDED: "Your email provider reports a problem with your account.",
    Cause.PERMISSION_DENIED: "We can sign in, but your account no longer lets us use it "
    "(for example, the calendar became read-only).",
    Cause.OVER_QUOTA: "Your mailbox is full.",
    Cause.CONFIG_ERROR: "The connection settings for your account no longer work.",
    Cause.INTEGRATION_ERROR: "A problem on our side; our team has been alerted.",
    Cause.SERVER_UNAVAILABLE: "Your email provider's servers are not responding right now. "
    "No action is needed yet; we keep trying.",
    Cause.NETWORK_ERROR: "We cannot reach your email provider right now. "
    "No action is needed yet; we keep trying.",
    Cause.TIMEOUT: "Your email provider is not answering in time. "
    "No action is needed yet; we keep trying.",
    Cause.RATE_LIMITED: "Your email provider is limiting connections for now. "
    "No action is needed yet; we keep trying.",
    Cause.TLS_ERROR: "Your email provider's security certificate could not be verified. "
    "No action is needed yet; we keep trying.",
    Cause.PROTOCOL_ERROR: "Your email provider sent an unexpected answer. "
    "No action is needed yet; we keep trying.",
}

HINT_TEXT: dict[str, str] = {
    "app_password_required": "Your provider now requires an app password for connected apps.",
    "basic_auth_disabled": "Your provider no longer accepts passwords for connected apps; "
    "reconnect with your provider's sign-in.",
    "protocol_disabled": "IMAP, SMTP or calendar access is switched off in your email settings.",
    "oauth_grant_invalid": "The permission you gave us has expired or was withdrawn.",
    "web_login_required": "Your provider asks you to sign in through its website first.",
}

ACTION_TEXT = "Reconnect your account in Settings > Connected Apps."
WAIT_TEXT = "No action is needed yet; we keep trying."


def cause_text(cause: Cause, hint: str | None = None) -> str:
    """One or two sentences for the owner: the cause, and the hint when it adds something."""
    text = CAUSE_TEXT[cause]
    if hint and hint in HINT_TEXT:
        text = f"{text} {HINT_TEXT[hint]}"
    return text


def impacts(services: Iterable[Service]) -> list[str]:
    """What stopped working, in plain words, for the given broken services (stable order)."""
    wanted = set(services)
    out: list[str] = []
    for service in (Service.SMTP, Service.IMAP, Service.CALDAV):
        if service in wanted:
            out.extend(IMPACTS[service])
    return out


# What the owner should do, per cause needing action (other causes: nothing to do yet).
ACTION_BY_CAUSE: dict[Cause, str] = {
    Cause.AUTH_FAILED: ACTION_TEXT,
    Cause.ACCESS_REVOKED: ACTION_TEXT,
    Cause.ACCOUNT_SUSPENDED: "Check your account with your email provider, "
    "then reconnect it in Settings > Connected Apps.",
    Cause.PERMISSION_DENIED: "Check what your account allows us to use, "
    "then reconnect it in Settings > Connected Apps.",
    Cause.OVER_QUOTA: "Free up space in your mailbox, or ask your provider for more storage.",
    Cause.CONFIG_ERROR: "Check the connection settings in Settings > Connected Apps.",
}


def action_text(cause: Cause) -> str:
    """What the owner should do about `cause`; "" when there is nothing to do yet."""
    return ACTION_BY_CAUSE.get(cause, "")


def integration_name(services: Iterable[Service]) -> str:
    """ "Mailbox", "Calendar" or "Mailbox and Calendar", for the broken services."""
    wanted = set(services)
    parts = []
    if wanted & {Service.IMAP, Service.SMTP}:
        parts.append("Mailbox")
    if Service.CALDAV in wanted:
        parts.append("Calendar")
    return " and ".join(parts)


def service_list(services: Iterable[Service]) -> str:
    """ "incoming mail (IMAP), outgoing mail (SMTP) and calendar (CalDAV)" (stable order)."""
    wanted = set(services)
    names = [SERVICE_NAMES[s] for s in (Service.IMAP, Service.SMTP, Service.CALDAV) if s in wanted]
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]
