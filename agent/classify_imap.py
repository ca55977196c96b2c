"""IMAP replies -> Failure: status (OK/NO/BAD/BYE), RFC 5530 response codes, then words."""

from __future__ import annotations

import re

from agent import classify_text as words
from agent.model import Cause, Evidence, Failure

_CODE = re.compile(r"\[([A-Z][A-Z0-9.-]*)[\] ]", re.IGNORECASE)
_SASL_REFUSED = re.compile(r"AUTHENTICATE failed\.?$", re.IGNORECASE)
_READ_ONLY = re.compile(r"read-only|not writable|\[READ-ONLY\]", re.IGNORECASE)
_PRE_AUTH = {"connect", "greeting", "capability", "starttls", "tls"}
_AUTH = {"login", "auth", "authenticate"}

# RFC 5530 (and common extensions) response code -> (cause, definitive)
_CODES: dict[str, tuple[Cause, bool]] = {
    "AUTHENTICATIONFAILED": (Cause.AUTH_FAILED, False),
    "AUTHORIZATIONFAILED": (Cause.AUTH_FAILED, False),
    "CONTACTADMIN": (Cause.ACCOUNT_SUSPENDED, True),
    "EXPIRED": (Cause.ACCOUNT_SUSPENDED, True),  # password or account expired: provider-side
    "PRIVACYREQUIRED": (Cause.CONFIG_ERROR, True),
    "UNAVAILABLE": (Cause.SERVER_UNAVAILABLE, False),
    "SERVERBUG": (Cause.SERVER_UNAVAILABLE, False),
    "CORRUPTION": (Cause.SERVER_UNAVAILABLE, False),
    "INUSE": (Cause.SERVER_UNAVAILABLE, False),
    "EXPUNGEISSUED": (Cause.SERVER_UNAVAILABLE, False),
    "LIMIT": (Cause.RATE_LIMITED, False),
    "THROTTLED": (Cause.RATE_LIMITED, False),
    "OVERQUOTA": (Cause.OVER_QUOTA, True),
    "NOPERM": (Cause.PERMISSION_DENIED, True),
    "CANNOT": (Cause.PERMISSION_DENIED, False),
    "NONEXISTENT": (Cause.CONFIG_ERROR, False),
    "TRYCREATE": (Cause.CONFIG_ERROR, False),
    "CLIENTBUG": (Cause.INTEGRATION_ERROR, False),
    "PARSE": (Cause.PROTOCOL_ERROR, False),
}


def codes(ev: Evidence) -> list[str]:
    """Response codes in the tagged reply and the untagged lines, upper-cased, in order."""
    found = [c.upper() for c in _CODE.findall(ev.text)]
    for line in ev.untagged:
        found += [c.upper() for c in _CODE.findall(line)]
    return found


def _said(ev: Evidence) -> str:
    """The words to read: the tagged text and untagged lines, without capability lists."""
    lines = [u for u in ev.untagged if not re.match(r"\*\s+CAPABILITY\b", u, re.IGNORECASE)]
    return "\n".join([ev.text, *lines])


def _m(cause: Cause, hint: str | None = None, definitive: bool = False) -> Failure:
    return Failure(cause=cause, hint=hint, definitive=definitive)


def _from_meaning(m: words.Meaning) -> Failure:
    return Failure(cause=m.cause, hint=m.hint, definitive=m.definitive)


