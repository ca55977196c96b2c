"""One account (and the owners table) from a Node: YAML files and the HTTP inventory share it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from agent.config import nodes as n
from agent.config.apprise_check import apprise_url
from agent.config.nodes import Ctx, Node, Section
from agent.config.types import (
    Account,
    AuthKind,
    CalDavServer,
    MailServer,
    OAuth2,
    Owner,
    OwnerSettings,
    Security,
    TlsSettings,
)
from agent.model import Service
from agent.secret import Secret

ACCOUNT_KEYS = (
    "id",
    "owner",
    "provider",
    "address",
    "interval",
    "imap",
    "smtp",
    "caldav",
    "oauth2",
    "version",
)
MAIL_KEYS = (
    "host",
    "port",
    "security",
    "username",
    "password",
    "auth",
    "tls_verify",
    "tls_ca_file",
    "timeout",
    "scopes",
)
CALDAV_KEYS = (
    "url",
    "username",
    "password",
    "auth",
    "tls_verify",
    "tls_ca_file",
    "timeout",
    "calendar_url",
    "scopes",
)
OAUTH2_KEYS = ("token_url", "client_id", "client_secret", "refresh_token", "scopes")
OWNER_KEYS = ("email", "name", "notify_urls", "locale", "mute")

DEFAULT_PORTS: dict[Service, dict[Security, int]] = {
    Service.IMAP: {Security.TLS: 993, Security.STARTTLS: 143, Security.PLAIN: 143},
    Service.SMTP: {Security.TLS: 465, Security.STARTTLS: 587, Security.PLAIN: 25},
}
DEFAULT_TIMEOUT = 20.0


def owners_table(ctx: Ctx, node: Node | None, path: str) -> dict[str, OwnerSettings]:
    """`owners: {ID: {email, name, notify_urls, locale, mute}}`."""
    if node is None or node.value is None:
        return {}
    if not isinstance(node.value, dict):
        raise ctx.error(node, path, f"expected a mapping, got {n.describe(node.value)}")
    out: dict[str, OwnerSettings] = {}
    for key, value in node.value.items():
        oid = n.ident(ctx, Node(key, node.keys.get(key)), n.join(path, key))
        s = Section(ctx, value, n.join(path, key), OWNER_KEYS)
        out[oid] = OwnerSettings(
            notify_urls=s.opt("notify_urls", n.list_of(apprise_url), ()),
            locale=s.opt("locale", _locale, "en"),
            mute=s.opt("mute", n.boolean, False),
            email=s.opt("email", n.email, None),
            name=s.opt("name", n.string, None),
        )
    return out


def _locale(ctx: Ctx, node: Node, path: str) -> str:
    v = node.value
    if not isinstance(v, str) or not re.fullmatch(r"[a-z]{2,3}([-_][A-Za-z0-9]{2,8})*", v):
        raise ctx.error(node, path, f"expected a locale such as en or pt-BR, got {n.describe(v)}")
    return v


def account(ctx: Ctx, node: Node, where: str, owners: Mapping[str, OwnerSettings]) -> Account:
    """An account; `where` names it (e.g. `accounts[3]`) until its id is known."""
    if not isinstance(node.value, dict):
        raise ctx.error(
            node, where or "account", f"expected a mapping, got {n.describe(node.value)}"
        )
    id_node = node.value.get("id")
    if id_node is None or id_node.value is None:
        raise ctx.error(node, n.join(where, "id"), "required field missing")
    account_id = n.ident(ctx, id_node, n.join(where, "id"))
    ctx = ctx.for_account(account_id)
    s = Section(ctx, node, "", ACCOUNT_KEYS)

    oauth2 = s.opt("oauth2", _oauth2, None)
    explicit_address = s.opt("address", n.email, None)
    imap = s.opt("imap", _mail(Service.IMAP, oauth2 is not None, explicit_address), None)
    smtp = s.opt("smtp", _mail(Service.SMTP, oauth2 is not None, explicit_address), None)
    caldav = s.opt("caldav", _caldav(oauth2 is not None, explicit_address), None)
    if imap is None and smtp is None and caldav is None:
        raise ctx.error(node, "", "needs at least one of imap, smtp, caldav")
    if oauth2 is not None and not any(
        srv.auth is AuthKind.XOAUTH2 for srv in (imap, smtp, caldav) if srv is not None
    ):
        raise s.missing("oauth2", "given, but no service has auth: xoauth2")

    address = explicit_address
    if address is None:
        users = [srv.username for srv in (imap, smtp, caldav) if srv is not None]
        address = next((u for u in users if n._EMAIL.fullmatch(u)), "")
    version = s.opt("version", _version, "")
    return Account(
        id=account_id,
        owner=_owner(s, owners),
        provider=s.opt("provider", _provider, "generic"),
        address=address,
        imap=imap,
        smtp=smtp,
        caldav=caldav,
        oauth2=oauth2,
        interval=s.opt("interval", n.duration(), None),
        version=version,
    )


def _version(ctx: Ctx, node: Node, path: str) -> str:
    v = node.value
    if isinstance(v, bool) or not isinstance(v, str | int):
        raise ctx.error(node, path, f"expected a string, got {n.describe(v)}")
    return str(v)


def _provider(ctx: Ctx, node: Node, path: str) -> str:
    v = node.value
    if not isinstance(v, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,63}", v):
        raise ctx.error(
            node, path, f"expected a lower-case name such as gmail or generic, got {n.describe(v)}"
        )
    return v


def _owner(s: Section, owners: Mapping[str, OwnerSettings]) -> Owner:
    node = s.node("owner")
    if node is None:
        raise s.missing("owner")
    ctx = s.ctx
    if isinstance(node.value, dict):
        o = Section(ctx, node, "owner", ("id", "email", "name"))
        oid = o.req("id", n.ident)
        email, name = o.opt("email", n.email, None), o.opt("name", n.string, None)
        known = owners.get(oid)
        if known is not None:
            for key, mine, theirs in (("email", email, known.email), ("name", name, known.name)):
                if mine is not None and theirs is not None and mine != theirs:
                    raise ctx.error(
                        o.node(key),
                        f"owner.{key}",
                        f"{mine!r} disagrees with owners.{oid}.{key} {theirs!r}",
                    )
            email = email or known.email
            name = name or known.name
        if email is None:
            raise o.missing("email", f"required (or set owners.{oid}.email)")
        return Owner(id=oid, email=email, name=name)
    oid = n.ident(ctx, node, "owner")
    known = owners.get(oid)
    if known is None or known.email is None:
        raise ctx.error(
            node,
            "owner",
            f"owner {oid} has no email: write owner: {{id, email}} or set owners.{oid}.email",
        )
    return Owner(id=oid, email=known.email, name=known.name)


def _oauth2(ctx: Ctx, node: Node, path: str) -> OAuth2:
    s = Section(ctx, node, path, OAUTH2_KEYS)
    return OAuth2(
        token_url=s.req("token_url", n.url("https", "http")),
        client_id=s.req("client_id", n.string),
        refresh_token=s.req("refresh_token", n.secret),
        client_secret=s.opt("client_secret", n.secret, None),
        scopes=s.opt("scopes", n.string_list, ()),
    )


def _tls(s: Section) -> TlsSettings:
    return TlsSettings(
        verify=s.opt("tls_verify", n.boolean, True),
        ca_file=s.opt("tls_ca_file", n.readable_file, None),
    )


def _auth(s: Section, has_oauth2: bool) -> tuple[AuthKind, Secret | None]:
    auth = s.opt("auth", n.enum(AuthKind), AuthKind.PASSWORD)
    if auth is AuthKind.XOAUTH2:
        if not has_oauth2:
            raise s.ctx.error(
                s.node("auth"),
                s.field("auth"),
                "auth xoauth2 needs an oauth2 block (token_url, client_id, refresh_token) "
                "in this account",
            )
        if s.has("password"):
            raise s.missing(
                "password", "not allowed with auth: xoauth2 (the token comes from oauth2)"
            )
        return auth, None
    if not s.has("password"):
        hint = " (or set auth: xoauth2 to use the oauth2 block)" if has_oauth2 else ""
        raise s.missing("password", f"required with auth: password{hint}")
    return auth, s.req("password", n.secret)


def _username(s: Section, fallback: str | None) -> str:
    if fallback is None:
        return s.req("username", n.string)
    return s.opt("username", n.string, fallback)


def _login(s: Section, has_oauth2: bool, address: str | None) -> dict[str, Any]:
    """What every service's settings share: who logs in, how, over what TLS, how long."""
    username = _username(s, address)
    auth, password = _auth(s, has_oauth2)
    no_scopes: tuple[str, ...] = ()
    return {
        "username": username,
        "auth": auth,
        "password": password,
        "tls": _tls(s),
        "timeout": s.opt("timeout", n.duration(), DEFAULT_TIMEOUT),
        "scopes": s.opt("scopes", n.string_list, no_scopes),
    }


def _mail(service: Service, has_oauth2: bool, address: str | None) -> n.Reader[MailServer]:
    def read(ctx: Ctx, node: Node, path: str) -> MailServer:
        s = Section(ctx, node, path, MAIL_KEYS)
        hostname = s.req("host", n.host)
        security = s.opt("security", n.enum(Security), Security.TLS)
        port = s.opt("port", n.integer(1, 65535), DEFAULT_PORTS[service][security])
        return MailServer(
            host=hostname, port=port, security=security, **_login(s, has_oauth2, address)
        )

    return read


def _caldav(has_oauth2: bool, address: str | None) -> n.Reader[CalDavServer]:
    def read(ctx: Ctx, node: Node, path: str) -> CalDavServer:
        s = Section(ctx, node, path, CALDAV_KEYS)
        url = s.req("url", n.url("https", "http"))
        login = _login(s, has_oauth2, address)
        return CalDavServer(
            url=url,
            calendar_url=s.opt("calendar_url", n.url("https", "http"), None),
            **login,
        )

    return read
