"""classify(): a table of Evidence -> (cause, hint, definitive), the corpus shapes and beyond."""
# ruff: noqa: E501  (a table reads best one case per line)

from __future__ import annotations

import pytest

from agent.classify import classify
from agent.model import Cause, Evidence

C = Cause


def imap(status: str, text: str, stage: str = "login", untagged: tuple[str, ...] = ()) -> Evidence:
    return Evidence(protocol="imap", stage=stage, status=status, text=text, untagged=untagged)


def smtp(code: int, text: str, stage: str = "auth") -> Evidence:
    return Evidence(protocol="smtp", stage=stage, code=code, text=text)


def http(
    code: int, body: str = "", headers: dict[str, str] | None = None, stage: str = "request"
) -> Evidence:
    return Evidence(protocol="caldav", stage=stage, code=code, text=body, headers=headers or {})


def token(code: int, body: str) -> Evidence:
    return Evidence(protocol="oauth", stage="token", code=code, text=body)


def net(kind: str, stage: str = "connect", exception: str | None = None) -> Evidence:
    return Evidence(protocol="imap", stage=stage, network=kind, exception=exception)


AF, AR, SUS = C.AUTH_FAILED, C.ACCESS_REVOKED, C.ACCOUNT_SUSPENDED
TABLE: list[tuple[str, Evidence, Cause, str | None, bool]] = [
    # --- IMAP: RFC 5530 codes
    ("dovecot-wrong-pw", imap("NO", "[AUTHENTICATIONFAILED] Authentication failed."), AF, None, False),
    ("gmail-invalid", imap("NO", "[AUTHENTICATIONFAILED] Invalid credentials (Failure)"), AF, None, False),
    ("contactadmin", imap("NO", "[CONTACTADMIN] Account locked by the postmaster"), SUS, None, True),
    ("contactadmin-plain", imap("NO", "[CONTACTADMIN] nologin"), SUS, None, True),
    ("expired", imap("NO", "[EXPIRED] Password expired"), SUS, None, True),
    ("unavailable-temp-auth", imap("NO", "[UNAVAILABLE] Temporary authentication failure. [h:1]"), C.SERVER_UNAVAILABLE, None, False),
    ("dovecot-limit", imap("NO", "[LIMIT] Maximum number of connections from user+IP exceeded"), C.RATE_LIMITED, None, False),
    ("unavailable-but-limit", imap("NO", "[UNAVAILABLE] Maximum number of connections from user+IP exceeded (mail_max_userip_connections=10)"), C.RATE_LIMITED, None, False),
    ("overquota", imap("NO", "[OVERQUOTA] Quota exceeded", stage="select"), C.OVER_QUOTA, None, True),
    ("overquota-bandwidth", imap("NO", "[OVERQUOTA] Account exceeded command or bandwidth limits.", stage="select"), C.RATE_LIMITED, None, False),
    ("privacy", imap("NO", "[PRIVACYREQUIRED] Connection is not private"), C.CONFIG_ERROR, None, True),
    ("noperm-select", imap("NO", "[NOPERM] Access denied", stage="select"), C.PERMISSION_DENIED, None, True),
    ("nonexistent-select", imap("NO", "[NONEXISTENT] Unknown Mailbox: INBOX", stage="select"), C.CONFIG_ERROR, None, False),
    ("no-select-plain", imap("NO", "Mailbox is not selectable", stage="select"), C.PERMISSION_DENIED, None, False),
    ("serverbug", imap("NO", "[SERVERBUG] Internal error occurred", stage="select"), C.SERVER_UNAVAILABLE, None, False),
    ("throttled-ok", imap("OK", "Success [THROTTLED]", stage="select"), C.RATE_LIMITED, None, False),
    ("ms-throttled", imap("NO", "Request is throttled. Suggested Backoff Time: 1000 milliseconds", stage="select"), C.RATE_LIMITED, None, False),
    # --- IMAP: words that settle it
    ("app-pw", imap("NO", "[ALERT] Application-specific password required: https://x (Failure)"), AR, "app_password_required", True),
    ("app-pw-other", imap("NO", "Please use an app password to sign in"), AR, "app_password_required", True),
    ("webalert-untagged", imap("NO", "[ALERT] Please log in via your web browser (Failure)", untagged=("* NO [WEBALERT https://x] Web login required.",)), AR, "web_login_required", True),
    ("webalert-only", imap("NO", "[AUTHENTICATIONFAILED] Invalid credentials", untagged=("* NO [WEBALERT https://x] Web login required.",)), AR, "web_login_required", True),
    ("imap-off", imap("NO", "[ALERT] Your account is not enabled for IMAP use."), AR, "protocol_disabled", True),
    ("imap-off-domain", imap("NO", "[ALERT] IMAP access is disabled for your domain."), AR, "protocol_disabled", True),
    ("imap-off-merged", imap("NO", "[AUTHENTICATIONFAILED] LOGIN Invalid credentials or IMAP is disabled sc=1"), AR, "protocol_disabled", False),
    ("imap-off-other", imap("NO", "IMAP has been disabled by your administrator"), AR, "protocol_disabled", True),
    ("suspended-words", imap("NO", "Your account has been suspended. Contact support."), SUS, None, True),
    ("restricted", imap("NO", "Access to your account has been temporarily restricted"), SUS, None, True),
    ("too-many", imap("NO", "[ALERT] Too many simultaneous connections. (Failure)"), C.RATE_LIMITED, None, False),
    ("ms-blocked-browser", imap("NO", "[ALERT] Account is blocked. Login to your account via a web browser to verify your identity."), AR, "web_login_required", True),
    ("zoho-enable-imap", imap("NO", "[ALERT] You are yet to enable IMAP for your account."), AR, "protocol_disabled", True),
    ("bye-too-many-bad", imap("BYE", "Too many invalid IMAP commands.", stage="noop"), C.RATE_LIMITED, None, False),
    ("login-failed", imap("NO", "LOGIN failed."), AF, None, False),
    ("ms-authenticate-failed", imap("NO", "AUTHENTICATE failed."), AR, None, False),
    ("fastmail", imap("NO", "Incorrect username or password."), AF, None, False),
    ("bare-no-login", imap("NO", "go away"), AF, None, False),
    ("other-lang-code", imap("NO", "[AUTHENTICATIONFAILED] Anmeldung fehlgeschlagen"), AF, None, False),
    ("storage-words", imap("NO", "APPEND The 1500 MB storage limit has been exceeded.", stage="select"), C.OVER_QUOTA, None, False),
    # --- IMAP: BYE
    ("bye-greeting", imap("BYE", "Disconnected: Auth process broken", stage="greeting"), C.SERVER_UNAVAILABLE, None, False),
    ("bye-greeting-busy", imap("BYE", "Too many connections, try later", stage="greeting"), C.RATE_LIMITED, None, False),
    ("bye-after-no", imap("NO", "LOGIN failed.", untagged=("* BYE Microsoft Exchange Server IMAP4 server signing off.",)), AF, None, False),
    ("bye-noop", imap("BYE", "Shutting down", stage="noop"), C.SERVER_UNAVAILABLE, None, False),
    ("bye-token", imap("BYE", "Session invalidated - AccessTokenExpired", stage="noop"), AF, "access_token_expired", False),
    ("logindisabled", imap("BAD", "Command received in Invalid state.", untagged=("* CAPABILITY IMAP4rev1 LOGINDISABLED STARTTLS",)), C.CONFIG_ERROR, None, True),
    ("bad-sasl", imap("BAD", "Invalid SASL argument"), C.INTEGRATION_ERROR, None, False),
    ("xoauth2-400", imap("NO", "[AUTHENTICATIONFAILED] Invalid credentials (Failure)", untagged=("+ eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ==",)), C.INTEGRATION_ERROR, None, False),
    ("xoauth2-401-json", imap("NO", "[AUTHENTICATIONFAILED] Invalid credentials (Failure)", untagged=('{"status":"401","schemes":"Bearer","scope":"https://mail.google.com/"}',)), AF, "access_token_expired", False),
    # --- SMTP
    ("gmail-535", smtp(535, "5.7.8 Username and Password not accepted. Learn more at https://x"), AF, None, False),
    ("dovecot-535", smtp(535, "5.7.8 Authentication failed."), AF, None, False),
    ("ms-535-573", smtp(535, "5.7.3 Authentication unsuccessful"), AF, None, False),
    ("gmail-534-579", smtp(534, "5.7.9 Application-specific password required."), AR, "app_password_required", True),
    ("gmail-534-5714", smtp(534, "5.7.14 <https://accounts.google.com/signin/continue?x> Please log in via your web browser"), AR, "web_login_required", True),
    ("gmail-5714-code-only", smtp(534, "5.7.14 Sign-in needed"), AR, "web_login_required", True),
    ("ms-basic-off", smtp(535, "5.7.139 Authentication unsuccessful, basic authentication is disabled."), AR, "basic_auth_disabled", True),
    ("ms-smtp-auth-off", smtp(535, "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant."), AR, "protocol_disabled", True),
    ("ms-account-locked", smtp(535, "5.7.139 Authentication unsuccessful, the user account is locked."), SUS, None, True),
    ("gmail-454-too-many", smtp(454, "4.7.0 Too many login attempts, please try again later."), C.RATE_LIMITED, None, False),
    ("454-temp-auth", smtp(454, "4.7.0 Temporary authentication failure"), C.SERVER_UNAVAILABLE, None, False),
    ("421-shutdown", smtp(421, "4.3.2 Service shutting down", stage="greeting"), C.SERVER_UNAVAILABLE, None, False),
    ("421-rate", smtp(421, "4.7.0 Try again later, closing connection."), C.RATE_LIMITED, None, False),
    ("451-local", smtp(451, "4.3.0 Local error in processing", stage="mail_from"), C.SERVER_UNAVAILABLE, None, False),
    ("452-full", smtp(452, "4.2.2 Mailbox full", stage="mail_from"), C.OVER_QUOTA, None, False),
    ("530-starttls", smtp(530, "5.7.0 Must issue a STARTTLS command first"), C.CONFIG_ERROR, None, True),
    ("501-sasl", smtp(501, "5.5.2 Cannot Decode response"), C.INTEGRATION_ERROR, None, False),
    ("501-user", smtp(501, "5.5.124 Invalid XOAUTH2 auth data - User address provided is not valid."), C.CONFIG_ERROR, None, False),
    ("504-mech", smtp(504, "5.7.4 Unrecognized authentication type"), C.CONFIG_ERROR, None, False),
    ("550-sendas", smtp(550, "5.7.60 SMTP; Client does not have permissions to send as this sender", stage="mail_from"), C.PERMISSION_DENIED, None, False),
    ("554-suspended", smtp(554, "5.7.1 Your account has been suspended", stage="mail_from"), SUS, None, True),
    ("554-greeting", smtp(554, "No SMTP service here", stage="greeting"), C.SERVER_UNAVAILABLE, None, False),
    ("421-system-problem", smtp(421, "4.7.0 Temporary System Problem.  Try again later (10)."), C.SERVER_UNAVAILABLE, None, False),
    ("550-sending-limit", smtp(550, "5.4.5 Daily user sending limit exceeded.", stage="mail_from"), C.RATE_LIMITED, None, False),
    ("ms-security-defaults", smtp(535, "5.7.139 Authentication unsuccessful, user is locked by your organization's security defaults policy."), AR, "basic_auth_disabled", True),
    ("postfix-535", smtp(535, "5.7.8 Error: authentication failed: (reason unavailable)"), AF, None, False),
    # --- CalDAV / HTTP
    ("401-basic", http(401, headers={"www-authenticate": 'Basic realm="x"'}), AF, None, False),
    ("401-sabre", http(401, "<d:error><s:exception>Sabre\\DAV\\Exception\\NotAuthenticated</s:exception><s:message>Incorrect username</s:message></d:error>"), AF, None, False),
    ("401-bearer-expired", http(401, "Invalid Credentials", {"www-authenticate": 'Bearer realm="x", error=invalid_token'}), AF, "access_token_expired", False),
    ("401-scope", http(401, "", {"www-authenticate": 'Bearer error="insufficient_scope"'}), C.INTEGRATION_ERROR, None, False),
    ("403-bare", http(403), C.PERMISSION_DENIED, None, False),
    ("403-need-privileges", http(403, '<d:error xmlns:d="DAV:"><d:need-privileges/></d:error>'), C.PERMISSION_DENIED, None, False),
    ("403-api-off", http(403, '{"error":{"code":403,"message":"API disabled","errors":[{"reason":"accessNotConfigured"}]}}'), C.INTEGRATION_ERROR, None, False),
    ("403-google-rate", http(403, '{"error":{"code":403,"errors":[{"reason":"userRateLimitExceeded"}]}}'), C.RATE_LIMITED, None, False),
    ("404", http(404, "Not Found"), C.CONFIG_ERROR, None, False),
    ("404-graph-mailbox", http(404, '{"error":{"code":"MailboxNotEnabledForRESTAPI","message":"inactive"}}'), SUS, None, True),
    ("400-service-off", http(400, '{"error":{"code":400,"message":"Mail service not enabled","status":"FAILED_PRECONDITION"}}'), SUS, None, True),
    ("400-bare", http(400), C.INTEGRATION_ERROR, None, False),
    ("405", http(405), C.CONFIG_ERROR, None, False),
    ("301", http(301), C.CONFIG_ERROR, None, False),
    ("429", http(429, headers={"retry-after": "30"}), C.RATE_LIMITED, None, False),
    ("500-ews-busy", http(500, "<faultcode>a:ErrorServerBusy</faultcode>"), C.RATE_LIMITED, None, False),
    ("503-maint", http(503, "<s:message>System in maintenance mode.</s:message>"), C.SERVER_UNAVAILABLE, None, False),
    ("502", http(502, "Bad Gateway"), C.SERVER_UNAVAILABLE, None, False),
    ("507", http(507), C.OVER_QUOTA, None, True),
    ("read-only", http(207, "read-only", stage="privileges"), C.PERMISSION_DENIED, None, False),
    # --- OAuth token endpoint
    ("grant-revoked", token(400, '{"error":"invalid_grant","error_description":"Token has been expired or revoked."}'), AR, "oauth_grant_invalid", True),
    ("grant-bare", token(400, '{"error":"invalid_grant","error_description":"Bad Request"}'), AR, "oauth_grant_invalid", False),
    ("grant-aad-disabled", token(400, '{"error":"invalid_grant","error_description":"AADSTS50057: The user account is disabled."}'), SUS, None, True),
    ("grant-mfa", token(400, '{"error":"invalid_grant","error_description":"AADSTS50076: Due to a configuration change ... you must use multi-factor authentication"}'), AR, "web_login_required", True),
    ("invalid-client", token(401, '{"error":"invalid_client","error_description":"AADSTS7000222: secret expired"}'), C.INTEGRATION_ERROR, None, True),
    ("unauthorized-client", token(400, '{"error":"unauthorized_client"}'), C.INTEGRATION_ERROR, None, True),
    ("invalid-scope", token(400, '{"error":"invalid_scope"}'), C.INTEGRATION_ERROR, None, True),
    ("grant-deleted", token(400, '{"error":"invalid_grant","error_description":"Account has been deleted"}'), SUS, None, True),
    ("token-500", token(500, "oops"), C.SERVER_UNAVAILABLE, None, False),
    ("token-temp", token(503, '{"error":"temporarily_unavailable"}'), C.SERVER_UNAVAILABLE, None, False),
    ("token-429", token(429, ""), C.RATE_LIMITED, None, False),
    # --- network
    ("refused", net("refused"), C.SERVER_UNAVAILABLE, None, False),
    ("reset", net("reset", "greeting"), C.SERVER_UNAVAILABLE, None, False),
    ("eof", net("eof", "greeting"), C.SERVER_UNAVAILABLE, None, False),
    ("unreachable", net("unreachable"), C.NETWORK_ERROR, None, False),
    ("dns-temp", net("dns_temporary"), C.NETWORK_ERROR, None, False),
    ("nxdomain", net("dns_nxdomain"), C.CONFIG_ERROR, None, False),
    ("timeout-connect", net("timeout"), C.TIMEOUT, None, False),
    ("timeout-login", net("timeout", "login"), C.TIMEOUT, None, False),
    ("tls-cert", net("tls_cert", "tls"), C.TLS_ERROR, None, False),
    ("tls-handshake", net("tls_handshake", "tls", "SSLError: handshake failure"), C.TLS_ERROR, None, False),
    ("tls-wrong-mode", net("tls_handshake", "tls", "SSLError: [SSL: WRONG_VERSION_NUMBER] wrong version number"), C.CONFIG_ERROR, None, False),
    ("too-large", net("too_large", "login"), C.PROTOCOL_ERROR, None, False),
    ("garbage", Evidence(protocol="imap", stage="greeting", exception="ValueError: junk"), C.PROTOCOL_ERROR, None, False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("ev", "cause", "hint", "definitive"), [t[1:] for t in TABLE], ids=[t[0] for t in TABLE]
)
def test_it_classifies(ev: Evidence, cause: Cause, hint: str | None, definitive: bool) -> None:
    f = classify(ev)
    assert (f.cause, f.hint, f.definitive) == (cause, hint, definitive), f.detail


def test_a_timeout_is_never_auth_failed() -> None:
    for stage in ("connect", "greeting", "login", "auth", "select", "request", "token"):
        for proto in ("imap", "smtp", "caldav", "oauth"):
            ev = Evidence(
                protocol=proto, stage=stage, network="timeout", text="Invalid credentials"
            )
            assert classify(ev).cause is C.TIMEOUT


def test_retry_after_seconds_and_http_date() -> None:
    assert classify(http(429, headers={"retry-after": "120"})).retry_after == 120.0
    dated = http(
        503,
        headers={
            "retry-after": "Wed, 21 Oct 2026 07:28:30 GMT",
            "date": "Wed, 21 Oct 2026 07:28:00 GMT",
        },
    )
    assert classify(dated).retry_after == 30.0
    undated = http(503, headers={"retry-after": "Wed, 21 Oct 2026 07:28:30 GMT"})
    now = 1792567680.0  # 2026-10-21 07:28:00 UTC
    assert classify(undated, now=now).retry_after == 30.0
    assert classify(http(503, headers={"retry-after": "soon"})).retry_after is None


def test_retry_after_from_words() -> None:
    ev = imap("NO", "Request is throttled. Suggested Backoff Time: 299609 milliseconds", "select")
    assert classify(ev).retry_after == pytest.approx(299.609)
    ews = http(500, '<t:Value Name="BackOffMilliseconds">5000</t:Value>')
    assert classify(ews).retry_after == 5.0


@pytest.mark.parametrize(
    ("ev", "expected"),
    [
        (imap("NO", "[AUTHENTICATIONFAILED] Authentication failed."), "IMAP login: NO [AUTHENTICATIONFAILED] Authentication failed."),
        (smtp(535, "5.7.8 Authentication failed."), "SMTP auth: 535 5.7.8 Authentication failed."),
        (net("refused"), "IMAP connect: connection refused"),
        (token(400, '{"error":"invalid_grant","error_description":"Bad Request"}'), "OAuth token: HTTP 400 invalid_grant: Bad Request"),
        (http(503, "<s:exception>Sabre\\DAV\\Exception\\ServiceUnavailable</s:exception><s:message>Maintenance</s:message>"), "CalDAV request: HTTP 503 ServiceUnavailable: Maintenance"),
    ],
)  # fmt: skip
def test_detail_says_what_the_server_said(ev: Evidence, expected: str) -> None:
    assert classify(ev).detail == expected


def test_detail_is_short() -> None:
    assert len(classify(http(500, "x" * 100_000)).detail) <= 500


@pytest.mark.parametrize(
    ("ev", "cause"),
    [
        (imap("OK", "INBOX is not writable (read-only): [READ-ONLY] Select completed", "select"), C.PERMISSION_DENIED),
        (imap("OK", "INBOX is not writable (read-only): Success [THROTTLED]", "select"), C.RATE_LIMITED),
        (imap("OK", "[OVERQUOTA] quota full: STORAGE 10 of 10", "quota"), C.OVER_QUOTA),
        (Evidence("imap", "starttls", text="server does not offer STARTTLS"), C.CONFIG_ERROR),
        (Evidence("imap", "login", text="no OAuth token source configured"), C.INTEGRATION_ERROR),
        (imap("", "unexpected greeting: hello", "greeting"), C.PROTOCOL_ERROR),
        (Evidence("caldav", "privileges", text="read-only: no write privilege on the calendar(s)"), C.PERMISSION_DENIED),
        (Evidence("caldav", "privileges", text="not a calendar: calendar_url /x is not a calendar"), C.CONFIG_ERROR),
        (Evidence("caldav", "calendars", text="no calendars: the calendar home /x holds none"), C.CONFIG_ERROR),
        (Evidence("caldav", "home", text="no calendar-home-set: the principal /p has none"), C.CONFIG_ERROR),
        (Evidence("caldav", "discovery", code=207, text="unusable answer: not XML\n<html>"), C.PROTOCOL_ERROR),
        (Evidence("oauth", "token", text="no OAuth token source configured"), C.INTEGRATION_ERROR),
    ],
)  # fmt: skip
def test_it_reads_what_the_probe_judged(ev: Evidence, cause: Cause) -> None:
    assert classify(ev).cause is cause
