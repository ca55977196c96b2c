"""Templates: where they are, how they are rendered, and how a bad one is caught at start.

The editable templates live in config/templates/ of the repository; the package ships the
same files as agent/notify/templates (a symlink to ../../config/templates, so a built wheel
gets a copy and the repository keeps one). An operator overrides them with
`notify.templates_dir` or a templates/ folder next to the config file; a file missing
there falls back to the shipped one.

Each message kind NAME has NAME.subject, NAME.txt and NAME.html (Jinja2; .html is
autoescaped, .txt and .subject are not, so an address with "&" stays readable).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2

from agent import wording
from agent.config.types import (
    Account,
    Config,
    NotifySettings,
    Owner,
    OwnerSettings,
    PortalSettings,
)
from agent.model import Cause, Service
from agent.notify.planner import Broken, Intent, Kind
from agent.notify.transport import url_secrets

BUNDLED = Path(__file__).resolve().parent / "templates"
NAMES = ("first", "reminder", "transient", "recovery", "sre/burst", "sre/integration_error")


def template_name(kind: Kind) -> str:
    return {Kind.BURST: "sre/burst", Kind.SRE: "sre/integration_error"}.get(kind, kind.value)


def resolve_templates_dir(settings: NotifySettings, config_path: Path | None) -> Path | None:
    """notify.templates_dir; else templates/ next to the config file; else None (bundled)."""
    if settings.templates_dir is not None:
        return settings.templates_dir
    if config_path is not None and (config_path.parent / "templates").is_dir():
        return config_path.parent / "templates"
    return None


def environment(templates_dir: Path | None) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = []
    if templates_dir is not None:
        loaders.append(jinja2.FileSystemLoader(str(templates_dir)))
    loaders.append(jinja2.FileSystemLoader(str(BUNDLED)))
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str
    text: str


def fill(template: str, *, account_id: str, owner_id: str) -> str:
    return template.format(account_id=quote(account_id, safe=""), owner_id=quote(owner_id, safe=""))


def _account(
    b: Broken, account: Account | None, portal: PortalSettings, new: bool
) -> dict[str, Any]:
    owner_id = account.owner.id if account else ""
    return {
        "id": b.account_id,
        "address": account.address if account else "",
        "provider": account.provider if account else "",
        "action_needed": b.action_needed,
        "new": new,
        "services": [
            {
                "service": s.value,
                "name": wording.SERVICE_NAMES[s],
                "cause": c.value,
                "cause_text": wording.cause_text(c, hint),
            }
            for s, c, hint in b.services
        ],
        "impacts": wording.impacts(s for s, _, _ in b.services),
        "reconnect_url": fill(portal.reconnect_url, account_id=b.account_id, owner_id=owner_id),
    }


def context(
    intent: Intent,
    accounts: Mapping[str, Account],
    portal: PortalSettings,
    owner: Owner | None,
    settings: NotifySettings,
) -> dict[str, Any]:
    if owner is None and intent.accounts and intent.accounts[0].account_id in accounts:
        owner = accounts[intent.accounts[0].account_id].owner
    owner_id = owner.id if owner else intent.owner_id
    name = (intent.group or "").split(":", 1)[-1]
    return {
        "kind": intent.kind.value,
        "step": intent.step,
        "owner": {"id": owner_id, "name": owner.name if owner else None},
        "accounts": [
            _account(b, accounts.get(b.account_id), portal, b.account_id in intent.new_accounts)
            for b in intent.accounts
        ],
        "unsubscribe_url": fill(portal.unsubscribe_url, account_id="", owner_id=owner_id),
        "action_text": wording.ACTION_TEXT,
        "wait_text": wording.WAIT_TEXT,
        "group": intent.group or "",
        "name": name,
        "broken": intent.broken,
        "total": intent.total,
        "window": int(settings.burst.window),
    }


def render(env: jinja2.Environment, kind: Kind, ctx: Mapping[str, Any]) -> Rendered:
    name = template_name(kind)
    subject = env.get_template(f"{name}.subject").render(ctx)
    return Rendered(
        subject=" ".join(subject.split()),  # one line: no header injection through a template
        html=env.get_template(f"{name}.html").render(ctx),
        text=env.get_template(f"{name}.txt").render(ctx),
    )


def _sample(kind: Kind) -> Intent:
    b = Broken("acct-1", ((Service.IMAP, Cause.AUTH_FAILED, None),), True, 0.0)
    return Intent("o/1/x", kind, "owner-1", "first", (b,), ("acct-1",), "provider:p", 2, 3)


def validate(
    settings: NotifySettings,
    templates_dir: Path | None,
    *,
    portal: PortalSettings | None = None,
    owners: Mapping[str, OwnerSettings] | None = None,
) -> list[str]:
    """Problems that must stop the agent at start, each naming the field or file."""
    from agent.notify.transport import _apprise

    apprise = _apprise()
    errors: list[str] = []

    def check_url(field: str, url: str) -> None:
        obj = apprise.Apprise()
        if not obj.add(url):
            shown = url
            for s in url_secrets(url):
                shown = shown.replace(s, "<redacted>")
            errors.append(f"{field}: not a valid Apprise URL: {shown}")

    if settings.email is not None:
        scheme = settings.email.split("://", 1)[0].lower()
        if scheme not in ("mailto", "mailtos"):
            errors.append("notify.email: must be a mailto:// or mailtos:// URL")
        elif "from=" not in settings.email.split("?", 1)[-1]:
            errors.append("notify.email: the relay URL needs from=ADDRESS")
        else:
            check_url("notify.email", settings.email)
    for i, url in enumerate(settings.sre):
        check_url(f"notify.sre[{i}]", url)
    for owner_id, o in (owners or {}).items():
        for i, url in enumerate(o.notify_urls):
            check_url(f"owners.{owner_id}.notify_urls[{i}]", url)
    if templates_dir is not None and not templates_dir.is_dir():
        errors.append(f"notify.templates_dir: not a directory: {templates_dir}")
        return errors
    portal = portal or PortalSettings()
    for field, tpl in (
        ("portal.reconnect_url", portal.reconnect_url),
        ("portal.unsubscribe_url", portal.unsubscribe_url),
    ):
        try:
            fill(tpl, account_id="a", owner_id="o")
        except (KeyError, IndexError, ValueError) as e:
            errors.append(f"{field}: bad placeholder {e}; use {{account_id}} and {{owner_id}}")
    if any(e.startswith("portal.") for e in errors):
        return errors
    env = environment(templates_dir)
    for kind in Kind:
        ctx = context(_sample(kind), {}, portal, Owner("owner-1", "o@example.com"), settings)
        for ext in ("subject", "txt", "html"):
            name = f"{template_name(kind)}.{ext}"
            try:
                env.get_template(name).render(ctx)
            except jinja2.TemplateNotFound:
                errors.append(f"template {name}: missing")
            except jinja2.TemplateSyntaxError as e:
                errors.append(f"template {e.filename or name}:{e.lineno}: {e.message}")
            except (jinja2.TemplateError, TypeError, ValueError) as e:
                errors.append(f"template {name}: {e}")
    return errors


def text_only(kind: Kind) -> bool:
    return kind in (Kind.BURST, Kind.SRE)


__all__: Sequence[str] = (
    "BUNDLED",
    "Rendered",
    "context",
    "environment",
    "render",
    "resolve_templates_dir",
    "validate",
)


def config_problems(config: Config) -> list[str]:
    """What is wrong with a loaded config's notify settings and templates (empty: nothing).
    `check-config`, `run` and a reload all refuse a config with problems."""
    return validate(
        config.notify,
        resolve_templates_dir(config.notify, config.path),
        portal=config.portal,
        owners=config.owners,
    )
