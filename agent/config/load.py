"""YAML -> Config, validated as it is parsed: defaults first, unknown keys rejected, types and
cross-field rules checked. Every problem is one ConfigError naming file, line, account and
field; no secret value ever appears in one.

    config = load_config(Path("config/agent.yaml"))

`parse_account` reads one account from plain data (the HTTP inventory's JSON) the same way.
"""

from __future__ import annotations

import os
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.config import nodes as n
from agent.config.accounts import account as _account
from agent.config.accounts import owners_table
from agent.config.apprise_check import apprise_url
from agent.config.durations import format_duration
from agent.config.errors import ConfigError
from agent.config.nodes import Ctx, Node, Section
from agent.config.types import (
    Account,
    ApiSettings,
    BurstSettings,
    Config,
    HttpInventory,
    HttpSettings,
    MetricsSettings,
    NotifySettings,
    OwnerSettings,
    PortalSettings,
    ScheduleSettings,
    StoreSettings,
    TlsSettings,
)
from agent.gcpause import paused_gc

__all__ = ["ConfigError", "load_config", "parse_account"]

TOP_KEYS = (
    "schedule",
    "store",
    "http",
    "api",
    "metrics",
    "portal",
    "notify",
    "inventory",
    "owners",
    "accounts_file",
    "accounts",
)
PORTAL_PLACEHOLDERS = ("account_id", "owner_id")


