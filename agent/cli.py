"""The `syncwatch` command: a click group; the only place that configures logging.

    syncwatch check-config --config config/agent.yaml
    syncwatch probe ACCOUNT_ID --config config/agent.yaml [--json] [--debug] [--service imap]

Exit codes: 0 ok, 1 a probed service fails, 2 config or usage error.

Adding a command: write it in its own module and add one line to COMMANDS below
("name": "module:attribute"); it is imported only when used (or listed by --help).
Commands can reuse `config_option` and `load_config_or_exit`.
"""

from __future__ import annotations

import asyncio
import datetime
import importlib
import json
import logging
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import click

from agent import __version__
from agent.config.load import ConfigError, load_config
from agent.config.types import Account, Config
from agent.model import ProbeResult, Service
from agent.secret import Redactor, Secret

# Commands that live in other modules: name -> "module:attribute" (a click.Command).
COMMANDS: dict[str, str] = {
    "demo": "agent.demo.command:demo_command",
    "notifications": "agent.notify.commands:notifications_command",
    "run": "agent.runcmd:run_command",
}

EXIT_OK, EXIT_FAILING, EXIT_USAGE = 0, 1, 2
DEFAULT_CONFIG = Path("config/agent.yaml")
F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- logging


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the record's extra fields, exc."""

    _STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
        "message",
        "asctime",
        "taskName",
    }

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self._STANDARD and not key.startswith("_"):
                out[key] = (
                    value if isinstance(value, str | int | float | bool | None) else str(value)
                )
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


# the local part of an email address; the domain stays (it says which provider)
_EMAIL_LOCAL = re.compile(r"(?<![\w.%+-])([\w%+-])[\w.%+-]*@(?=[\w-]+\.)")


