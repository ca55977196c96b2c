"""What a server's words mean, independent of protocol: the second signal after codes.

Each rule matches a *meaning* (a few words that carry it), not a whole provider sentence,
so other phrasings of the same thing land on the same cause. Pure functions, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from agent.model import Cause

_I = re.IGNORECASE


@dataclass(frozen=True)
class Meaning:
    cause: Cause
    hint: str | None = None
    definitive: bool = False


def _rx(*alternatives: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{a})" for a in alternatives), _I)


APP_PASSWORD = _rx(
    r"app(?:lication)?[- ]?specific[- ]password",
    r"\bapp[- ]passwords?\b",
    r"InvalidSecondFactor",
)
WEB_LOGIN = _rx(
    r"\bWEBALERT\b",
    r"web ?log ?in required",
    r"log ?in (?:via|through|with|using) (?:your |a )?(?:web )?browser",
    r"sign ?in (?:via|through|with|using) (?:your |a )?(?:web )?browser",
    r"p=WebLoginRequired",
    r"\bvia (?:a |your )?web browser",
    r"interaction_required",
)
BASIC_AUTH_OFF = _rx(
    r"basic auth(?:entication)? (?:is |has been )?(?:disabled|not (?:supported|allowed|enabled)|"
    r"blocked|turned off)",
    r"BasicAuthBlocked",
    r"security defaults",
    r"legacy authentication (?:is )?(?:disabled|blocked|not allowed)",
    r"password (?:sign-?in|log-?in|authentication) (?:is )?(?:disabled|no longer (?:supported|"
    r"accepted))",
)
_PROTO = r"(?:imap4?|pop3?|smtp(?: ?auth)?|smtpclientauthentication|caldav|carddav|dav)"
PROTOCOL_OFF = _rx(
    rf"\b{_PROTO}\b(?: (?:access|support|use|service))? (?:is |has been |was )?"
    r"(?:disabled|not enabled|not allowed|switched off|turned off|blocked)",
    rf"(?:not enabled|disabled|not allowed) (?:for|to use) {_PROTO}\b",
    rf"enable (?:your account for |)\b{_PROTO}\b",
    rf"\b{_PROTO}\b (?:access|support)\b[^.]{{0,40}}\bnot enabled",
    r"is disabled for the tenant",
)
SUSPENDED = _rx(
    r"\baccount (?:has been |is |was )?(?:temporarily |permanently )?(?:disabled|suspended|"
    r"locked|blocked|restricted|deactivated|closed|terminated)",
    r"access to your account has been (?:temporarily )?(?:restricted|blocked|suspended)",
    r"\b(?:suspended|disabled|deactivated|locked) (?:user|account|mailbox)\b",
    r"\buser (?:is )?(?:suspended|disabled|blocked|locked)\b",
    r"\baccount (?:has been |was )?deleted\b",
    r"mailbox (?:is )?(?:either )?(?:inactive|disabled|soft-deleted|suspended)",
    r"MailboxNotEnabled",
    r"\b(?:mail|gmail|email) service (?:is )?not enabled",
    r"\bnot licensed\b|\bno (?:valid )?licen[cs]e\b|licen[cs]e (?:is )?(?:required|expired)",
    r"\bAADSTS(?:50057|50053|50055|530032)\b",
)
RATE = _rx(
    r"\btoo many\b",
    r"throttl",
    r"rate[- ]?limit",
    r"maximum number of (?:connections|sessions|logins)",
    r"connection limit",
    r"command or bandwidth",
    r"bandwidth limit",
    r"\bback-?off\b",
    r"slow down",
    r"sending (?:quota|limit)",
    r"ServerBusy",
    r"\b(?:user)?RateLimitExceeded\b|\bdailyLimitExceeded\b|\bquotaExceeded\b",
)
QUOTA = _rx(
    r"\bquota\b",
    r"storage (?:limit|space|quota)",
    r"mailbox (?:is )?full",
    r"insufficient storage",
    r"over ?quota",
    r"out of (?:storage|space)",
)
SYSTEM_TROUBLE = _rx(
    r"system problem",
    r"maintenance",
    r"temporar(?:il)?y (?:unavailable|not available|failure|error)",
    r"shutting down",
)
OUTAGE = _rx(
    r"system problem",
    r"maintenance",
    r"temporar(?:il)?y (?:unavailable|not available|failure|error)",
    r"temporary authentication failure",
    r"service (?:is )?(?:temporarily )?unavailable",
    r"server (?:error|failure|bug)",
    r"internal (?:server )?error",
    r"backend (?:is )?down",
    r"shutting down",
    r"try again later",
    r"\bunavailable\b",
)
CREDENTIALS = _rx(
    r"invalid credentials",
    r"authentication (?:failed|unsuccessful|failure)",
    r"\blog ?in failed",
    r"authenticate failed",
    r"incorrect (?:user ?name|password|login)",
    r"(?:user ?name|password)s? (?:and password )?(?:not accepted|incorrect|invalid|wrong)",
    r"invalid (?:user ?name|password|login)",
    r"bad (?:credentials|password)",
    r"wrong (?:password|user ?name)",
    r"NotAuthenticated",
)
TEMP_AUTH = _rx(r"temporary (?:authentication|auth) (?:failure|error|problem)")
CREDENTIAL_MERGED = _rx(r"invalid credentials or|credentials? or \w+ (?:is )?disabled")
TOKEN_EXPIRED = _rx(
    r"AccessTokenExpired",
    r"access ?token (?:has )?expired",
    r"token (?:has )?expired",
    r"error=\"?invalid_token",
    r"Expected OAuth 2 access token",
    r"\bUNAUTHENTICATED\b",
)
INTEGRATION = _rx(
    r"accessNotConfigured",
    r"SERVICE_DISABLED",
    r"API has not been used",
    r"insufficient(?:Permissions| authentication scopes|_scope)",
    r"ACCESS_TOKEN_SCOPE_INSUFFICIENT",
    r"invalid_client",
    r"client secret",
)


def strong(text: str) -> Meaning | None:
    """Words that settle the cause whatever code came with them."""
    if APP_PASSWORD.search(text):
        return Meaning(Cause.ACCESS_REVOKED, "app_password_required", True)
    if WEB_LOGIN.search(text):
        return Meaning(Cause.ACCESS_REVOKED, "web_login_required", True)
    if BASIC_AUTH_OFF.search(text):
        return Meaning(Cause.ACCESS_REVOKED, "basic_auth_disabled", True)
    if PROTOCOL_OFF.search(text):
        # "Invalid credentials or IMAP is disabled": the server merged two causes.
        merged = CREDENTIAL_MERGED.search(text) is not None
        return Meaning(Cause.ACCESS_REVOKED, "protocol_disabled", not merged)
    if SUSPENDED.search(text):
        return Meaning(Cause.ACCOUNT_SUSPENDED, None, True)
    if RATE.search(text):
        return Meaning(Cause.RATE_LIMITED)
    return None


def weak(text: str) -> Meaning | None:
    """Words that suggest a cause when no code said more."""
    if QUOTA.search(text):
        return Meaning(Cause.OVER_QUOTA)
    if TOKEN_EXPIRED.search(text):
        return Meaning(Cause.AUTH_FAILED, "access_token_expired")
    if TEMP_AUTH.search(text):
        return Meaning(Cause.SERVER_UNAVAILABLE)
    if CREDENTIALS.search(text):
        return Meaning(Cause.AUTH_FAILED)
    if OUTAGE.search(text):
        return Meaning(Cause.SERVER_UNAVAILABLE)
    return None


_BACKOFF = re.compile(
    r"back-?off(?:\s*time)?\W{0,4}(\d+(?:\.\d+)?)\s*(ms|milliseconds?|s|sec(?:ond)?s?|"
    r"min(?:ute)?s?)?",
    _I,
)
_BACKOFF_MS = re.compile(r"BackOffMilliseconds\W{0,4}(\d+)", _I)
_TRY_IN = re.compile(
    r"(?:try again|retry) (?:in|after) (\d+(?:\.\d+)?)\s*(ms|milliseconds?|s|sec(?:ond)?s?|"
    r"min(?:ute)?s?|h(?:ou)?rs?)\b",
    _I,
)
_UNIT = {"ms": 0.001, "mi": 0.001, "s": 1.0, "se": 1.0, "m": 60.0, "h": 3600.0}


def _seconds(value: str, unit: str | None, default: float) -> float:
    if not unit:
        return float(value) * default
    u = unit.lower()
    if u.startswith("mil") or u == "ms":
        return float(value) / 1000.0
    if u.startswith("min"):
        return float(value) * 60.0
    if u.startswith("h"):
        return float(value) * 3600.0
    return float(value)


def backoff_seconds(text: str) -> float | None:
    """A pause the server asked for in words ("Suggested Backoff Time: 299609 milliseconds")."""
    m = _BACKOFF_MS.search(text)
    if m:
        return float(m.group(1)) / 1000.0
    m = _BACKOFF.search(text)
    if m:
        # Exchange gives bare numbers in milliseconds.
        return _seconds(m.group(1), m.group(2), 0.001)
    m = _TRY_IN.search(text)
    if m:
        return _seconds(m.group(1), m.group(2), 1.0)
    return None


def sasl_error_status(lines: Iterable[str]) -> str | None:
    """The `status` of an XOAUTH2 error challenge (base64 JSON after `+ ` or `334 `, or the
    decoded JSON itself), if any line holds one."""
    for line in lines:
        for chunk in re.findall(r"[A-Za-z0-9+/=]{16,}|\{[^{}]*\}", line):
            raw = chunk
            if not chunk.startswith("{"):
                try:
                    raw = base64.b64decode(chunk, validate=True).decode("utf-8", "replace")
                except (binascii.Error, ValueError):
                    continue
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            if isinstance(obj, dict) and "status" in obj and "schemes" in obj:
                return str(obj["status"])
    return None