def load_config(path: Path, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate the config at `path`; raise ConfigError on the first problem."""
    with paused_gc():  # a large accounts file: half the time would go to the cyclic GC
        return _load(path, environ)


def _load(path: Path, environ: Mapping[str, str] | None) -> Config:
    env = os.environ if environ is None else environ
    path = Path(path)
    file = str(path)
    ctx = Ctx(file=file, base_dir=path.parent.absolute(), environ=env)
    top = Section(ctx, _read(path, file), "", TOP_KEYS)

    schedule = _schedule(ctx, top.node("schedule"))
    notify = _notify(ctx, top.node("notify"), schedule)
    owners = owners_table(ctx, top.node("owners"), "owners")

    given = [k for k in ("accounts", "accounts_file", "inventory") if k in top.items]
    if len(given) > 1:
        later = max(given, key=lambda k: top.keys.get(k) or 0)
        raise ctx.error(
            top.keys.get(later),
            later,
            f"{' and '.join(given)} are both given; use only one",
        )
    if not given:
        raise ctx.error(None, "accounts", "no accounts: give accounts, accounts_file or inventory")

    inventory: HttpInventory | None = None
    accounts_file: Path | None = None
    accounts: tuple[Account, ...] = ()
    if "inventory" in top.items:
        inv = Section(ctx, top.items["inventory"], "inventory", ("http",))
        inventory = inv.req("http", _http_inventory)
    elif "accounts_file" in top.items:
        f = top.req("accounts_file", n.path_value)
        shown = Path(file).parent / top.items["accounts_file"].value
        accounts_file = f
        actx = Ctx(file=str(shown), base_dir=f.parent, environ=env, read=ctx.read)
        accounts = _accounts_file(actx, f, owners)
    else:
        accounts = _accounts(ctx, top.items["accounts"], "accounts", owners)

    return Config(
        path=path,
        schedule=schedule,
        store=StoreSettings(
            path=Section(ctx, top.node("store"), "store", ("path",)).opt(
                "path", n.path_value, ctx.base_dir / StoreSettings().path
            )
        ),
        http=HttpSettings(
            listen=Section(ctx, top.node("http"), "http", ("listen",)).opt(
                "listen", n.listen_address, HttpSettings().listen
            )
        ),
        api=_api(ctx, top.node("api")),
        metrics=MetricsSettings(
            per_account=Section(ctx, top.node("metrics"), "metrics", ("per_account",)).opt(
                "per_account", n.choice("all", "failing", "none"), "all"
            )
        ),
        portal=_portal(ctx, top.node("portal")),
        notify=notify,
        inventory_http=inventory,
        accounts_file=accounts_file,
        owners=owners,
        accounts=accounts,
        sources=tuple(
            dict.fromkeys([path, *([accounts_file] if accounts_file else []), *ctx.read])
        ),
    )


def parse_account(
    data: Mapping[str, Any],
    *,
    source: str,
    base_dir: Path,
    owners: Mapping[str, OwnerSettings],
    environ: Mapping[str, str] | None = None,
    secret_refs: bool = True,
) -> Account:
    """One account from plain data (e.g. a JSON record of the HTTP inventory). Errors name
    `source` and the account. Pass `secret_refs=False` for data you do not control, so a
    record cannot make the agent read a local file or environment variable."""
    ctx = Ctx(
        file=source,
        base_dir=base_dir,
        environ=os.environ if environ is None else environ,
        secret_refs=secret_refs,
    )
    return _account(ctx, n.wrap(data), "", owners)


# ---------------------------------------------------------------- files


def _read(path: Path, file: str) -> Node | None:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror or e}", file=file) from None
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", file=file) from None
    return n.compose_yaml(text, file)


def _accounts_file(
    ctx: Ctx, path: Path, owners: Mapping[str, OwnerSettings]
) -> tuple[Account, ...]:
    """A file holding a list of accounts, or a mapping with an `accounts:` list."""
    root = _read(path, ctx.file)
    if root is not None and isinstance(root.value, dict):
        root = Section(ctx, root, "", ("accounts",)).node("accounts")
        if root is None:
            return ()
    if root is None or root.value is None:
        return ()
    return _accounts(ctx, root, "accounts", owners)


def _accounts(
    ctx: Ctx, node: Node, path: str, owners: Mapping[str, OwnerSettings]
) -> tuple[Account, ...]:
    if node.value is None:
        return ()
    if not isinstance(node.value, list):
        raise ctx.error(node, path, f"expected a list of accounts, got {n.describe(node.value)}")
    seen: dict[str, int | None] = {}
    owner_seen: dict[str, tuple[Account, int | None]] = {}
    out: list[Account] = []
    for i, item in enumerate(node.value):
        acc = _account(ctx, item, f"{path}[{i}]", owners)
        if acc.id in seen:
            first = seen[acc.id]
            where = f" (first defined at line {first})" if first is not None else ""
            id_node = item.value["id"]
            raise ctx.for_account(acc.id).error(id_node, "id", f"duplicate account id{where}")
        seen[acc.id] = item.line
        earlier = owner_seen.setdefault(acc.owner.id, (acc, item.line))
        if earlier[0].owner != acc.owner:
            other, line = earlier
            where = f" at line {line}" if line is not None else ""
            raise ctx.for_account(acc.id).error(
                item.value["owner"],
                "owner",
                f"owner {acc.owner.id} differs from account {other.id}{where} "
                f"({acc.owner.email!r} vs {other.owner.email!r}); list it once under owners:",
            )
        out.append(acc)
    return tuple(out)


# ---------------------------------------------------------------- sections


def _schedule(ctx: Ctx, node: Node | None) -> ScheduleSettings:
    d = ScheduleSettings()
    s = Section(ctx, node, "schedule", ScheduleSettings.__dataclass_fields__)
    dur = n.duration()
    out = ScheduleSettings(
        interval=s.opt("interval", dur, d.interval),
        confirm_interval=s.opt("confirm_interval", dur, d.confirm_interval),
        transient_grace=s.opt("transient_grace", n.duration(positive=False), d.transient_grace),
        concurrency=s.opt("concurrency", n.integer(1, 100_000), d.concurrency),
        per_host_concurrency=s.opt(
            "per_host_concurrency", n.integer(1, 100_000), d.per_host_concurrency
        ),
        jitter=s.opt("jitter", n.boolean, d.jitter),
        recover_after=s.opt("recover_after", n.integer(1, 1000), d.recover_after),
        breaker_min=s.opt("breaker_min", dur, d.breaker_min),
        breaker_max=s.opt("breaker_max", dur, d.breaker_max),
        recheck_min_interval=s.opt(
            "recheck_min_interval", n.duration(positive=False), d.recheck_min_interval
        ),
    )
    if out.breaker_max < out.breaker_min:
        raise ctx.error(
            s.node("breaker_max") or s.node("breaker_min") or s.line,
            "schedule.breaker_max",
            f"must be at least schedule.breaker_min ({format_duration(out.breaker_min)}), "
            f"got {format_duration(out.breaker_max)}",
        )
    return out


def _notify(ctx: Ctx, node: Node | None, schedule: ScheduleSettings) -> NotifySettings:
    d = NotifySettings()
    s = Section(ctx, node, "notify", NotifySettings.__dataclass_fields__)
    b = Section(ctx, s.node("burst"), "notify.burst", BurstSettings.__dataclass_fields__)
    out = NotifySettings(
        email=s.opt("email", apprise_url, None),
        sre=s.opt("sre", n.list_of(apprise_url), ()),
        reminders=s.opt("reminders", n.list_of(n.duration()), d.reminders),
        on_recovery=s.opt("on_recovery", n.boolean, d.on_recovery),
        transient_after=s.opt("transient_after", n.duration(positive=False), d.transient_after),
        coalesce=s.opt("coalesce", n.duration(positive=False), d.coalesce),
        burst=BurstSettings(
            count=b.opt("count", n.integer(1), d.burst.count),
            share=b.opt("share", n.number(0.0, 1.0, lo_open=True), d.burst.share),
            window=b.opt("window", n.duration(), d.burst.window),
        ),
        max_attempts=s.opt("max_attempts", n.integer(1, 1000), d.max_attempts),
        max_age=s.opt("max_age", n.duration(), d.max_age),
        templates_dir=s.opt("templates_dir", n.directory, None),
        retry_base=s.opt("retry_base", n.duration(), d.retry_base),
    )
    if out.retry_base > out.max_age:
        raise ctx.error(
            s.node("retry_base") or s.line,
            "notify.retry_base",
            f"must be at most notify.max_age ({format_duration(out.max_age)}), "
            f"got {format_duration(out.retry_base)}",
        )
    if out.transient_after < schedule.transient_grace:
        raise ctx.error(
            s.node("transient_after") or s.line,
            "notify.transient_after",
            f"must be at least schedule.transient_grace "
            f"({format_duration(schedule.transient_grace)}), "
            f"got {format_duration(out.transient_after)}",
        )
    return out


def _api(ctx: Ctx, node: Node | None) -> ApiSettings:
    s = Section(ctx, node, "api", ("listen", "tokens"))
    return ApiSettings(
        listen=s.opt("listen", n.listen_address, None),
        tokens=s.opt("tokens", n.list_of(n.secret), ()),
    )


def _portal(ctx: Ctx, node: Node | None) -> PortalSettings:
    d = PortalSettings()
    s = Section(ctx, node, "portal", ("reconnect_url", "unsubscribe_url"))
    return PortalSettings(
        reconnect_url=s.opt("reconnect_url", _template_url, d.reconnect_url),
        unsubscribe_url=s.opt("unsubscribe_url", _template_url, d.unsubscribe_url),
    )


def _template_url(ctx: Ctx, node: Node, path: str) -> str:
    """An http(s) URL with {account_id} / {owner_id} placeholders."""
    v = node.value
    if not isinstance(v, str):
        raise ctx.error(node, path, f"expected a URL, got {n.describe(v)}")
    allowed = ", ".join("{" + p + "}" for p in PORTAL_PLACEHOLDERS)
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(v) if f is not None]
    except ValueError as e:
        raise ctx.error(node, path, f"bad placeholder syntax ({e}); allowed: {allowed}") from None
    for f in fields:
        if f not in PORTAL_PLACEHOLDERS:
            raise ctx.error(node, path, f"unknown placeholder {{{f}}}; allowed: {allowed}")
    sample = v.format(**dict.fromkeys(PORTAL_PLACEHOLDERS, "x"))
    n.url("https", "http")(ctx, Node(sample, node.line), path)
    return v


def _http_inventory(ctx: Ctx, node: Node, path: str) -> HttpInventory:
    s = Section(ctx, node, path, ("url", "token", "poll_interval", "tls_verify", "tls_ca_file"))
    return HttpInventory(
        url=s.req("url", n.url("https", "http")),
        token=s.opt("token", n.secret, None),
        poll_interval=s.opt("poll_interval", n.duration(), 60.0),
        tls=TlsSettings(
            verify=s.opt("tls_verify", n.boolean, True),
            ca_file=s.opt("tls_ca_file", n.readable_file, None),
        ),
    )
