"""How a rendered message leaves the process: one small Protocol, one error type.

Retries do not live here: a transport tries once and says whether it worked. The caller
(`Notifier.deliver`) owns the outbox, the backoff and the decision to give up.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from agent.secret import Redactor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    """One message to one Apprise URL. `url` may hold relay credentials: never log it."""

    url: str = field(repr=False)
    title: str
    body: str  # HTML when `html` is true, plain text otherwise
    html: bool = True
    key: str = ""  # the outbox key, for log lines and error text


class NotifyError(Exception):
    """The message was not accepted. `permanent`: trying again cannot help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Transport(Protocol):
    async def send(self, message: Message) -> None:
        """Return when the receiving end accepted the message; raise NotifyError otherwise."""
        ...


def email_url(relay: str, to: str, headers: Mapping[str, str]) -> str:
    """The relay's mailto(s):// URL with the owner as the only recipient and extra headers
    as Apprise `+Name=value` arguments (apprise >= 1.x copies them into the message)."""
    parts = urlsplit(relay)
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k.lower() not in {"to", "cc", "bcc"} and not k.startswith("+")
    ]
    query.append(("to", to))
    text = urlencode(query, quote_via=quote, safe="@")
    for name, value in headers.items():
        text += f"&+{quote(name, safe='')}={quote(value, safe='')}"
    return urlunsplit(parts._replace(query=text))


def url_secrets(url: str) -> list[str]:
    """What in an Apprise URL must never be shown: the password part of user:pass@."""
    parts = urlsplit(url)
    out = [p for p in (parts.password,) if p]
    out += [unquote(p) for p in out]
    out += [v for k, v in parse_qsl(parts.query) if k.lower() in {"pass", "password", "token"}]
    return out


def _apprise() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import apprise

    return apprise


class AppriseTransport:
    """Sends through Apprise. Apprise raises nothing when the relay is down; it returns a
    falsy result and logs the reason, which is captured (secrets removed) for the error."""

    async def send(self, message: Message) -> None:
        apprise = _apprise()
        redact = Redactor(url_secrets(message.url))
        obj = apprise.Apprise()
        if not obj.add(message.url):
            raise NotifyError(f"{message.key}: not a valid Apprise URL", permanent=True)
        fmt = apprise.NotifyFormat.HTML if message.html else apprise.NotifyFormat.TEXT
        with apprise.LogCapture(level=logging.WARNING) as capture:
            result = await obj.async_notify(title=message.title, body=message.body, body_format=fmt)
            reason = capture.getvalue()
        if not result:
            lines = [ln.split(" - ", 2)[-1] for ln in reason.strip().splitlines() if ln.strip()]
            detail = redact("; ".join(lines))[:300] or "no reason given"
            raise NotifyError(f"{message.key}: not accepted: {detail}")