class _RedactingFilter(logging.Filter):
    """Last line of defence: every known secret is cut out of every log line, and email
    addresses (Apprise logs its recipients) are shortened to a***@example.com."""

    def __init__(self) -> None:
        super().__init__()
        self.redact = Redactor()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = _EMAIL_LOCAL.sub(r"\1***@", self.redact(message))
        if clean != message:
            record.msg, record.args = clean, None
        return True


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time (click's test runner swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


_redaction = _RedactingFilter()


def configure_logging(level: str = "info", fmt: str = "text") -> None:
    handler = _StderrHandler()
    handler.addFilter(_redaction)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def redact_in_logs(secrets: Iterable[Secret | str]) -> None:
    """Keep these secrets out of every log line from now on."""
    for s in secrets:
        _redaction.redact.add(s)


def config_secrets(config: Config) -> list[Secret]:
    out: list[Secret] = [*config.api.tokens]
    if config.inventory_http is not None and config.inventory_http.token is not None:
        out.append(config.inventory_http.token)
    for account in config.accounts:
        out += account.secrets()
    return out


# ---------------------------------------------------------------- the group


class _Group(click.Group):
    """A group whose extra commands (COMMANDS) are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is None and cmd_name in COMMANDS:
            module, _, attr = COMMANDS[cmd_name].partition(":")
            cmd = getattr(importlib.import_module(module), attr)
            if not isinstance(cmd, click.Command):
                raise TypeError(f"{COMMANDS[cmd_name]} is not a click command")
        return cmd


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="syncwatch")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="info",
    show_default=True,
    envvar="SYNCWATCH_LOG_LEVEL",
    help="Least severe log level written to stderr.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    envvar="SYNCWATCH_LOG_FORMAT",
    help="Log lines as text or as one JSON object per line.",
)
def main(log_level: str, log_format: str) -> None:
    """Watch the mailboxes and calendars users connected, and say why one fails."""
    configure_logging(log_level, log_format)


def config_option(fn: F) -> F:
    return click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path, dir_okay=False),
        default=DEFAULT_CONFIG,
        show_default=True,
        envvar="SYNCWATCH_CONFIG",
        help="The agent's YAML config.",
    )(fn)


def load_config_or_exit(path: Path, *, notify: bool = True) -> Config:
    """Load the config; on error print its one line to stderr and exit 2. With `notify`,
    the notification settings and templates are checked too (an invalid template is a
    config error at start, not a failure at 3 a.m.)."""
    try:
        config = load_config(path)
    except ConfigError as e:
        click.echo(str(e), err=True)
        raise SystemExit(EXIT_USAGE) from None
    redact_in_logs(config_secrets(config))
    if notify:
        from agent.notify.render import config_problems

        problems = config_problems(config)
        for problem in problems:
            click.echo(f"{path}: {problem}", err=True)
        if problems:
            raise SystemExit(EXIT_USAGE)
    return config


def _usage_error(message: str) -> SystemExit:
    click.echo(message, err=True)
    return SystemExit(EXIT_USAGE)


# ---------------------------------------------------------------- check-config


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@main.command("check-config")
@config_option
def check_config(config_path: Path) -> None:
    """Validate the config and exit: 0 when it is valid, 2 with the error otherwise."""
    config = load_config_or_exit(config_path, notify=True)
    owners = {a.owner.id for a in config.accounts} | set(config.owners)
    if config.inventory_http is not None:
        what = f"accounts from the HTTP inventory {config.inventory_http.url}"
    else:
        what = _plural(len(config.accounts), "account")
    click.echo(f"config OK: {what}, {_plural(len(owners), 'owner')}")


# ---------------------------------------------------------------- probe


@main.command("probe")
@click.argument("account_id")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--debug", is_flag=True, help="Add the protocol transcript (credentials removed).")
@click.option(
    "--service",
    "services",
    multiple=True,
    type=click.Choice([s.value for s in Service]),
    help="Probe only this service (repeatable). Default: all of the account's.",
)
def probe(
    account_id: str, config_path: Path, as_json: bool, debug: bool, services: tuple[str, ...]
) -> None:
    """Probe one account now and print why each service works or fails.

    Exit 0 when every probed service works, 1 when one fails, 2 on a config or usage error.
    """
    config = load_config_or_exit(config_path, notify=False)
    account = config.account(account_id) or _from_inventory(config, account_id)
    if account is None:
        raise _usage_error(f"{config_path}: account {account_id}: not found")
    redact_in_logs(account.secrets())
    wanted = [Service(s) for s in services] or list(account.services())
    for s in wanted:
        if s not in account.services():
            raise _usage_error(f"{config_path}: account {account_id}: has no {s.value} settings")
    results = asyncio.run(_probe(account, wanted, debug))
    redact = Redactor(account.secrets())
    ok = all(r.ok for r in results)
    if as_json:
        doc = {"account": account.id, "ok": ok, "services": [_json(r, debug) for r in results]}
        click.echo(redact(json.dumps(doc, ensure_ascii=False)))
    else:
        click.echo(redact(format_results(account, results, debug)))
    raise SystemExit(EXIT_OK if ok else EXIT_FAILING)


def _from_inventory(config: Config, account_id: str) -> Account | None:
    """An account the config does not list: ask the HTTP inventory, if there is one."""
    if config.inventory_http is None:
        return None
    from agent.inventory import InventoryError, inventory_for

    async def fetch() -> Account | None:
        inventory = inventory_for(config)
        try:
            return await inventory.fetch(account_id)
        finally:
            await inventory.close()

    try:
        return asyncio.run(fetch())
    except InventoryError as e:
        raise _usage_error(f"{config.path}: account {account_id}: {e}") from None


async def _probe(account: Account, services: list[Service], debug: bool) -> list[ProbeResult]:
    from agent.probes import probe_account
    from agent.probes.base import TokenSource

    tokens: TokenSource | None = None
    if account.oauth2 is not None:
        from agent.probes.oauth import OAuthTokens

        tokens = OAuthTokens()
    return await probe_account(account, services, tokens=tokens, debug=debug)


def _json(result: ProbeResult, debug: bool) -> dict[str, object]:
    doc = result.to_json()
    if debug:
        doc["transcript"] = list(result.transcript)
    return doc


def format_results(account: Account, results: list[ProbeResult], debug: bool) -> str:
    from agent.wording import CAUSE_TEXT

    status = "ok" if all(r.ok for r in results) else "FAILING"
    lines = [f"account {account.id} ({account.provider}): {status}"]
    for r in results:
        steps = ", ".join(
            f"{s.name} {s.duration_seconds * 1000:.0f}ms{'' if s.ok else ' (failed)'}"
            for s in r.steps
        )
        f = r.failure
        if f is None:
            lines.append(f"  {r.service.value}: ok in {r.duration_seconds * 1000:.0f}ms")
        else:
            lines.append(f"  {r.service.value}: FAILING: {f.cause.value}")
            lines.append(f"    meaning:     {CAUSE_TEXT.get(f.cause, '')}")
            if f.hint:
                lines.append(f"    hint:        {f.hint}")
            lines.append(f"    user must act: {'yes' if f.action_needed else 'no'}")
            lines.append(f"    definitive:  {'yes' if f.definitive else 'no'}")
            if f.retry_after is not None:
                lines.append(f"    retry after: {f.retry_after:g}s")
            lines.append(f"    server said: {f.detail or '-'}")
        lines.append(f"    steps:       {steps or '-'}")
        if debug:
            lines.append("    transcript:")
            lines += [f"      {t}" for t in r.transcript] or ["      (empty)"]
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    main()