def classify_imap(ev: Evidence) -> Failure:
    status = (ev.status or "").upper()
    said = _said(ev)
    found = codes(ev)
    stage = ev.stage

    # The XOAUTH2 error challenge says why the token was refused.
    sasl = words.sasl_error_status([*ev.untagged, ev.text, ev.exception or ""])
    if sasl is not None and stage in _AUTH:
        if sasl == "400":
            return _m(Cause.INTEGRATION_ERROR)  # wrong scope or malformed request: ours
        if sasl == "401":
            return _m(Cause.AUTH_FAILED, "access_token_expired")

    everything = " ".join([said, *(u for u in ev.untagged), ev.exception or ""])
    if "LOGINDISABLED" in everything.upper() and (stage in _AUTH or stage in _PRE_AUTH):
        return _m(Cause.CONFIG_ERROR, definitive=True)

    if status == "BYE" and not (stage in _AUTH and found):
        return _bye(ev, said)

    if status == "OK":
        # An OK that still failed: the probe judged the content (throttle, quota, rights).
        if "THROTTLED" in found or words.RATE.search(said):
            return _m(Cause.RATE_LIMITED)
        if "OVERQUOTA" in found:
            return _m(Cause.OVER_QUOTA, definitive=True)
        if _READ_ONLY.search(said):
            return _m(Cause.PERMISSION_DENIED)
        return _m(Cause.PROTOCOL_ERROR)

    if not status:
        return _no_status(ev, said)

    strong = words.strong(said)
    if strong is not None:
        return _from_meaning(strong)

    for code in found:
        if code in _CODES:
            cause, definitive = _CODES[code]
            if cause is Cause.AUTH_FAILED:
                weak = words.weak(said)
                if weak is not None and weak.cause is Cause.SERVER_UNAVAILABLE:
                    return _from_meaning(weak)
            return _m(cause, definitive=definitive)

    if stage in _AUTH and not found and _SASL_REFUSED.match(ev.text.strip()):
        # Exchange's bare SASL refusal: a token for the wrong scope or audience, or a
        # password where the tenant takes OAuth only. Either way the access is refused.
        return _m(Cause.ACCESS_REVOKED)

    weak = words.weak(said)
    if weak is not None:
        return _from_meaning(weak)

    if stage in _PRE_AUTH:
        if status in ("NO", "BYE"):
            return _m(Cause.SERVER_UNAVAILABLE)
        return _m(Cause.PROTOCOL_ERROR)  # a greeting or reply that makes no sense
    if stage in _AUTH:
        if status == "NO":
            return _m(Cause.AUTH_FAILED)
        if status == "BAD":
            if re.search(r"base64|sasl|decode|invalid argument", said, re.IGNORECASE):
                return _m(Cause.INTEGRATION_ERROR)
            if re.search(r"invalid state|starttls|ssl|tls", said, re.IGNORECASE):
                return _m(Cause.CONFIG_ERROR)
        return _m(Cause.PROTOCOL_ERROR)
    if stage in {"select", "examine", "status"} and status == "NO":
        if re.search(r"doesn't exist|does not exist|not found|unknown mailbox", said, re.I):
            return _m(Cause.CONFIG_ERROR)
        return _m(Cause.PERMISSION_DENIED)  # the mailbox is not selectable for this user
    if status == "NO":
        return _m(Cause.SERVER_UNAVAILABLE)
    return _m(Cause.PROTOCOL_ERROR)


def _bye(ev: Evidence, said: str) -> Failure:
    """A BYE that did not come as part of a refused login."""
    if ev.stage in _PRE_AUTH:
        # A BYE greeting is an outage, whatever words it uses ("Auth process broken").
        if words.RATE.search(said):
            return _m(Cause.RATE_LIMITED)
        return _m(Cause.SERVER_UNAVAILABLE)
    strong = words.strong(said)
    if strong is not None:
        return _from_meaning(strong)
    if words.TOKEN_EXPIRED.search(said):
        return _m(Cause.AUTH_FAILED, "access_token_expired")
    if ev.stage in _AUTH and words.CREDENTIALS.search(said):
        return _m(Cause.AUTH_FAILED)
    return _m(Cause.SERVER_UNAVAILABLE)


def _no_status(ev: Evidence, said: str) -> Failure:
    """No server status: the probe stopped on its own judgement (the text says why)."""
    if ev.stage == "starttls" or re.search(r"STARTTLS", said):
        return _m(Cause.CONFIG_ERROR)  # STARTTLS configured but not offered or refused
    if re.search(r"oauth|token source", said, re.IGNORECASE):
        return _m(Cause.INTEGRATION_ERROR)
    if re.search(r"account has no|settings", said, re.IGNORECASE):
        return _m(Cause.CONFIG_ERROR)
    strong = words.strong(said)
    if strong is not None:
        return _from_meaning(strong)
    return _m(Cause.PROTOCOL_ERROR)
