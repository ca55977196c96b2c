"""SMTP replies -> Failure: reply code, enhanced status code (RFC 3463), then words."""

from __future__ import annotations

import re

from agent import classify_text as words
from agent.model import Cause, Evidence, Failure

_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_AUTH = {"login", "auth", "authenticate"}
_PRE_AUTH = {"connect", "greeting", "ehlo", "starttls", "tls"}
_TLS_NEEDED = re.compile(
    r"starttls|must issue a starttls|encryption required|tls required|"
    r"requires? (?:a )?secure connection|ssl required",
    re.IGNORECASE,
)
_BAD_USER = re.compile(
    r"(?:user(?:name)?|address|login|mailbox)\b[^.]{0,30}\b(?:not valid|invalid|malformed)|"
    r"invalid (?:user(?:name)?|address)",
    re.IGNORECASE,
)


def enhanced(text: str) -> tuple[int, int, int] | None:
    m = _ENHANCED.search(text)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def _m(cause: Cause, hint: str | None = None, definitive: bool = False) -> Failure:
    return Failure(cause=cause, hint=hint, definitive=definitive)


def classify_smtp(ev: Evidence) -> Failure:
    code = ev.code or 0
    text = "\n".join([ev.text, *ev.untagged])
    esc = enhanced(text)
    stage = ev.stage

    sasl = words.sasl_error_status([*ev.untagged, ev.text, ev.exception or ""])
    if sasl == "400" and stage in _AUTH:
        return _m(Cause.INTEGRATION_ERROR)

    strong = words.strong(text)
    if strong is not None:
        return Failure(cause=strong.cause, hint=strong.hint, definitive=strong.definitive)

    if esc == (5, 7, 14) or (code == 534 and esc is None and "browser" in text.lower()):
        return _m(Cause.ACCESS_REVOKED, "web_login_required", True)
    if esc == (5, 7, 9):
        return _m(Cause.ACCESS_REVOKED, "app_password_required", True)
    if words.TEMP_AUTH.search(text):
        return _m(Cause.SERVER_UNAVAILABLE)

    if 400 <= code < 500:
        if esc is not None and esc[1] == 2 and esc[2] == 2:
            return _m(Cause.OVER_QUOTA)
        if words.SYSTEM_TROUBLE.search(text):
            return _m(Cause.SERVER_UNAVAILABLE)
        if esc is not None and esc[1] == 7:
            return _m(Cause.RATE_LIMITED)  # 4.7.x: throttling or a temporary policy
        return _m(Cause.SERVER_UNAVAILABLE)  # 421, 4.3.x, 4.4.x: server trouble

    if code >= 500 and _TLS_NEEDED.search(text) and code in (530, 538, 554, 550, 503):
        return _m(Cause.CONFIG_ERROR, definitive=True)
    if esc is not None and esc[:2] == (5, 2) and esc[2] == 2:
        return _m(Cause.OVER_QUOTA, definitive=True)
    if code == 552 and words.QUOTA.search(text):
        return _m(Cause.OVER_QUOTA, definitive=True)

    if stage in _PRE_AUTH and code >= 500:
        return _m(Cause.SERVER_UNAVAILABLE)

    if stage in _AUTH:
        return _auth_reply(code, esc, text)

    if code >= 500 and esc is not None and esc[1] == 7:
        return _m(Cause.PERMISSION_DENIED)  # e.g. not allowed to send as this sender
    if code >= 500 and esc is not None and esc[1] == 1:
        return _m(Cause.CONFIG_ERROR)  # the sender address is not valid
    weak = words.weak(text)
    if weak is not None:
        return Failure(cause=weak.cause, hint=weak.hint, definitive=weak.definitive)
    return _m(Cause.PROTOCOL_ERROR)


def _auth_reply(code: int, esc: tuple[int, int, int] | None, text: str) -> Failure:
    if code in (535, 454) or (esc is not None and esc[1] == 7 and code != 504):
        weak = words.weak(text)
        if weak is not None and weak.cause is not Cause.AUTH_FAILED:
            return Failure(cause=weak.cause, hint=weak.hint)
        if weak is not None and weak.hint:
            return Failure(cause=weak.cause, hint=weak.hint)
        return _m(Cause.AUTH_FAILED)
    if code == 534:
        return _m(Cause.CONFIG_ERROR)  # mechanism too weak for this server
    if code == 504 or (esc is not None and esc[:2] == (5, 7) and esc[2] == 4):
        return _m(Cause.CONFIG_ERROR)  # mechanism not offered: settings do not match
    if code in (500, 501, 502) or (esc is not None and esc[1] == 5):
        if _BAD_USER.search(text):
            return _m(Cause.CONFIG_ERROR)  # the user name inside the SASL string is wrong
        return _m(Cause.INTEGRATION_ERROR)  # our SASL exchange was malformed
    if code == 503:
        return _m(Cause.PROTOCOL_ERROR)
    weak = words.weak(text)
    if weak is not None:
        return Failure(cause=weak.cause, hint=weak.hint)
    return _m(Cause.AUTH_FAILED if code >= 500 else Cause.PROTOCOL_ERROR)
