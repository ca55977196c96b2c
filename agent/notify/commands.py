"""`syncwatch notifications`: what was sent, when, and what is pending (read from the store).

Registered by agent/cli.py: `main.add_command(notifications_command)`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from agent.cli import config_option, load_config_or_exit
from agent.store.base import OutboxItem, Store


def _iso(t: float | None) -> str | None:
    return None if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def row(item: OutboxItem) -> dict[str, Any]:
    """One outbox row for people: no message bodies, no URLs (they may hold credentials)."""
    p = item.payload
    return {
        "key": item.key,
        "kind": item.kind,
        "status": item.status,
        "owner_id": item.owner_id,
        "account_ids": list(item.account_ids),
        "to": p.get("to") if p.get("target") == "email" else f"url:{p.get('url_id')}",
        "subject": p.get("subject"),
        "created_at": _iso(item.created_at),
        "sent_at": _iso(item.sent_at),
        "attempts": item.attempts,
        "next_attempt_at": _iso(item.next_attempt_at) if item.status == "pending" else None,
        "last_error": item.last_error,
    }


def listing(store: Store, account_id: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    return [row(i) for i in store.outbox(account_id=account_id, limit=limit)]


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return "no notifications"
    lines = []
    for r in rows:
        when = r["sent_at"] or r["next_attempt_at"] or r["created_at"]
        extra = f"  ({r['last_error']})" if r["last_error"] else ""
        lines.append(
            f"{r['status']:<9} {r['kind']:<9} {when}  {r['key']}  "
            f"accounts={','.join(r['account_ids']) or '-'} attempts={r['attempts']}{extra}"
        )
    return "\n".join(lines)


@click.command("notifications")
@config_option
@click.option("--account", "account_id", default=None, help="Only rows naming this account.")
@click.option("--json", "as_json", is_flag=True, help="A JSON array instead of a table.")
@click.option("--limit", default=200, show_default=True, help="Newest rows to show.")
def notifications_command(
    config_path: Path, account_id: str | None, as_json: bool, limit: int
) -> None:
    """List owner and SRE notifications: sent, pending (with the next attempt), given up.

    Exit 0, or 2 when the config is invalid."""
    from agent.store.sqlite import SqliteStore

    config = load_config_or_exit(config_path, notify=False)
    if not config.store.path.exists():  # listing creates nothing
        click.echo("no notifications (no state yet at " + str(config.store.path) + ")")
        return
    store = SqliteStore.open(config.store.path)
    try:
        rows = listing(store, account_id, limit)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(rows, indent=2, sort_keys=True))
    else:
        click.echo(format_table(rows))
