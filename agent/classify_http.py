"""HTTP replies -> Failure: CalDAV (status, WWW-Authenticate, DAV/JSON error body) and the
OAuth token endpoint (RFC 6749 `error` field)."""

from __future__ import annotations

import email.utils
import json
import re
from collections.abc import Mapping
from typing import Any

from agent import classify_text as words
from agent.model import Cause, Evidence, Failure

_TAG = re.compile(r"<[^>]+>")
_SABRE_MSG = re.compile(r"<(?:\w+:)?message>(.*?)</(?:\w+:)?message>", re.S)
_SABRE_EXC = re.compile(r"<(?:\w+:)?exception>(.*?)</(?:\w+:)?exception>", re.S)
_AUTH_ERR = re.compile(r"""error\s*=\s*"?([A-Za-z_]+)""")


def retry_after(headers: Mapping[str, str], now: float | None) -> float | None:
    """Retry-After as seconds: delta-seconds, or an HTTP date against the reply's Date header
    (else against `now`)."""
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    base: float | None = None
    date = headers.get("date")
    if date:
        try:
            base = email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError, IndexError):
            base = None
    if base is None:
        base = now
    if base is None:
        return None
    return max(0.0, when - base)


def json_body(text: str) -> dict[str, Any] | None:
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def summary(text: str) -> str:
    """A short readable form of an error body: JSON message, Sabre message, or plain text."""
    obj = json_body(text)
    if obj is not None:
        err = obj.get("error")
        if isinstance(err, dict):
            parts = [str(err.get(k)) for k in ("status", "code", "message") if err.get(k)]
            reasons = [
                str(e.get("reason"))
                for e in err.get("errors", [])
                if isinstance(e, dict) and e.get("reason")
            ]
            return " ".join(parts + reasons)
        if isinstance(err, str):
            desc = obj.get("error_description")
            return f"{err}: {desc}" if desc else err
    m = _SABRE_MSG.search(text)
    if m:
        exc = _SABRE_EXC.search(text)
        name = exc.group(1).rsplit("\\", 1)[-1] + ": " if exc else ""
        return name + m.group(1).strip()
    return " ".join(_TAG.sub(" ", text).split())


def _m(cause: Cause, hint: str | None = None, definitive: bool = False) -> Failure:
    return Failure(cause=cause, hint=hint, definitive=definitive)


def classify_caldav(ev: Evidence) -> Failure:
    code = ev.code or 0
    body = ev.text
    challenge = ev.headers.get("www-authenticate", "")
    said = f"{body}\n{challenge}"

    if code == 401:
        m = _AUTH_ERR.search(challenge)
        if m and m.group(1) == "insufficient_scope":
            return _m(Cause.INTEGRATION_ERROR)
        strong = words.strong(said)
        if strong is not None and strong.cause is not Cause.RATE_LIMITED:
            return Failure(cause=strong.cause, hint=strong.hint, definitive=strong.definitive)
        if (m and m.group(1) == "invalid_token") or words.TOKEN_EXPIRED.search(said):
            return _m(Cause.AUTH_FAILED, "access_token_expired")
        return _m(Cause.AUTH_FAILED)
    if code == 429:
        return _m(Cause.RATE_LIMITED)
    if code == 408:
        return _m(Cause.TIMEOUT)
    if words.INTEGRATION.search(said):
        return _m(Cause.INTEGRATION_ERROR)
    strong = words.strong(said)
    if strong is not None and (code >= 400 or strong.cause is not Cause.RATE_LIMITED):
        return Failure(cause=strong.cause, hint=strong.hint, definitive=strong.definitive)
    if 300 <= code < 400 or code in (405, 407, 501):
        return _m(Cause.CONFIG_ERROR)  # moved, behind a proxy, or not a CalDAV endpoint
    if code == 403:
        return _m(Cause.PERMISSION_DENIED)
    if code in (404, 410):
        return _m(Cause.CONFIG_ERROR)  # the collection is not there
    if code == 507:
        return _m(Cause.OVER_QUOTA, definitive=True)
    if code >= 500:
        return _m(Cause.SERVER_UNAVAILABLE)
    if code in (400, 411, 412, 415, 422):
        return _m(Cause.INTEGRATION_ERROR)  # the server rejects the shape of our request
    if code >= 400:
        return _m(Cause.PROTOCOL_ERROR)
    return judged_caldav(ev)


def judged_caldav(ev: Evidence) -> Failure:
    """A good HTTP answer (or none) that still failed: the probe judged the content and its
    text says what it found ("read-only: ...", "not a calendar: ...", "no calendars: ...")."""
    text = ev.text.lstrip()
    if text.startswith("unusable answer"):
        return _m(Cause.PROTOCOL_ERROR)
    if text.startswith("read-only") or (ev.stage == "privileges" and "privilege" in text):
        return _m(Cause.PERMISSION_DENIED)
    if re.match(r"not a calendar|no calendars?|no calendar-home-set|no caldav", text, re.I):
        return _m(Cause.CONFIG_ERROR)  # the URL does not lead to a calendar
    if re.search(r"oauth|token source", text, re.IGNORECASE):
        return _m(Cause.INTEGRATION_ERROR)
    if ev.stage == "config":
        return _m(Cause.CONFIG_ERROR)
    return _m(Cause.PROTOCOL_ERROR)


_GRANT_GONE = {"invalid_grant", "access_denied", "consent_required", "login_required"}
_OURS = {
    "invalid_client",
    "unauthorized_client",
    "invalid_scope",
    "invalid_request",
    "unsupported_grant_type",
    "unsupported_response_type",
}
_SKEW = re.compile(
    r"invalid jwt|clock|not yet valid|code (?:was )?already (?:been )?redeemed", re.I
)


def classify_oauth(ev: Evidence) -> Failure:
    code = ev.code or 0
    obj = json_body(ev.text) or {}
    if not code and not obj:
        # No reply from the token endpoint: our own OAuth settings or code stopped us.
        return _m(Cause.INTEGRATION_ERROR)
    error = obj.get("error")
    error = error if isinstance(error, str) else ""
    desc = obj.get("error_description")
    desc = desc if isinstance(desc, str) else ""
    said = f"{error} {desc}"

    if error in _GRANT_GONE or error == "interaction_required":
        if words.SUSPENDED.search(said):
            return _m(Cause.ACCOUNT_SUSPENDED, definitive=True)
        if error == "interaction_required" or re.search(r"AADSTS5(?:0076|0079|0158|3003)", desc):
            return _m(Cause.ACCESS_REVOKED, "web_login_required", True)
        if _SKEW.search(desc):
            return _m(Cause.INTEGRATION_ERROR)
        # A bare invalid_grant ("Bad Request") is usually a dead grant but not certainly.
        bare = not desc or desc.strip().lower() in {"bad request", "invalid_grant"}
        return _m(Cause.ACCESS_REVOKED, "oauth_grant_invalid", not bare)
    if error in _OURS:
        return _m(Cause.INTEGRATION_ERROR, definitive=True)
    if error == "slow_down" or code == 429:
        return _m(Cause.RATE_LIMITED)
    if error in ("temporarily_unavailable", "server_error") or code >= 500:
        return _m(Cause.SERVER_UNAVAILABLE)
    if error == "invalid_token":
        return _m(Cause.AUTH_FAILED, "access_token_expired")
    if code in (400, 401, 403):
        return _m(Cause.INTEGRATION_ERROR)
    if 300 <= code < 400 or code in (404, 405):
        return _m(Cause.INTEGRATION_ERROR)  # the token URL is wrong: operator's settings
    return _m(Cause.PROTOCOL_ERROR)
