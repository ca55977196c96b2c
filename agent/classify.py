"""Raw failure (Evidence: network condition, IMAP status, SMTP code, HTTP status, server
text) -> one Failure with a Cause, an optional hint, a `definitive` flag and retry_after.

Pure: no I/O. Codes and status decide first (RFC 5530 response codes, SMTP reply and
enhanced status codes, HTTP status, WWW-Authenticate, OAuth `error`); the server's words
are the second signal (agent.classify_text). One module per protocol family.
"""

from __future__ import annotations

import re

from agent import classify_text as words
from agent.classify_http import (
    classify_caldav,
    classify_oauth,
    judged_caldav,
    retry_after,
    summary,
)
from agent.classify_imap import classify_imap
from agent.classify_smtp import classify_smtp
from agent.model import Cause, Evidence, Failure

__all__ = ["classify", "describe"]

_NETWORK: dict[str, Cause] = {
    "refused": Cause.SERVER_UNAVAILABLE,
    "reset": Cause.SERVER_UNAVAILABLE,
    "eof": Cause.SERVER_UNAVAILABLE,
    "unreachable": Cause.NETWORK_ERROR,
    "dns_temporary": Cause.NETWORK_ERROR,
    "dns_nxdomain": Cause.CONFIG_ERROR,  # the host in the settings does not exist
    "timeout": Cause.TIMEOUT,
    "connect_timeout": Cause.TIMEOUT,
    "tls_cert": Cause.TLS_ERROR,
    "tls_handshake": Cause.TLS_ERROR,
    "too_large": Cause.PROTOCOL_ERROR,
}
_NETWORK_WORDS: dict[str, str] = {
    "refused": "connection refused",
    "reset": "connection reset",
    "eof": "connection closed by the server",
    "unreachable": "network unreachable",
    "dns_temporary": "name lookup failed temporarily",
    "dns_nxdomain": "host name does not exist",
    "timeout": "no answer in time",
    "connect_timeout": "connect timed out",
    "tls_cert": "certificate not trusted",
    "tls_handshake": "TLS handshake failed",
    "too_large": "reply too large",
}
# A TLS handshake that fails this way met a plain-text (or HTTP) port: wrong TLS mode.
_WRONG_TLS_MODE = re.compile(
    r"wrong[ _]version[ _]number|http[ _]request|unknown[ _]protocol|record[ _]layer", re.I
)
_PROTOCOL_NAMES = {"imap": "IMAP", "smtp": "SMTP", "caldav": "CalDAV", "oauth": "OAuth"}


def classify(ev: Evidence, *, now: float | None = None) -> Failure:
    """The one Cause for what a server or the network did. `now` (POSIX seconds) is only
    used to turn a Retry-After HTTP date into seconds when the reply carries no Date."""
    failure = _cause(ev)
    pause = _retry_after(ev, now)
    return Failure(
        cause=failure.cause,
        hint=failure.hint,
        definitive=failure.definitive,
        detail=describe(ev),
        retry_after=pause,
    )


def _cause(ev: Evidence) -> Failure:
    if ev.network:
        return _network(ev)
    proto = ev.protocol
    if proto == "imap" and ev.status:
        return classify_imap(ev)
    if proto == "smtp" and ev.code:
        return classify_smtp(ev)
    if proto == "caldav" and ev.code:
        return classify_caldav(ev)
    if proto == "oauth" and (ev.code or ev.text):
        return classify_oauth(ev)
    if proto == "imap" and ev.text:
        return classify_imap(ev)
    if proto == "caldav" and ev.text:
        return judged_caldav(ev)
    return _exception_only(ev)


def _network(ev: Evidence) -> Failure:
    kind = ev.network or ""
    cause = _NETWORK.get(kind, Cause.NETWORK_ERROR)
    if kind == "tls_handshake" and _WRONG_TLS_MODE.search(ev.exception or ""):
        return Failure(cause=Cause.CONFIG_ERROR)
    return Failure(cause=cause)


def _exception_only(ev: Evidence) -> Failure:
    """No reply to read: only an exception (a library error, garbage on the wire)."""
    exc = ev.exception or ""
    if re.search(r"certificate|SSLCertVerification", exc, re.I):
        return Failure(cause=Cause.TLS_ERROR)
    if re.search(r"\bSSLError\b|handshake", exc, re.I):
        return Failure(cause=Cause.TLS_ERROR)
    if re.search(r"TimeoutError|timed out|ReadTimeout|ConnectTimeout", exc):
        return Failure(cause=Cause.TIMEOUT)
    if re.search(r"ConnectionRefused|Connection refused", exc):
        return Failure(cause=Cause.SERVER_UNAVAILABLE)
    if re.search(r"ConnectionReset|reset by peer|IncompleteRead|RemoteDisconnected", exc):
        return Failure(cause=Cause.SERVER_UNAVAILABLE)
    return Failure(cause=Cause.PROTOCOL_ERROR)


def _retry_after(ev: Evidence, now: float | None) -> float | None:
    if ev.headers:
        pause = retry_after(ev.headers, now)
        if pause is not None:
            return pause
    return words.backoff_seconds("\n".join([ev.text, *ev.untagged]))


def describe(ev: Evidence) -> str:
    """A short human-readable summary of what the server said, e.g.
    `IMAP login: NO [AUTHENTICATIONFAILED] Authentication failed.`"""
    where = f"{_PROTOCOL_NAMES.get(ev.protocol, ev.protocol)} {ev.stage}"
    if ev.network:
        words_ = _NETWORK_WORDS.get(ev.network, ev.network)
        extra = f" ({ev.exception})" if ev.exception else ""
        return _cap(f"{where}: {words_}{extra}")
    if ev.protocol == "imap" and (ev.status or ev.text):
        said = " ".join(x for x in (ev.status or "", ev.text) if x)
        notes = [
            u
            for u in ev.untagged
            if re.match(r"\*\s+(?:NO|BAD|BYE|OK\s+\[ALERT\])", u, re.IGNORECASE)
            and not u.endswith(ev.text)
        ]
        if notes:
            said += " (" + "; ".join(notes) + ")"
        return _cap(f"{where}: {said}")
    if ev.protocol == "smtp" and ev.code:
        return _cap(f"{where}: {ev.code} {' '.join(ev.text.split())}")
    if ev.protocol in ("caldav", "oauth") and ev.code:
        body = summary(ev.text)
        challenge = ev.headers.get("www-authenticate", "") if ev.code == 401 else ""
        parts = [f"HTTP {ev.code}", body, f"[{challenge}]" if challenge else ""]
        return _cap(f"{where}: " + " ".join(p for p in parts if p))
    if ev.exception:
        return _cap(f"{where}: {ev.exception}")
    return _cap(f"{where}: {ev.text}" if ev.text else f"{where}: failed")


def _cap(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
